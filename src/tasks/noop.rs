//! `noop`: does nothing (optionally after a sleep). Like Airflow's EmptyOperator: joins branches
//! in a DAG, and measures the orchestrator's own overhead in `flowctl bench scheduler`.

use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::vocab::parse_duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoopConfig {
    /// Optional sleep before succeeding, e.g. `100ms`.
    sleep: Option<String>,
}

#[derive(Debug)]
pub struct NoopTask {
    sleep: Option<std::time::Duration>,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: NoopConfig = parse_params(params)?;
    let sleep = cfg
        .sleep
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|message| ParamError {
            message: format!("params.sleep: {message}"),
            line: params.and_then(|n| n.span().start()).map(|m| m.line()),
        })?;
    Ok(Arc::new(NoopTask { sleep }))
}

#[async_trait]
impl Task for NoopTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        if let Some(d) = self.sleep {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = ctx.cancel.cancelled() => return Err(TaskError::cancelled()),
            }
        }
        Ok(TaskOutcome::default())
    }
}
