//! Parser tests: values, the `file:line: reason` errors of malformed files, and the shipped
//! expectation files.

use std::path::Path;

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};

use super::model::TimeBound;
use super::values::{parse_threshold, parse_time_bound};
use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 23, 12, 0, 0).unwrap()
}

fn errors(yaml: &str) -> Vec<String> {
    parse_file(Path::new("expectations/t.yaml"), yaml)
        .expect_err("the file is malformed")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn time_bounds_and_thresholds_parse() {
    assert_eq!(
        parse_time_bound("now").unwrap(),
        TimeBound::Now(TimeDelta::zero())
    );
    assert_eq!(
        parse_time_bound("now + 1h").unwrap(),
        TimeBound::Now(TimeDelta::hours(1))
    );
    assert_eq!(
        parse_time_bound("now-30d").unwrap(),
        TimeBound::Now(TimeDelta::days(-30))
    );
    assert_eq!(
        parse_time_bound("now - 30d").unwrap().resolve(now()),
        Utc.with_ymd_and_hms(2025, 10, 24, 12, 0, 0).unwrap()
    );
    assert_eq!(
        parse_time_bound("2000-01-01").unwrap(),
        TimeBound::Fixed(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        parse_time_bound("2024-05-01T12:00:00+02:00").unwrap(),
        TimeBound::Fixed(Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap())
    );
    assert!(parse_time_bound("now * 2").is_err());
    assert!(parse_time_bound("yesterday").is_err());
    let t = parse_threshold("between 1 and 10", false).unwrap();
    assert!(t.holds(1.0) && t.holds(10.0) && !t.holds(10.5));
    let t = parse_threshold("not between 0 and 1", false).unwrap();
    assert!(t.holds(2.0) && !t.holds(0.5));
    assert!(parse_threshold("< 1d", true).unwrap().holds(86_399.0));
    assert!(!parse_threshold("< 1d", true).unwrap().holds(86_400.0));
    assert!(parse_threshold(">= 0", false).unwrap().holds(0.0));
    assert!(parse_threshold("!= 0", false).unwrap().holds(1.0));
    assert!(parse_threshold("about 5", false).is_err());
    assert!(parse_threshold("between 5 and 1", false).is_err());
}

#[test]
fn malformed_files_report_every_problem_with_its_line() {
    let yaml = r#"table: t
rules:
  - name: r1
    missing: a
  - name: r2
    category: BAD_VALUE
    invalid: b
    valid_regex: "([a-z"
    colour: red
checks:
  - row_count: "about 5"
  - missing_count: c
    severity: maybe
  - invalid_count: d
    valid_min: yesterday
  - missing_count: e
    freshness: f
  - values_in: g
    reference: nodot
"#;
    assert_eq!(
        errors(yaml),
        vec![
            "expectations/t.yaml:3: a rule needs a `category` (e.g. MISSING_REQUIRED_FIELD, INVALID_ENUM)",
            "expectations/t.yaml:8: `valid_regex` does not compile: error: unclosed character class",
            "expectations/t.yaml:9: unknown key `colour` in a rule (expected one of name, category, description, missing, invalid, missing_values, valid_min, valid_max, valid_min_exclusive, valid_max_exclusive, valid_values, valid_regex, valid_length, min_length, max_length)",
            "expectations/t.yaml:11: threshold `about 5`: no comparison operator (expected e.g. \"> 0\", \"between 1 and 10\")",
            "expectations/t.yaml:13: severity `maybe` must be `warn` or `fail`",
            "expectations/t.yaml:15: `valid_min`: `yesterday` is neither a number nor a time (e.g. 2000-01-01, 2024-05-01T12:00:00Z, now - 30d)",
            "expectations/t.yaml:17: a check measures one thing: `missing_count` and `freshness` in one entry",
            "expectations/t.yaml:19: reference `nodot` must be TABLE.COLUMN",
        ]
    );
}

#[test]
fn malformed_yaml_duplicates_and_mismatched_names_are_located() {
    assert_eq!(
        errors("checks:\n  - row_count: \"> 0\"\n    name: [unclosed\n"),
        vec![
            "expectations/t.yaml:4: malformed YAML: while parsing a flow sequence, expected ',' or ']' at byte 49 line 4 column 1"
        ]
    );
    assert_eq!(
        errors("checks:\n  - row_count: \"> 0\"\n    row_count: \"> 1\"\n"),
        vec!["expectations/t.yaml:3: duplicate key `row_count` (first at line 2)"]
    );
    assert_eq!(
        errors("table: other\nchecks:\n  - row_count: \"> 0\"\n"),
        vec!["expectations/t.yaml:1: `table: other` does not match the file name (expected `t`)"]
    );
    assert_eq!(
        errors("checks:\n  - row_count: \"> 0\"\n  - row_count: \"> 0\"\n"),
        vec![
            "expectations/t.yaml:3: duplicate check name `row_count > 0` (give one of them a `name:`)"
        ]
    );
    assert_eq!(
        errors("checks:\n  - freshness: ts\n"),
        vec![
            "expectations/t.yaml:2: `freshness` needs `must_be:` (e.g. \"< 5\", \"between 1 and 10\", \"< 1d\")"
        ]
    );
    assert_eq!(
        errors("rules:\n  - name: r\n    category: C\n    invalid: x\n"),
        vec![
            "expectations/t.yaml:2: an `invalid` rule needs at least one of valid_min, valid_max, valid_values, valid_regex, valid_length, min_length, max_length"
        ]
    );
    assert_eq!(
        errors("checks:\n  - invalid_count: x\n    valid_min: 5\n    valid_max: 1\n"),
        vec!["expectations/t.yaml:2: the range is empty: min 5 > max 1"]
    );
    assert_eq!(
        errors("- a\n- b\n"),
        vec!["expectations/t.yaml:1: the top level must be a mapping (table:, rules:, checks:)"]
    );
}

#[test]
fn load_dir_checks_references_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "checks:\n  - row_count: \"> 0\"\n  - values_in: x\n    reference: b.x\n  - values_in: x\n    reference: c.x\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "checks:\n  - row_count: \"> 0\"\n",
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].line, 5);
    assert!(e.0[0].message.contains("refers to table `c`"), "{e}");
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(
        set.tables().map(|t| t.name()).collect::<Vec<_>>(),
        vec!["b"]
    );
    assert_eq!(set.table("b").unwrap().check_count(), 1);
}

