//! What the hostile-input tests build their records with and read their outcomes through:
//! topics with a raised record limit, a producer allowed large records, orders of any size, the
//! DLQ topic's records with their headers, the audit rows with their bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::contracts::client_config;
use apache_avro::types::Value as Avro;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{Int32Type, Int64Type};
use flowctl::contracts::encode::encode;
use flowctl::contracts::registry::{Embedded, Registry};
use flowctl::contracts::schema::ParsedSchema;
use flowctl::lake::LakeTable;
use flowctl::store::Store;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::{Env, stderr};
use crate::contracts::unique;
use crate::ingest::repo;

/// Creates `topic` (one partition) with `max.message.bytes` = `max_bytes`.
pub(super) async fn topic_allowing(bootstrap: &str, topic: &str, max_bytes: usize) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let max = max_bytes.to_string();
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &max);
    let r = admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r.into_iter().all(|r| r.is_ok()), "creating {topic}");
}

/// A record as a test sends it: key and value, either of them null.
pub(super) type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Sends `records` (`None` value: a tombstone) with a producer allowed records of up to
/// 200 MB, as one whose limits were raised to match a topic's.
pub(super) fn produce_big(bootstrap: &str, topic: &str, records: &[Record<'_>]) {
    let p: BaseProducer = client_config(bootstrap)
        .set("message.max.bytes", "200000000")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = k {
            r = r.key(k);
        }
        if let Some(v) = v {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The registered orders schema (latest version of `orders-value`) and its id.
pub(super) async fn orders_schema(env: &Env) -> (i32, ParsedSchema) {
    let store = Store::open(&env.home().join("state.db")).await.unwrap();
    let reg = Registry::Embedded(Embedded::new(store));
    let (id, text) = reg
        .latest("orders-value")
        .await
        .unwrap()
        .expect("registered");
    (id as i32, ParsedSchema::parse(&text).unwrap())
}

/// A framed v2 order with `items` line items, in `currency`: valid unless the currency is not.
pub(super) fn order(
    schema: &(i32, ParsedSchema),
    id: &str,
    items: usize,
    currency: &str,
) -> Vec<u8> {
    let item = |i: usize| {
        Avro::Record(vec![
            ("sku".into(), Avro::String(format!("SKU-{i:06}"))),
            ("quantity".into(), Avro::Int(1)),
            ("unit_price".into(), Avro::Double(1.5)),
        ])
    };
    let value = Avro::Record(vec![
        ("order_id".into(), Avro::String(id.into())),
        ("customer_id".into(), Avro::String("c-1".into())),
        ("campaign_id".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("items".into(), Avro::Array((0..items).map(item).collect())),
        ("amount".into(), Avro::Double(1.5 * items as f64)),
        ("currency".into(), Avro::String(currency.into())),
        ("status".into(), Avro::String("PAID".into())),
        (
            "event_time".into(),
            Avro::TimestampMillis(chrono::Utc::now().timestamp_millis() - 60_000),
        ),
        ("channel".into(), Avro::String("web".into())),
        ("coupon_code".into(), Avro::Union(0, Box::new(Avro::Null))),
    ]);
    let mut out = Vec::new();
    flowctl::contracts::wire::write_header(&mut out, schema.0);
    encode(&schema.1.model, &value, &mut out).unwrap();
    out
}

/// One DLQ record, as a consumer of the DLQ topic sees it.
#[derive(Debug)]
pub(super) struct DeadLetter {
    pub headers: BTreeMap<String, String>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The DLQ topic's records of `source_topic`, in DLQ order.
pub(super) fn dead_letters(bootstrap: &str, dlq: &str, source_topic: &str) -> Vec<DeadLetter> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", unique("it-dlq"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (lo, hi) = c.fetch_watermarks(dlq, 0, Duration::from_secs(15)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(dlq, 0, Offset::Offset(lo))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut read = lo;
    let give_up = Instant::now() + Duration::from_secs(60);
    while read < hi && Instant::now() < give_up {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            read = m.offset() + 1;
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            let v = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (x.key.to_string(), v.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            if headers.get("source_topic").map(String::as_str) == Some(source_topic) {
                out.push(DeadLetter {
                    headers,
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
            }
        }
    }
    assert_eq!(read, hi, "read the whole DLQ topic");
    out
}

/// One audit row: (error_type, error_detail, schema_id, kafka_key, payload).
pub(super) type AuditRow = (
    String,
    String,
    Option<i32>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// The audit rows of `topic` by source offset (partition 0 only).
pub(super) async fn audit_rows(home: &Path, topic: &str) -> BTreeMap<i64, AuditRow> {
    let t = LakeTable::open(&home.join("lake/bronze_dlq_audit"))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for b in t.read_all().unwrap() {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let bin = |n: &str| b.column_by_name(n).unwrap().as_binary::<i32>().clone();
        let (src, kind, detail) = (s("source_topic"), s("error_type"), s("error_detail"));
        let (key, payload) = (bin("kafka_key"), bin("payload"));
        let ids = b
            .column_by_name("schema_id")
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone();
        let offs = b
            .column_by_name("original_offset")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            if src.value(i) != topic {
                continue;
            }
            let opt = |a: &deltalake::arrow::array::BinaryArray| {
                (!a.is_null(i)).then(|| a.value(i).to_vec())
            };
            let row = (
                kind.value(i).to_string(),
                detail.value(i).to_string(),
                (!ids.is_null(i)).then(|| ids.value(i)),
                opt(&key),
                opt(&payload),
            );
            assert!(out.insert(offs.value(i), row).is_none(), "audited twice");
        }
    }
    out
}

/// The number of line items of the bronze row at `offset` (partition 0), if there is one.
pub(super) async fn bronze_items(home: &Path, table: &str, offset: i64) -> Option<usize> {
    let t = LakeTable::open(&home.join("lake").join(table))
        .await
        .unwrap();
    for b in t.read_all().unwrap() {
        let offs = b
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        let items = b.column_by_name("items").unwrap().as_list::<i32>();
        if let Some(i) = (0..b.num_rows()).find(|&i| offs.value(i) == offset) {
            return Some(items.value_length(i) as usize);
        }
    }
    None
}

/// A copy of the repository's expectations the test may edit.
pub(super) fn own_expectations(env: &Env) -> std::path::PathBuf {
    let exp = env.dir.path().join("expectations");
    std::fs::remove_file(&exp).unwrap();
    std::fs::create_dir(&exp).unwrap();
    for f in std::fs::read_dir(repo().join("expectations")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, exp.join(f.file_name().unwrap())).unwrap();
    }
    exp
}

/// Lets every currency through (the fix the replay tests apply).
pub(super) fn accept_any_currency(exp: &Path) {
    let rules = exp.join("bronze_orders.yaml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let rule = "  - name: currency_known\n    category: INVALID_CURRENCY\n    invalid: currency\n    valid_values: {domain: currencies}\n";
    assert!(text.contains(rule), "the rule to relax is in the file");
    std::fs::write(&rules, text.replace(rule, "")).unwrap();
}

pub(super) fn replay(env: &Env, bootstrap: &str, dlq: &str) -> Value {
    let out = env
        .cmd(&["replay", dlq, "--json"])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", bootstrap)
        .output()
        .unwrap();
    assert!(out.status.success(), "replay: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(super) fn records_read(out: &std::process::Output) -> u64 {
    assert!(out.status.success(), "ingest: {}", stderr(out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    s["topics"][0]["records"].as_u64().unwrap()
}
