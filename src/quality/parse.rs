//! Expectation files → validated [`TableExpectations`]. The YAML tree is walked by hand (with
//! marked-yaml's line numbers) rather than through serde, so that one pass reports *every*
//! problem of a file — unknown keys, bad thresholds, bad regexes, bad bounds — each with
//! `file:line: reason`, the way flow validation does.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node};

use super::TableExpectations;
use super::model::{
    Bound, Check, Limit, Metric, Op, Rule, RuleKind, Severity, Stat, Threshold, TimeBound,
    TypeName, Validity,
};
use crate::flow::parse_duration;

/// One problem in one expectation file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectationError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ExpectationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

/// Every problem found, one `file:line: reason` per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ExpectationErrors(pub Vec<ExpectationError>);

impl fmt::Display for ExpectationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

const VALIDITY_KEYS: &[&str] = &[
    "valid_min",
    "valid_max",
    "valid_min_exclusive",
    "valid_max_exclusive",
    "valid_values",
    "valid_regex",
    "valid_length",
    "min_length",
    "max_length",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "category",
    "description",
    "missing",
    "invalid",
    "missing_values",
];
const CHECK_METRICS: &[&str] = &[
    "row_count",
    "missing_count",
    "missing_percent",
    "invalid_count",
    "invalid_percent",
    "duplicate_count",
    "freshness",
    "schema",
    "values_in",
    "min",
    "max",
    "avg",
    "sum",
];
const CHECK_KEYS: &[&str] = &[
    "name",
    "description",
    "severity",
    "must_be",
    "missing_values",
    "reference",
];

fn line_of(n: &Node) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

fn sline(n: &MarkedScalarNode) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

struct Ctx<'p> {
    path: &'p Path,
    errors: Vec<ExpectationError>,
}

impl Ctx<'_> {
    fn err(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ExpectationError {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// A scalar, or an error at the node saying what `what` should have been.
    fn scalar<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        let s = n.as_scalar();
        if s.is_none() {
            self.err(line_of(n), format!("{what} must be a single value"));
        }
        s
    }

    fn string_list(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        match n {
            Node::Sequence(seq) => {
                let mut out = Vec::new();
                for item in seq.iter() {
                    out.push(
                        self.scalar(item, &format!("every entry of {what}"))?
                            .as_str()
                            .to_string(),
                    );
                }
                Some(out)
            }
            _ => {
                self.err(line_of(n), format!("{what} must be a list, e.g. [a, b]"));
                None
            }
        }
    }

    fn column(&mut self, n: &Node, key: &str) -> Option<String> {
        let s = self.scalar(n, &format!("`{key}` (a column name)"))?;
        let c = s.as_str().trim();
        if c.is_empty() {
            self.err(sline(s), format!("`{key}` needs a column name"));
            return None;
        }
        Some(c.to_string())
    }
}

/// Parses one file's text; `path` names the table (its stem) and labels the errors.
pub fn parse_file(path: &Path, text: &str) -> Result<TableExpectations, ExpectationErrors> {
    let mut cx = Ctx {
        path,
        errors: Vec::new(),
    };
    let table = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let root = match marked_yaml::parse_yaml_with_options(
        0,
        text,
        LoaderOptions::default().error_on_duplicate_keys(true),
    ) {
        Ok(r) => r,
        Err(e) => {
            let (line, msg) = load_error(&e);
            cx.err(line, msg);
            return Err(ExpectationErrors(cx.errors));
        }
    };
    let mut rules = Vec::new();
    let mut checks = Vec::new();
    let Some(map) = root.as_mapping() else {
        cx.err(
            line_of(&root),
            "the top level must be a mapping (table:, rules:, checks:)",
        );
        return Err(ExpectationErrors(cx.errors));
    };
    for (k, v) in map.iter() {
        match k.as_str() {
            "table" => {
                if let Some(s) = cx.scalar(v, "`table`")
                    && s.as_str() != table
                {
                    cx.err(
                        sline(s),
                        format!(
                            "`table: {}` does not match the file name (expected `{table}`)",
                            s.as_str()
                        ),
                    );
                }
            }
            "description" => {}
            "rules" | "checks" => {
                let Some(seq) = v.as_sequence() else {
                    cx.err(line_of(v), format!("`{}` must be a list", k.as_str()));
                    continue;
                };
                for item in seq.iter() {
                    let Some(m) = item.as_mapping() else {
                        cx.err(
                            line_of(item),
                            format!("each entry of `{}` must be a mapping", k.as_str()),
                        );
                        continue;
                    };
                    if k.as_str() == "rules" {
                        rules.extend(parse_rule(&mut cx, m, line_of(item)));
                    } else {
                        checks.extend(parse_check(&mut cx, m, line_of(item)));
                    }
                }
            }
            other => cx.err(
                sline(k),
                format!("unknown key `{other}` (expected table, description, rules, checks)"),
            ),
        }
    }
    let mut seen = HashSet::new();
    for r in &rules {
        if !seen.insert(r.name.clone()) {
            cx.err(r.line, format!("duplicate rule name `{}`", r.name));
        }
    }
    let mut seen = HashSet::new();
    for c in &checks {
        if !seen.insert(c.name.clone()) {
            cx.err(
                c.line,
                format!(
                    "duplicate check name `{}` (give one of them a `name:`)",
                    c.name
                ),
            );
        }
    }
    if rules.is_empty() && checks.is_empty() && cx.errors.is_empty() {
        cx.err(0, "no rules and no checks");
    }
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| e.line);
        return Err(ExpectationErrors(cx.errors));
    }
    let required = rules
        .iter()
        .filter(|r| matches!(r.kind, RuleKind::Missing))
        .map(|r| r.column.clone())
        .collect();
    Ok(TableExpectations {
        name: table,
        path: path.to_path_buf(),
        rules,
        checks,
        required,
    })
}

