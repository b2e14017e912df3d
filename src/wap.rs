//! Write-audit-publish: the one place that decides whether staged data becomes visible.
//!
//! Writers stage a table's next version ([`crate::lake::stage`]: Parquet files written, the
//! commit recorded, nothing visible). A gate then calls [`audit`]: the staged candidate — or,
//! with nothing staged, the current version — is read and judged by an [`Audit`] (the table's
//! expectations, or a minimum row count), and a staged candidate is published in one Delta
//! commit when nothing blocks and discarded when something does. A failing audit never moves
//! the table; an error while judging leaves the staged commit in place for a retry.
//!
//! The checks run on the blocking pool: a gate over a big candidate is CPU work.

use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::DataFrame;

use crate::lake::{LakeError, lake_root, staged};
use crate::quality::{
    self, CheckResult, Frames, Outcome, QualityError, Severity, TableExpectations,
};

/// How a candidate is judged.
#[derive(Debug, Clone)]
pub enum Audit {
    /// The table's dataset checks; `refs` holds the reference tables of its `values_in` checks,
    /// `now` the time relative bounds and freshness are measured from.
    Expectations {
        exp: TableExpectations,
        refs: Frames,
        now: DateTime<Utc>,
    },
    /// At least this many rows in a staged candidate (a current version always passes): the
    /// check-less gate of `publish_staged`.
    MinRows(usize),
}

/// What the audit looked at and did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No table and nothing staged.
    Missing,
    /// A staged candidate passed and is now version `version`.
    Published { version: i64, rows_added: i64 },
    /// A staged candidate failed and was discarded; the table stays at `version`.
    Discarded { version: i64 },
    /// Nothing staged (or staged commits left alone): the current version was judged.
    CheckedCurrent { version: i64, passed: bool },
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(
            self,
            Verdict::Published { .. } | Verdict::CheckedCurrent { passed: true, .. }
        )
    }

    /// The version the results describe (None: no table, or a discarded candidate).
    pub fn version(&self) -> Option<i64> {
        match self {
            Verdict::Published { version, .. } | Verdict::CheckedCurrent { version, .. } => {
                Some(*version)
            }
            Verdict::Missing | Verdict::Discarded { .. } => None,
        }
    }

    /// For the task log.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Missing => "no such table".into(),
            Verdict::Published {
                version,
                rows_added,
            } => format!(
                "staged candidate passed: published as v{version} ({rows_added} rows added)"
            ),
            Verdict::Discarded { version } => {
                format!("staged candidate failed: discarded, the table stays at v{version}")
            }
            Verdict::CheckedCurrent { version, .. } => {
                format!("current version v{version} checked")
            }
        }
    }
}

/// One table's audit: what happened and every check result.
#[derive(Debug, Clone)]
pub struct Audited {
    pub verdict: Verdict,
    pub results: Vec<CheckResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum WapError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Quality(#[from] QualityError),
    #[error("auditing {table}: the check stopped: {detail}")]
    Join { table: String, detail: String },
}

impl WapError {
    /// Reading or writing the lake may work on a retry; an evaluation error is a bug or a
    /// broken expectation.
    pub fn is_external(&self) -> bool {
        matches!(
            self,
            WapError::Lake(_) | WapError::Quality(QualityError::Source { .. })
        )
    }
}

/// Audits `table`: its staged candidate when there is one and `publish_staged` (published or
/// discarded on the verdict), else its current version (nothing moves).
pub async fn audit(
    home: &Path,
    table: &str,
    audit: &Audit,
    publish_staged: bool,
) -> Result<Audited, WapError> {
    let pending = match publish_staged {
        true => staged(home, table)?,
        false => None,
    };
    let Some(pending) = pending else {
        return match quality::read_lake_table(home, table).await? {
            None => Ok(Audited {
                verdict: Verdict::Missing,
                results: match audit {
                    Audit::Expectations { .. } => vec![missing_table(table, home)],
                    Audit::MinRows(_) => Vec::new(),
                },
            }),
            Some((version, df)) => {
                let results = judge(table, audit, df, false).await?;
                Ok(Audited {
                    verdict: Verdict::CheckedCurrent {
                        version,
                        passed: !results.iter().any(CheckResult::blocks),
                    },
                    results,
                })
            }
        };
    };
    let df = pending.candidate_df().await?;
    let results = judge(table, audit, df, true).await?;
    let verdict = if results.iter().any(CheckResult::blocks) {
        pending.discard(home).await?;
        Verdict::Discarded {
            version: pending.base_version,
        }
    } else {
        Verdict::Published {
            version: pending.publish(home).await?,
            rows_added: pending.rows_added,
        }
    };
    Ok(Audited { verdict, results })
}

/// Runs `audit` on `df` on the blocking pool.
async fn judge(
    table: &str,
    audit: &Audit,
    df: DataFrame,
    staged: bool,
) -> Result<Vec<CheckResult>, WapError> {
    let audit = audit.clone();
    tokio::task::spawn_blocking(move || match audit {
        Audit::Expectations { exp, refs, now } => exp.run_checks(&df, &refs, now),
        Audit::MinRows(min) => Ok(vec![min_rows(df.height(), min, staged)]),
    })
    .await
    .map_err(|e| WapError::Join {
        table: table.to_string(),
        detail: e.to_string(),
    })?
    .map_err(WapError::from)
}

/// The row-count check of a [`Audit::MinRows`] gate.
fn min_rows(rows: usize, min: usize, staged: bool) -> CheckResult {
    let passed = !staged || rows >= min;
    CheckResult {
        check: "min_rows".into(),
        observed: Some(rows as f64),
        threshold: format!(">= {min}"),
        severity: Severity::Fail,
        outcome: if passed { Outcome::Pass } else { Outcome::Fail },
        detail: if staged {
            format!("{rows} rows staged (at least {min} wanted)")
        } else {
            format!("{rows} rows in the current version (only staged candidates are held to {min})")
        },
    }
}

/// A table that does not exist yet is a failed check, not a crash: an hourly check over an
/// empty lake shows exactly what is missing.
fn missing_table(table: &str, home: &Path) -> CheckResult {
    CheckResult {
        check: "table_exists".into(),
        observed: None,
        threshold: "exists".into(),
        severity: Severity::Fail,
        outcome: Outcome::Fail,
        detail: format!(
            "no Delta table at {} (nothing written yet)",
            lake_root(home).join(table).display()
        ),
    }
}

#[cfg(test)]
#[path = "wap_tests.rs"]
mod tests;
