//! `quality_check`: runs tables' dataset checks (`expectations/<table>.yaml`), records every
//! result (with the table version) and fails when a `fail`-severity check fails — a user error,
//! not retried: the data will not get better by asking again.
//!
//! It is also the write-audit-publish gate ([`crate::wap`]): a table with a staged commit (written
//! by `transform_silver` / `aggregate_gold`) has its *candidate* checked, and the commit is
//! published when no check blocks and discarded when one does, so a failing gate never moves
//! the table. A table with nothing staged has its current version checked. With
//! `publish_staged: false` (the hourly checks) staged commits are left alone and only current
//! versions are looked at. A table that does not exist yet is a failed check (`table_exists`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use marked_yaml::Node;
use polars::prelude::DataFrame;
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::lineage::openlineage::Dataset;
use crate::quality::{self, Frames, Outcome, TableExpectations};
use crate::wap::{self, Audit, Audited, Verdict};

/// `params:` of a quality_check task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QualityCheckConfig {
    /// The tables to check; each needs `expectations/<table>.yaml`.
    #[serde(default)]
    tables: Vec<String>,
    /// One table (shorthand for `tables: [x]`).
    table: Option<String>,
    /// Where the expectation files are (relative to flowctl's working directory); default
    /// `FLOWCTL_EXPECTATIONS_DIR`, else `expectations/` beside the flows directory.
    expectations_dir: Option<String>,
    /// Check staged candidates and publish or discard them (default true); false: check the
    /// current versions only.
    publish_staged: Option<bool>,
}

#[derive(Debug)]
pub struct QualityCheckTask {
    tables: Vec<String>,
    dir: PathBuf,
    publish_staged: bool,
}

fn line_of(n: Option<&Node>) -> Option<usize> {
    n.and_then(|n| n.span().start()).map(|m| m.line())
}

pub(super) fn build(
    settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: QualityCheckConfig = parse_params(params)?;
    let mut tables = cfg.tables;
    tables.extend(cfg.table);
    if tables.is_empty() {
        return Err(ParamError {
            message: "quality_check needs `params.tables: [TABLE, ...]` (or `params.table`)".into(),
            line: line_of(params),
        });
    }
    let dir = cfg
        .expectations_dir
        .map(PathBuf::from)
        .unwrap_or_else(|| settings.expectations_dir.clone());
    // Validated now, with the flow: a typo in a table name or a broken expectation file is
    // reported by `flows validate`, not an hour later by the scheduler.
    let set = quality::load_dir(&dir).map_err(|e| ParamError {
        message: format!(
            "the expectations in {} do not validate:\n{e}",
            dir.display()
        ),
        line: line_of(params),
    })?;
    let unknown: Vec<&String> = tables.iter().filter(|t| set.table(t).is_none()).collect();
    if let Some(first) = unknown.first() {
        let known: Vec<&str> = set.tables().map(|t| t.name()).collect();
        let line = params
            .and_then(|p| p.as_mapping())
            .and_then(|m| {
                m.get_sequence("tables")
                    .and_then(|s| {
                        s.iter()
                            .find(|n| n.as_scalar().is_some_and(|s| s.as_str() == first.as_str()))
                    })
                    .or_else(|| m.get_node("table"))
            })
            .and_then(|n| n.span().start().map(|m| m.line()))
            .or(line_of(params));
        return Err(ParamError {
            message: format!(
                "no expectations for table(s) {} in {} (tables with expectations: {})",
                unknown
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display(),
                known.join(", ")
            ),
            line,
        });
    }
    let mut seen = BTreeSet::new();
    tables.retain(|t| seen.insert(t.clone()));
    Ok(Arc::new(QualityCheckTask {
        tables,
        dir,
        publish_staged: cfg.publish_staged.unwrap_or(true),
    }))
}

impl QualityCheckTask {
    /// Audits one table through write-audit-publish; the reference tables of its `values_in`
    /// checks are read once into `refs` however many tables use them.
    async fn check_table(
        &self,
        ctx: &TaskContext,
        exp: &TableExpectations,
        refs: &mut HashMap<String, DataFrame>,
        now: DateTime<Utc>,
    ) -> Result<Audited, TaskError> {
        for r in exp.referenced_tables() {
            if !refs.contains_key(&r)
                && let Some((_, rdf)) = quality::read_lake_table(&ctx.home, &r)
                    .await
                    .map_err(TaskError::external_err)?
            {
                refs.insert(r, rdf);
            }
        }
        let gate = Audit::Expectations {
            exp: exp.clone(),
            refs: Frames(refs.clone()),
            now,
        };
        let audited = wap::audit(&ctx.home, exp.name(), &gate, self.publish_staged)
            .await
            .map_err(|e| match e.is_external() {
                true => TaskError::external_err(e),
                false => TaskError::internal_err(e),
            })?;
        if matches!(audited.verdict, Verdict::Published { .. }) {
            // Later tables' `values_in` must see what was just published.
            refs.remove(exp.name());
        }
        Ok(audited)
    }
}

