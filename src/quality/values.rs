//! The values inside an expectation file: validity conditions (`valid_*`), thresholds
//! (`must_be`) and time bounds (`now - 30d`). Each parser says what was wrong in words a
//! file's author can act on; [`super::parse`] adds the file and line.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use marked_yaml::Node;
use marked_yaml::types::MarkedScalarNode;

use super::domains::{DOMAINS_FILE, Domains};
use super::model::{Bound, Limit, Op, Threshold, TimeBound, Validity};
use super::parse::{Ctx, line_of, sline};
use crate::vocab::parse_duration;

/// Collects valid_* keys; `valid_min` and `valid_min_exclusive` exclude each other.
#[derive(Default)]
pub(super) struct ValidityBuilder {
    v: Validity,
    min_key: Option<String>,
    max_key: Option<String>,
    length: bool,
    /// Some valid_* key was given (even one with a bad value): no "needs a valid_* key" error.
    any: bool,
}

/// `valid_values: [a, b]`, or `valid_values: {domain: NAME}` for a list of `domains.yaml`.
fn valid_values(cx: &mut Ctx, domains: &Domains, v: &Node) -> Option<Vec<String>> {
    let Some(m) = v.as_mapping() else {
        return cx.string_list(v, "`valid_values`");
    };
    cx.unknown_keys(m, &["domain"], "`valid_values`");
    let Some(node) = m.get_node("domain") else {
        cx.err(
            line_of(v),
            "`valid_values` is a list, or `{domain: NAME}` naming a list of domains.yaml",
        );
        return None;
    };
    let name = cx.name(node, "`valid_values.domain`")?;
    match domains.get(&name) {
        Some(values) => Some(values.to_vec()),
        None => {
            let known: Vec<&str> = domains.names().collect();
            cx.err(
                line_of(node),
                format!(
                    "unknown domain `{name}` ({DOMAINS_FILE} beside this file defines: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            None
        }
    }
}

impl ValidityBuilder {
    pub(super) fn add(&mut self, cx: &mut Ctx, domains: &Domains, k: &MarkedScalarNode, v: &Node) {
        self.any = true;
        let key = k.as_str();
        match key {
            "valid_min" | "valid_min_exclusive" | "valid_max" | "valid_max_exclusive" => {
                let is_min = key.starts_with("valid_min");
                let slot = if is_min {
                    &mut self.min_key
                } else {
                    &mut self.max_key
                };
                if let Some(prev) = slot.replace(key.to_string()) {
                    cx.err(
                        sline(k),
                        format!("`{key}` and `{prev}` both bound the same side"),
                    );
                }
                let Some(s) = cx.scalar(v, &format!("`{key}`")) else {
                    return;
                };
                match parse_limit(s.as_str()) {
                    Ok(limit) => {
                        let b = Bound {
                            limit,
                            inclusive: !key.ends_with("exclusive"),
                            text: s.as_str().trim().to_string(),
                        };
                        if is_min {
                            self.v.min = Some(b)
                        } else {
                            self.v.max = Some(b)
                        }
                    }
                    Err(m) => cx.err(sline(s), format!("`{key}`: {m}")),
                }
            }
            "valid_values" => {
                if let Some(list) = valid_values(cx, domains, v) {
                    if list.is_empty() {
                        cx.err(
                            line_of(v),
                            "`valid_values` is empty: nothing would be valid",
                        );
                    }
                    self.v.values = Some(list);
                }
            }
            "valid_regex" => {
                let Some(s) = cx.scalar(v, "`valid_regex`") else {
                    return;
                };
                // Checked with the regex engine Polars itself uses, so a file that loads
                // never fails at evaluation time.
                match regex::Regex::new(s.as_str()) {
                    Ok(_) => self.v.regex = Some(s.as_str().to_string()),
                    Err(e) => cx.err(
                        sline(s),
                        format!(
                            "`valid_regex` does not compile: {}",
                            e.to_string().lines().last().unwrap_or_default()
                        ),
                    ),
                }
            }
            "valid_length" | "min_length" | "max_length" => {
                let Some(s) = cx.scalar(v, &format!("`{key}`")) else {
                    return;
                };
                let Ok(n) = s.as_str().trim().parse::<u32>() else {
                    cx.err(
                        sline(s),
                        format!("`{key}` must be a whole number, found `{}`", s.as_str()),
                    );
                    return;
                };
                if key == "valid_length" {
                    if self.length {
                        cx.err(
                            sline(k),
                            "`valid_length` fixes the length: drop min_length / max_length",
                        );
                    }
                    self.v.min_length = Some(n);
                    self.v.max_length = Some(n);
                    self.length = true;
                } else if self.length {
                    cx.err(
                        sline(k),
                        "`valid_length` fixes the length: drop min_length / max_length",
                    );
                } else if key == "min_length" {
                    self.v.min_length = Some(n);
                } else {
                    self.v.max_length = Some(n);
                }
            }
            _ => unreachable!("only VALIDITY_KEYS reach here"),
        }
    }

    pub(super) fn finish(self, cx: &mut Ctx, line: usize) -> (Validity, bool) {
        if let (Some(a), Some(b)) = (&self.v.min, &self.v.max) {
            match (&a.limit, &b.limit) {
                (Limit::Number(x), Limit::Number(y)) if x > y => cx.err(
                    line,
                    format!("the range is empty: min {} > max {}", a.text, b.text),
                ),
                (Limit::Number(_), Limit::Time(_)) | (Limit::Time(_), Limit::Number(_)) => {
                    cx.err(line, "one bound is a number and the other a time")
                }
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (self.v.min_length, self.v.max_length)
            && a > b
        {
            cx.err(line, format!("min_length {a} > max_length {b}"));
        }
        (self.v, self.any)
    }
}

/// `> 0`, `>= 1`, `< 5`, `<= 5`, `= 0`, `!= 0`, `between 1 and 10`, `not between 0 and 1`.
/// Operands are numbers, or durations (`1d`, `90m`) when `durations` is set (freshness).
pub fn parse_threshold(text: &str, durations: bool) -> Result<Threshold, String> {
    let operand = |s: &str| -> Result<f64, String> {
        let s = s.trim();
        if durations {
            parse_duration(s).map(|d| d.as_secs_f64())
        } else {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("`{s}` is not a number"))
        }
    };
    let t = text.trim();
    let example = if durations {
        "\"< 1d\""
    } else {
        "\"> 0\", \"between 1 and 10\""
    };
    let bad = |why: String| format!("threshold `{text}`: {why} (expected e.g. {example})");
    let lower = t.to_ascii_lowercase();
    let (negated, rest) = match lower.strip_prefix("not between ") {
        Some(r) => (true, Some(r)),
        None => (false, lower.strip_prefix("between ")),
    };
    if let Some(rest) = rest {
        let (lo, hi) = rest
            .split_once(" and ")
            .ok_or_else(|| bad("`between` needs `A and B`".into()))?;
        let (lo, hi) = (operand(lo).map_err(bad)?, operand(hi).map_err(bad)?);
        if lo > hi {
            return Err(bad(format!("{lo} is above {hi}")));
        }
        return Ok(Threshold::Between { lo, hi, negated });
    }
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("!=", Op::Ne),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("=", Op::Eq),
    ];
    for (sym, op) in ops {
        if let Some(rest) = t.strip_prefix(sym) {
            return Ok(Threshold::Cmp(op, operand(rest).map_err(bad)?));
        }
    }
    Err(bad("no comparison operator".into()))
}

/// A bound: a number, or a time (see [`parse_time_bound`]).
fn parse_limit(text: &str) -> Result<Limit, String> {
    let t = text.trim();
    if let Ok(x) = t.parse::<f64>()
        && x.is_finite()
    {
        return Ok(Limit::Number(x));
    }
    parse_time_bound(t).map(Limit::Time)
}

/// `now`, `now + 1h`, `now - 30d`, `2000-01-01`, `2000-01-01T00:00:00Z` (no zone = UTC).
pub fn parse_time_bound(text: &str) -> Result<TimeBound, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("now") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(TimeBound::Now(TimeDelta::zero()));
        }
        let (sign, d) = match (rest.strip_prefix('+'), rest.strip_prefix('-')) {
            (Some(d), _) => (1, d),
            (_, Some(d)) => (-1, d),
            _ => {
                return Err(format!(
                    "`{t}`: expected `now + DURATION` or `now - DURATION`"
                ));
            }
        };
        let d = parse_duration(d.trim()).map_err(|m| format!("`{t}`: {m}"))?;
        let d = TimeDelta::from_std(d).map_err(|_| format!("`{t}`: duration out of range"))?;
        return Ok(TimeBound::Now(d * sign));
    }
    if let Ok(x) = DateTime::parse_from_rfc3339(t) {
        return Ok(TimeBound::Fixed(x.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(x) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(TimeBound::Fixed(x.and_utc()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(TimeBound::Fixed(
            d.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        ));
    }
    Err(format!(
        "`{t}` is neither a number nor a time (e.g. 2000-01-01, 2024-05-01T12:00:00Z, now - 30d)"
    ))
}
