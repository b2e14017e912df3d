//! Notification claims and delivery attempts (see `crate::notify`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::runs::{RUN_COLUMNS, RunRow, run_from_row};
use super::{Store, StoreError, parse_ts, ts};

/// One delivery attempt, as the run page and `/api/runs/{id}` show it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationAttempt {
    pub event: String,
    pub target: String,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub detail: String,
}

impl Store {
    /// Claims (run, round, event) for this process; false when someone already did, so each
    /// event notifies once.
    pub async fn claim_notification(
        &self,
        run_id: i64,
        round: i64,
        event: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO notification_claims (run_id, round, event, claimed_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(round)
        .bind(event)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_notification_attempt(
        &self,
        run_id: i64,
        a: &NotificationAttempt,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notification_attempts (run_id, event, target, attempt, at, ok, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(&a.event)
        .bind(&a.target)
        .bind(a.attempt)
        .bind(ts(a.at))
        .bind(a.ok)
        .bind(&a.detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// A run's delivery attempts, oldest first (at most the last 200).
    pub async fn notification_attempts(
        &self,
        run_id: i64,
    ) -> Result<Vec<NotificationAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT event, target, attempt, at, ok, detail FROM (SELECT * FROM \
             notification_attempts WHERE run_id = ? ORDER BY id DESC LIMIT 200) ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NotificationAttempt {
                    event: r.try_get("event")?,
                    target: r.try_get("target")?,
                    attempt: r.try_get("attempt")?,
                    at: parse_ts(&r.try_get::<String, _>("at")?)?,
                    ok: r.try_get("ok")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Runs that missed their SLA, per flow: the source of `flowctl_sla_missed_runs`.
    pub async fn sla_missed_per_flow(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.flow AS flow, COUNT(*) AS n FROM notification_claims c \
             JOIN flow_runs r ON r.id = c.run_id WHERE c.event = 'sla_missed' GROUP BY r.flow",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("flow")?, r.try_get("n")?)))
            .collect()
    }

    /// Unfinished runs, oldest first (at most 1000), without their flow snapshot: the SLA
    /// watcher's candidates (it reads a run's snapshot once, with `get_run`).
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM flow_runs WHERE state IN ('queued', 'running') \
             ORDER BY id LIMIT 1000"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| run_from_row(r, false)).collect()
    }
}
