//! What a task attempt says while it runs: log lines, buffered until the executor stores them.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

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
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    pub fn info(&self, line: impl Into<String>) {
        self.write("flowctl", line);
    }

    /// Takes everything buffered so far.
    pub fn drain(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
