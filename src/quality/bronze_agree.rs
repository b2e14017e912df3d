//! The bronze row rules in `expectations/` and `contracts::inspect` (the per-record validator)
//! are two statements of the same ingest business rules. This proves they agree: generated
//! events with every fault kind go through the real encoding, framing and bronze decoder; the
//! rules must reject exactly the decoded rows `inspect` rejects, with the matching category.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::contracts::domain::{EventKind, Fault};
use crate::contracts::encode::encode;
use crate::contracts::generate::{GenConfig, Generator, SchemaVersion};
use crate::contracts::produce::frame;
use crate::contracts::schema::{ParsedSchema, builtin};
use crate::contracts::wire::SchemaId;
use crate::ingest::decode::{BronzeDecoder, KafkaRecord};
use crate::lake::batches_to_df;
use crate::support::inspect::inspect;

pub(super) const T0: i64 = 1_763_900_000_000; // 2025-11-23T12:13:20Z

/// The DLQ category each record-level fault must end up in.
fn category(f: Fault) -> Option<&'static str> {
    Some(match f {
        Fault::NullKey => "MISSING_REQUIRED_FIELD",
        Fault::NonPositiveAmount => "VALUE_OUT_OF_RANGE",
        Fault::UnknownCurrency => "INVALID_CURRENCY",
        Fault::BadEnum => "INVALID_ENUM",
        Fault::FutureEventTime | Fault::AncientEventTime => "TIMESTAMP_OUT_OF_RANGE",
        // Byte-level faults never become rows: the decoder routes them to the DLQ.
        Fault::Undecodable | Fault::WrongMagic | Fault::UnknownSchemaId => return None,
        Fault::SchemaViolation => unreachable!("never sent"),
    })
}

/// (key, payload, injected fault) of a record that reaches Kafka.
pub(super) type Sent = (Option<Vec<u8>>, Vec<u8>, Option<Fault>);

pub(super) struct Case {
    kind: EventKind,
    pub table: &'static str,
    reader: &'static str,
    /// (schema id, schema text, version) per writer; events alternate between them.
    writers: Vec<(SchemaId, &'static str, SchemaVersion)>,
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case {
            kind: EventKind::Orders,
            table: "bronze_orders",
            reader: builtin::ORDERS_V2,
            writers: vec![
                (1, builtin::ORDERS_V1, SchemaVersion::V1),
                (2, builtin::ORDERS_V2, SchemaVersion::V2),
            ],
        },
        Case {
            kind: EventKind::Clickstream,
            table: "bronze_clickstream",
            reader: builtin::CLICKSTREAM,
            writers: vec![(3, builtin::CLICKSTREAM, SchemaVersion::V1)],
        },
        Case {
            kind: EventKind::Payments,
            table: "bronze_payments",
            reader: builtin::PAYMENTS,
            writers: vec![(4, builtin::PAYMENTS, SchemaVersion::V1)],
        },
    ]
}

/// Generated events of `case` (40% faulty) through encoding, framing and the bronze decoder:
/// what was sent, the decoder's outcome and the decoded rows as a frame.
pub(super) fn decode_case(
    case: &Case,
) -> (
    Vec<Sent>,
    crate::ingest::decode::DecodeOutcome,
    polars::prelude::DataFrame,
) {
    let mut decoder = BronzeDecoder::new(case.reader).unwrap();
    let mut parsed = HashMap::new();
    for (id, text, _) in &case.writers {
        decoder.add_writer_schema(*id, text).unwrap();
        parsed.insert(*id, ParsedSchema::parse(text).unwrap());
    }
    let mut sent: Vec<Sent> = Vec::new();
    for (w, (id, _, version)) in case.writers.iter().enumerate() {
        let mut cfg = GenConfig::new(case.kind, 17 + w as u64, T0);
        cfg.version = *version;
        cfg.bad_ratio = 0.4;
        for e in Generator::new(cfg).take(1500) {
            let mut body = Vec::new();
            if encode(&parsed[id].model, &e.value, &mut body).is_err() {
                assert_eq!(e.fault, Some(Fault::SchemaViolation));
                continue;
            }
            let mut payload = Vec::new();
            frame(e.fault, *id, &body, &mut payload);
            sent.push((e.key.map(String::into_bytes), payload, e.fault));
        }
    }
    let records: Vec<KafkaRecord> = sent
        .iter()
        .enumerate()
        .map(|(i, (key, payload, _))| KafkaRecord {
            topic: "t",
            partition: 0,
            offset: i as i64,
            key: key.as_deref(),
            timestamp_ms: Some(T0),
            payload,
        })
        .collect();
    let out = decoder.decode(&records, T0 * 1000).unwrap();
    let batch = out.batch.clone().expect("some rows decode");
    let df = batches_to_df(&decoder.schema(), &[batch]).unwrap();
    (sent, out, df)
}

