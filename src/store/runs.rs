//! Flow runs: creation (with idempotency keys), ownership, lifecycle, listings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, opt_ts, parse_ts, ts};
use crate::vocab::state::{RunState, TaskState};

/// What `create_run` needs.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub flow: &'a str,
    pub flow_path: &'a str,
    pub flow_yaml: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub source: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub task_ids: &'a [String],
}

/// The run a trigger resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Created(i64),
    /// A run with the same idempotency key already existed; nothing new was started.
    Existing(i64),
}

impl Submitted {
    pub fn run_id(self) -> i64 {
        match self {
            Submitted::Created(id) | Submitted::Existing(id) => id,
        }
    }
}

/// A flow run as stored. `flow_yaml` is empty in listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub flow: String,
    #[serde(serialize_with = "ser_display")]
    pub state: RunState,
    pub trigger_source: String,
    pub params: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub flow_yaml: String,
    pub flow_path: String,
    pub round: i64,
    pub cancel_requested: bool,
    pub owner: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Filters for `runs list`; newest first, keyset-paginated with `before_id`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub state: Option<RunState>,
    pub limit: u32,
    pub before_id: Option<i64>,
}

pub(super) const RUN_COLUMNS: &str = "id, flow, state, trigger_source, params, idempotency_key, flow_path, round, \
     cancel_requested, owner, heartbeat_at, created_at, started_at, ended_at, error";

pub(super) fn run_from_row(row: &SqliteRow, with_yaml: bool) -> Result<RunRow, StoreError> {
    let state: String = row.try_get("state")?;
    let params: String = row.try_get("params")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        flow: row.try_get("flow")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        trigger_source: row.try_get("trigger_source")?,
        params: serde_json::from_str(&params)
            .map_err(|e| StoreError::Corrupt(format!("run params `{params}`: {e}")))?,
        idempotency_key: row.try_get("idempotency_key")?,
        flow_yaml: if with_yaml {
            row.try_get("flow_yaml")?
        } else {
            String::new()
        },
        flow_path: row.try_get("flow_path")?,
        round: row.try_get("round")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        owner: row.try_get("owner")?,
        heartbeat_at: opt_ts(row.try_get("heartbeat_at")?)?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        started_at: opt_ts(row.try_get("started_at")?)?,
        ended_at: opt_ts(row.try_get("ended_at")?)?,
        error: row.try_get("error")?,
    })
}

/// The listing query for the filters present (values bound in order flow, state, before, limit).
fn list_runs_sql(f: &RunFilter) -> String {
    let mut conds = Vec::new();
    if f.flow.is_some() {
        conds.push("flow = ?");
    }
    if f.state.is_some() {
        conds.push("state = ?");
    }
    if f.before_id.is_some() {
        conds.push("id < ?");
    }
    format!(
        "SELECT {RUN_COLUMNS} FROM flow_runs {}{} ORDER BY id DESC LIMIT ?",
        if conds.is_empty() { "" } else { "WHERE " },
        conds.join(" AND ")
    )
}

/// Outcome of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Owned {
        cancel_requested: bool,
    },
    /// Another process recovered the run from us (our lease expired): stop at once.
    Lost,
}

