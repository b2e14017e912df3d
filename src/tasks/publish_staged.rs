//! `publish_staged`: publishes the staged commits of some tables through write-audit-publish
//! ([`crate::wap`]), with at most a row-count check.
//!
//! The real gate is `quality_check` (the table's expectations); this kind is for tables a flow
//! does not check and for tests of write-audit-publish. A table with nothing staged is left
//! alone (its current version is only counted); a table that does not exist yet is skipped. With `min_rows`, a candidate with fewer rows
//! fails the task and is discarded: the table does not move and downstream tasks do not run.

use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::wap::{self, Audit, Verdict};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishConfig {
    /// Tables (names under the lake) whose staged commits to publish, in order.
    tables: Vec<String>,
    /// Fail (and discard) a staged candidate with fewer rows than this (the current version of
    /// a table with nothing staged always passes).
    #[serde(default)]
    min_rows: Option<usize>,
}

#[derive(Debug)]
pub struct PublishStagedTask {
    tables: Vec<String>,
    min_rows: usize,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: PublishConfig = parse_params(params)?;
    if cfg.tables.is_empty() {
        return Err(ParamError {
            message: "params.tables: name at least one table".into(),
            line: params.and_then(|p| p.span().start()).map(|m| m.line()),
        });
    }
    Ok(Arc::new(PublishStagedTask {
        tables: cfg.tables,
        min_rows: cfg.min_rows.unwrap_or(0),
    }))
}

#[async_trait]
impl Task for PublishStagedTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let mut outcome = TaskOutcome::default();
        let mut failed = Vec::new();
        for table in &self.tables {
            let audited = wap::audit(&ctx.home, table, &Audit::MinRows(self.min_rows), true)
                .await
                .map_err(TaskError::external_err)?;
            let v = match &audited.verdict {
                Verdict::Missing => {
                    ctx.log
                        .info(format!("{table}: no table and nothing staged: skipped"));
                    continue;
                }
                Verdict::Published { version, .. } => serde_json::json!({"published": version}),
                Verdict::Discarded { version } => serde_json::json!({"discarded_at": version}),
                Verdict::CheckedCurrent { version, passed } => {
                    serde_json::json!({"current": version, "passed": passed})
                }
            };
            ctx.log
                .info(format!("{table}: {}", audited.verdict.describe()));
            outcome = outcome.with_metric(table, v);
            if !audited.verdict.passed() {
                failed.push(table.clone());
            }
        }
        if failed.is_empty() {
            Ok(outcome)
        } else {
            Err(TaskError::user(format!(
                "gate failed for {}: fewer than {} rows; the staged data was discarded",
                failed.join(", "),
                self.min_rows
            )))
        }
    }
}
