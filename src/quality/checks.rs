//! Dataset checks: measure one metric on the candidate frame, compare it with the threshold.
//! A check that cannot be measured (a column is missing, the reference table is unreadable)
//! comes back with outcome `error` and the reason, and the other checks still run.

use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::model::{Check, Metric, Now, Outcome, Severity, Stat, TypeName};
use super::{CheckResult, QualityError, TableSource, expr, format_number};

/// How many offending values a detail quotes.
const SAMPLES: usize = 3;

pub(super) fn run_check(
    c: &Check,
    df: &DataFrame,
    others: &dyn TableSource,
    now: DateTime<Utc>,
) -> CheckResult {
    let result = |observed: Option<f64>, outcome: Outcome, detail: String| CheckResult {
        check: c.name.clone(),
        observed,
        threshold: c.threshold_text.clone(),
        severity: c.severity,
        outcome,
        detail,
    };
    match measure(c, df, others, now) {
        Ok(Measured {
            value: Some(x),
            what,
        }) => {
            let outcome = if c.threshold.holds(x) {
                Outcome::Pass
            } else {
                match c.severity {
                    Severity::Warn => Outcome::Warn,
                    Severity::Fail => Outcome::Fail,
                }
            };
            let detail = if outcome == Outcome::Pass {
                what
            } else {
                format!("{what}; must be {}", c.threshold_text)
            };
            result(Some(x), outcome, detail)
        }
        // Nothing to measure (e.g. the newest timestamp of an empty table): cannot pass.
        Ok(Measured { value: None, what }) => {
            let outcome = match c.severity {
                Severity::Warn => Outcome::Warn,
                Severity::Fail => Outcome::Fail,
            };
            result(None, outcome, what)
        }
        Err(why) => result(None, Outcome::Error, why),
    }
}

struct Measured {
    value: Option<f64>,
    /// What was measured, with samples of offending values when there are some.
    what: String,
}

fn dtype_of<'a>(df: &'a DataFrame, column: &str) -> Result<&'a DataType, String> {
    df.schema().get(column).ok_or_else(|| {
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        format!(
            "column `{column}` does not exist (columns: {})",
            names.join(", ")
        )
    })
}

/// Rows where `mask` holds: their count and up to [`SAMPLES`] values of `column`.
fn count_where(df: &DataFrame, mask: Expr, column: &str) -> Result<(f64, Vec<String>), String> {
    let hits = df
        .clone()
        .lazy()
        .filter(mask)
        .select([col(column)])
        .collect()
        .map_err(|e| e.to_string())?;
    let samples = sample(&hits, column);
    Ok((hits.height() as f64, samples))
}

fn sample(df: &DataFrame, column: &str) -> Vec<String> {
    let Ok(c) = df.column(column) else {
        return Vec::new();
    };
    (0..df.height().min(SAMPLES))
        .filter_map(|i| c.get(i).ok().map(|v| expr::show(&v)))
        .collect()
}

fn with_samples(what: String, samples: &[String]) -> String {
    if samples.is_empty() {
        what
    } else {
        format!("{what} (e.g. {})", samples.join(", "))
    }
}

fn percent(n: f64, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * n / total as f64
    }
}

fn measured(value: f64, what: String) -> Result<Measured, String> {
    Ok(Measured {
        value: Some(value),
        what,
    })
}

fn measure(
    c: &Check,
    df: &DataFrame,
    others: &dyn TableSource,
    now: DateTime<Utc>,
) -> Result<Measured, String> {
    let rows = df.height();
    match &c.metric {
        Metric::RowCount => measured(rows as f64, format!("{rows} rows")),
        Metric::MissingCount {
            column,
            missing_values,
        }
        | Metric::MissingPercent {
            column,
            missing_values,
        } => {
            let dtype = dtype_of(df, column)?;
            let mask = expr::missing(column, dtype, missing_values)?;
            let (n, _) = count_where(df, mask, column)?;
            let phrase = super::model::missing_phrase(column, missing_values);
            if matches!(c.metric, Metric::MissingCount { .. }) {
                measured(n, format!("{n} of {rows} rows break `{phrase}`"))
            } else {
                let p = percent(n, rows);
                measured(
                    p,
                    format!(
                        "{n} of {rows} rows ({}%) break `{phrase}`",
                        format_number(p)
                    ),
                )
            }
        }
        Metric::InvalidCount {
            column,
            missing_values,
            validity,
        }
        | Metric::InvalidPercent {
            column,
            missing_values,
            validity,
        } => {
            let dtype = dtype_of(df, column)?;
            let mask = expr::invalid(column, dtype, missing_values, validity, &Now::At(now))?;
            let (n, samples) = count_where(df, mask, column)?;
            let what = format!("{n} of {rows} rows break `{}`", validity.describe(column));
            if matches!(c.metric, Metric::InvalidCount { .. }) {
                measured(n, with_samples(what, &samples))
            } else {
                let p = percent(n, rows);
                measured(
                    p,
                    with_samples(format!("{what}, {}%", format_number(p)), &samples),
                )
            }
        }
        Metric::DuplicateCount { columns } => duplicates(df, columns),
        Metric::Freshness { column } => freshness(df, column, now),
        Metric::Schema { columns } => schema(df, columns),
        Metric::ValuesIn {
            column,
            table,
            ref_column,
        } => values_in(df, others, column, table, ref_column),
        Metric::Stat { stat, column } => statistic(df, *stat, column),
    }
}