#[async_trait]
impl Task for QualityCheckTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let set = quality::load_dir(&self.dir).map_err(|e| {
            TaskError::user(format!(
                "the expectations in {} do not validate:\n{e}",
                self.dir.display()
            ))
        })?;
        let now = Utc::now();
        // Reference tables of `values_in` checks, read once however many checks use them.
        let mut refs: HashMap<String, DataFrame> = HashMap::new();
        let (mut counts, mut blocking) = ([0usize; 4], Vec::new());
        let (mut published, mut discarded) = (Vec::new(), Vec::new());
        for table in &self.tables {
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::cancelled());
            }
            let exp = set.table(table).ok_or_else(|| {
                TaskError::user(format!(
                    "no expectations for table `{table}` in {}",
                    self.dir.display()
                ))
            })?;
            let audited = self.check_table(ctx, exp, &mut refs, now).await?;
            let (version, results) = (audited.verdict.version(), audited.results);
            ctx.log
                .info(format!("{table}: {}", audited.verdict.describe()));
            match audited.verdict {
                Verdict::Published { version, .. } => {
                    published.push(serde_json::json!({"table": table, "version": version}));
                }
                Verdict::Discarded { .. } => discarded.push(table.clone()),
                Verdict::Missing | Verdict::CheckedCurrent { .. } => {}
            }
            let v = version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "(missing)".into());
            for r in &results {
                ctx.quality.push(r.record(table, version, now));
                ctx.log.info(format!(
                    "{table} {v} {}: {} ({}) {}",
                    r.check, r.outcome, r.severity, r.detail
                ));
                counts[match r.outcome {
                    Outcome::Pass => 0,
                    Outcome::Warn => 1,
                    Outcome::Fail => 2,
                    Outcome::Error => 3,
                }] += 1;
                if r.blocks() {
                    blocking.push(format!("{table}.{} ({})", r.check, r.detail));
                }
            }
        }
        let [passed, warned, failed, errors] = counts;
        if !blocking.is_empty() {
            let staged = if discarded.is_empty() {
                String::new()
            } else {
                format!(
                    " (staged data of {} discarded: the table(s) did not move)",
                    discarded.join(", ")
                )
            };
            return Err(TaskError::user(format!(
                "{} blocking check(s) failed{staged}: {}",
                blocking.len(),
                blocking.join("; ")
            )));
        }
        // OpenLineage: the gate reads every table it checks and writes the ones it published.
        let lake = crate::lake::lake_root(&ctx.home);
        let mut outcome = TaskOutcome::default();
        for t in &self.tables {
            outcome = outcome.with_input(Dataset::table(&lake, t));
        }
        for p in &published {
            if let Some(t) = p["table"].as_str() {
                outcome = outcome.with_output(Dataset::table(&lake, t));
            }
        }
        Ok(outcome
            .with_metric("tables", self.tables.len())
            .with_metric("checks", passed + warned + failed + errors)
            .with_metric("passed", passed)
            .with_metric("warned", warned)
            .with_metric("failed", failed)
            .with_metric("errors", errors)
            .with_metric("published", published))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn params(yaml: &str) -> Result<Arc<dyn Task>, ParamError> {
        let node = marked_yaml::parse_yaml(0, yaml).unwrap();
        build(&TaskSettings::default(), Some(&node))
    }

    fn dir() -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("expectations")
            .display()
            .to_string()
    }

    #[test]
    fn params_name_known_tables() {
        let ok = params(&format!(
            "tables: [bronze_orders, gold_daily_revenue, bronze_orders]\nexpectations_dir: {}\n",
            dir()
        ));
        assert!(ok.is_ok(), "{:?}", ok.err());
        let e = params(&format!("expectations_dir: {}\n", dir())).unwrap_err();
        assert!(
            e.message.contains("needs `params.tables: [TABLE, ...]`"),
            "{}",
            e.message
        );
        let e = params(&format!(
            "tables:\n  - bronze_orders\n  - silver_order\nexpectations_dir: {}\n",
            dir()
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.message
                .starts_with("no expectations for table(s) `silver_order` in"),
            "{}",
            e.message
        );
        let e = params("table: x\ncolour: red\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = params("table: x\nexpectations_dir: /nonexistent/dir\n").unwrap_err();
        assert!(
            e.message.contains("cannot read the expectations directory"),
            "{}",
            e.message
        );
    }
}