/// The shipped files: every table of docs/tables.md, at least 60 rules and checks, and the bronze
/// rules in the order and categories the ingest contract uses.
#[test]
fn the_shipped_expectations_cover_every_table() {
    let set = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations")).unwrap();
    let tables: Vec<&str> = set.tables().map(|t| t.name()).collect();
    for t in [
        "bronze_orders",
        "bronze_clickstream",
        "bronze_payments",
        "bronze_dlq_audit",
        "silver_orders",
        "silver_order_items",
        "silver_clickstream",
        "silver_payments",
        "silver_quarantine",
        "gold_daily_revenue",
        "gold_payment_success_rate",
        "gold_campaign_engagement",
        "gold_pipeline_health",
    ] {
        assert!(tables.contains(&t), "{t} missing from {tables:?}");
    }
    assert!(set.total_count() >= 60, "{}", set.total_count());
    let rules: Vec<&str> = set.table("bronze_orders").unwrap().rule_names().collect();
    assert_eq!(
        rules,
        vec![
            "order_id_present",
            "kafka_key_present",
            "amount_positive",
            "currency_known",
            "status_known",
            "channel_known",
            "event_time_in_range"
        ]
    );
}

/// Issue 19: one source for each value list. `valid_values: {domain: NAME}` takes the list of
/// `domains.yaml`; an unknown name or a bad domains file is reported with its line.
#[test]
fn valid_values_can_name_a_domain_of_domains_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("domains.yaml"),
        "currencies: [EUR, USD]\ncolours: []\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "rules:\n  - name: c\n    category: INVALID_CURRENCY\n    invalid: currency\n    valid_values: {domain: currencies}\nchecks:\n  - invalid_count: currency\n    valid_values: {domain: currency}\n",
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("domains.yaml:2: domain `colours` is empty"),
        "{e}"
    );
    assert!(
        e.contains("t.yaml:8: unknown domain `currency` (domains.yaml beside this file defines: colours, currencies)"),
        "{e}"
    );
    std::fs::write(dir.path().join("domains.yaml"), "currencies: [EUR, USD]\n").unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "rules:\n  - name: c\n    category: INVALID_CURRENCY\n    invalid: currency\n    valid_values: {domain: currencies}\n",
    )
    .unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.tables().count(), 1, "domains.yaml is not a table");
    let t = set.table("t").unwrap();
    let df = polars::prelude::df!("currency" => ["EUR", "GBP", "USD"]).unwrap();
    let failures = t.row_failures(&df, chrono::Utc::now()).unwrap();
    assert_eq!(
        failures.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![false, true, false]
    );
}
