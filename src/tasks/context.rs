//! What a task attempt gets to work with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::process::ProcessId;
use crate::vocab::log::TaskLog;
use crate::vocab::quality::QualityBuffer;

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
    /// The settings read at the edge (expectation files, Kafka).
    pub settings: Arc<super::TaskSettings>,
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
