//! The validated, runnable form of a flow file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::dag::Dag;
use super::schedule::Schedule;
use crate::tasks::Task;

/// When a task may start, given the final states of its upstream tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerRule {
    /// Every upstream succeeded (the default).
    AllSuccess,
    /// Every upstream finished, whatever the outcome (cleanup tasks).
    AllDone,
    /// At least one upstream failed (alerting tasks); fires as soon as one fails.
    OneFailed,
    /// No upstream failed; skipped upstreams are fine.
    NoneFailed,
}

impl TriggerRule {
    pub const NAMES: [&'static str; 4] = ["all_success", "all_done", "one_failed", "none_failed"];

    pub fn parse(s: &str) -> Option<TriggerRule> {
        Some(match s {
            "all_success" => TriggerRule::AllSuccess,
            "all_done" => TriggerRule::AllDone,
            "one_failed" => TriggerRule::OneFailed,
            "none_failed" => TriggerRule::NoneFailed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Retries with exponential backoff: attempt n+1 waits `min(max_delay, delay * backoff^(n-1))`,
/// shortened by up to `jitter` (a fraction) so retries of many tasks do not stampede.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = run once).
    pub count: u32,
    pub delay: Duration,
    pub backoff: f64,
    pub max_delay: Duration,
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            count: 0,
            delay: Duration::from_secs(10),
            backoff: 2.0,
            max_delay: Duration::from_secs(600),
            jitter: 0.1,
        }
    }
}

/// One task of a validated flow.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub trigger_rule: TriggerRule,
    /// Line of the task in its flow file.
    pub line: usize,
    pub task: Arc<dyn Task>,
}

/// A flow that passed validation: acyclic, every reference resolved, every task built.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub description: Option<String>,
    pub path: PathBuf,
    /// The file's text: stored with each run so retries and recovery run the same definition.
    pub yaml: String,
    pub schedule: Option<Schedule>,
    pub catchup: bool,
    pub max_active_runs: u32,
    /// Declared run parameters and their defaults; `--param` may only set these.
    pub params: BTreeMap<String, String>,
    /// Tasks in declaration order; `dag` indexes into this.
    pub tasks: Vec<TaskSpec>,
    pub dag: Dag,
    /// `sla:` a run not finished this long after it was due (created) notifies `sla_missed`.
    pub sla: Option<Duration>,
    /// `notify:` who hears of which run events.
    pub notify: Vec<NotifyRule>,
}

/// A run event a notification can be sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyEvent {
    Success,
    Failed,
    Cancelled,
    /// A quality check with `severity: fail` failed in the run (its data was not published).
    GateFailed,
    /// The run was not finished `sla` after it was due.
    SlaMissed,
}

impl NotifyEvent {
    pub const NAMES: [&'static str; 5] = [
        "success",
        "failed",
        "cancelled",
        "gate_failed",
        "sla_missed",
    ];

    pub fn parse(s: &str) -> Option<NotifyEvent> {
        Some(match s {
            "success" => NotifyEvent::Success,
            "failed" => NotifyEvent::Failed,
            "cancelled" => NotifyEvent::Cancelled,
            "gate_failed" => NotifyEvent::GateFailed,
            "sla_missed" => NotifyEvent::SlaMissed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Success => "success",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Cancelled => "cancelled",
            NotifyEvent::GateFailed => "gate_failed",
            NotifyEvent::SlaMissed => "sla_missed",
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// POST the JSON payload (with a `text` field, so a Slack incoming webhook takes it as is).
    Webhook(String),
    /// `sh -c COMMAND` with the payload on stdin and in `FLOWCTL_NOTIFY_*` variables.
    Command(String),
}

/// One `notify:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub on: Vec<NotifyEvent>,
    pub target: NotifyTarget,
}

impl Flow {
    pub fn task_index(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }

    /// Overlays `given` on the declared defaults; unknown names are an error.
    pub fn resolve_params(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = self.params.clone();
        for (k, v) in given {
            if !self.params.contains_key(k) {
                let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
                return Err(format!(
                    "flow `{}` has no parameter `{k}` (declared: {})",
                    self.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }
}