fn unknown_key(cx: &mut Ctx, k: &MarkedScalarNode, what: &str, known: &[&[&str]]) {
    let all: Vec<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
    cx.err(
        sline(k),
        format!(
            "unknown key `{}` in a {what} (expected one of {})",
            k.as_str(),
            all.join(", ")
        ),
    );
}

fn parse_rule(cx: &mut Ctx, m: &MarkedMappingNode, line: usize) -> Option<Rule> {
    let before = cx.errors.len();
    let (mut name, mut category, mut target, mut missing_values) = (None, None, None, Vec::new());
    let mut validity = ValidityBuilder::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            "name" => name = cx.scalar(v, "`name`").map(|s| s.as_str().to_string()),
            "category" => {
                if let Some(s) = cx.scalar(v, "`category`") {
                    let c = s.as_str();
                    if c.is_empty()
                        || !c
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                    {
                        cx.err(
                            sline(s),
                            format!("category `{c}` must be UPPER_SNAKE_CASE, e.g. INVALID_ENUM"),
                        );
                    }
                    category = Some(c.to_string());
                }
            }
            "description" => {}
            key @ ("missing" | "invalid") => {
                if target.is_some() {
                    cx.err(
                        sline(k),
                        "a rule takes exactly one of `missing:` or `invalid:`",
                    );
                }
                target = cx.column(v, key).map(|c| (key == "missing", c));
            }
            "missing_values" => {
                missing_values = cx.string_list(v, "`missing_values`").unwrap_or_default()
            }
            key if VALIDITY_KEYS.contains(&key) => validity.add(cx, k, v),
            _ => unknown_key(cx, k, "rule", &[RULE_KEYS, VALIDITY_KEYS]),
        }
    }
    let name = name.filter(|n| !n.trim().is_empty()).or_else(|| {
        cx.err(line, "a rule needs a `name`");
        None
    });
    let category = category.or_else(|| {
        cx.err(
            line,
            "a rule needs a `category` (e.g. MISSING_REQUIRED_FIELD, INVALID_ENUM)",
        );
        None
    });
    let Some((is_missing, column)) = target else {
        cx.err(line, "a rule needs `missing: COLUMN` or `invalid: COLUMN`");
        return None;
    };
    let validity = validity.finish(cx, line);
    let kind = if is_missing {
        if !validity.is_empty() {
            cx.err(
                line,
                "a `missing` rule takes no valid_* keys (write a separate `invalid` rule)",
            );
        }
        RuleKind::Missing
    } else {
        if validity.is_empty() {
            cx.err(line, "an `invalid` rule needs at least one of valid_min, valid_max, valid_values, valid_regex, valid_length, min_length, max_length");
        }
        RuleKind::Invalid(validity)
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(Rule {
        name: name?,
        category: category?,
        column,
        kind,
        missing_values,
        line,
    })
}

