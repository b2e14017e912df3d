//! The compiled row rules ([`super::CompiledRules`]) against the Polars evaluator, the
//! reference: same verdict, rule and detail on every row, for the shipped bronze files on
//! decoded events with every fault kind, and for hand-made rows at the edges (nulls, empty
//! values, bounds, NaN and -0, time bounds on timestamps and dates, regexes, lengths,
//! required columns, a column the rows lack).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone as _, Utc};
use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use polars::prelude::{DataType as PlType, IntoColumn, Series};

use super::row::{BatchRow, RowJudge};
use super::{CompiledRules, TableExpectations, parse_file};
use crate::lake::batches_to_df;

/// Every row of `batch` judged both ways; returns how many rows broke a rule.
fn agree(t: &TableExpectations, batch: &RecordBatch, now: DateTime<Utc>) -> usize {
    let compiled = CompiledRules::compile(t, &batch.schema())
        .unwrap_or_else(|| panic!("{}: the rules compile", t.name()));
    let judge = compiled.at(now);
    let mut df = batches_to_df(&batch.schema(), std::slice::from_ref(batch)).unwrap();
    // As the ingest hands rules a column its rows lack: all null strings.
    let reference = loop {
        match t.row_failures(&df, now) {
            Err(super::QualityError::MissingColumn { column, .. }) => {
                let nulls = Series::full_null(column.as_str().into(), df.height(), &PlType::String);
                df.with_column(nulls.into_column()).unwrap();
            }
            other => break other.unwrap(),
        }
    };
    let mut broken = 0;
    for (row, want) in reference.iter().enumerate() {
        let got = judge
            .judge(&BatchRow { batch, row })
            .map(|r| compiled.failure(&r));
        assert_eq!(
            got.as_ref().map(|f| (&f.rule, &f.category, &f.detail)),
            want.as_ref().map(|f| (&f.rule, &f.category, &f.detail)),
            "{}: row {row}",
            t.name()
        );
        broken += usize::from(want.is_some());
    }
    broken
}

#[test]
fn the_shipped_bronze_rules_judge_decoded_events_like_polars() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let set = super::load_dir(&dir).unwrap();
    let now = DateTime::<Utc>::from_timestamp_millis(super::bronze_agree::T0).unwrap();
    for case in super::bronze_agree::cases() {
        let t = set.table(case.table).unwrap();
        let (_, out, _) = super::bronze_agree::decode_case(&case);
        let broken = agree(t, &out.batch.unwrap(), now);
        assert!(
            broken > 100,
            "{}: only {broken} rows broke a rule",
            case.table
        );
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 23, 12, 0, 0).unwrap()
}

fn col(name: &str, dt: DataType, a: ArrayRef) -> (Field, ArrayRef) {
    (Field::new(name, dt, true), a)
}

