//! What a task attempt gets to work with, and its log buffer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// Everything one attempt may use. Tasks never touch the store: they log through `log` and
/// report through their outcome.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub run_id: i64,
    pub flow: String,
    pub task_id: String,
    pub attempt: u32,
    /// The run's parameters (flow defaults overlaid with `--param k=v`).
    pub params: BTreeMap<String, String>,
    /// `FLOWCTL_HOME`: where the lake, logs and state live.
    pub home: PathBuf,
    pub log: TaskLog,
    /// Fires on timeout or cancel; the task must stop soon after.
    pub cancel: CancellationToken,
    /// The schema registry (embedded in the state DB, or remote via
    /// `FLOWCTL_SCHEMA_REGISTRY_URL`).
    pub registry: crate::contracts::registry::Registry,
}

/// One captured log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub ts: DateTime<Utc>,
    pub stream: &'static str,
    pub line: String,
}

/// A buffer the executor drains into the store on every heartbeat and at the end of the attempt,
/// so logs can be tailed while a task runs without a write per line.
#[derive(Debug, Clone, Default)]
pub struct TaskLog {
    lines: Arc<Mutex<Vec<LogLine>>>,
}

impl TaskLog {
    pub fn write(&self, stream: &'static str, line: impl Into<String>) {
        let entry = LogLine {
            ts: Utc::now(),
            stream,
            line: line.into(),
        };
        self.lines.lock().expect("log buffer poisoned").push(entry);
    }

    pub fn info(&self, line: impl Into<String>) {
        self.write("flowctl", line);
    }

    /// Takes everything buffered so far.
    pub fn drain(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().expect("log buffer poisoned"))
    }
}
