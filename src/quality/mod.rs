//! Expectation files → checks on Polars frames → results.
//!
//! One YAML file per table in `expectations/` (`expectations/<table>.yaml`), with a SodaCL /
//! Great Expectations-like vocabulary, in two kinds that share it:
//! - **row rules** (`rules:`): per-row predicates that reject rows. Bronze ingest sends a
//!   rejected row to the DLQ with the rule's category as `error_type`; silver quarantines it.
//!   [`TableExpectations::row_failures`] evaluates them as Polars expressions over the whole
//!   frame (never a per-row loop) and reports, per row, the first rule it breaks in file order.
//! - **dataset checks** (`checks:`): aggregate metrics with thresholds — the gates.
//!   [`TableExpectations::run_checks`] evaluates them on a candidate frame; [`gate`] says
//!   whether the candidate may be published.
//!
//! Time is injected: every evaluator takes `now`, so `now - 30d` bounds and freshness are
//! testable without a clock. The vocabulary is documented in `expectations/README.md`.

mod checks;
mod columns;
mod compiled;
mod domains;
mod entries;
mod expr;
mod lake_source;
mod model;
mod parse;
mod row;
mod rows;
mod values;

#[cfg(test)]
mod bronze_agree;
#[cfg(test)]
mod compiled_tests;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use polars::prelude::{DataFrame, PolarsError};

use crate::vocab::{SourceError, SourceErrors};
pub use compiled::{CompiledRules, Judge};
pub use domains::{DOMAINS_FILE, Domains};
pub use lake_source::{read_lake_table, reference_frames};
pub use model::{Now, Outcome, Severity};
pub use parse::{parse_file, parse_file_with};
pub use row::{BatchRow, Cell, Refusal, Row, RowJudge};

use model::{Check, Metric, Rule};

/// Why an evaluation could not run at all (a per-check problem is a check with outcome
/// `error` instead).
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("{table}: rule `{rule}` (line {line}) needs column `{column}`, which the frame lacks")]
    MissingColumn {
        table: String,
        rule: String,
        line: usize,
        column: String,
    },
    #[error("{table}: rule `{rule}` cannot apply to column `{column}`: {detail}")]
    BadRule {
        table: String,
        rule: String,
        column: String,
        detail: String,
    },
    #[error("table {table} does not exist (nothing written yet)")]
    TableMissing { table: String },
    #[error("table {table}: {detail}")]
    Source { table: String, detail: String },
    #[error("{table}: evaluating {what}: {source}")]
    Polars {
        table: String,
        what: String,
        #[source]
        source: PolarsError,
    },
}

/// A row that broke a row rule: which one, its category, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    pub rule: String,
    /// E.g. `INVALID_ENUM`: the DLQ `error_type` / quarantine reason.
    pub category: String,
    /// Column, expectation and observed value: `amount must be > 0, found -3.5`.
    pub detail: String,
}

/// The result of one dataset check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckResult {
    pub check: String,
    /// The measured value (a count, a percentage, seconds of lag); None when there was none.
    pub observed: Option<f64>,
    /// The threshold as written, e.g. `> 0`, `< 1d`.
    pub threshold: String,
    pub severity: Severity,
    pub outcome: Outcome,
    /// What was measured and why it passed or not, for humans.
    pub detail: String,
}

impl CheckResult {
    /// The result as the store keeps it: for `table` at `version`, checked at `checked_at`.
    pub fn record(
        &self,
        table: &str,
        version: Option<i64>,
        checked_at: chrono::DateTime<chrono::Utc>,
    ) -> crate::vocab::quality::QualityRecord {
        crate::vocab::quality::QualityRecord {
            table: table.to_string(),
            version,
            check: self.check.clone(),
            observed: self.observed_text(),
            threshold: self.threshold.clone(),
            severity: self.severity.as_str().to_string(),
            outcome: self.outcome.as_str().to_string(),
            checked_at,
        }
    }

    /// Whether this result stops a gate: a failed `fail` check, or one that could not run.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Fail && matches!(self.outcome, Outcome::Fail | Outcome::Error)
    }

    /// `observed` as stored and printed: integers without a fraction.
    pub fn observed_text(&self) -> Option<String> {
        self.observed.map(format_number)
    }
}

pub(crate) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Resolves other tables by name, for `values_in` checks.
pub trait TableSource {
    /// The table's current data; [`QualityError::TableMissing`] when it does not exist.
    fn read(&self, table: &str) -> Result<DataFrame, QualityError>;
}

/// A [`TableSource`] over frames read beforehand (tables absent from the map do not exist).
#[derive(Debug, Clone, Default)]
pub struct Frames(pub HashMap<String, DataFrame>);

impl TableSource for Frames {
    fn read(&self, table: &str) -> Result<DataFrame, QualityError> {
        self.0
            .get(table)
            .cloned()
            .ok_or_else(|| QualityError::TableMissing {
                table: table.to_string(),
            })
    }
}

/// The expectations of one table.
#[derive(Debug, Clone)]
pub struct TableExpectations {
    name: String,
    path: PathBuf,
    rules: Vec<Rule>,
    checks: Vec<Check>,
    /// Columns with a `missing` rule: `invalid` rules on them do not let nulls through.
    required: HashSet<String>,
}

impl TableExpectations {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn check_count(&self) -> usize {
        self.checks.len()
    }