#[test]
fn edge_values_are_judged_like_polars() {
    let us = |h: i64| now().timestamp_micros() + h * 3_600_000_000;
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let day = (now().timestamp() / 86_400) as i32;
    let n = 12;
    let cols = vec![
        col(
            "id",
            DataType::Utf8,
            Arc::new(StringArray::from(vec![
                Some("a-1"),
                Some(""),
                None,
                Some("b-22"),
                Some("ünï"),
                Some("x"),
                Some("a-1"),
                Some("toolongvalue-123456789"),
                Some("c-3"),
                Some("a-"),
                Some(" "),
                Some("d-4"),
            ])),
        ),
        col(
            "key",
            DataType::Binary,
            Arc::new(BinaryArray::from(vec![
                Some(b"k".as_slice()),
                Some(b"".as_slice()),
                None,
                Some(b"kk".as_slice()),
                Some(b"k".as_slice()),
                Some(b"".as_slice()),
                Some(b"k".as_slice()),
                None,
                Some(b"k".as_slice()),
                Some(b"k".as_slice()),
                Some(b"k".as_slice()),
                Some(b"k".as_slice()),
            ])),
        ),
        col(
            "amount",
            DataType::Float64,
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(0.0),
                Some(-0.0),
                Some(f64::NAN),
                None,
                Some(-3.5),
                Some(5000.0),
                Some(5000.5),
                Some(1e-300),
                Some(f64::INFINITY),
                Some(-1.0),
                Some(42.0),
            ])),
        ),
        col(
            "qty",
            DataType::Int32,
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(0),
                Some(-1),
                None,
                Some(7),
                Some(99),
                Some(3),
                Some(1),
                Some(2),
                Some(0),
                Some(5),
                Some(6),
            ])),
        ),
        col(
            "code",
            DataType::Utf8,
            Arc::new(StringArray::from(vec![
                Some("EUR"),
                Some("eur"),
                Some("USD"),
                None,
                Some("EURO"),
                Some(""),
                Some("GBP"),
                Some("JPY"),
                Some("CHF"),
                Some("E"),
                Some("USD "),
                Some("GBP"),
            ])),
        ),
        col(
            "at",
            ts.clone(),
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(us(-1)),
                    Some(us(2)),
                    Some(us(1)),
                    None,
                    Some(us(1) + 1),
                    Some(0),
                    Some(us(-24 * 365 * 30)),
                    Some(us(0)),
                    Some(us(-1)),
                    Some(us(-2)),
                    Some(us(-3)),
                    Some(us(-4)),
                ])
                .with_timezone("UTC"),
            ),
        ),
        col(
            "on",
            DataType::Date32,
            Arc::new(Date32Array::from(vec![
                Some(day),
                Some(day + 1),
                Some(day - 1),
                None,
                Some(10_957),
                Some(10_956),
                Some(day),
                Some(day),
                Some(day),
                Some(day),
                Some(day),
                Some(day),
            ])),
        ),
        col(
            "big",
            DataType::Int64,
            Arc::new(Int64Array::from_iter(
                (0..n as i64).map(|i| Some(if i % 2 == 0 { (1 << 60) + i } else { i })),
            )),
        ),
    ];
    let schema = Arc::new(Schema::new(
        cols.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let files = [
        // File order decides which rule a row is refused by.
        r#"
rules:
  - {name: id_present, category: MISSING_REQUIRED_FIELD, missing: id, missing_values: [""]}
  - {name: key_present, category: MISSING_REQUIRED_FIELD, missing: key, missing_values: [""]}
  - {name: amount_positive, category: VALUE_OUT_OF_RANGE, invalid: amount, valid_min_exclusive: 0}
  - {name: amount_small, category: VALUE_OUT_OF_RANGE, invalid: amount, valid_max: 5000}
  - {name: code_known, category: INVALID_CURRENCY, invalid: code, valid_values: [EUR, USD, GBP, CHF, JPY]}
  - {name: at_range, category: TIMESTAMP_OUT_OF_RANGE, invalid: at, valid_min: 2000-01-01, valid_max: now + 1h}
"#,
        // Every rule alone, so each is judged on every row (not just the rows earlier rules
        // let through); `code` required by a missing rule.
        r#"
rules:
  - {name: code_there, category: MISSING_REQUIRED_FIELD, missing: code}
  - {name: code_in, category: INVALID_ENUM, invalid: code, valid_values: [EUR, USD]}
"#,
        r#"
rules:
  - {name: id_shape, category: INVALID_FORMAT, invalid: id, valid_regex: "^[a-z]-[0-9]+$"}
"#,
        r#"
rules:
  - {name: id_len, category: INVALID_FORMAT, invalid: id, min_length: 2, max_length: 4}
"#,
        r#"
rules:
  - {name: key_len, category: INVALID_FORMAT, invalid: key, valid_length: 1}
"#,
        r#"
rules:
  - {name: qty_range, category: VALUE_OUT_OF_RANGE, invalid: qty, valid_min: 1, valid_max_exclusive: 7}
"#,
        r#"
rules:
  - {name: qty_in, category: INVALID_ENUM, invalid: qty, valid_values: ["1", "2", "3"]}
"#,
        r#"
rules:
  - {name: qty_not_zero, category: MISSING_REQUIRED_FIELD, missing: qty, missing_values: ["0"]}
"#,
        r#"
rules:
  - {name: amount_nan_or_zero, category: MISSING_REQUIRED_FIELD, missing: amount, missing_values: ["0", "NaN"]}
"#,
        r#"
rules:
  - {name: amount_in, category: INVALID_ENUM, invalid: amount, valid_values: ["1", "0", "NaN"]}
"#,
        r#"
rules:
  - {name: amount_min_incl, category: VALUE_OUT_OF_RANGE, invalid: amount, valid_min: 0}
"#,
        r#"
rules:
  - {name: on_range, category: TIMESTAMP_OUT_OF_RANGE, invalid: on, valid_min: 2000-01-01, valid_max: now - 1d}
"#,
        r#"
rules:
  - {name: at_after, category: TIMESTAMP_OUT_OF_RANGE, invalid: at, valid_min_exclusive: now - 2h}
"#,
        r#"
rules:
  - {name: big_small, category: VALUE_OUT_OF_RANGE, invalid: big, valid_max: 1000}
"#,
        // A column the rows lack reads as nulls.
        r#"
rules:
  - {name: ghost_there, category: MISSING_REQUIRED_FIELD, missing: ghost}
"#,
        r#"
rules:
  - {name: ghost_valid, category: INVALID_ENUM, invalid: ghost, valid_values: [a]}
"#,
    ];
    for (k, yaml) in files.iter().enumerate() {
        let t = parse_file(Path::new(&format!("expectations/edge{k}.yaml")), yaml)
            .unwrap_or_else(|e| panic!("file {k}: {e}"));
        let broken = agree(&t, &batch, now());
        // Every rule both lets rows through and refuses some, except the absent column's:
        // all missing, so all refused by `missing`, all let through by `invalid`.
        let want_some = match k {
            14 => broken == n,
            15 => broken == 0,
            _ => broken > 0 && broken < n,
        };
        assert!(want_some, "file {k}: {broken} of {n} rows broke a rule");
    }
}

#[test]
fn rules_beyond_the_compiler_say_so() {
    let schema = Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new(
            "items",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
    ]);
    let t = |yaml: &str| parse_file(Path::new("expectations/t.yaml"), yaml).unwrap();
    // A list column, and a number bound on a string-typed (absent) column: Polars' business.
    for yaml in [
        "rules:\n  - {name: r, category: C, invalid: items, min_length: 1}\n",
        "rules:\n  - {name: r, category: C, invalid: ghost, valid_min: 1}\n",
    ] {
        assert!(
            CompiledRules::compile(&t(yaml), &schema).is_none(),
            "{yaml}"
        );
    }
    let ok = "rules:\n  - {name: r, category: C, invalid: n, valid_min: 1}\n";
    assert!(CompiledRules::compile(&t(ok), &schema).is_some());
}