/// The shipped bronze checks hold on what ingest keeps (the rows no rule rejects, in the real
/// bronze schema) and fail on what it rejects: the gate and the rules say the same thing.
#[test]
fn bronze_checks_pass_on_kept_rows_and_fail_on_rejected_ones() {
    use polars::prelude::{BooleanChunked, NewChunkedArray};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let set = super::load_dir(&dir).unwrap();
    let now = DateTime::<Utc>::from_timestamp_millis(T0).unwrap();
    for case in cases() {
        let exp = set.table(case.table).unwrap();
        let (_, _, df) = decode_case(&case);
        let failures = exp.row_failures(&df, now).unwrap();
        let keep =
            BooleanChunked::from_iter_values("keep".into(), failures.iter().map(Option::is_none));
        let kept = df.filter(&keep).unwrap();
        let results = exp
            .run_checks(&kept, &super::Frames::default(), now)
            .unwrap();
        for r in &results {
            assert_eq!(r.outcome, super::Outcome::Pass, "{}: {r:?}", case.table);
        }
        assert_eq!(results.len(), exp.check_count());
        let all = exp.run_checks(&df, &super::Frames::default(), now).unwrap();
        assert!(
            all.iter().any(super::CheckResult::blocks),
            "{}: the unfiltered rows pass the gate",
            case.table
        );
    }
}

#[test]
fn bronze_rules_reject_exactly_what_inspect_rejects() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let set = super::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let now = DateTime::<Utc>::from_timestamp_millis(T0).unwrap();
    for case in cases() {
        let exp = set.table(case.table).expect("bronze expectations");
        let parsed: HashMap<SchemaId, ParsedSchema> = case
            .writers
            .iter()
            .map(|(id, text, _)| (*id, ParsedSchema::parse(text).unwrap()))
            .collect();
        let (sent, out, df) = decode_case(&case);
        let failures = exp.row_failures(&df, now).unwrap();
        assert_eq!(failures.len(), out.decoded.len());

        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (row, &i) in out.decoded.iter().enumerate() {
            let (key, payload, injected) = &sent[i];
            let verdict = inspect(case.kind, key.as_deref(), payload, &parsed, T0);
            let got = failures[row].as_ref().map(|f| f.category.as_str());
            let want = verdict.as_ref().err().and_then(|r| category(r.fault));
            assert_eq!(
                got, want,
                "{}: record {i} (injected {injected:?}): rules say {:?}, inspect says {verdict:?}",
                case.table, failures[row]
            );
            if let Err(r) = &verdict {
                assert_eq!(Some(r.fault), *injected, "{}: record {i}", case.table);
                *seen.entry(r.fault.name()).or_default() += 1;
            }
        }
        // Records the decoder refused are byte-level faults for inspect too.
        for e in &out.errors {
            let (key, payload, _) = &sent[e.index];
            let verdict = inspect(case.kind, key.as_deref(), payload, &parsed, T0);
            let fault = verdict
                .expect_err("inspect rejects what the decoder refuses")
                .fault;
            assert_eq!(category(fault), None, "{}: record {}", case.table, e.index);
            *seen.entry(fault.name()).or_default() += 1;
        }
        // Every applicable fault kind was exercised.
        for f in Fault::applicable(case.kind) {
            if f != Fault::SchemaViolation {
                assert!(
                    seen.contains_key(f.name()),
                    "{}: no {f} in {seen:?}",
                    case.table
                );
            }
        }
        let clean = failures.iter().filter(|f| f.is_none()).count();
        assert!(clean > 500, "{}: {clean} clean rows", case.table);
    }
}

#[test]
fn bronze_failure_details_name_column_expectation_and_value() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let set = super::load_dir(&dir).unwrap();
    let exp = set.table("bronze_payments").unwrap();
    let mut decoder = BronzeDecoder::new(builtin::PAYMENTS).unwrap();
    decoder.add_writer_schema(4, builtin::PAYMENTS).unwrap();
    let parsed = ParsedSchema::parse(builtin::PAYMENTS).unwrap();
    let mut cfg = GenConfig::new(EventKind::Payments, 5, T0);
    cfg.bad_ratio = 1.0;
    let events: Vec<_> = Generator::new(cfg)
        .filter(|e| e.fault == Some(Fault::NonPositiveAmount))
        .take(3)
        .collect();
    let payloads: Vec<(Vec<u8>, Vec<u8>)> = events
        .iter()
        .map(|e| {
            let mut body = Vec::new();
            encode(&parsed.model, &e.value, &mut body).unwrap();
            let mut p = Vec::new();
            frame(None, 4, &body, &mut p);
            (e.key.clone().unwrap().into_bytes(), p)
        })
        .collect();
    let records: Vec<KafkaRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, (k, p))| KafkaRecord {
            topic: "payments",
            partition: 0,
            offset: i as i64,
            key: Some(k),
            timestamp_ms: Some(T0),
            payload: p,
        })
        .collect();
    let out = decoder.decode(&records, 0).unwrap();
    let df = batches_to_df(&decoder.schema(), &[out.batch.unwrap()]).unwrap();
    let now = DateTime::<Utc>::from_timestamp_millis(T0).unwrap();
    for f in exp.row_failures(&df, now).unwrap() {
        let f = f.expect("every row has a non-positive amount");
        assert_eq!(f.rule, "amount_positive");
        assert_eq!(f.category, "VALUE_OUT_OF_RANGE");
        assert!(
            f.detail.starts_with("amount must be > 0, found "),
            "{}",
            f.detail
        );
        let found: f64 = f.detail.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(found <= 0.0, "{}", f.detail);
    }
}
