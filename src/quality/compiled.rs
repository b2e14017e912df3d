//! Row rules compiled to run on one row at a time: what the bronze decoder asks of every row as
//! it decodes it ([`RowJudge`]), so a refused row never reaches a batch and decoded rows never
//! cross into Polars just to be judged.
//!
//! Same vocabulary and semantics as the Polars evaluator ([`super::rows`] on [`super::expr`]),
//! which stays the reference: nulls are missing, a missing value passes an `invalid` rule unless
//! the column is required, numbers compare as f64 in Polars' total order (NaN above everything,
//! equal to itself), time bounds in the column's own unit, the first broken rule in file order
//! wins, and the detail names the value the same way. A test holds both evaluators to the same
//! verdicts and details. A rule this cannot express (a list or struct column, a type Polars
//! would reject) makes [`CompiledRules::compile`] return `None`: the caller then uses Polars.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use deltalake::arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, TimeUnit};
use polars::prelude::{AnyValue, TimeUnit as PlTimeUnit};
use regex::Regex;

use super::model::{Bound, Limit, RuleKind, TimeBound, Validity};
use super::row::{Cell, Refusal, Row, RowJudge};
use super::{RowFailure, TableExpectations, expr};

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// How a column's values compare, from its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Str,
    Bin,
    Num,
    Bool,
    /// Timestamps in µs (bronze's only unit).
    Micros,
    Date,
}

impl Class {
    fn of(dt: &ArrowType) -> Option<Class> {
        Some(match dt {
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => Class::Str,
            ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => Class::Bin,
            d if d.is_integer() => Class::Num,
            ArrowType::Float32 | ArrowType::Float64 => Class::Num,
            ArrowType::Boolean => Class::Bool,
            ArrowType::Timestamp(TimeUnit::Microsecond, _) => Class::Micros,
            ArrowType::Date32 => Class::Date,
            _ => return None,
        })
    }
}

/// A handful of strings (an enum's values, missing markers), looked up without a call to
/// `memcmp` or a pointer chase per candidate: each is keyed by its length and first byte, kept
/// side by side, so only the candidate that can match is compared in full. Judging runs on
/// every row of every batch.
#[derive(Debug, Default)]
struct Strings {
    keys: Vec<(usize, u8)>,
    values: Vec<String>,
}

impl Strings {
    fn new(values: &[String]) -> Strings {
        Strings {
            keys: values.iter().map(|v| key(v.as_bytes())).collect(),
            values: values.to_vec(),
        }
    }

    #[inline]
    fn contains(&self, s: &str) -> bool {
        let s = s.as_bytes();
        let k = key(s);
        self.keys.iter().zip(&self.values).any(|(vk, v)| {
            *vk == k && {
                let v = v.as_bytes();
                if v.len() > 16 {
                    v == s
                } else {
                    v.iter().zip(s).all(|(a, b)| a == b)
                }
            }
        })
    }
}

#[inline(always)]
fn key(b: &[u8]) -> (usize, u8) {
    (b.len(), b.first().copied().unwrap_or(0))
}

/// What counts as missing besides null.
#[derive(Debug, Default)]
struct Missing {
    strs: Strings,
    /// `""` on a binary column: empty.
    empty: bool,
    nums: Vec<f64>,
}

/// One condition of a validity; all of a rule's must hold.
#[derive(Debug)]
enum Cond {
    Num {
        bound: f64,
        is_min: bool,
        inclusive: bool,
    },
    /// A time bound, resolved against `now` per judge ([`Judge::times`] slot).
    Time {
        slot: usize,
        is_min: bool,
        inclusive: bool,
    },
    StrIn(Strings),
    NumIn(Vec<f64>),
    Regex(Regex),
    MinLen(u32),
    MaxLen(u32),
}

#[derive(Debug)]
struct Compiled {
    /// Column index in the row's schema; `None` when the schema lacks it (then it reads as a
    /// null string column, as the Polars evaluator sees it).
    column: Option<usize>,
    class: Class,
    /// The column's type, for writing out the value found.
    dtype: ArrowType,
    missing: Missing,
    /// `None`: a `missing` rule. `Some`: an `invalid` rule's conditions.
    conds: Option<Vec<Cond>>,
    required: bool,
    name: String,
    category: String,
    describe: String,
}

/// A table's row rules compiled against one schema (the bronze decoder's).
#[derive(Debug)]
pub struct CompiledRules {
    rules: Vec<Compiled>,
    /// The time bounds, resolved per judge.
    times: Vec<(TimeBound, Class)>,
}

