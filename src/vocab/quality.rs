//! Quality check results as tasks report them and the store keeps them.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

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
    pub fn push(&self, record: QualityRecord) {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Takes everything recorded so far.
    pub fn drain(&self) -> Vec<QualityRecord> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
