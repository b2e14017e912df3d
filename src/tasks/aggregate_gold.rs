//! `aggregate_gold`: silver → the gold aggregates (see [`crate::transform::gold`]). New gold
//! versions are staged; the gold gate publishes them.

use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;

use super::transform_silver::classify;
use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::transform::gold::{GoldRun, aggregate_gold};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GoldConfig {
    /// Stage this run's `gold_pipeline_health` row (default true).
    #[serde(default)]
    health: Option<bool>,
}

#[derive(Debug)]
pub struct AggregateGoldTask {
    health: bool,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: GoldConfig = parse_params(params)?;
    Ok(Arc::new(AggregateGoldTask {
        health: cfg.health.unwrap_or(true),
    }))
}

#[async_trait]
impl Task for AggregateGoldTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let home = ctx.home.clone();
        let run = GoldRun {
            run_id: self.health.then_some(ctx.run_id),
            now_us: chrono::Utc::now().timestamp_micros(),
        };
        let work = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(aggregate_gold(&home, &run))
        });
        let report = tokio::select! {
            r = work => r.map_err(TaskError::internal_err)?.map_err(classify)?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::cancelled()),
        };
        for a in &report.aggregates {
            ctx.log.info(format!(
                "{}: source v{} (from v{}): {} rows staged over {} partition(s)",
                a.table,
                a.source_version,
                a.from_version,
                a.rows_staged,
                a.partitions.len()
            ));
        }
        Ok(TaskOutcome::default()
            .with_metric(
                "rows_out",
                report
                    .aggregates
                    .iter()
                    .map(|a| a.rows_staged)
                    .sum::<usize>(),
            )
            .with_metric("staged", serde_json::json!(report.staged))
            .with_metric(
                "aggregates",
                serde_json::to_value(&report.aggregates).unwrap_or_default(),
            ))
    }
}
