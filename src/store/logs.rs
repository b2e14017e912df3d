//! Task logs: appended in batches, read back in order.

use sqlx::Row;

use super::{Store, StoreError, parse_ts, ts};
use crate::vocab::log::LogLine;

/// A stored log line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRow {
    pub task_id: String,
    pub attempt: i64,
    pub ts: chrono::DateTime<chrono::Utc>,
    pub stream: String,
    pub line: String,
}

impl Store {
    /// Appends lines of one attempt in a single transaction.
    pub async fn append_logs(
        &self,
        run_id: i64,
        task_id: &str,
        attempt: i64,
        lines: &[LogLine],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for l in lines {
            sqlx::query("INSERT INTO task_logs (run_id, task_id, attempt, ts, stream, line) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(run_id)
                .bind(task_id)
                .bind(attempt)
                .bind(ts(l.ts))
                .bind(l.stream)
                .bind(&l.line)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` log lines of a run (optionally one task), oldest first, after the line id
    /// `after_id`: the last id returned is the cursor of the next page, so a task that wrote a
    /// million lines is read (and served) a page at a time.
    pub async fn logs(
        &self,
        run_id: i64,
        task_id: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, LogRow)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, task_id, attempt, ts, stream, line FROM task_logs \
             WHERE run_id = ?1 AND (?2 IS NULL OR task_id = ?2) AND id > ?3 ORDER BY id LIMIT ?4",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    LogRow {
                        task_id: r.try_get("task_id")?,
                        attempt: r.try_get("attempt")?,
                        ts: parse_ts(&r.try_get::<String, _>("ts")?)?,
                        stream: r.try_get("stream")?,
                        line: r.try_get("line")?,
                    },
                ))
            })
            .collect()
    }
}
