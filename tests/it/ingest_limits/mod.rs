//! Hostile input against the real broker: records too large for the DLQ topic, for the
//! consumer's fetch limits or for `max_record_bytes`, null values, a negative schema id, and
//! ingests that fail before their first commit. Each ends in exactly one place and the topic
//! goes on.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use flowctl::lake::LakeTable;

use crate::common::stderr;
use crate::contracts::{broker, unique};
use crate::ingest::{assert_exactly_once, env_with_schemas, ingest, landed, produce};
use support::{
    DeadLetter, accept_any_currency, audit_rows, bronze_items, dead_letters, order, orders_schema,
    own_expectations, produce_big, records_read, replay, topic_allowing,
};

/// The reproduction: `orders` allows 2,000,000-byte records, the DLQ topic (nisshi's
/// default) about 1 MiB; a 1,040,005-byte order with a bad currency used to fail every ingest
/// with `MessageSizeTooLarge`, and the 30 orders after it never reached bronze.
#[tokio::test]
async fn a_dead_letter_too_large_for_the_dlq_topic_is_truncated_audited_whole_and_replayable() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let exp = own_expectations(&env);
    let topic = unique("orders-oversize");
    let dlq = unique("dlq-oversize");
    topic_allowing(&bootstrap, &topic, 2_000_000).await;
    let schema = orders_schema(&env).await;
    let big = order(&schema, "big-1", 52_000, "XYZ");
    assert!(
        big.len() > 1_040_000 && big.len() < 1_100_000,
        "{}",
        big.len()
    );
    produce_big(&bootstrap, &topic, &[(Some(b"big-1"), Some(&big))]);
    produce(&env, &bootstrap, &topic, 30, 0.0, 5);
    let args = [
        "--topics",
        topic.as_str(),
        "--dlq-topic",
        dlq.as_str(),
        "--json",
    ];

    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 31);
    let table = flowctl::ingest::bronze_table(&topic);
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, 31);
    assert_eq!(l.bronze.len(), 30, "the orders after it reached bronze");
    let audit = audit_rows(&env.home(), &topic).await;
    let (kind, _, id, key, payload) = &audit[&0];
    assert_eq!(kind, "INVALID_CURRENCY");
    assert_eq!(*id, Some(schema.0));
    assert_eq!(key.as_deref(), Some(&b"big-1"[..]));
    assert_eq!(
        payload.as_deref(),
        Some(&big[..]),
        "the audit row keeps the bytes whole"
    );
    let letters = dead_letters(&bootstrap, &dlq, &topic);
    assert_eq!(letters.len(), 1);
    let h = &letters[0].headers;
    assert_eq!(h["truncated"], "true");
    assert_eq!(h["original_value_bytes"], big.len().to_string());
    assert_eq!(h["original_key_bytes"], "5");
    assert_eq!(h["payload_in"], "bronze_dlq_audit");
    assert_eq!(h["error_type"], "INVALID_CURRENCY");
    assert_eq!(h["original_offset"], "0");
    assert_eq!(
        letters[0].value.as_deref(),
        Some(&[][..]),
        "an empty value, not null"
    );
    assert_eq!(letters[0].key.as_deref(), Some(&b"big-1"[..]));

    // Nothing new the second time.
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 0);

    // A crash after the DLQ delivery and before the audit commit leaves the DLQ ahead of the
    // lake: here the whole lake is gone. The redo reads the DLQ back and does not produce the
    // truncated record again.
    std::fs::rename(env.home().join("lake"), env.home().join("lake.lost")).unwrap();
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 31);
    assert_eq!(
        dead_letters(&bootstrap, &dlq, &topic).len(),
        1,
        "produced once"
    );
    let audit = audit_rows(&env.home(), &topic).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[&0].4.as_deref(), Some(&big[..]));

    // After the fix, replay takes the bytes from the audit table and the order lands whole.
    accept_any_currency(&exp);
    let s = replay(&env, &bootstrap, &dlq);
    assert_eq!(s["from_audit"].as_u64(), Some(1), "{s}");
    assert_eq!(s["landed"][&topic].as_u64(), Some(1), "{s}");
    assert_eq!(bronze_items(&env.home(), &table, 0).await, Some(52_000));
    let s = replay(&env, &bootstrap, &dlq);
    assert_eq!(s["already_replayed"].as_u64(), Some(1), "{s}");
    let l = landed(&env.home(), &topic, &table).await;
    assert_eq!(l.bronze.len(), 31);
}

