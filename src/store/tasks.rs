//! Task attempts: one row per attempt, moved only by compare-and-set.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, opt_ts, ts};
use crate::process::ProcessId;
use crate::vocab::state::{TaskState, can_transition};

/// One attempt of one task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRow {
    #[serde(skip)]
    pub id: i64,
    pub run_id: i64,
    pub task_id: String,
    pub attempt: i64,
    pub round: i64,
    #[serde(serialize_with = "ser_state")]
    pub state: TaskState,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub next_try_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub metrics: serde_json::Value,
    /// The OS process group the attempt started (shell tasks), for recovery to kill.
    #[serde(skip)]
    pub process: Option<ProcessId>,
}

fn ser_state<S: serde::Serializer>(v: &TaskState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct TaskFinish {
    pub state: TaskState,
    pub error: Option<String>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub next_try_at: Option<DateTime<Utc>>,
}

fn attempt_from_row(row: &SqliteRow) -> Result<AttemptRow, StoreError> {
    let state: String = row.try_get("state")?;
    let metrics: String = row.try_get("metrics")?;
    Ok(AttemptRow {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        attempt: row.try_get("attempt")?,
        round: row.try_get("round")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        queued_at: opt_ts(row.try_get("queued_at")?)?,
        started_at: opt_ts(row.try_get("started_at")?)?,
        heartbeat_at: opt_ts(row.try_get("heartbeat_at")?)?,
        ended_at: opt_ts(row.try_get("ended_at")?)?,
        next_try_at: opt_ts(row.try_get("next_try_at")?)?,
        error: row.try_get("error")?,
        metrics: serde_json::from_str(&metrics)
            .map_err(|e| StoreError::Corrupt(format!("attempt metrics `{metrics}`: {e}")))?,
        process: match (
            row.try_get::<Option<i64>, _>("pid")?,
            row.try_get::<Option<i64>, _>("pid_start")?,
        ) {
            (Some(pid), Some(start)) => Some(ProcessId {
                pid: pid as u32,
                start: start as u64,
            }),
            _ => None,
        },
    })
}

/// One compare-and-set move of an attempt; `from` must still hold.
#[derive(Debug, Clone)]
pub struct Move {
    pub row_id: i64,
    pub from: TaskState,
    pub to: TaskState,
    pub error: Option<String>,
    pub next_try_at: Option<DateTime<Utc>>,
}

/// Each task's state after its latest attempt (by attempt number).
pub fn latest_states(attempts: &[AttemptRow]) -> std::collections::HashMap<String, TaskState> {
    let mut latest: std::collections::HashMap<String, (i64, TaskState)> =
        std::collections::HashMap::new();
    for a in attempts {
        let e = latest
            .entry(a.task_id.clone())
            .or_insert((a.attempt, a.state));
        if a.attempt >= e.0 {
            *e = (a.attempt, a.state);
        }
    }
    latest.into_iter().map(|(k, (_, s))| (k, s)).collect()
}

impl Store {
    /// Every attempt of a run, by task then attempt.
    pub async fn attempts(&self, run_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM task_runs WHERE run_id = ? ORDER BY task_id, attempt")
                .bind(run_id)
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// Applies several moves in one transaction (a fan-out of 1,000 tasks becoming ready is one
    /// commit, not 1,000). Fails whole if any `from` no longer holds.
    pub async fn move_attempts(
        &self,
        moves: &[Move],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if moves.is_empty() {
            return Ok(());
        }
        if let Some(m) = moves.iter().find(|m| !can_transition(m.from, m.to)) {
            return Err(StoreError::Conflict(format!(
                "attempt row {}: {} -> {} is not a legal move",
                m.row_id, m.from, m.to
            )));
        }
        let now_s = ts(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for m in moves {
            let queued_at = (m.to == TaskState::Queued).then_some(now_s.as_str());
            let ended_at =
                m.to.is_terminal()
                    .then_some(now_s.as_str())
                    .or((m.to == TaskState::UpForRetry).then_some(now_s.as_str()));
            let r = sqlx::query(
                "UPDATE task_runs SET state = ?1, owner = ?2, queued_at = COALESCE(?3, queued_at), \
                 ended_at = COALESCE(?4, ended_at), error = COALESCE(?5, error), next_try_at = ?6 \
                 WHERE id = ?7 AND state = ?8",
            )
            .bind(m.to.as_str())
            .bind(owner)
            .bind(queued_at)
            .bind(ended_at)
            .bind(m.error.as_deref())
            .bind(m.next_try_at.map(ts))
            .bind(m.row_id)
            .bind(m.from.as_str())
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "attempt row {} is no longer {} (wanted {} -> {})",
                    m.row_id, m.from, m.from, m.to
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds the next attempt of a task, already queued. Returns its row id.
    pub async fn new_attempt(
        &self,
        run_id: i64,
        task_id: &str,
        attempt: i64,
        round: i64,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO task_runs (run_id, task_id, attempt, round, state, owner, queued_at) \
             VALUES (?, ?, ?, ?, 'queued', ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(attempt)
        .bind(round)
        .bind(owner)
        .bind(ts(now))
        .fetch_one(&self.writer)
        .await?)
    }

    /// queued → running.
    pub async fn start_attempt(
        &self,
        row_id: i64,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now_s = ts(now);
        let r = sqlx::query(
            "UPDATE task_runs SET state = 'running', owner = ?, started_at = ?, heartbeat_at = ? \
             WHERE id = ? AND state = 'queued'",
        )
        .bind(owner)
        .bind(&now_s)
        .bind(&now_s)
        .bind(row_id)
        .execute(&self.writer)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "attempt row {row_id} is no longer queued"
            )));
        }
        Ok(())
    }

    /// Records the process group an attempt started (written as soon as the task reports it,
    /// so that a crash right after still leaves recovery something to kill).
    pub async fn set_attempt_process(
        &self,
        row_id: i64,
        process: ProcessId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE task_runs SET pid = ?, pid_start = ? WHERE id = ?")
            .bind(i64::from(process.pid))
            .bind(process.start as i64)
            .bind(row_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// running → success | failed | up_for_retry | cancelled.
    pub async fn finish_attempt(
        &self,
        row_id: i64,
        fin: &TaskFinish,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let metrics = serde_json::Value::Object(fin.metrics.clone()).to_string();
        let r = sqlx::query(
            "UPDATE task_runs SET state = ?, ended_at = ?, error = ?, metrics = ?, next_try_at = ? \
             WHERE id = ? AND state = 'running'",
        )
        .bind(fin.state.as_str())
        .bind(ts(now))
        .bind(fin.error.as_deref())
        .bind(metrics)
        .bind(fin.next_try_at.map(ts))
        .bind(row_id)
        .execute(&self.writer)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "attempt row {row_id} is no longer running"
            )));
        }
        Ok(())
    }

    /// Releases a run whose owner died: its interrupted attempts get the states recovery decided,
    /// and the run goes back to `queued` with no owner, for `flowctl retry` or `serve` to resume.
    /// Compare-and-set on the dead owner, so two recovering processes cannot both act.
    pub async fn release_orphan(
        &self,
        run_id: i64,
        dead_owner: &str,
        moves: &[Move],
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now_s = ts(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "UPDATE flow_runs SET owner = NULL, state = 'queued', error = ? WHERE id = ? AND owner = ? \
             AND state IN ('queued', 'running')",
        )
        .bind(note)
        .bind(run_id)
        .bind(dead_owner)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        for m in moves {
            sqlx::query(
                "UPDATE task_runs SET state = ?, ended_at = ?, error = ?, next_try_at = ? WHERE id = ? AND state = ?",
            )
            .bind(m.to.as_str())
            .bind(&now_s)
            .bind(m.error.as_deref())
            .bind(m.next_try_at.map(ts))
            .bind(m.row_id)
            .bind(m.from.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