fn parse_check(cx: &mut Ctx, m: &MarkedMappingNode, line: usize) -> Option<Check> {
    let before = cx.errors.len();
    let mut metric_key: Option<(&MarkedScalarNode, &Node)> = None;
    let (mut name, mut severity, mut must_be, mut reference) = (None, Severity::Fail, None, None);
    let mut missing_values = Vec::new();
    let mut validity = ValidityBuilder::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            key if CHECK_METRICS.contains(&key) => {
                if let Some((first, _)) = metric_key {
                    cx.err(
                        sline(k),
                        format!(
                            "a check measures one thing: `{}` and `{key}` in one entry",
                            first.as_str()
                        ),
                    );
                }
                metric_key = Some((k, v));
            }
            "name" => name = cx.scalar(v, "`name`").map(|s| s.as_str().to_string()),
            "description" => {}
            "severity" => {
                if let Some(s) = cx.scalar(v, "`severity`") {
                    severity = match s.as_str() {
                        "warn" => Severity::Warn,
                        "fail" => Severity::Fail,
                        other => {
                            cx.err(
                                sline(s),
                                format!("severity `{other}` must be `warn` or `fail`"),
                            );
                            Severity::Fail
                        }
                    }
                }
            }
            "must_be" => must_be = cx.scalar(v, "`must_be`"),
            "missing_values" => {
                missing_values = cx.string_list(v, "`missing_values`").unwrap_or_default()
            }
            "reference" => reference = cx.scalar(v, "`reference`"),
            key if VALIDITY_KEYS.contains(&key) => validity.add(cx, k, v),
            _ => unknown_key(cx, k, "check", &[CHECK_METRICS, CHECK_KEYS, VALIDITY_KEYS]),
        }
    }
    let Some((mk, mv)) = metric_key else {
        cx.err(
            line,
            format!("a check needs one of {}", CHECK_METRICS.join(", ")),
        );
        return None;
    };
    let kind = mk.as_str();
    let validity = validity.finish(cx, line);
    let takes_validity = matches!(kind, "invalid_count" | "invalid_percent");
    if takes_validity && validity.is_empty() {
        cx.err(
            sline(mk),
            format!("`{kind}` needs at least one valid_* key saying what is valid"),
        );
    }
    if !takes_validity && !validity.is_empty() {
        cx.err(
            line,
            format!("valid_* keys only apply to invalid_count / invalid_percent, not `{kind}`"),
        );
    }
    if !missing_values.is_empty()
        && !matches!(
            kind,
            "missing_count" | "missing_percent" | "invalid_count" | "invalid_percent"
        )
    {
        cx.err(line, format!("`missing_values` does not apply to `{kind}`"));
    }
    if reference.is_some() && kind != "values_in" {
        cx.err(line, "`reference` only applies to `values_in`");
    }
    let col = |cx: &mut Ctx| cx.column(mv, kind);
    let (metric, default_threshold, default_name) = match kind {
        "row_count" => {
            if must_be.is_some() {
                cx.err(
                    line,
                    "`row_count` takes its threshold directly: `row_count: \"> 0\"`",
                );
            }
            must_be = cx.scalar(mv, "`row_count` (a threshold such as \"> 0\")");
            (Metric::RowCount, None, "row_count".to_string())
        }
        "missing_count" | "missing_percent" => {
            let column = col(cx)?;
            let n = format!("{kind}({column})");
            let metric = if kind == "missing_count" {
                Metric::MissingCount {
                    column,
                    missing_values,
                }
            } else {
                Metric::MissingPercent {
                    column,
                    missing_values,
                }
            };
            (metric, (kind == "missing_count").then_some("= 0"), n)
        }
        "invalid_count" | "invalid_percent" => {
            let column = col(cx)?;
            let n = format!("{kind}({column})");
            let metric = if kind == "invalid_count" {
                Metric::InvalidCount {
                    column,
                    missing_values,
                    validity,
                }
            } else {
                Metric::InvalidPercent {
                    column,
                    missing_values,
                    validity,
                }
            };
            (metric, (kind == "invalid_count").then_some("= 0"), n)
        }
        "duplicate_count" => {
            let columns = match mv {
                Node::Scalar(s) => s
                    .as_str()
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
                other => cx.string_list(other, "`duplicate_count`")?,
            };
            if columns.is_empty() {
                cx.err(sline(mk), "`duplicate_count` needs the key column(s)");
            }
            let n = format!("duplicate_count({})", columns.join(", "));
            (Metric::DuplicateCount { columns }, Some("= 0"), n)
        }
        "freshness" => {
            let column = col(cx)?;
            let n = format!("freshness({column})");
            (Metric::Freshness { column }, None, n)
        }
        "schema" => {
            let Some(cols) = mv.as_mapping() else {
                cx.err(
                    line_of(mv),
                    "`schema` must map column names to types, e.g. {order_id: string}",
                );
                return None;
            };
            let mut columns = Vec::new();
            for (c, t) in cols.iter() {
                let Some(ts) = cx.scalar(t, &format!("the type of `{}`", c.as_str())) else {
                    continue;
                };
                match TypeName::parse(ts.as_str()) {
                    Some(ty) => columns.push((c.as_str().to_string(), ty)),
                    None => cx.err(
                        sline(ts),
                        format!(
                            "unknown type `{}` for column `{}` (expected one of {})",
                            ts.as_str(),
                            c.as_str(),
                            TypeName::ALL
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            if columns.is_empty() && cols.is_empty() {
                cx.err(line_of(mv), "`schema` lists no columns");
            }
            (
                Metric::Schema { columns },
                Some("= 0"),
                "schema".to_string(),
            )
        }
        "values_in" => {
            let column = col(cx)?;
            let Some(r) = reference else {
                cx.err(line, "`values_in` needs `reference: TABLE.COLUMN`");
                return None;
            };
            let Some((table, ref_column)) = r
                .as_str()
                .split_once('.')
                .filter(|(t, c)| !t.is_empty() && !c.is_empty())
            else {
                cx.err(
                    sline(r),
                    format!("reference `{}` must be TABLE.COLUMN", r.as_str()),
                );
                return None;
            };
            let n = format!("values_in({column}, {})", r.as_str());
            let metric = Metric::ValuesIn {
                column,
                table: table.to_string(),
                ref_column: ref_column.to_string(),
            };
            (metric, Some("= 0"), n)
        }
        stat => {
            let stat = match stat {
                "min" => Stat::Min,
                "max" => Stat::Max,
                "avg" => Stat::Avg,
                _ => Stat::Sum,
            };
            let column = col(cx)?;
            let n = format!("{}({column})", stat.as_str());
            (Metric::Stat { stat, column }, None, n)
        }
    };
    let (threshold_text, tline) = match (&must_be, default_threshold) {
        (Some(s), _) => (s.as_str().trim().to_string(), sline(s)),
        (None, Some(d)) => (d.to_string(), line),
        (None, None) => {
            cx.err(
                line,
                format!(
                    "`{kind}` needs `must_be:` (e.g. \"< 5\", \"between 1 and 10\"{})",
                    if kind == "freshness" {
                        ", \"< 1d\""
                    } else {
                        ""
                    }
                ),
            );
            return None;
        }
    };
    let threshold = match parse_threshold(&threshold_text, kind == "freshness") {
        Ok(t) => Some(t),
        Err(m) => {
            cx.err(tline, m);
            None
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    let name = name.unwrap_or_else(|| format!("{default_name} {threshold_text}"));
    Some(Check {
        name,
        metric,
        threshold: threshold?,
        threshold_text,
        severity,
        line,
    })
}

/// Collects valid_* keys; `valid_min` and `valid_min_exclusive` exclude each other.
#[derive(Default)]
struct ValidityBuilder {
    v: Validity,
    min_key: Option<String>,
    max_key: Option<String>,
    length: bool,
}

impl ValidityBuilder {
    fn add(&mut self, cx: &mut Ctx, k: &MarkedScalarNode, v: &Node) {
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
                if let Some(list) = cx.string_list(v, "`valid_values`") {
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

    fn finish(self, cx: &mut Ctx, line: usize) -> Validity {
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
        self.v
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

fn load_error(e: &marked_yaml::LoadError) -> (usize, String) {
    use marked_yaml::LoadError as L;
    match e {
        L::TopLevelMustBeMapping(m) => (
            m.line(),
            "the top level must be a mapping (table:, rules:, checks:)".into(),
        ),
        L::TopLevelMustBeSequence(m) => (m.line(), "expected a sequence".into()),
        L::UnexpectedAnchor(m) => (
            m.line(),
            "YAML anchors are not supported in expectation files".into(),
        ),
        L::MappingKeyMustBeScalar(m) => (m.line(), "mapping keys must be plain scalars".into()),
        L::UnexpectedTag(m) => (
            m.line(),
            "YAML tags are not supported in expectation files".into(),
        ),
        L::ScanError(m, s) => (m.line(), format!("malformed YAML: {s}")),
        L::DuplicateKey(d) => (
            d.key.span().start().map(|m| m.line()).unwrap_or(0),
            format!(
                "duplicate key `{}` (first at line {})",
                d.key.as_str(),
                d.prev_key.span().start().map(|m| m.line()).unwrap_or(0)
            ),
        ),
    }
}