/// Rows beyond the first of each distinct key, with sample keys for a one-column key.
fn duplicates(df: &DataFrame, columns: &[String]) -> Result<Measured, String> {
    for col in columns {
        dtype_of(df, col)?;
    }
    let rows = df.height();
    let keys: Vec<PlSmallStr> = columns.iter().map(|c| c.as_str().into()).collect();
    let distinct = df
        .unique_impl(false, Some(keys), UniqueKeepStrategy::Any, None)
        .map_err(|e| e.to_string())?
        .height();
    let dups = (rows - distinct) as f64;
    let mut what = format!("{dups} duplicate rows by ({})", columns.join(", "));
    if dups > 0.0 && columns.len() == 1 {
        let dup_keys = df
            .clone()
            .lazy()
            .filter(col(columns[0].as_str()).is_duplicated())
            .select([col(columns[0].as_str())])
            .unique(None, UniqueKeepStrategy::First)
            .collect()
            .map_err(|e| e.to_string())?;
        what = with_samples(what, &sample(&dup_keys, &columns[0]));
    }
    measured(dups, what)
}

/// Seconds between the newest value of `column` and `now`.
fn freshness(df: &DataFrame, column: &str, now: DateTime<Utc>) -> Result<Measured, String> {
    let dtype = dtype_of(df, column)?;
    if !matches!(dtype, DataType::Datetime(_, _) | DataType::Date) {
        return Err(format!(
            "freshness needs a timestamp or date column; `{column}` is {dtype}"
        ));
    }
    let newest = df
        .column(column)
        .and_then(|s| s.max_reduce())
        .map_err(|e| e.to_string())?;
    match expr::micros_of(&newest.value().clone()) {
        None => Ok(Measured {
            value: None,
            what: format!("{column} has no values: nothing is fresh"),
        }),
        Some(us) => {
            let now_us = now.timestamp_micros();
            let lag = (now_us - us) as f64 / 1e6;
            measured(
                lag,
                format!(
                    "newest {column} is {} ({}s before now)",
                    expr::show(&newest.value().clone()),
                    format_number(lag.round())
                ),
            )
        }
    }
}

/// Required columns missing or of the wrong type.
fn schema(df: &DataFrame, columns: &[(String, TypeName)]) -> Result<Measured, String> {
    let schema = df.schema();
    let mut problems = Vec::new();
    for (name, want) in columns {
        match schema.get(name.as_str()) {
            None => problems.push(format!("`{name}` is missing")),
            Some(d) if !type_matches(*want, d) => {
                problems.push(format!("`{name}` is {d}, expected {}", want.as_str()))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        measured(
            0.0,
            format!(
                "all {} required columns present with their types",
                columns.len()
            ),
        )
    } else {
        measured(problems.len() as f64, problems.join("; "))
    }
}

/// Non-null values of `column` absent from `table.ref_column`.
fn values_in(
    df: &DataFrame,
    others: &dyn TableSource,
    column: &str,
    table: &str,
    ref_column: &str,
) -> Result<Measured, String> {
    let dtype = dtype_of(df, column)?.clone();
    let other = others.read(table).map_err(|e| match e {
        QualityError::TableMissing { .. } => {
            format!("reference table `{table}` does not exist")
        }
        e => format!("reading reference table `{table}`: {e}"),
    })?;
    dtype_of(&other, ref_column).map_err(|e| format!("reference table `{table}`: {e}"))?;
    let reference = other
        .lazy()
        .select([col(ref_column).cast(dtype).alias(column)])
        .drop_nulls(None)
        .unique(None, UniqueKeepStrategy::Any);
    let orphans = df
        .clone()
        .lazy()
        .select([col(column)])
        .drop_nulls(None)
        .anti_join(reference, col(column), col(column))
        .collect()
        .map_err(|e| e.to_string())?;
    let n = orphans.height() as f64;
    let what = format!("{n} values of {column} not found in {table}.{ref_column}");
    measured(n, with_samples(what, &sample(&orphans, column)))
}

/// min / max / avg / sum of a numeric column.
fn statistic(df: &DataFrame, stat: Stat, column: &str) -> Result<Measured, String> {
    let dtype = dtype_of(df, column)?;
    if !dtype.is_primitive_numeric() {
        return Err(format!(
            "{} needs a numeric column; `{column}` is {dtype}",
            stat.as_str()
        ));
    }
    let s = df
        .column(column)
        .and_then(|s| s.cast(&DataType::Float64))
        .map_err(|e| e.to_string())?;
    let s = s.as_materialized_series();
    let ca = s.f64().map_err(|e| e.to_string())?;
    let v = match stat {
        Stat::Min => ca.min(),
        Stat::Max => ca.max(),
        Stat::Avg => ca.mean(),
        Stat::Sum => Some(ca.sum().unwrap_or(0.0)),
    };
    match v {
        Some(x) => measured(
            x,
            format!("{}({column}) over {} rows", stat.as_str(), df.height()),
        ),
        None => Ok(Measured {
            value: None,
            what: format!("{column} has no values: {} is undefined", stat.as_str()),
        }),
    }
}

fn type_matches(want: TypeName, d: &DataType) -> bool {
    match want {
        TypeName::String => matches!(d, DataType::String),
        TypeName::Int32 => matches!(d, DataType::Int32),
        TypeName::Int64 => matches!(d, DataType::Int64),
        TypeName::Integer => d.is_integer(),
        TypeName::Float64 => matches!(d, DataType::Float64),
        TypeName::Number => d.is_primitive_numeric(),
        TypeName::Bool => matches!(d, DataType::Boolean),
        TypeName::Date => matches!(d, DataType::Date),
        TypeName::Timestamp => matches!(d, DataType::Datetime(_, _)),
        TypeName::Binary => matches!(d, DataType::Binary),
        TypeName::List => matches!(d, DataType::List(_)),
        TypeName::Struct => matches!(d, DataType::Struct(_)),
    }
}