impl Store {
    /// Creates a queued run with one pending attempt per task, atomically. With an idempotency
    /// key that was already used for this flow, returns the existing run instead.
    pub async fn create_run(
        &self,
        new: &NewRun<'_>,
        now: DateTime<Utc>,
    ) -> Result<Submitted, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(key) = new.idempotency_key {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM flow_runs WHERE flow = ? AND idempotency_key = ?",
            )
            .bind(new.flow)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = existing {
                tx.commit().await?;
                return Ok(Submitted::Existing(id));
            }
        }
        let params = serde_json::to_string(new.params).expect("string map serialises");
        let now_s = ts(now);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO flow_runs (flow, state, trigger_source, params, idempotency_key, flow_yaml, \
             flow_path, created_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.flow)
        .bind(new.source)
        .bind(&params)
        .bind(new.idempotency_key)
        .bind(new.flow_yaml)
        .bind(new.flow_path)
        .bind(&now_s)
        .fetch_one(&mut *tx)
        .await?;
        for task in new.task_ids {
            sqlx::query(
                "INSERT INTO task_runs (run_id, task_id, attempt, round, state) VALUES (?, ?, 1, 1, 'pending')",
            )
            .bind(id)
            .bind(task)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Submitted::Created(id))
    }

    pub async fn get_run(&self, id: i64) -> Result<RunRow, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS}, flow_yaml FROM flow_runs WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        run_from_row(&row, true)
    }

    /// Newest first. Every filter combination is served by an index (see 0001_core.sql).
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        // A limit of zero asks for zero rows (SQLite would read `LIMIT 0` the same way; the
        // early return saves the round trip).
        if f.limit == 0 {
            return Ok(Vec::new());
        }
        // Only the filters given appear in the SQL, so SQLite can pick the matching index
        // (`x IS NULL OR col = x` would defeat it). Values are always bound, never spliced.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list_runs_sql(f)));
        if let Some(flow) = &f.flow {
            q = q.bind(flow.as_str());
        }
        if let Some(state) = f.state {
            q = q.bind(state.as_str());
        }
        if let Some(before) = f.before_id {
            q = q.bind(before);
        }
        let rows = q.bind(i64::from(f.limit)).fetch_all(&self.reader).await?;
        rows.iter().map(|r| run_from_row(r, false)).collect()
    }

    /// Takes responsibility for executing a run that nobody (or we) own.
    pub async fn claim_run(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE flow_runs SET owner = ?1, heartbeat_at = ?2 WHERE id = ?3 \
             AND state IN ('queued', 'running') AND (owner IS NULL OR owner = ?1)",
        )
        .bind(owner)
        .bind(ts(now))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// queued → running, only while the flow has fewer than `max_active` running runs. One
    /// statement, so two processes cannot both take the last slot.
    pub async fn start_run(
        &self,
        id: i64,
        owner: &str,
        max_active: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE flow_runs SET state = 'running', started_at = COALESCE(started_at, ?1), heartbeat_at = ?1 \
             WHERE id = ?2 AND owner = ?3 AND state = 'queued' \
             AND (SELECT COUNT(*) FROM flow_runs o WHERE o.flow = flow_runs.flow AND o.state = 'running') < ?4",
        )
        .bind(ts(now))
        .bind(id)
        .bind(owner)
        .bind(i64::from(max_active))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Renews the owner's lease on the run and its running attempts; reports a cancel request.
    pub async fn heartbeat(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        let now_s = ts(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE flow_runs SET heartbeat_at = ? WHERE id = ? AND owner = ? RETURNING cancel_requested",
        )
        .bind(&now_s)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cancel) = cancel else {
            tx.commit().await?;
            return Ok(Heartbeat::Lost);
        };
        sqlx::query("UPDATE task_runs SET heartbeat_at = ? WHERE run_id = ? AND state = 'running'")
            .bind(&now_s)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Heartbeat::Owned {
            cancel_requested: cancel != 0,
        })
    }

    /// Sets the final state of a run we own.
    pub async fn finish_run(
        &self,
        id: i64,
        owner: &str,
        state: RunState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE flow_runs SET state = ?, ended_at = ?, error = ?, owner = NULL WHERE id = ? AND owner = ?",
        )
        .bind(state.as_str())
        .bind(ts(now))
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Asks the owner of a run to cancel it. Returns the run as it is now.
    pub async fn request_cancel(&self, id: i64) -> Result<RunRow, StoreError> {
        sqlx::query("UPDATE flow_runs SET cancel_requested = 1 WHERE id = ? AND state IN ('queued', 'running')")
            .bind(id)
            .execute(&self.writer)
            .await?;
        self.get_run(id).await
    }

    /// Cancels a run that no live process executes: the run and every unfinished task.
    pub async fn cancel_unowned(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now_s = ts(now);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "UPDATE flow_runs SET state = 'cancelled', ended_at = ?, cancel_requested = 1, \
             error = 'cancelled before an executor picked it up' \
             WHERE id = ? AND owner IS NULL AND state IN ('queued', 'running')",
        )
        .bind(&now_s)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            sqlx::query(
                "UPDATE task_runs SET state = 'cancelled', ended_at = ? WHERE run_id = ? \
                 AND state IN ('pending', 'queued', 'running', 'up_for_retry') \
                 AND attempt = (SELECT MAX(attempt) FROM task_runs t WHERE t.run_id = task_runs.run_id AND t.task_id = task_runs.task_id)",
            )
            .bind(&now_s)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends every unfinished latest attempt of a run in `state` (`cancelled` after the run was
    /// cancelled, `failed` after its executor broke down), with `error` when given.
    pub async fn close_open_attempts(
        &self,
        id: i64,
        state: TaskState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE task_runs SET state = ?, ended_at = ?, error = COALESCE(?, error) WHERE run_id = ? \
             AND state IN ('pending', 'queued', 'running', 'up_for_retry') \
             AND attempt = (SELECT MAX(attempt) FROM task_runs t WHERE t.run_id = task_runs.run_id AND t.task_id = task_runs.task_id)",
        )
        .bind(state.as_str())
        .bind(ts(now))
        .bind(error)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Starts a new round of a finished run: the given tasks get a fresh pending attempt, the
    /// others keep their result. The caller becomes the owner.
    pub async fn prepare_retry(
        &self,
        id: i64,
        owner: &str,
        rerun: &[String],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let round: Option<i64> = sqlx::query_scalar(
            "UPDATE flow_runs SET round = round + 1, state = 'queued', owner = ?, heartbeat_at = ?, \
             ended_at = NULL, error = NULL, cancel_requested = 0 \
             WHERE id = ? AND (state IN ('failed', 'cancelled') OR (state = 'queued' AND owner IS NULL)) RETURNING round",
        )
        .bind(owner)
        .bind(ts(now))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(round) = round else {
            return Err(StoreError::Conflict(format!(
                "run {id} is not failed, cancelled or released by recovery (anymore); nothing to retry"
            )));
        };
        for task in rerun {
            sqlx::query(
                "INSERT INTO task_runs (run_id, task_id, attempt, round, state) \
                 SELECT ?1, ?2, COALESCE(MAX(attempt), 0) + 1, ?3, 'pending' FROM task_runs WHERE run_id = ?1 AND task_id = ?2",
            )
            .bind(id)
            .bind(task)
            .bind(round)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(round)
    }

    /// The latest run of every flow (at most 1000 flows), for `/healthz`.
    pub async fn last_run_per_flow(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM flow_runs WHERE id IN \
             (SELECT MAX(id) FROM flow_runs GROUP BY flow) ORDER BY flow LIMIT 1000"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| run_from_row(r, false)).collect()
    }

    /// Runs that some process claims to execute; recovery checks whether that process lives.
    pub async fn owned_unfinished_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM flow_runs WHERE state IN ('queued', 'running') AND owner IS NOT NULL"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| run_from_row(r, false)).collect()
    }

    /// Queued runs that no process executes (released by recovery, or detached and not yet
    /// picked up): what `flowctl serve` adopts.
    pub async fn unowned_queued_runs(&self, limit: u32) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM flow_runs WHERE state = 'queued' AND owner IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn count_runs(
        &self,
        flow: Option<&str>,
        state: Option<RunState>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM flow_runs WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR state = ?2)",
        )
        .bind(flow)
        .bind(state.map(|s| s.as_str()))
        .fetch_one(&self.reader)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every filter combination of `runs list` (and the UI) is answered from an index, newest
    /// first, without a sort step: history pages stay fast however long the history grows.
    #[test]
    fn every_listing_uses_an_index_without_sorting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let store = Store::open(&dir.path().join("s.db")).await.unwrap();
            for (flow, state, before) in [
                (None, None, None),
                (Some("f"), None, None),
                (None, Some(RunState::Failed), None),
                (Some("f"), Some(RunState::Failed), Some(10)),
                (None, None, Some(10)),
            ] {
                let f = RunFilter {
                    flow: flow.map(str::to_string),
                    state,
                    limit: 50,
                    before_id: before,
                };
                let sql = format!("EXPLAIN QUERY PLAN {}", list_runs_sql(&f));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some(fl) = flow {
                    q = q.bind(fl);
                }
                if let Some(st) = state {
                    q = q.bind(st.as_str());
                }
                if let Some(b) = before {
                    q = q.bind(b);
                }
                let rows = q.bind(50i64).fetch_all(&store.reader).await.unwrap();
                let plan: Vec<String> = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>("detail").unwrap())
                    .collect();
                let text = plan.join(" | ");
                assert!(!text.contains("TEMP B-TREE"), "sorts for {f:?}: {text}");
                if flow.is_some() || state.is_some() {
                    assert!(
                        text.contains("USING INDEX") || text.contains("USING COVERING INDEX"),
                        "no index for {f:?}: {text}"
                    );
                }
            }
        });
    }
}
