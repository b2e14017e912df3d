//! Task and run states, and the transitions between them, as pure functions.
//!
//! The store refuses any attempt move [`can_transition`] does not allow, and makes each move a
//! compare-and-set on the state it starts from, so two processes can never both move one
//! attempt.

use std::fmt;
use std::str::FromStr;

/// The state of one task attempt (and, through its latest attempt, of the task in a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    Pending,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// A finished task: nothing more will happen to it in this round.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Skipped
                | TaskState::Cancelled
        )
    }

    /// Counts as a failure for trigger rules and for the run's outcome.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            TaskState::Failed | TaskState::UpstreamFailed | TaskState::Cancelled
        )
    }

    /// Whether `flowctl retry` runs this task again.
    pub fn needs_rerun(self) -> bool {
        !matches!(self, TaskState::Success | TaskState::Skipped)
    }
}

/// Which moves a task attempt may make. Everything else is a bug or a lost race.
pub fn can_transition(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    match from {
        Pending => matches!(to, Queued | UpstreamFailed | Skipped | Cancelled),
        Queued => matches!(to, Running | Cancelled | Failed | UpForRetry | Pending),
        Running => matches!(to, Success | Failed | UpForRetry | Cancelled),
        UpForRetry => matches!(to, Cancelled),
        Success | Failed | UpstreamFailed | Skipped | Cancelled => false,
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task state `{s}`"))
    }
}

/// The state of a flow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 5] = [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
        RunState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Success | RunState::Failed | RunState::Cancelled
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("unknown run state `{s}` (expected queued, running, success, failed or cancelled)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_text() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), s);
        }
        assert!("done".parse::<RunState>().is_err());
    }

    #[test]
    fn terminal_states_never_move() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(!can_transition(from, to), "{from} -> {to}");
            }
        }
        assert!(can_transition(TaskState::Running, TaskState::UpForRetry));
        assert!(!can_transition(TaskState::Pending, TaskState::Success));
    }
}
