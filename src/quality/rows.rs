//! Row rules over a whole frame. Each rule becomes one boolean Polars expression ("this row
//! breaks it"); a nested `when` picks the first broken rule per row, all inside Polars. Rust
//! only walks the resulting index column to build the answer, and formats a detail for the
//! (few) rows that failed.

use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::model::{Now, RuleKind};
use super::{QualityError, RowFailure, TableExpectations, expr};

const FIRST: &str = "__first_failed_rule";
const ALL: &str = "__failed_rules";

/// Per rule, in file order: a boolean expression, true where the row breaks the rule.
pub(super) fn fail_exprs(
    t: &TableExpectations,
    schema: &Schema,
    now: &Now,
) -> Result<Vec<Expr>, QualityError> {
    let mut fails = Vec::with_capacity(t.rules.len());
    for r in &t.rules {
        let dtype = schema
            .get(r.column.as_str())
            .ok_or_else(|| QualityError::MissingColumn {
                table: t.name.clone(),
                rule: r.name.clone(),
                line: r.line,
                column: r.column.clone(),
            })?;
        let bad = |detail: String| QualityError::BadRule {
            table: t.name.clone(),
            rule: r.name.clone(),
            column: r.column.clone(),
            detail,
        };
        let missing = expr::missing(&r.column, dtype, &r.missing_values).map_err(bad)?;
        let fail = match &r.kind {
            RuleKind::Missing => missing,
            RuleKind::Invalid(v) => {
                let ok = expr::valid(&r.column, dtype, v, now)
                    .map_err(bad)?
                    .fill_null(lit(false));
                if t.required.contains(&r.column) {
                    missing.or(ok.not())
                } else {
                    missing.not().and(ok.not())
                }
            }
        };
        fails.push(fail.fill_null(lit(false)));
    }
    Ok(fails)
}

/// Per row: the names of every rule it breaks, comma-separated in file order (None when it
/// breaks none) — what silver_quarantine.failed_rules records. One `concat_str` in Polars.
pub(super) fn failed_rules(
    t: &TableExpectations,
    df: &DataFrame,
    now: DateTime<Utc>,
) -> Result<Vec<Option<String>>, QualityError> {
    if t.rules.is_empty() || df.height() == 0 {
        return Ok(vec![None; df.height()]);
    }
    let names: Vec<Expr> = fail_exprs(t, df.schema(), &Now::At(now))?
        .into_iter()
        .zip(&t.rules)
        .map(|(f, r)| {
            when(f)
                .then(lit(r.name.as_str()))
                .otherwise(lit(NULL).cast(DataType::String))
        })
        .collect();
    let all = concat_str(names, ",", true);
    let out = df
        .clone()
        .lazy()
        .select([when(all.clone().eq(lit("")))
            .then(lit(NULL).cast(DataType::String))
            .otherwise(all)
            .alias(ALL)])
        .collect()
        .and_then(|o| o.column(ALL).and_then(|c| c.str().cloned()))
        .map_err(|source| QualityError::Polars {
            table: t.name.clone(),
            what: "row rules".into(),
            source,
        })?;
    Ok(out.iter().map(|v| v.map(str::to_string)).collect())
}

pub(super) fn row_failures(
    t: &TableExpectations,
    df: &DataFrame,
    now: DateTime<Utc>,
) -> Result<Vec<Option<RowFailure>>, QualityError> {
    if t.rules.is_empty() || df.height() == 0 {
        return Ok(vec![None; df.height()]);
    }
    let fails = fail_exprs(t, df.schema(), &Now::At(now))?;
    // Built from the last rule backwards, so the outermost `when` is the first rule.
    let mut first = lit(NULL).cast(DataType::UInt32);
    for (i, f) in fails.into_iter().enumerate().rev() {
        first = when(f).then(lit(i as u32)).otherwise(first);
    }
    let out = df
        .clone()
        .lazy()
        .select([first.alias(FIRST)])
        .collect()
        .map_err(|source| QualityError::Polars {
            table: t.name.clone(),
            what: "row rules".into(),
            source,
        })?;
    let idx = out
        .column(FIRST)
        .and_then(|c| c.u32().cloned())
        .map_err(|source| QualityError::Polars {
            table: t.name.clone(),
            what: "row rules".into(),
            source,
        })?;
    let mut result = Vec::with_capacity(df.height());
    for (row, hit) in idx.iter().enumerate() {
        result.push(match hit {
            None => None,
            Some(k) => {
                let r = &t.rules[k as usize];
                let found = df
                    .column(&r.column)
                    .and_then(|c| c.get(row))
                    .map(|v| expr::show(&v))
                    .unwrap_or_else(|_| "?".into());
                Some(RowFailure {
                    rule: r.name.clone(),
                    category: r.category.clone(),
                    detail: format!("{}, found {found}", r.describe()),
                })
            }
        });
    }
    Ok(result)
}
