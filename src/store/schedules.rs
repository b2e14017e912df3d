//! Scheduler state: last and next fire times, pause flags. Compare-and-set on `last_fire_at`
//! makes a double fire impossible, across restarts and across processes.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, opt_ts, ts};

/// One scheduled flow as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleRow {
    pub flow: String,
    pub expr: String,
    pub paused: bool,
    pub last_fire_at: Option<DateTime<Utc>>,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// A table's check outcomes at one version (the table page's quality history).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityByVersion {
    pub version: Option<i64>,
    pub pass: i64,
    pub warn: i64,
    pub fail: i64,
    pub last_run: i64,
}

/// A stored quality check result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityRow {
    pub task_id: Option<String>,
    pub table_name: String,
    pub version: Option<i64>,
    pub check_name: String,
    pub observed: Option<String>,
    pub threshold: Option<String>,
    pub severity: String,
    pub outcome: String,
}

impl Store {
    /// Registers a scheduled flow (keeping its fire history if it exists) and returns its row.
    pub async fn upsert_schedule(
        &self,
        flow: &str,
        expr: &str,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRow, StoreError> {
        sqlx::query(
            "INSERT INTO schedules (flow, expr, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (flow) DO UPDATE SET expr = ?2, updated_at = ?3",
        )
        .bind(flow)
        .bind(expr)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        self.schedule(flow)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("schedule {flow} vanished")))
    }

    pub async fn schedule(&self, flow: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let row = sqlx::query(
            "SELECT flow, expr, paused, last_fire_at, next_fire_at FROM schedules WHERE flow = ?",
        )
        .bind(flow)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| schedule_from_row(&r)).transpose()
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT flow, expr, paused, last_fire_at, next_fire_at FROM schedules ORDER BY flow",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Claims the fire at cron time `at`: succeeds only if nothing at or after `at` fired yet
    /// and the flow is not paused.
    pub async fn claim_fire(
        &self,
        flow: &str,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE schedules SET last_fire_at = ?1, next_fire_at = ?2, updated_at = ?3 \
             WHERE flow = ?4 AND paused = 0 AND (last_fire_at IS NULL OR last_fire_at < ?1)",
        )
        .bind(ts(at))
        .bind(next.map(ts))
        .bind(ts(now))
        .bind(flow)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves the fire baseline without firing (first registration, unpause).
    pub async fn set_schedule_baseline(
        &self,
        flow: &str,
        last: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE schedules SET last_fire_at = ?, next_fire_at = ?, updated_at = ? WHERE flow = ?")
            .bind(last.map(ts))
            .bind(next.map(ts))
            .bind(ts(now))
            .bind(flow)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Pauses or unpauses; false when the flow has no schedule row.
    pub async fn set_paused(
        &self,
        flow: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE schedules SET paused = ?, updated_at = ? WHERE flow = ?")
            .bind(paused)
            .bind(ts(now))
            .bind(flow)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Quality results recorded for a run.
    pub async fn quality_results(&self, run_id: i64) -> Result<Vec<QualityRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT task_id, table_name, version, check_name, observed, threshold, severity, outcome \
             FROM quality_results WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QualityRow {
                    task_id: r.try_get("task_id")?,
                    table_name: r.try_get("table_name")?,
                    version: r.try_get("version")?,
                    check_name: r.try_get("check_name")?,
                    observed: r.try_get("observed")?,
                    threshold: r.try_get("threshold")?,
                    severity: r.try_get("severity")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// A table's check outcomes per version, newest first (`limit` versions).
    pub async fn quality_by_version(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<QualityByVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, SUM(outcome = 'pass') AS pass, SUM(outcome = 'warn') AS warn, \
             SUM(outcome = 'fail') AS fail, MAX(run_id) AS last_run FROM quality_results \
             WHERE table_name = ? GROUP BY version ORDER BY version DESC LIMIT ?",
        )
        .bind(table)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QualityByVersion {
                    version: r.try_get("version")?,
                    pass: r.try_get("pass")?,
                    warn: r.try_get("warn")?,
                    fail: r.try_get("fail")?,
                    last_run: r.try_get("last_run")?,
                })
            })
            .collect()
    }

    /// Runs per (flow, state): the source of the run counters in /metrics, so runs triggered by
    /// any process are counted, not just the serving one.
    pub async fn run_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT flow, state, COUNT(*) AS n FROM flow_runs GROUP BY flow, state")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("flow")?, r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }
}

fn schedule_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        flow: r.try_get("flow")?,
        expr: r.try_get("expr")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        last_fire_at: opt_ts(r.try_get("last_fire_at")?)?,
        next_fire_at: opt_ts(r.try_get("next_fire_at")?)?,
    })
}