impl CompiledRules {
    /// Compiles `t`'s row rules for rows of `schema`; `None` when one of them is beyond this
    /// evaluator (or would be an error in the Polars one, which then reports it).
    pub fn compile(t: &TableExpectations, schema: &ArrowSchema) -> Option<CompiledRules> {
        let mut out = CompiledRules {
            rules: Vec::with_capacity(t.rules.len()),
            times: Vec::new(),
        };
        for r in &t.rules {
            let (column, dtype) = match schema.index_of(&r.column) {
                Ok(i) => (Some(i), schema.field(i).data_type().clone()),
                Err(_) => (None, ArrowType::Utf8),
            };
            let class = Class::of(&dtype)?;
            let missing = compile_missing(class, &r.missing_values)?;
            let conds = match &r.kind {
                RuleKind::Missing => None,
                RuleKind::Invalid(v) => Some(out.compile_validity(class, v)?),
            };
            out.rules.push(Compiled {
                column,
                class,
                dtype,
                missing,
                conds,
                required: t.required.contains(&r.column),
                name: r.name.clone(),
                category: r.category.clone(),
                describe: r.describe(),
            });
        }
        Some(out)
    }

    fn compile_validity(&mut self, class: Class, v: &Validity) -> Option<Vec<Cond>> {
        let mut conds = Vec::new();
        for (bound, is_min) in [(&v.min, true), (&v.max, false)] {
            if let Some(b) = bound {
                conds.push(self.compile_bound(class, b, is_min)?);
            }
        }
        if let Some(values) = &v.values {
            conds.push(match class {
                Class::Str => Cond::StrIn(Strings::new(values)),
                Class::Num => Cond::NumIn(
                    values
                        .iter()
                        .map(|x| x.parse().ok())
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            });
        }
        if let Some(re) = &v.regex {
            if class != Class::Str {
                return None;
            }
            conds.push(Cond::Regex(Regex::new(re).ok()?));
        }
        if v.min_length.is_some() || v.max_length.is_some() {
            if !matches!(class, Class::Str | Class::Bin) {
                return None;
            }
            conds.extend(v.min_length.map(Cond::MinLen));
            conds.extend(v.max_length.map(Cond::MaxLen));
        }
        // An empty validity is an error in the Polars evaluator.
        (!conds.is_empty()).then_some(conds)
    }

    fn compile_bound(&mut self, class: Class, b: &Bound, is_min: bool) -> Option<Cond> {
        let inclusive = b.inclusive;
        Some(match (&b.limit, class) {
            (Limit::Number(x), Class::Num) => Cond::Num {
                bound: *x,
                is_min,
                inclusive,
            },
            (Limit::Time(t), Class::Micros | Class::Date) => {
                self.times.push((*t, class));
                Cond::Time {
                    slot: self.times.len() - 1,
                    is_min,
                    inclusive,
                }
            }
            _ => return None,
        })
    }

    /// The rules as of `now` (what `now` in a time bound means).
    pub fn at(&self, now: DateTime<Utc>) -> Judge<'_> {
        let times = self
            .times
            .iter()
            .map(|(t, class)| {
                let t = t.resolve(now);
                let us = t.timestamp() * MICROS_PER_SEC + t.timestamp_subsec_micros() as i64;
                match class {
                    // A date is compared as seconds: its midnight against the bound's second.
                    Class::Date => us.div_euclid(MICROS_PER_SEC),
                    _ => us,
                }
            })
            .collect();
        Judge { rules: self, times }
    }

    /// The failure a refusal stands for: rule, category and `<expectation>, found <value>`.
    pub fn failure(&self, r: &Refusal) -> RowFailure {
        let rule = &self.rules[r.rule];
        RowFailure {
            rule: rule.name.clone(),
            category: rule.category.clone(),
            detail: format!("{}, found {}", rule.describe, r.found),
        }
    }
}

fn compile_missing(class: Class, values: &[String]) -> Option<Missing> {
    let mut m = Missing::default();
    if class == Class::Str {
        m.strs = Strings::new(values);
        return Some(m);
    }
    for v in values {
        match class {
            Class::Bin if v.is_empty() => m.empty = true,
            Class::Num => m.nums.push(v.parse().ok()?),
            _ => return None,
        }
    }
    Some(m)
}

/// Compiled rules with their time bounds resolved: what the decoder calls per row.
pub struct Judge<'a> {
    rules: &'a CompiledRules,
    /// Per time bound: µs since the epoch (timestamp columns) or seconds (date columns).
    times: Vec<i64>,
}