/// A broker whose DLQ limit is below the one assumed refuses after sending: the dead letter is
/// produced truncated then, and the DLQ still holds each bad record once, in step with the
/// audit table.
#[tokio::test]
async fn a_dead_letter_the_broker_refuses_after_sending_is_produced_truncated() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-refused");
    let dlq = unique("dlq-refused");
    topic_allowing(&bootstrap, &topic, 2_000_000).await;
    let schema = orders_schema(&env).await;
    // Above what nisshi takes on the DLQ topic (1 MiB), below the 5 MB assumed.
    let big = order(&schema, "big-2", 80_000, "XYZ");
    assert!(big.len() > 1_100_000, "{}", big.len());
    let before = produce(&env, &bootstrap, &topic, 100, 0.2, 7)["sent"]
        .as_u64()
        .unwrap();
    produce_big(&bootstrap, &topic, &[(Some(b"big-2"), Some(&big))]);
    let after = produce(&env, &bootstrap, &topic, 100, 0.2, 8)["sent"]
        .as_u64()
        .unwrap();
    let sent = before + 1 + after;
    // What a user would set for a broker that does not report the DLQ topic's limit, set too
    // high here: nisshi takes about 1 MiB.
    let args = [
        "--topics",
        topic.as_str(),
        "--dlq-topic",
        dlq.as_str(),
        "--json",
        "--dlq-max-message-bytes",
        "5000000",
    ];
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), sent);
    let table = flowctl::ingest::bronze_table(&topic);
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, sent);
    let letters = dead_letters(&bootstrap, &dlq, &topic);
    let positions: Vec<i64> = letters
        .iter()
        .map(|d| d.headers["original_offset"].parse().unwrap())
        .collect();
    let unique_positions: HashSet<i64> = positions.iter().copied().collect();
    assert_eq!(
        unique_positions.len(),
        positions.len(),
        "no dead letter twice"
    );
    let mut audited: Vec<i64> = l.audit.iter().map(|(_, o)| *o).collect();
    let mut in_dlq = positions.clone();
    audited.sort_unstable();
    in_dlq.sort_unstable();
    assert_eq!(
        in_dlq, audited,
        "the DLQ and the audit table hold the same records"
    );
    let truncated: Vec<&DeadLetter> = letters
        .iter()
        .filter(|d| d.headers.contains_key("truncated"))
        .collect();
    assert_eq!(truncated.len(), 1);
    assert_eq!(truncated[0].headers["original_offset"], before.to_string());
    assert_eq!(
        truncated[0].headers["original_value_bytes"],
        big.len().to_string()
    );
    let audit = audit_rows(&env.home(), &topic).await;
    assert_eq!(audit[&(before as i64)].4.as_deref(), Some(&big[..]));
    // A rerun finds nothing new and produces nothing.
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 0);
    assert_eq!(dead_letters(&bootstrap, &dlq, &topic).len(), letters.len());
}

