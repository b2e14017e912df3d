//! The validated form of an expectation file: what the evaluators run. Built only by
//! [`super::parse`], so every value here has already been checked (a regex compiles, a threshold
//! parses, a bound is a number or a timestamp).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

/// How bad a failed check is: `warn` is recorded, `fail` also fails the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Fail,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check concluded. `error`: the check could not be evaluated (a column is missing, the
/// reference table cannot be read); it blocks a gate like a failure when its severity is `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
    Error,
}

impl Outcome {
    /// The names the `quality_results.outcome` column accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time written in an expectation file: fixed, or relative to the evaluation's `now`
/// (which the caller injects, so a test never depends on the wall clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeBound {
    Fixed(DateTime<Utc>),
    /// `now`, `now + 1h`, `now - 30d`.
    Now(TimeDelta),
}

impl TimeBound {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::Fixed(t) => t,
            TimeBound::Now(d) => now + d,
        }
    }
}

/// What `now` in a time bound means for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Now {
    /// The evaluation's clock: the same instant for every row (checks, bronze rules).
    At(DateTime<Utc>),
    /// Per row, a timestamp column of the frame: silver judges a row by when it was ingested
    /// (`_ingested_at`), so a rerun or a backfill months later judges it the same way.
    Column(String),
}

impl From<DateTime<Utc>> for Now {
    fn from(t: DateTime<Utc>) -> Now {
        Now::At(t)
    }
}

/// One side of a value range.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    Number(f64),
    Time(TimeBound),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub limit: Limit,
    pub inclusive: bool,
    /// As written in the file, for messages.
    pub text: String,
}

/// What makes a non-missing value valid; shared by row rules and `invalid_*` checks. Every
/// condition given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validity {
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    pub values: Option<Vec<String>>,
    pub regex: Option<String>,
    /// Characters of a string, bytes of a binary, elements of a list.
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
}

impl Validity {
    /// `amount must be > 0`-style wording of the conditions.
    pub fn describe(&self, column: &str) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.min {
            parts.push(format!(
                "{} {}",
                if b.inclusive { ">=" } else { ">" },
                b.text
            ));
        }
        if let Some(b) = &self.max {
            parts.push(format!(
                "{} {}",
                if b.inclusive { "<=" } else { "<" },
                b.text
            ));
        }
        if let Some(v) = &self.values {
            parts.push(format!("one of {}", v.join(", ")));
        }
        if let Some(r) = &self.regex {
            parts.push(format!("matching /{r}/"));
        }
        match (self.min_length, self.max_length) {
            (Some(a), Some(b)) if a == b => parts.push(format!("of length {a}")),
            (Some(a), Some(b)) => parts.push(format!("of length {a} to {b}")),
            (Some(a), None) => parts.push(format!("of length >= {a}")),
            (None, Some(b)) => parts.push(format!("of length <= {b}")),
            (None, None) => {}
        }
        format!("{column} must be {}", parts.join(" and "))
    }
}

/// A per-row predicate: a row that breaks it is rejected (DLQ at bronze, quarantine in silver).
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The rejection category, e.g. `INVALID_ENUM` (the DLQ `error_type`).
    pub category: String,
    pub column: String,
    pub kind: RuleKind,
    /// Values that count as missing besides null (`""` on a binary or list column: empty).
    pub missing_values: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    /// The row fails when the column is missing.
    Missing,
    /// The row fails when a present value is not valid (a missing value passes unless the
    /// table also has a `missing` rule on the column).
    Invalid(Validity),
}

impl Rule {
    /// `order_id must not be missing` / `amount must be > 0`.
    pub fn describe(&self) -> String {
        match &self.kind {
            RuleKind::Missing => missing_phrase(&self.column, &self.missing_values),
            RuleKind::Invalid(v) => v.describe(&self.column),
        }
    }
}

pub(crate) fn missing_phrase(column: &str, missing_values: &[String]) -> String {
    if missing_values.is_empty() {
        format!("{column} must not be null")
    } else {
        let quoted: Vec<String> = missing_values.iter().map(|v| format!("{v:?}")).collect();
        format!("{column} must not be null or {}", quoted.join(", "))
    }
}

/// The statistic a `min`/`max`/`avg`/`sum` check computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Min,
    Max,
    Avg,
    Sum,
}

impl Stat {
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Avg => "avg",
            Stat::Sum => "sum",
        }
    }
}

/// The column types a `schema` check can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeName {
    String,
    Int32,
    Int64,
    /// Any integer width.
    Integer,
    Float64,
    /// Any integer or float.
    Number,
    Bool,
    Date,
    Timestamp,
    Binary,
    List,
    Struct,
}

impl TypeName {
    pub const ALL: [(&'static str, TypeName); 12] = [
        ("string", TypeName::String),
        ("int32", TypeName::Int32),
        ("int64", TypeName::Int64),
        ("integer", TypeName::Integer),
        ("float64", TypeName::Float64),
        ("number", TypeName::Number),
        ("bool", TypeName::Bool),
        ("date", TypeName::Date),
        ("timestamp", TypeName::Timestamp),
        ("binary", TypeName::Binary),
        ("list", TypeName::List),
        ("struct", TypeName::Struct),
    ];

    pub fn parse(s: &str) -> Option<TypeName> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// What a dataset check measures.
#[derive(Debug, Clone)]
pub enum Metric {
    RowCount,
    MissingCount {
        column: String,
        missing_values: Vec<String>,
    },
    MissingPercent {
        column: String,
        missing_values: Vec<String>,
    },
    InvalidCount {
        column: String,
        missing_values: Vec<String>,
        validity: Validity,
    },
    InvalidPercent {
        column: String,
        missing_values: Vec<String>,
        validity: Validity,
    },
    /// Rows beyond the first of each distinct combination of `columns`.
    DuplicateCount {
        columns: Vec<String>,
    },
    /// Seconds between the newest value of a timestamp column and `now`.
    Freshness {
        column: String,
    },
    /// Required columns missing or of the wrong type.
    Schema {
        columns: Vec<(String, TypeName)>,
    },
    /// Non-null values of `column` absent from `table.ref_column`.
    ValuesIn {
        column: String,
        table: String,
        ref_column: String,
    },
    Stat {
        stat: Stat,
        column: String,
    },
}

/// A comparison the observed value must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Cmp(Op, f64),
    Between { lo: f64, hi: f64, negated: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Threshold {
    pub fn holds(&self, x: f64) -> bool {
        match *self {
            Threshold::Cmp(op, v) => match op {
                Op::Lt => x < v,
                Op::Le => x <= v,
                Op::Gt => x > v,
                Op::Ge => x >= v,
                Op::Eq => x == v,
                Op::Ne => x != v,
            },
            Threshold::Between { lo, hi, negated } => (lo <= x && x <= hi) != negated,
        }
    }
}

/// A dataset-level check: one metric, one threshold, one severity.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub metric: Metric,
    pub threshold: Threshold,
    /// The threshold as written (`> 0`, `< 1d`, `between 1 and 10`).
    pub threshold_text: String,
    pub severity: Severity,
    pub line: usize,
}
