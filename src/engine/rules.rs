//! Trigger rules and run outcomes as pure functions over task states.

use crate::flow::TriggerRule;
use crate::vocab::state::{RunState, TaskState};

/// What to do with a pending task, given its upstream tasks' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet decidable: some upstream is still unfinished.
    Wait,
    Run,
    UpstreamFailed,
    Skip,
}

pub fn decide(rule: TriggerRule, upstream: &[TaskState]) -> Decision {
    let all_done = upstream.iter().all(|s| s.is_terminal());
    let any_failed = upstream.iter().any(|s| s.is_failure());
    match rule {
        // one_failed fires as soon as one upstream failed, like Airflow's.
        TriggerRule::OneFailed if any_failed => Decision::Run,
        _ if !all_done => Decision::Wait,
        TriggerRule::AllSuccess => {
            if upstream.iter().all(|s| *s == TaskState::Success) {
                Decision::Run
            } else if any_failed {
                Decision::UpstreamFailed
            } else {
                Decision::Skip
            }
        }
        TriggerRule::AllDone => Decision::Run,
        TriggerRule::OneFailed => Decision::Skip,
        TriggerRule::NoneFailed => {
            if any_failed {
                Decision::UpstreamFailed
            } else {
                Decision::Run
            }
        }
    }
}

/// The run's final state once every task is terminal. A failure anywhere fails the run, even
/// when a cleanup task downstream succeeded: a failure is never hidden.
pub fn run_outcome(states: &[TaskState], cancelled: bool) -> RunState {
    if cancelled {
        RunState::Cancelled
    } else if states.iter().any(|s| s.is_failure()) {
        RunState::Failed
    } else {
        RunState::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    #[test]
    fn all_success() {
        let r = TriggerRule::AllSuccess;
        assert_eq!(decide(r, &[]), Decision::Run);
        assert_eq!(decide(r, &[Success, Success]), Decision::Run);
        assert_eq!(decide(r, &[Success, Running]), Decision::Wait);
        assert_eq!(decide(r, &[Success, Failed]), Decision::UpstreamFailed);
        assert_eq!(decide(r, &[UpstreamFailed]), Decision::UpstreamFailed);
        assert_eq!(decide(r, &[Success, Skipped]), Decision::Skip);
        assert_eq!(decide(r, &[Failed, UpForRetry]), Decision::Wait);
    }

    #[test]
    fn all_done_one_failed_none_failed() {
        assert_eq!(
            decide(TriggerRule::AllDone, &[Failed, Success]),
            Decision::Run
        );
        assert_eq!(
            decide(TriggerRule::AllDone, &[Failed, Queued]),
            Decision::Wait
        );
        assert_eq!(
            decide(TriggerRule::OneFailed, &[Failed, Running]),
            Decision::Run
        );
        assert_eq!(
            decide(TriggerRule::OneFailed, &[Success, Success]),
            Decision::Skip
        );
        assert_eq!(
            decide(TriggerRule::OneFailed, &[Success, Running]),
            Decision::Wait
        );
        assert_eq!(
            decide(TriggerRule::NoneFailed, &[Success, Skipped]),
            Decision::Run
        );
        assert_eq!(
            decide(TriggerRule::NoneFailed, &[Success, UpstreamFailed]),
            Decision::UpstreamFailed
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(run_outcome(&[Success, Skipped], false), RunState::Success);
        assert_eq!(
            run_outcome(&[Success, Failed, Success], false),
            RunState::Failed
        );
        assert_eq!(run_outcome(&[Success], true), RunState::Cancelled);
    }
}