/// A 102 MB record (the broker takes it; librdkafka's consumer refused fetch responses above
/// 100 MB and retried forever, so every run stalled at it) goes to the DLQ as
/// RECORD_TOO_LARGE and the records after it reach bronze.
#[tokio::test]
async fn a_record_above_the_consumers_old_fetch_limit_does_not_stall_its_topic() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-huge");
    let dlq = unique("dlq-huge");
    topic_allowing(&bootstrap, &topic, 200_000_000).await;
    let huge = vec![7u8; 102_000_000];
    produce_big(&bootstrap, &topic, &[(Some(b"huge"), Some(&huge))]);
    produce(&env, &bootstrap, &topic, 30, 0.0, 6);
    let args = [
        "--topics",
        topic.as_str(),
        "--dlq-topic",
        dlq.as_str(),
        "--json",
    ];
    let started = Instant::now();
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 31);
    assert!(started.elapsed() < Duration::from_secs(120));
    let table = flowctl::ingest::bronze_table(&topic);
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, 31);
    assert_eq!(l.bronze.len(), 30);
    let audit = audit_rows(&env.home(), &topic).await;
    let (kind, detail, _, _, payload) = &audit[&0];
    assert_eq!(kind, "RECORD_TOO_LARGE");
    assert!(detail.contains("102000004 bytes"), "{detail}");
    assert_eq!(payload.as_ref().map(Vec::len), Some(huge.len()));
    let letters = dead_letters(&bootstrap, &dlq, &topic);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].headers["truncated"], "true");
}

/// A valid order of several megabytes lands in bronze whole; above `--max-record-bytes` one
/// goes to the DLQ with the reason, the topic goes on, and replay (with the default limit)
/// lands it from the audit table.
#[tokio::test]
async fn a_valid_order_of_megabytes_lands_whole_or_waits_in_the_dlq_for_a_higher_limit() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-mega");
    let dlq = unique("dlq-mega");
    topic_allowing(&bootstrap, &topic, 20_000_000).await;
    let schema = orders_schema(&env).await;
    let first = order(&schema, "mega-1", 150_000, "EUR");
    assert!(first.len() > 3_000_000, "{}", first.len());
    produce_big(&bootstrap, &topic, &[(Some(b"mega-1"), Some(&first))]);
    let args = [
        "--topics",
        topic.as_str(),
        "--dlq-topic",
        dlq.as_str(),
        "--json",
    ];
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 1);
    let table = flowctl::ingest::bronze_table(&topic);
    assert_eq!(bronze_items(&env.home(), &table, 0).await, Some(150_000));

    let second = order(&schema, "mega-2", 150_000, "EUR");
    let small: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                format!("small-{i}"),
                order(&schema, &format!("small-{i}"), 3, "EUR"),
            )
        })
        .collect();
    let mut records = vec![(Some(&b"mega-2"[..]), Some(&second[..]))];
    records.extend(
        small
            .iter()
            .map(|(k, v)| (Some(k.as_bytes()), Some(&v[..]))),
    );
    produce_big(&bootstrap, &topic, &records);
    let mut limited = args.to_vec();
    limited.extend(["--max-record-bytes", "1000000"]);
    assert_eq!(records_read(&ingest(&env, &bootstrap, &limited)), 11);
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, 12);
    assert_eq!(l.bronze.len(), 11);
    let audit = audit_rows(&env.home(), &topic).await;
    let (kind, detail, id, _, payload) = &audit[&1];
    assert_eq!(kind, "RECORD_TOO_LARGE");
    assert!(detail.contains("max_record_bytes 1000000"), "{detail}");
    assert_eq!(*id, Some(schema.0), "the header was readable");
    assert_eq!(payload.as_deref(), Some(&second[..]));

    let s = replay(&env, &bootstrap, &dlq);
    assert_eq!(s["landed"][&topic].as_u64(), Some(1), "{s}");
    assert_eq!(bronze_items(&env.home(), &table, 1).await, Some(150_000));
}

