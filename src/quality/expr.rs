//! The shared vocabulary as Polars expressions: "is this value missing", "is this value valid".
//! Row rules and dataset checks both build on these, so a rule and the check that counts its
//! failures can never disagree. The column's type decides how a bound or a length applies; a
//! combination that makes no sense (a time bound on a number) is an error, not a silent pass.

use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::model::{Bound, Limit, Now, TimeBound, Validity};

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// True where the value counts as missing: null, or one of `missing_values` (`""` on a binary
/// or list column means empty).
pub fn missing(column: &str, dtype: &DataType, missing_values: &[String]) -> Result<Expr, String> {
    let c = col(column);
    let mut e = c.clone().is_null();
    for v in missing_values {
        let hit = match dtype {
            DataType::String => c.clone().eq(lit(v.as_str())),
            DataType::Binary if v.is_empty() => c.clone().binary().size_bytes().eq(lit(0u32)),
            DataType::List(_) if v.is_empty() => c.clone().list().len().eq(lit(0u32)),
            d if d.is_primitive_numeric() => {
                let x: f64 = v.parse().map_err(|_| {
                    format!("missing value {v:?} is not a number, but `{column}` is {d}")
                })?;
                c.clone().cast(DataType::Float64).eq(lit(x))
            }
            d => {
                return Err(format!(
                    "missing value {v:?} cannot apply to `{column}` of type {d}"
                ));
            }
        };
        e = e.or(hit);
    }
    Ok(e)
}

/// True where a (non-missing) value meets every condition of `v`. Null in, null out: callers
/// decide what a null means.
pub fn valid(column: &str, dtype: &DataType, v: &Validity, now: &Now) -> Result<Expr, String> {
    let c = col(column);
    let mut conds: Vec<Expr> = Vec::new();
    for (bound, is_min) in [(&v.min, true), (&v.max, false)] {
        if let Some(b) = bound {
            conds.push(compare(column, dtype, b, is_min, now)?);
        }
    }
    if let Some(values) = &v.values {
        let mut any: Option<Expr> = None;
        for x in values {
            let hit = match dtype {
                DataType::String => c.clone().eq(lit(x.as_str())),
                d if d.is_primitive_numeric() => {
                    let n: f64 = x.parse().map_err(|_| {
                        format!("valid value {x:?} is not a number, but `{column}` is {d}")
                    })?;
                    c.clone().cast(DataType::Float64).eq(lit(n))
                }
                d => {
                    return Err(format!(
                        "valid_values cannot apply to `{column}` of type {d}"
                    ));
                }
            };
            any = Some(match any {
                Some(a) => a.or(hit),
                None => hit,
            });
        }
        conds.push(any.unwrap_or_else(|| lit(false)));
    }
    if let Some(re) = &v.regex {
        if dtype != &DataType::String {
            return Err(format!(
                "valid_regex needs a string column; `{column}` is {dtype}"
            ));
        }
        conds.push(c.clone().str().contains(lit(re.as_str()), true));
    }
    if v.min_length.is_some() || v.max_length.is_some() {
        let len = match dtype {
            DataType::String => c.clone().str().len_chars(),
            DataType::Binary => c.clone().binary().size_bytes(),
            DataType::List(_) => c.clone().list().len(),
            d => {
                return Err(format!(
                    "a length needs a string, binary or list column; `{column}` is {d}"
                ));
            }
        }
        .cast(DataType::Int64);
        if let Some(n) = v.min_length {
            conds.push(len.clone().gt_eq(lit(n as i64)));
        }
        if let Some(n) = v.max_length {
            conds.push(len.lt_eq(lit(n as i64)));
        }
    }
    conds
        .into_iter()
        .reduce(|a, b| a.and(b))
        .ok_or_else(|| "no validity condition".to_string())
}