    /// Rule names in file order (the order [`Self::row_failures`] reports the first of).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Check names in file order.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        self.checks.iter().map(|c| c.name.as_str())
    }

    /// Tables that `values_in` checks read through the [`TableSource`].
    pub fn referenced_tables(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| match &c.metric {
                Metric::ValuesIn { table, .. } => Some(table.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Per row, in order: None if the row passes every row rule, else the FIRST failing rule
    /// (file order). Vectorised: one Polars expression per rule over the whole frame.
    pub fn row_failures(
        &self,
        df: &DataFrame,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<RowFailure>>, QualityError> {
        rows::row_failures(self, df, now)
    }

    /// Per row: the names of EVERY rule it breaks, comma-separated in file order, None when it
    /// passes (the `failed_rules` column of silver_quarantine).
    pub fn failed_rules(
        &self,
        df: &DataFrame,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<String>>, QualityError> {
        rows::failed_rules(self, df, now)
    }

    /// The columns the row rules read, in first-use order: a caller can hand the evaluator just
    /// these (ingest skips converting nested payload columns no rule looks at).
    pub fn rule_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rules {
            if !out.contains(&r.column) {
                out.push(r.column.clone());
            }
        }
        out
    }

    /// The row rules as Polars expressions, in file order: `(rule name, true where the row
    /// breaks it)`, for transforms that filter or route rows inside their own lazy plan.
    /// `now` may be a column (see [`Now::Column`]).
    pub fn rule_exprs(
        &self,
        schema: &polars::prelude::Schema,
        now: impl Into<Now>,
    ) -> Result<Vec<(String, polars::prelude::Expr)>, QualityError> {
        let exprs = rows::fail_exprs(self, schema, &now.into())?;
        Ok(self
            .rules
            .iter()
            .map(|r| r.name.clone())
            .zip(exprs)
            .collect())
    }

    /// Every dataset check on `df` (the candidate data); `others` resolves other tables for
    /// `values_in`. A check that cannot be evaluated has outcome `error`; it does not stop the
    /// others.
    pub fn run_checks(
        &self,
        df: &DataFrame,
        others: &dyn TableSource,
        now: DateTime<Utc>,
    ) -> Result<Vec<CheckResult>, QualityError> {
        Ok(self
            .checks
            .iter()
            .map(|c| checks::run_check(c, df, others, now))
            .collect())
    }
}

/// Every table's expectations, from one directory.
#[derive(Debug, Clone, Default)]
pub struct ExpectationSet {
    dir: PathBuf,
    tables: BTreeMap<String, TableExpectations>,
}

impl ExpectationSet {
    pub fn table(&self, name: &str) -> Option<&TableExpectations> {
        self.tables.get(name)
    }

    /// In table-name order.
    pub fn tables(&self) -> impl Iterator<Item = &TableExpectations> {
        self.tables.values()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rules + checks over every table.
    pub fn total_count(&self) -> usize {
        self.tables
            .values()
            .map(|t| t.rule_count() + t.check_count())
            .sum()
    }
}

/// Loads every `*.yaml` / `*.yml` in `dir`. Reports every problem of every file at once, plus
/// `values_in` references to tables that have no expectation file.
pub fn load_dir(dir: &Path) -> Result<ExpectationSet, SourceErrors> {
    let fail = |line, message: String| {
        SourceErrors(vec![SourceError {
            path: dir.to_path_buf(),
            line,
            message,
        }])
    };
    let rd = std::fs::read_dir(dir)
        .map_err(|e| fail(0, format!("cannot read the expectations directory: {e}")))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            SourceErrors(vec![SourceError {
                path: p.to_path_buf(),
                line: 0,
                message: format!("cannot read: {e}"),
            }])
        })
    };
    let mut errors = Vec::new();
    // The value lists first: table files refer to them.
    let domains_path = dir.join(DOMAINS_FILE);
    let domains = match domains_path.is_file() {
        true => match read(&domains_path) {
            Ok(text) => {
                let (domains, problems) = Domains::read(&domains_path, &text);
                if let Err(SourceErrors(es)) = problems {
                    errors.extend(es);
                }
                domains
            }
            Err(SourceErrors(es)) => {
                errors.extend(es);
                Domains::default()
            }
        },
        false => Domains::default(),
    };
    paths.retain(|p| *p != domains_path);
    let mut tables = BTreeMap::new();
    for p in paths {
        let parsed = read(&p).and_then(|text| parse_file_with(&p, &text, &domains));
        match parsed {
            Ok(t) => {
                if let Some(prev) = tables.get(&t.name) {
                    let prev: &TableExpectations = prev;
                    errors.push(SourceError {
                        path: p.clone(),
                        line: 0,
                        message: format!("table `{}` also has {}", t.name, prev.path.display()),
                    });
                } else {
                    tables.insert(t.name.clone(), t);
                }
            }
            Err(SourceErrors(es)) => errors.extend(es),
        }
    }
    for t in tables.values() {
        for c in &t.checks {
            if let Metric::ValuesIn { table, .. } = &c.metric
                && !tables.contains_key(table)
            {
                errors.push(SourceError {
                    path: t.path.clone(),
                    line: c.line,
                    message: format!(
                        "check `{}` refers to table `{table}`, which has no expectation file in {}",
                        c.name,
                        dir.display()
                    ),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(ExpectationSet {
            dir: dir.to_path_buf(),
            tables,
        })
    } else {
        Err(SourceErrors(errors))
    }
}