/// A null value stays null (DLQ record and audit payload) with its own category, and a header
/// of `ff ff ff ff` is schema id -1 in the audit column, the DLQ header and the detail alike.
#[tokio::test]
async fn tombstones_and_a_negative_schema_id_keep_their_facts_in_the_dlq() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-hostile");
    let dlq = unique("dlq-hostile");
    flowctl::kafka::ensure_topic(
        &flowctl::kafka::KafkaSettings::new(bootstrap.as_str()),
        &topic,
        1,
    )
    .await
    .unwrap();
    let schema = orders_schema(&env).await;
    let mut negative = order(&schema, "neg-1", 2, "EUR");
    negative[1..5].copy_from_slice(&[0xff; 4]);
    let good = order(&schema, "good-1", 2, "EUR");
    produce_big(
        &bootstrap,
        &topic,
        &[
            (Some(b"tomb-1"), None),
            (Some(b"neg-1"), Some(&negative)),
            (Some(b"empty-1"), Some(b"")),
            (Some(b"good-1"), Some(&good)),
        ],
    );
    let args = [
        "--topics",
        topic.as_str(),
        "--dlq-topic",
        dlq.as_str(),
        "--json",
    ];
    assert_eq!(records_read(&ingest(&env, &bootstrap, &args)), 4);
    let audit = audit_rows(&env.home(), &topic).await;
    let kinds: Vec<&str> = audit.values().map(|r| r.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["NULL_VALUE", "UNKNOWN_SCHEMA", "DESERIALIZATION_ERROR"]
    );
    let (_, detail, id, key, payload) = &audit[&0];
    assert!(detail.contains("null"), "{detail}");
    assert_eq!(
        (*id, key.as_deref(), payload),
        (None, Some(&b"tomb-1"[..]), &None)
    );
    let (_, detail, id, _, _) = &audit[&1];
    assert_eq!(*id, Some(-1));
    assert_eq!(detail, "schema id -1 is not registered");
    assert_eq!(
        audit[&2].4.as_deref(),
        Some(&[][..]),
        "an empty value stays empty"
    );

    let letters = dead_letters(&bootstrap, &dlq, &topic);
    assert_eq!(letters.len(), 3);
    assert_eq!(
        letters[0].value, None,
        "the tombstone's dead letter has a null value"
    );
    assert_eq!(letters[0].headers["error_type"], "NULL_VALUE");
    assert_eq!(letters[1].headers["schema_id"], "-1");
    assert_eq!(
        letters[1].headers["error_detail"],
        "schema id -1 is not registered"
    );
    assert_eq!(letters[2].value.as_deref(), Some(&[][..]));
    let table = flowctl::ingest::bronze_table(&topic);
    assert_eq!(
        landed(&env.home(), &topic, &table).await.bronze,
        vec![(0, 3)]
    );
}
/// An ingest that fails before its first commit leaves no tables behind; one that succeeds
/// leaves its bronze table even when the topic was empty (silver reads it).
#[tokio::test]
async fn a_failed_ingest_leaves_no_empty_tables_and_a_successful_one_leaves_them() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let missing = unique("orders-missing");
    let out = ingest(&env, &bootstrap, &["--topics", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let lake = env.home().join("lake");
    let bronze = lake.join(flowctl::ingest::bronze_table(&missing));
    assert!(!bronze.exists(), "no bronze table for a failed ingest");
    assert!(
        !lake.join("bronze_dlq_audit").exists(),
        "no audit table either"
    );

    let empty = unique("orders-empty");
    flowctl::kafka::ensure_topic(
        &flowctl::kafka::KafkaSettings::new(bootstrap.as_str()),
        &empty,
        1,
    )
    .await
    .unwrap();
    let dlq = unique("dlq-empty");
    let out = ingest(&env, &bootstrap, &["--topics", &empty, "--dlq-topic", &dlq]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = lake.join(flowctl::ingest::bronze_table(&empty));
    let t = LakeTable::open(&table).await.unwrap();
    assert_eq!(
        t.read_all()
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        0
    );
    assert!(
        t.arrow_schema()
            .unwrap()
            .field_with_name("order_id")
            .is_ok()
    );
    assert!(
        LakeTable::open(&lake.join("bronze_dlq_audit"))
            .await
            .is_ok()
    );
}