/// A time bound as µs since the epoch: a literal, or per row when `now` is a column.
fn bound_us(t: TimeBound, now: &Now) -> Expr {
    let us = |t: DateTime<Utc>| t.timestamp() * MICROS_PER_SEC + t.timestamp_subsec_micros() as i64;
    match (t, now) {
        (TimeBound::Fixed(t), _) => lit(us(t)),
        (t, Now::At(now)) => lit(us(t.resolve(*now))),
        (TimeBound::Now(d), Now::Column(c)) => {
            let delta = d.num_microseconds().unwrap_or(i64::MAX);
            col(c.as_str())
                .dt()
                .cast_time_unit(TimeUnit::Microseconds)
                .cast(DataType::Int64)
                + lit(delta)
        }
    }
}

/// `column >= bound` (or `>`, `<=`, `<`), in the column's own units.
fn compare(
    column: &str,
    dtype: &DataType,
    b: &Bound,
    is_min: bool,
    now: &Now,
) -> Result<Expr, String> {
    let (lhs, rhs) = match (&b.limit, dtype) {
        (Limit::Number(x), d) if d.is_primitive_numeric() => {
            (col(column).cast(DataType::Float64), lit(*x))
        }
        (Limit::Time(t), DataType::Datetime(unit, _)) => {
            let us = bound_us(*t, now);
            let v = match unit {
                TimeUnit::Milliseconds => us.floor_div(lit(1000i64)),
                TimeUnit::Microseconds => us,
                TimeUnit::Nanoseconds => us * lit(1000i64),
            };
            (col(column).cast(DataType::Int64), v)
        }
        (Limit::Time(t), DataType::Date) => {
            // A date stands for its midnight (UTC).
            let secs = bound_us(*t, now).floor_div(lit(MICROS_PER_SEC));
            (
                col(column).cast(DataType::Int32).cast(DataType::Int64) * lit(SECS_PER_DAY),
                secs,
            )
        }
        (Limit::Number(_), d) => {
            return Err(format!("bound {} is a number; `{column}` is {d}", b.text));
        }
        (Limit::Time(_), d) => {
            return Err(format!("bound {} is a time; `{column}` is {d}", b.text));
        }
    };
    Ok(match (is_min, b.inclusive) {
        (true, true) => lhs.gt_eq(rhs),
        (true, false) => lhs.gt(rhs),
        (false, true) => lhs.lt_eq(rhs),
        (false, false) => lhs.lt(rhs),
    })
}

/// True where a value is present but not valid (the `invalid_*` metric; nulls are missing,
/// not invalid).
pub fn invalid(
    column: &str,
    dtype: &DataType,
    missing_values: &[String],
    v: &Validity,
    now: &Now,
) -> Result<Expr, String> {
    let m = missing(column, dtype, missing_values)?;
    let ok = valid(column, dtype, v, now)?;
    Ok(m.not().and(ok.fill_null(lit(false)).not()))
}

/// A value for a message: strings quoted, times readable, null as `null`.
pub fn show(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => "null".into(),
        AnyValue::String(s) => format!("{s:?}"),
        AnyValue::StringOwned(s) => format!("{:?}", s.as_str()),
        AnyValue::Binary(b) => format!("{:?}", String::from_utf8_lossy(b)),
        AnyValue::BinaryOwned(b) => format!("{:?}", String::from_utf8_lossy(b)),
        AnyValue::Datetime(x, unit, _) => time_text(*x, *unit),
        AnyValue::DatetimeOwned(x, unit, _) => time_text(*x, *unit),
        other => other.to_string(),
    }
}

fn time_text(x: i64, unit: TimeUnit) -> String {
    let us = match unit {
        TimeUnit::Milliseconds => x.saturating_mul(1000),
        TimeUnit::Microseconds => x,
        TimeUnit::Nanoseconds => x / 1000,
    };
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| x.to_string())
}

/// Microseconds since the epoch of a timestamp or date value.
pub fn micros_of(v: &AnyValue) -> Option<i64> {
    match v {
        AnyValue::Datetime(x, unit, _) | AnyValue::DatetimeOwned(x, unit, _) => Some(match unit {
            TimeUnit::Milliseconds => x.saturating_mul(1000),
            TimeUnit::Microseconds => *x,
            TimeUnit::Nanoseconds => x / 1000,
        }),
        AnyValue::Date(d) => Some(*d as i64 * SECS_PER_DAY * MICROS_PER_SEC),
        _ => None,
    }
}
