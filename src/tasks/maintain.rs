//! `maintain`: keeps the lake's file counts bounded. For each table: compact small files
//! (optionally Z-ordered), vacuum files older than the retention, write a checkpoint; reports
//! files before/after per table and in total in its metrics.
//!
//! Idempotent by construction: a retry after a crash finds either the old files (and compacts
//! them) or the committed compaction (and has nothing left to do); a half-written optimize
//! leaves only unreferenced files that a later vacuum removes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::lake::maintain::{
    self, DEFAULT_TARGET_SIZE, MIN_RETENTION, MaintainError, OptimizeOptions, VacuumOptions,
};
use crate::lake::{LakeTable, lake_root, list_tables};
use crate::vocab::{format_duration, parse_duration};

/// `tables: all` or a list of table names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TablesParam {
    Word(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintainConfig {
    /// Tables under the lake to maintain, or `all` (every table present when the task runs).
    tables: TablesParam,
    /// Compact small files (default true).
    #[serde(default = "yes")]
    optimize: bool,
    /// Compaction's target file size, e.g. `128MiB` (the default).
    #[serde(default)]
    target_size: Option<String>,
    /// Z-order columns per table, e.g. `{silver_orders: [customer_id, event_time]}`.
    #[serde(default)]
    zorder: BTreeMap<String, Vec<String>>,
    /// Vacuum with this retention (e.g. `168h`); no vacuum when absent. At least 1h.
    #[serde(default)]
    vacuum_retain: Option<String>,
    /// Write a checkpoint after the other steps (default false).
    #[serde(default)]
    checkpoint: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct MaintainTask {
    /// None: every table in the lake.
    tables: Option<Vec<String>>,
    optimize: bool,
    target_size: u64,
    zorder: BTreeMap<String, Vec<String>>,
    vacuum_retain: Option<Duration>,
    checkpoint: bool,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: MaintainConfig = parse_params(params)?;
    let line = params.and_then(|n| n.span().start()).map(|m| m.line());
    let err = |message: String| ParamError { message, line };
    let tables = match cfg.tables {
        TablesParam::Word(w) if w == "all" => None,
        TablesParam::Word(w) => {
            return Err(err(format!(
                "params.tables: expected `all` or a list of tables, found `{w}`"
            )));
        }
        TablesParam::List(l) if l.is_empty() => {
            return Err(err(
                "params.tables: name at least one table (or `all`)".into()
            ));
        }
        TablesParam::List(l) => Some(l),
    };
    let target_size = match cfg.target_size.as_deref() {
        None => DEFAULT_TARGET_SIZE,
        Some(s) => maintain::parse_size(s).map_err(|e| err(format!("params.target_size: {e}")))?,
    };
    let vacuum_retain = cfg
        .vacuum_retain
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| err(format!("params.vacuum_retain: {e}")))?;
    if let Some(r) = vacuum_retain
        && r < MIN_RETENTION
    {
        return Err(err(format!(
            "params.vacuum_retain: {} is below the safe minimum {} (readers of older versions \
             could lose their files)",
            format_duration(r),
            format_duration(MIN_RETENTION)
        )));
    }
    if let Some(list) = &tables
        && let Some(t) = cfg.zorder.keys().find(|t| !list.contains(t))
    {
        return Err(err(format!(
            "params.zorder: table {t} is not in params.tables"
        )));
    }
    if !cfg.optimize && vacuum_retain.is_none() && !cfg.checkpoint {
        return Err(err(
            "nothing to do: set optimize, vacuum_retain or checkpoint".into(),
        ));
    }
    Ok(Arc::new(MaintainTask {
        tables,
        optimize: cfg.optimize,
        target_size,
        zorder: cfg.zorder,
        vacuum_retain,
        checkpoint: cfg.checkpoint,
    }))
}

fn task_err(e: MaintainError) -> TaskError {
    if e.is_usage() {
        TaskError::user_err(e)
    } else {
        TaskError::external_err(e)
    }
}

impl MaintainTask {
    async fn one(&self, ctx: &TaskContext, name: &str) -> Result<serde_json::Value, TaskError> {
        let path = lake_root(&ctx.home).join(name);
        let mut table = LakeTable::open(&path)
            .await
            .map_err(TaskError::external_err)?;
        let files_before = table.file_infos().map_err(TaskError::external_err)?.len();
        let mut m = serde_json::json!({ "files_before": files_before });
        if self.optimize {
            let options = OptimizeOptions {
                target_size: self.target_size,
                zorder: self.zorder.get(name).cloned().unwrap_or_default(),
            };
            let r = maintain::optimize(&mut table, options)
                .await
                .map_err(task_err)?;
            ctx.log.info(format!(
                "{name}: optimize: files {} → {} (removed {}, added {}){}",
                r.files_before,
                r.files_after,
                r.files_removed,
                r.files_added,
                r.version
                    .map(|v| format!(", version {v}"))
                    .unwrap_or_else(|| ", nothing to compact".into())
            ));
            m["optimize_version"] = serde_json::json!(r.version);
            m["files_removed"] = serde_json::json!(r.files_removed);
            m["files_added"] = serde_json::json!(r.files_added);
        }
        if let Some(retain) = self.vacuum_retain {
            let r = maintain::vacuum(
                &mut table,
                VacuumOptions {
                    retain,
                    dry_run: false,
                    force: false,
                },
            )
            .await
            .map_err(task_err)?;
            ctx.log.info(format!(
                "{name}: vacuum (retain {}): files on disk {} → {}",
                format_duration(retain),
                r.files_on_disk_before,
                r.files_on_disk_after
            ));
            m["vacuum_deleted"] = serde_json::json!(r.deleted.len());
            m["files_on_disk_after"] = serde_json::json!(r.files_on_disk_after);
        }
        if self.checkpoint {
            let r = maintain::checkpoint(&mut table).await.map_err(task_err)?;
            ctx.log
                .info(format!("{name}: checkpoint at version {}", r.version));
            m["checkpoint_version"] = serde_json::json!(r.version);
        }
        let after = table.file_infos().map_err(TaskError::external_err)?.len();
        m["files_after"] = serde_json::json!(after);
        m["version"] = serde_json::json!(table.version());
        Ok(m)
    }
}

#[async_trait]
impl Task for MaintainTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let lake = lake_root(&ctx.home);
        let present = list_tables(&lake).map_err(TaskError::external_err)?;
        let names = match &self.tables {
            None => present.clone(),
            Some(l) => l.clone(),
        };
        let mut outcome = TaskOutcome::default();
        let (mut before, mut after, mut done) = (0u64, 0u64, 0u64);
        for name in names {
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::cancelled());
            }
            if !present.contains(&name) {
                ctx.log.info(format!("{name}: no such table yet: skipped"));
                continue;
            }
            let m = self.one(ctx, &name).await?;
            before += m["files_before"].as_u64().unwrap_or(0);
            after += m["files_after"].as_u64().unwrap_or(0);
            done += 1;
            outcome = outcome.with_metric(&name, m);
        }
        ctx.log.info(format!(
            "{done} tables maintained: files {before} → {after}"
        ));
        Ok(outcome
            .with_metric("tables", done)
            .with_metric("files_before", before)
            .with_metric("files_after", after))
    }
}
