//! Evaluator tests: row rules (first failure, nulls, required columns, `now` arithmetic) and
//! every check kind passing and failing.

use std::path::Path;

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use polars::prelude::*;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 23, 12, 0, 0).unwrap()
}

fn exp(yaml: &str) -> TableExpectations {
    parse_file(Path::new("expectations/t.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A timestamp column (µs, UTC) from optional instants.
fn ts_col(name: &str, v: &[Option<DateTime<Utc>>]) -> Column {
    let raw: Vec<Option<i64>> = v.iter().map(|t| t.map(micros)).collect();
    Series::new(name.into(), raw)
        .cast(&DataType::Datetime(
            TimeUnit::Microseconds,
            Some(polars::prelude::TimeZone::UTC),
        ))
        .unwrap()
        .into_column()
}

fn orders() -> DataFrame {
    let h = |x| Some(now() + TimeDelta::hours(x));
    let mut df = df!(
        "order_id" => [Some("o1"), Some(""), Some("o3"), None, Some("o5"), Some("o5")],
        "amount" => [Some(10.0), Some(5.0), Some(-3.5), Some(2.0), None, Some(7.0)],
        "currency" => [Some("EUR"), Some("USD"), Some("EUR"), Some("XXX"), Some("GBP"), None],
    )
    .unwrap();
    df.with_column(ts_col(
        "event_time",
        &[h(-1), h(-2), h(-30), h(3), h(-5), None],
    ))
    .unwrap();
    df
}

const RULES: &str = r#"
rules:
  - name: order_id_present
    category: MISSING_REQUIRED_FIELD
    missing: order_id
    missing_values: [""]
  - name: amount_positive
    category: VALUE_OUT_OF_RANGE
    invalid: amount
    valid_min_exclusive: 0
  - name: currency_known
    category: INVALID_CURRENCY
    invalid: currency
    valid_values: [EUR, USD, GBP]
  - name: event_time_in_range
    category: TIMESTAMP_OUT_OF_RANGE
    invalid: event_time
    valid_min: 2000-01-01
    valid_max: now + 1h
"#;

#[test]
fn row_rules_report_the_first_failing_rule_with_the_value() {
    let e = exp(RULES);
    let f = e.row_failures(&orders(), now()).unwrap();
    let got: Vec<Option<(&str, &str)>> = f
        .iter()
        .map(|x| x.as_ref().map(|x| (x.rule.as_str(), x.category.as_str())))
        .collect();
    assert_eq!(
        got,
        vec![
            None,
            Some(("order_id_present", "MISSING_REQUIRED_FIELD")),
            Some(("amount_positive", "VALUE_OUT_OF_RANGE")),
            // Null order id: the first rule, though currency and time are bad too.
            Some(("order_id_present", "MISSING_REQUIRED_FIELD")),
            // Null amount, currency and time are not required: the row passes.
            None,
            None,
        ]
    );
    assert_eq!(
        f[2].as_ref().unwrap().detail,
        "amount must be > 0, found -3.5"
    );
    assert_eq!(
        f[1].as_ref().unwrap().detail,
        "order_id must not be null or \"\", found \"\""
    );
}

#[test]
fn failed_rules_lists_every_broken_rule_and_rule_exprs_compose() {
    let e = exp(RULES);
    let all = e.failed_rules(&orders(), now()).unwrap();
    assert_eq!(
        all,
        vec![
            None,
            Some("order_id_present".to_string()),
            Some("amount_positive".to_string()),
            Some("order_id_present,currency_known,event_time_in_range".to_string()),
            None,
            None,
        ]
    );
    // The same rules inside a caller's own lazy plan: keep the rows that break none.
    let exprs = e.rule_exprs(orders().schema(), now()).unwrap();
    assert_eq!(exprs[1].0, "amount_positive");
    let any = exprs
        .into_iter()
        .map(|(_, x)| x)
        .reduce(|a, b| a.or(b))
        .unwrap();
    let clean = orders().lazy().filter(any.not()).collect().unwrap();
    assert_eq!(clean.height(), 3);
}

#[test]
fn now_moves_the_time_bounds() {
    let e = exp(RULES);
    let df = orders().slice(0, 3);
    // Evaluated two hours earlier, the row stamped now-1h is more than an hour in the future.
    let f = e
        .row_failures(&df, now() - TimeDelta::hours(2) - TimeDelta::minutes(1))
        .unwrap();
    assert_eq!(f[0].as_ref().unwrap().rule, "event_time_in_range");
    assert!(
        f[0].as_ref().unwrap().detail.starts_with(
            "event_time must be >= 2000-01-01 and <= now + 1h, found 2025-11-23T11:00:00Z"
        ),
        "{}",
        f[0].as_ref().unwrap().detail
    );
    assert_eq!(f[1].as_ref().unwrap().rule, "order_id_present");
    // At the real now the same row passes.
    assert!(e.row_failures(&df, now()).unwrap()[0].is_none());
}

#[test]
fn a_required_column_makes_invalid_rules_reject_nulls() {
    let yaml = r#"
rules:
  - name: currency_known
    category: INVALID_CURRENCY
    invalid: currency
    valid_values: [EUR]
  - name: currency_present
    category: MISSING_REQUIRED_FIELD
    missing: currency
"#;
    let df = df!("currency" => [Some("EUR"), None, Some("USD")]).unwrap();
    let f = exp(yaml).row_failures(&df, now()).unwrap();
    // The null breaks the validity rule first (file order) because the column is required.
    assert_eq!(f[1].as_ref().unwrap().rule, "currency_known");
    assert_eq!(f[2].as_ref().unwrap().rule, "currency_known");
    assert!(f[0].is_none());
}

#[test]
fn lengths_regexes_binary_and_list_columns() {
    let yaml = r#"
rules:
  - name: key_present
    category: MISSING_REQUIRED_FIELD
    missing: key
    missing_values: [""]
  - name: code_format
    category: INVALID_FORMAT
    invalid: code
    valid_regex: "^[A-Z]{3}$"
  - name: name_short
    category: VALUE_OUT_OF_RANGE
    invalid: name
    max_length: 4
  - name: has_items
    category: VALUE_OUT_OF_RANGE
    invalid: items
    min_length: 1
"#;
    let key = Series::new(
        "key".into(),
        [
            Some(b"k".as_slice()),
            Some(b"".as_slice()),
            None,
            Some(b"k"),
        ],
    );
    let items = Series::new(
        "items".into(),
        [
            Series::new("".into(), [1i32]),
            Series::new("".into(), [1i32]),
            Series::new("".into(), [1i32]),
            Series::new("".into(), Vec::<i32>::new()),
        ],
    );
    let df = DataFrame::new_infer_height(vec![
        key.into_column(),
        Series::new("code".into(), ["ABC", "ABC", "ABC", "abc"]).into_column(),
        Series::new("name".into(), ["abcd", "abcd", "abcd", "abcde"]).into_column(),
        items.into_column(),
    ])
    .unwrap();
    let f = exp(yaml).row_failures(&df, now()).unwrap();
    let rules: Vec<Option<&str>> = f
        .iter()
        .map(|x| x.as_ref().map(|x| x.rule.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            None,
            Some("key_present"),
            Some("key_present"),
            Some("code_format")
        ]
    );
    let df2 = df.slice(3, 1).drop("code").unwrap();
    let yaml2 = yaml.replace("  - name: code_format\n    category: INVALID_FORMAT\n    invalid: code\n    valid_regex: \"^[A-Z]{3}$\"\n", "");
    let f = exp(&yaml2).row_failures(&df2, now()).unwrap();
    assert_eq!(f[0].as_ref().unwrap().rule, "name_short");
    assert_eq!(
        f[0].as_ref().unwrap().detail,
        "name must be of length <= 4, found \"abcde\""
    );
}

#[test]
fn a_rule_on_a_missing_column_is_an_error() {
    let df = df!("x" => [1]).unwrap();
    let err = exp(RULES).row_failures(&df, now()).unwrap_err();
    assert!(err.to_string().contains("needs column `order_id`"), "{err}");
}

const CHECKS: &str = r#"
checks:
  - row_count: "> 0"
  - name: small
    row_count: between 1 and 3
    severity: warn
  - missing_count: order_id
    missing_values: [""]
  - missing_percent: amount
    must_be: "< 20"
  - invalid_count: currency
    valid_values: [EUR, USD, GBP]
  - invalid_percent: amount
    valid_min_exclusive: 0
    must_be: "<= 20"
  - duplicate_count: order_id
  - name: fresh
    freshness: event_time
    must_be: "< 1h"
  - name: fresh_enough
    freshness: event_time
    must_be: "< 1d"
  - name: schema
    schema: {order_id: string, amount: float64, event_time: timestamp, currency: int64, nope: string}
  - name: ids_known
    values_in: order_id
    reference: other.id
  - name: avg_amount
    avg: amount
    must_be: between 1 and 10
  - name: max_amount
    max: amount
    must_be: "< 10"
    severity: warn
  - name: sum_amount
    sum: amount
    must_be: "= 20.5"
  - name: ghost
    missing_count: ghost
"#;

#[test]
fn every_check_kind_measures_and_compares() {
    let mut others = Frames::default();
    others
        .0
        .insert("other".into(), df!("id" => ["o1", "o3", "o5"]).unwrap());
    let r = exp(CHECKS).run_checks(&orders(), &others, now()).unwrap();
    let got: Vec<(&str, Option<f64>, Outcome)> = r
        .iter()
        .map(|c| (c.check.as_str(), c.observed, c.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            ("row_count > 0", Some(6.0), Outcome::Pass),
            ("small", Some(6.0), Outcome::Warn),
            ("missing_count(order_id) = 0", Some(2.0), Outcome::Fail),
            (
                "missing_percent(amount) < 20",
                Some(100.0 / 6.0),
                Outcome::Pass
            ),
            ("invalid_count(currency) = 0", Some(1.0), Outcome::Fail),
            (
                "invalid_percent(amount) <= 20",
                Some(100.0 / 6.0),
                Outcome::Pass
            ),
            ("duplicate_count(order_id) = 0", Some(1.0), Outcome::Fail),
            // Newest event_time is now+3h: lag -3h, fresh.
            ("fresh", Some(-3.0 * 3600.0), Outcome::Pass),
            ("fresh_enough", Some(-3.0 * 3600.0), Outcome::Pass),
            ("schema", Some(2.0), Outcome::Fail),
            // "" is not in the reference; nulls are ignored.
            ("ids_known", Some(1.0), Outcome::Fail),
            ("avg_amount", Some(20.5 / 5.0), Outcome::Pass),
            ("max_amount", Some(10.0), Outcome::Warn),
            ("sum_amount", Some(20.5), Outcome::Pass),
            ("ghost", None, Outcome::Error),
        ]
    );
    assert_eq!(
        r[4].detail,
        "1 of 6 rows break `currency must be one of EUR, USD, GBP` (e.g. \"XXX\"); must be = 0"
    );
    assert_eq!(
        r[9].detail,
        "`currency` is str, expected int64; `nope` is missing; must be = 0"
    );
    assert!(
        r[14].detail.contains("column `ghost` does not exist"),
        "{}",
        r[14].detail
    );
    let g = gate(&exp(CHECKS), &orders(), &others, now()).unwrap();
    assert!(!g.passed());
    assert_eq!(g.counts(), (7, 2, 5, 1));
}

#[test]
fn freshness_uses_the_injected_clock() {
    let yaml = "checks:\n  - freshness: event_time\n    must_be: \"< 1d\"\n";
    let df = orders().slice(0, 3); // newest: now - 1h
    let e = exp(yaml);
    let at = |t| e.run_checks(&df, &Frames::default(), t).unwrap().remove(0);
    let r = at(now());
    assert_eq!((r.observed, r.outcome), (Some(3600.0), Outcome::Pass));
    let r = at(now() + TimeDelta::days(2));
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.observed, Some(3600.0 + 2.0 * 86400.0));
    // No values at all: nothing is fresh.
    let r = at(now());
    assert_eq!(r.outcome, Outcome::Pass);
    let empty = df.slice(0, 0);
    let r = e
        .run_checks(&empty, &Frames::default(), now())
        .unwrap()
        .remove(0);
    assert_eq!((r.observed, r.outcome), (None, Outcome::Fail));
}

#[test]
fn values_in_a_missing_table_is_an_error_that_blocks() {
    let yaml = "checks:\n  - values_in: order_id\n    reference: nowhere.id\n";
    let r = exp(yaml)
        .run_checks(&orders(), &Frames::default(), now())
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Error);
    assert!(r[0].blocks());
    assert_eq!(r[0].detail, "reference table `nowhere` does not exist");
}

#[test]
fn passing_checks_let_the_gate_through() {
    let yaml = r#"
checks:
  - row_count: "> 0"
  - invalid_count: amount
    valid_min: 0
    severity: warn
  - name: dates
    invalid_count: day
    valid_min: 2025-11-01
    valid_max: now
"#;
    let df = df!("amount" => [1.0, -1.0], "day" => [20_400i32, 20_415]).unwrap();
    let mut df = df;
    df.with_column(df.column("day").unwrap().cast(&DataType::Date).unwrap())
        .unwrap();
    let g = gate(&exp(yaml), &df, &Frames::default(), now()).unwrap();
    // 2025-11-08 and 2025-11-23: both in range; the negative amount only warns.
    assert!(g.passed(), "{:?}", g.results);
    assert_eq!(g.counts(), (2, 1, 0, 0));
    // A day later than now (2025-11-23 12:00) is out of range: 2025-11-24 > now.
    let df2 = df!("amount" => [1.0], "day" => [20_416i32]).unwrap();
    let mut df2 = df2;
    df2.with_column(df2.column("day").unwrap().cast(&DataType::Date).unwrap())
        .unwrap();
    let g = gate(&exp(yaml), &df2, &Frames::default(), now()).unwrap();
    assert!(!g.passed());
    assert_eq!(g.blocking().next().unwrap().check, "dates");
}

#[test]
fn row_rules_keep_up_with_ingest() {
    // 200k rows through the bronze-style rules, well within the ingest budget even unoptimised.
    let n = 200_000;
    let df = df!(
        "order_id" => (0..n).map(|i| format!("o{i}")).collect::<Vec<_>>(),
        "amount" => (0..n).map(|i| if i % 50 == 0 { -1.0 } else { 9.5 }).collect::<Vec<_>>(),
        "currency" => (0..n).map(|i| if i % 70 == 0 { "XXX" } else { "EUR" }).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut df = df;
    df.with_column(ts_col("event_time", &vec![Some(now()); n]))
        .unwrap();
    let start = std::time::Instant::now();
    let f = exp(RULES).row_failures(&df, now()).unwrap();
    let took = start.elapsed();
    assert_eq!(
        f.iter().filter(|x| x.is_some()).count(),
        n / 50 + n / 70 - n / 350
    );
    assert!(took.as_secs_f64() < 2.0, "{took:?} for {n} rows");
}

/// What a gate would conclude from a table's checks (the gate itself is `crate::wap`).
struct Gate {
    results: Vec<CheckResult>,
}

impl Gate {
    fn passed(&self) -> bool {
        !self.results.iter().any(CheckResult::blocks)
    }

    fn blocking(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.blocks())
    }

    /// (pass, warn, fail, error).
    fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |o| self.results.iter().filter(|r| r.outcome == o).count();
        (
            n(Outcome::Pass),
            n(Outcome::Warn),
            n(Outcome::Fail),
            n(Outcome::Error),
        )
    }
}

fn gate(
    exp: &TableExpectations,
    df: &DataFrame,
    others: &dyn TableSource,
    now: DateTime<Utc>,
) -> Result<Gate, QualityError> {
    Ok(Gate {
        results: exp.run_checks(df, others, now)?,
    })
}
