//! What a task attempt gets to work with, and its log buffer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::process::ProcessId;

/// Everything one attempt may use. Tasks never touch the store: they log through `log`, record
/// check results in `quality` and report through their outcome.
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
    /// Quality check results, stored by the executor when the attempt ends.
    pub quality: QualityBuffer,
    /// Fires on timeout or cancel; the task must stop soon after.
    pub cancel: CancellationToken,
    /// The schema registry (embedded in the state DB, or remote via
    /// `FLOWCTL_SCHEMA_REGISTRY_URL`).
    pub registry: crate::contracts::registry::Registry,
    /// Where a task reports an OS process it started.
    pub process: ProcessReport,
}

/// A task that starts an OS process group reports it here; the executor records it with the
/// attempt, and recovery kills it if this process dies before the attempt ends.
#[derive(Debug, Clone, Default)]
pub struct ProcessReport {
    /// (attempt row, process); None outside an executor (tests, `flowctl` subcommands).
    tx: Option<(i64, tokio::sync::mpsc::UnboundedSender<(i64, ProcessId)>)>,
}

impl ProcessReport {
    pub fn new(row: i64, tx: tokio::sync::mpsc::UnboundedSender<(i64, ProcessId)>) -> Self {
        ProcessReport {
            tx: Some((row, tx)),
        }
    }

    /// The attempt started `leader` (a process group leader).
    pub fn started(&self, leader: ProcessId) {
        if let Some((row, tx)) = &self.tx {
            let _ = tx.send((*row, leader));
        }
    }
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

/// One quality check result as a task reports it; the executor stores it with the attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRecord {
    pub table: String,
    /// The table version checked (None when the table does not exist).
    pub version: Option<i64>,
    pub check: String,
    pub observed: Option<String>,
    pub threshold: String,
    /// `warn` | `fail`.
    pub severity: String,
    /// `pass` | `warn` | `fail` | `error`.
    pub outcome: String,
    pub checked_at: DateTime<Utc>,
}

/// Check results of an attempt. Tasks never touch the store: they push here, and the executor
/// drains the buffer into `quality_results` when the attempt ends, whether it succeeded or not
/// (a failed gate's results matter most).
#[derive(Debug, Clone, Default)]
pub struct QualityBuffer {
    rows: Arc<Mutex<Vec<QualityRecord>>>,
}

impl QualityBuffer {
    /// Records one result of a check run on `table` at `version`.
    pub fn record(
        &self,
        table: &str,
        version: Option<i64>,
        result: &crate::quality::CheckResult,
        checked_at: DateTime<Utc>,
    ) {
        let row = QualityRecord {
            table: table.to_string(),
            version,
            check: result.check.clone(),
            observed: result.observed_text(),
            threshold: result.threshold.clone(),
            severity: result.severity.as_str().to_string(),
            outcome: result.outcome.as_str().to_string(),
            checked_at,
        };
        self.rows.lock().expect("quality buffer poisoned").push(row);
    }

    /// Takes everything recorded so far.
    pub fn drain(&self) -> Vec<QualityRecord> {
        std::mem::take(&mut *self.rows.lock().expect("quality buffer poisoned"))
    }
}
