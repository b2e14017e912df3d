//! `transform_silver`: bronze → silver for the configured entities (see
//! [`crate::transform::silver`]). Each silver table's new version is staged, not committed: the
//! silver gate (a `quality_check` task) publishes it when its checks pass.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use polars::prelude::{AnyValue, col};
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::lake::{LakeTable, lake_root};
use crate::transform::rules::SilverRules;
use crate::transform::silver::{SilverRun, transform_entity};
use crate::transform::{Entity, TransformError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilverConfig {
    /// Entities to transform: any of `orders`, `clickstream`, `payments` (default: all three).
    #[serde(default)]
    entities: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct TransformSilverTask {
    entities: Vec<Entity>,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: SilverConfig = parse_params(params)?;
    let entities = match cfg.entities {
        None => Entity::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                Entity::parse(n).ok_or_else(|| ParamError {
                    message: format!(
                        "params.entities: unknown entity `{n}` (expected orders, clickstream or payments)"
                    ),
                    line: params.and_then(|p| p.span().start()).map(|m| m.line()),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Arc::new(TransformSilverTask { entities }))
}

/// Maps a transform failure to the executor's retry classes: disk and Delta faults may pass on
/// a retry, a Polars failure is a bug.
pub(super) fn classify(e: TransformError) -> TaskError {
    match e {
        TransformError::Lake(l) => TaskError::external_err(l),
        TransformError::NoBronze(t) => TaskError::user(t),
        TransformError::Rules(r) => TaskError::user(format!("silver row rules: {r}")),
        other => TaskError::internal_err(other),
    }
}

/// Orders writer schema ids seen in bronze → 2 when the schema declares `coupon_code` (v2), else
/// 1. Ids the registry cannot resolve are left out (silver then infers the version per row).
async fn schema_versions(home: &Path, ctx: &TaskContext) -> HashMap<i32, i32> {
    let mut out = HashMap::new();
    let path = lake_root(home).join(Entity::Orders.bronze_table());
    if !path.join("_delta_log").exists() {
        return out;
    }
    let ids: Vec<i32> = match LakeTable::open(&path).await.and_then(|t| t.scan()) {
        Ok(lf) => match lf
            .select([col("_schema_id")])
            .unique(None, Default::default())
            .collect()
        {
            Ok(df) => df
                .column("_schema_id")
                .ok()
                .map(|c| {
                    (0..c.len())
                        .filter_map(|i| match c.get(i) {
                            Ok(AnyValue::Int32(v)) => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    // The run's registry (embedded in the state DB or remote): tasks never open the store.
    let registry = &ctx.registry;
    for id in ids {
        match registry.schema_by_id(id as i64).await {
            Ok(text) => {
                let v2 = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["fields"].as_array().cloned())
                    .is_some_and(|fs| fs.iter().any(|f| f["name"] == "coupon_code"));
                out.insert(id, if v2 { 2 } else { 1 });
            }
            Err(e) => ctx
                .log
                .info(format!("schema id {id}: {e}; inferring its version")),
        }
    }
    out
}

/// The run's `from` / `to` params (YYYY-MM-DD, either may be empty) as an inclusive range of
/// days since the epoch; `None` when both are empty (a normal incremental run).
fn backfill_range(ctx: &TaskContext) -> Result<Option<(i32, i32)>, TaskError> {
    let day = |key: &str| -> Result<Option<i32>, TaskError> {
        match ctx
            .params
            .get(key)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            None => Ok(None),
            Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| {
                    Some(
                        (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
                            as i32,
                    )
                })
                .map_err(|e| {
                    TaskError::user(format!("param {key}={s:?}: expected YYYY-MM-DD ({e})"))
                }),
        }
    };
    match (day("from")?, day("to")?) {
        (None, None) => Ok(None),
        (f, t) => {
            let (f, t) = (f.unwrap_or(0), t.unwrap_or(i32::MAX / 2));
            if f > t {
                return Err(TaskError::user(format!(
                    "backfill range is empty: from {} is after to {}",
                    crate::transform::date_string(f),
                    crate::transform::date_string(t)
                )));
            }
            Ok(Some((f, t)))
        }
    }
}

#[async_trait]
impl Task for TransformSilverTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let home = ctx.home.clone();
        let backfill = backfill_range(ctx)?;
        if let Some((from, to)) = backfill {
            ctx.log.info(format!(
                "backfill: rebuilding silver for event dates {} ..= {} from all of bronze",
                crate::transform::date_string(from),
                crate::transform::date_string(to)
            ));
        }
        let run = SilverRun {
            run_id: Some(ctx.run_id),
            now_us: chrono::Utc::now().timestamp_micros(),
            schema_versions: schema_versions(&home, ctx).await,
            rules: SilverRules::load(&ctx.settings.expectations_dir).map_err(classify)?,
            backfill,
        };
        let entities = self.entities.clone();
        let log = ctx.log.clone();
        let work = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Handle::current();
            let mut reports = Vec::new();
            for e in entities {
                match rt.block_on(transform_entity(&home, e, &run)) {
                    Ok(r) => {
                        log.info(format!(
                            "{}: bronze v{} (from v{}): {} rows in, {} quarantined, {} duplicates \
                             removed, {} rows staged over {} partition(s) in {:?}",
                            r.entity,
                            r.bronze_version,
                            r.from_version,
                            r.rows_in,
                            r.quarantined,
                            r.duplicates_removed,
                            r.rows_staged,
                            r.partitions.len(),
                            r.staged
                        ));
                        reports.push(r);
                    }
                    Err(TransformError::NoBronze(t)) => {
                        log.info(format!("{t} does not exist yet: skipped"));
                    }
                    Err(err) => return Err(err),
                }
            }
            Ok(reports)
        });
        let reports = tokio::select! {
            r = work => r.map_err(TaskError::internal_err)?.map_err(classify)?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::cancelled()),
        };
        let sum = |f: fn(&crate::transform::silver::EntityReport) -> usize| -> usize {
            reports.iter().map(f).sum()
        };
        let staged: Vec<String> = reports.iter().flat_map(|r| r.staged.clone()).collect();
        Ok(TaskOutcome::default()
            .with_metric("rows_in", sum(|r| r.rows_in))
            .with_metric("rows_out", sum(|r| r.rows_staged))
            .with_metric("quarantined", sum(|r| r.quarantined))
            .with_metric("duplicates_removed", sum(|r| r.duplicates_removed))
            .with_metric("staged", serde_json::json!(staged))
            .with_metric(
                "entities",
                serde_json::to_value(&reports).unwrap_or_default(),
            ))
    }
}
