//! One entry of `rules:` or `checks:` → a validated [`Rule`] or [`Check`]. Every problem of the
//! entry is reported (unknown keys, bad values, missing parts), none stops the others.

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use super::domains::Domains;
use super::model::{Check, Metric, Rule, RuleKind, Severity, Stat, TypeName, Validity};
use super::parse::{Ctx, column, line_of, sline};
use super::values::{ValidityBuilder, parse_threshold};

pub(super) const VALIDITY_KEYS: &[&str] = &[
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

pub(super) fn parse_rule(
    cx: &mut Ctx,
    domains: &Domains,
    m: &MarkedMappingNode,
    line: usize,
) -> Option<Rule> {
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
                target = column(cx, v, key).map(|c| (key == "missing", c));
            }
            "missing_values" => {
                missing_values = cx.string_list(v, "`missing_values`").unwrap_or_default()
            }
            key if VALIDITY_KEYS.contains(&key) => validity.add(cx, domains, k, v),
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
    let (validity, any_validity) = validity.finish(cx, line);
    let kind = if is_missing {
        if any_validity {
            cx.err(
                line,
                "a `missing` rule takes no valid_* keys (write a separate `invalid` rule)",
            );
        }
        RuleKind::Missing
    } else {
        if !any_validity {
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

/// The keys of one check entry, read but not yet judged together.
struct CheckKeys<'n> {
    metric: (&'n MarkedScalarNode, &'n Node),
    name: Option<String>,
    severity: Severity,
    must_be: Option<&'n MarkedScalarNode>,
    reference: Option<&'n MarkedScalarNode>,
    missing_values: Vec<String>,
    validity: ValidityBuilder,
}

pub(super) fn parse_check(
    cx: &mut Ctx,
    domains: &Domains,
    m: &MarkedMappingNode,
    line: usize,
) -> Option<Check> {
    let before = cx.errors.len();
    let keys = read_check_keys(cx, domains, m, line)?;
    if cx.errors.len() > before {
        // Two metrics in one entry, or a bad key: what follows would only pile on.
        return None;
    }
    let (mk, mv) = keys.metric;
    let kind = mk.as_str();
    let (validity, any_validity) = keys.validity.finish(cx, line);
    let takes_validity = matches!(kind, "invalid_count" | "invalid_percent");
    if takes_validity && !any_validity {
        cx.err(
            sline(mk),
            format!("`{kind}` needs at least one valid_* key saying what is valid"),
        );
    }
    if !takes_validity && any_validity {
        cx.err(
            line,
            format!("valid_* keys only apply to invalid_count / invalid_percent, not `{kind}`"),
        );
    }
    if !keys.missing_values.is_empty()
        && !matches!(
            kind,
            "missing_count" | "missing_percent" | "invalid_count" | "invalid_percent"
        )
    {
        cx.err(line, format!("`missing_values` does not apply to `{kind}`"));
    }
    if keys.reference.is_some() && kind != "values_in" {
        cx.err(line, "`reference` only applies to `values_in`");
    }
    let mut must_be = keys.must_be;
    if kind == "row_count" {
        if must_be.is_some() {
            cx.err(
                line,
                "`row_count` takes its threshold directly: `row_count: \"> 0\"`",
            );
        }
        must_be = cx.scalar(mv, "`row_count` (a threshold such as \"> 0\")");
    }
    let (metric, default_threshold, default_name) = check_metric(
        cx,
        keys.metric,
        line,
        keys.missing_values,
        validity,
        keys.reference,
    )?;
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
    let name = keys
        .name
        .unwrap_or_else(|| format!("{default_name} {threshold_text}"));
    Some(Check {
        name,
        metric,
        threshold: threshold?,
        threshold_text,
        severity: keys.severity,
        line,
    })
}

/// Reads every key of a check entry; None (with the error) when it names no metric.
fn read_check_keys<'n>(
    cx: &mut Ctx,
    domains: &Domains,
    m: &'n MarkedMappingNode,
    line: usize,
) -> Option<CheckKeys<'n>> {
    let mut metric: Option<(&MarkedScalarNode, &Node)> = None;
    let (mut name, mut severity, mut must_be, mut reference) = (None, Severity::Fail, None, None);
    let mut missing_values = Vec::new();
    let mut validity = ValidityBuilder::default();
    for (k, v) in m.iter() {
        match k.as_str() {
            key if CHECK_METRICS.contains(&key) => {
                if let Some((first, _)) = metric {
                    cx.err(
                        sline(k),
                        format!(
                            "a check measures one thing: `{}` and `{key}` in one entry",
                            first.as_str()
                        ),
                    );
                }
                metric = Some((k, v));
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
            key if VALIDITY_KEYS.contains(&key) => validity.add(cx, domains, k, v),
            _ => unknown_key(cx, k, "check", &[CHECK_METRICS, CHECK_KEYS, VALIDITY_KEYS]),
        }
    }
    let Some(metric) = metric else {
        cx.err(
            line,
            format!("a check needs one of {}", CHECK_METRICS.join(", ")),
        );
        return None;
    };
    Some(CheckKeys {
        metric,
        name,
        severity,
        must_be,
        reference,
        missing_values,
        validity,
    })
}

/// The metric a check entry measures, its default threshold and its default name.
fn check_metric(
    cx: &mut Ctx,
    (mk, mv): (&MarkedScalarNode, &Node),
    line: usize,
    missing_values: Vec<String>,
    validity: Validity,
    reference: Option<&MarkedScalarNode>,
) -> Option<(Metric, Option<&'static str>, String)> {
    let kind = mk.as_str();
    let col = |cx: &mut Ctx| column(cx, mv, kind);
    Some(match kind {
        "row_count" => (Metric::RowCount, None, "row_count".to_string()),
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
        "schema" => (schema_metric(cx, mv)?, Some("= 0"), "schema".to_string()),
        "values_in" => {
            let column = col(cx)?;
            let (metric, r) = values_in_metric(cx, column.clone(), reference, line)?;
            (metric, Some("= 0"), format!("values_in({column}, {r})"))
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
    })
}

/// `schema: {column: type, ...}`.
fn schema_metric(cx: &mut Ctx, mv: &Node) -> Option<Metric> {
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
    Some(Metric::Schema { columns })
}

/// `values_in: column` with `reference: TABLE.COLUMN`; also returns the reference as written.
fn values_in_metric<'r>(
    cx: &mut Ctx,
    column: String,
    reference: Option<&'r MarkedScalarNode>,
    line: usize,
) -> Option<(Metric, &'r str)> {
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
    let metric = Metric::ValuesIn {
        column,
        table: table.to_string(),
        ref_column: ref_column.to_string(),
    };
    Some((metric, r.as_str()))
}