impl RowJudge for Judge<'_> {
    fn judge(&self, row: &dyn Row) -> Option<Refusal> {
        for (i, r) in self.rules.rules.iter().enumerate() {
            let cell = match r.column {
                Some(c) => row.cell(c),
                None => Cell::Null,
            };
            let missing = is_missing(&r.missing, cell);
            let fails = match &r.conds {
                None => missing,
                // A missing value (null included) fails only a required column's rule; a
                // present one fails when a condition does not hold.
                Some(_) if missing => r.required,
                Some(conds) => !conds.iter().all(|c| self.holds(c, r.class, cell)),
            };
            if fails {
                return Some(Refusal {
                    rule: i,
                    found: expr::show(&any_value(cell, &r.dtype)),
                });
            }
        }
        None
    }
}

impl Judge<'_> {
    /// Whether the (non-null) `cell` meets `c`.
    fn holds(&self, c: &Cond, class: Class, cell: Cell<'_>) -> bool {
        match c {
            Cond::Num {
                bound,
                is_min,
                inclusive,
            } => number(cell).is_some_and(|x| compare(tot_cmp(x, *bound), *is_min, *inclusive)),
            Cond::Time {
                slot,
                is_min,
                inclusive,
            } => {
                let v = match (class, cell) {
                    (Class::Micros, Cell::Micros(us)) => us,
                    (Class::Date, Cell::Date(d)) => i64::from(d) * SECS_PER_DAY,
                    _ => return false,
                };
                compare(v.cmp(&self.times[*slot]), *is_min, *inclusive)
            }
            Cond::StrIn(values) => matches!(cell, Cell::Str(s) if values.contains(s)),
            Cond::NumIn(values) => {
                number(cell).is_some_and(|x| values.iter().any(|v| tot_cmp(x, *v).is_eq()))
            }
            Cond::Regex(re) => matches!(cell, Cell::Str(s) if re.is_match(s)),
            Cond::MinLen(n) => length(cell).is_some_and(|l| l >= u64::from(*n)),
            Cond::MaxLen(n) => length(cell).is_some_and(|l| l <= u64::from(*n)),
        }
    }
}

fn is_missing(m: &Missing, cell: Cell<'_>) -> bool {
    match cell {
        Cell::Null => true,
        Cell::Str(s) => m.strs.contains(s),
        Cell::Bin(b) => m.empty && b.is_empty(),
        Cell::Int(_) | Cell::Float(_) => {
            let x = number(cell).expect("a number");
            m.nums.iter().any(|v| tot_cmp(x, *v).is_eq())
        }
        _ => false,
    }
}

fn number(cell: Cell<'_>) -> Option<f64> {
    match cell {
        Cell::Int(i) => Some(i as f64),
        Cell::Float(x) => Some(x),
        _ => None,
    }
}

/// Characters of a string, bytes of a binary.
fn length(cell: Cell<'_>) -> Option<u64> {
    match cell {
        Cell::Str(s) => Some(s.chars().count() as u64),
        Cell::Bin(b) => Some(b.len() as u64),
        _ => None,
    }
}

/// `value <op> bound`, given `value.cmp(bound)`.
fn compare(o: Ordering, is_min: bool, inclusive: bool) -> bool {
    match (is_min, inclusive) {
        (true, true) => o.is_ge(),
        (true, false) => o.is_gt(),
        (false, true) => o.is_le(),
        (false, false) => o.is_lt(),
    }
}

/// Polars' total order on floats: NaN equals NaN and is above every number; -0 equals 0.
fn tot_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).expect("neither is NaN"),
    }
}

/// The value as Polars holds it for a column of Arrow type `dt`, so that [`expr::show`] writes
/// it exactly as the Polars evaluator's details do.
fn any_value<'a>(cell: Cell<'a>, dt: &ArrowType) -> AnyValue<'a> {
    match cell {
        Cell::Null | Cell::Other | Cell::List(_) => AnyValue::Null,
        Cell::Str(s) => AnyValue::String(s),
        Cell::Bin(b) => AnyValue::Binary(b),
        Cell::Bool(b) => AnyValue::Boolean(b),
        Cell::Micros(us) => AnyValue::Datetime(us, PlTimeUnit::Microseconds, None),
        Cell::Date(d) => AnyValue::Date(d),
        Cell::Float(x) => match dt {
            ArrowType::Float32 => AnyValue::Float32(x as f32),
            _ => AnyValue::Float64(x),
        },
        Cell::Int(i) => match dt {
            ArrowType::Int8 => AnyValue::Int8(i as i8),
            ArrowType::Int16 => AnyValue::Int16(i as i16),
            ArrowType::Int32 => AnyValue::Int32(i as i32),
            ArrowType::UInt8 => AnyValue::UInt8(i as u8),
            ArrowType::UInt16 => AnyValue::UInt16(i as u16),
            ArrowType::UInt32 => AnyValue::UInt32(i as u32),
            ArrowType::UInt64 => AnyValue::UInt64(i as u64),
            _ => AnyValue::Int64(i),
        },
    }
}
