//! The lake against real Delta tables in temp dirs: bronze decoding of v1 + v2 + garbage through
//! the embedded registry's schema ids, appends carrying `txn` actions, and another engine (the
//! Python `deltalake` package) reading what we wrote.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use flowctl::contracts::encode::encode;
use flowctl::contracts::generate::{SchemaVersion, order};
use flowctl::contracts::registry::{Embedded, Registry};
use flowctl::contracts::schema::{ParsedSchema, builtin};
use flowctl::contracts::wire;
use flowctl::ingest::decode::{BronzeDecoder, DecodeFault, KafkaRecord};
use flowctl::lake::{AppTxn, LakeTable, lake_root};
use flowctl::store::Store;
use serde_json::Value;

const T0: i64 = 1_763_900_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn framed(id: i32, version: SchemaVersion, n: u64) -> Vec<u8> {
    static PARSED: std::sync::OnceLock<[ParsedSchema; 2]> = std::sync::OnceLock::new();
    let [p1, p2] = PARSED.get_or_init(|| {
        [builtin::ORDERS_V1, builtin::ORDERS_V2].map(|t| ParsedSchema::parse(t).unwrap())
    });
    let parsed = match version {
        SchemaVersion::V1 => p1,
        SchemaVersion::V2 => p2,
    };
    let mut out = Vec::new();
    wire::write_header(&mut out, id);
    encode(&parsed.model, &order(7, n, version, T0), &mut out).unwrap();
    out
}

/// Runs the Python reader on `table`; fails (never skips) when `deltalake` is not installed.
pub fn python_read(table: &Path, app_ids: &[&str]) -> Value {
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/python/read_delta_count.py"))
        .arg(table)
        .args(app_ids)
        .output()
        .expect("running python3 (is it installed?)");
    assert!(
        out.status.success(),
        "the Python deltalake reader failed (exit {:?}); if the package is missing: \
         python3 -m pip install -r tests/python/requirements.txt\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line from the Python reader")
}

#[tokio::test]
async fn bronze_orders_v1_v2_and_garbage_land_once_and_python_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let store = Store::open(&home.join("state.db")).await.unwrap();
    let reg = Registry::Embedded(Embedded::new(store));
    let (v1, _) = reg
        .register("orders-value", builtin::ORDERS_V1)
        .await
        .unwrap();
    let (v2, _) = reg
        .register("orders-value", builtin::ORDERS_V2)
        .await
        .unwrap();
    assert_ne!(v1, v2);
    let (v1, v2) = (v1 as i32, v2 as i32);

    // The reader schema is the latest; the writer schemas come from the registry by id.
    let mut decoder = BronzeDecoder::new(&reg.schema_by_id(v2 as i64).await.unwrap()).unwrap();
    for id in [v1, v2] {
        let text = reg.schema_by_id(id as i64).await.unwrap();
        decoder.add_writer_schema(id, &text).unwrap();
    }

    // 3 partitions × 1000 records; every 50th is garbage of some kind.
    let mut payloads = Vec::new();
    for p in 0..3i32 {
        for off in 0..1000i64 {
            let n = (p as u64) * 1000 + off as u64;
            let payload = match off % 50 {
                7 => b"not avro at all".to_vec(),
                17 => {
                    let mut b = framed(v2, SchemaVersion::V2, n);
                    b[1..5].copy_from_slice(&4242u32.to_be_bytes());
                    b
                }
                27 => {
                    let mut b = framed(v2, SchemaVersion::V2, n);
                    b.truncate(b.len() - 3);
                    b
                }
                _ if off % 2 == 0 => framed(v1, SchemaVersion::V1, n),
                _ => framed(v2, SchemaVersion::V2, n),
            };
            payloads.push((p, off, payload));
        }
    }
    let keys: Vec<String> = (0..payloads.len()).map(|i| format!("k{i}")).collect();
    let records: Vec<KafkaRecord<'_>> = payloads
        .iter()
        .zip(&keys)
        .map(|((p, off, payload), k)| KafkaRecord {
            topic: "orders",
            partition: *p,
            offset: *off,
            key: Some(k.as_bytes()),
            timestamp_ms: Some(T0),
            payload,
        })
        .collect();
    let out = decoder.decode(&records, T0 * 1000).unwrap();
    let bad = 3 * 3 * 20;
    assert_eq!(out.errors.len(), bad);
    let count = |f| out.errors.iter().filter(|e| e.fault == f).count();
    assert_eq!(count(DecodeFault::WrongMagic), 60);
    assert_eq!(count(DecodeFault::UnknownSchemaId), 60);
    assert_eq!(count(DecodeFault::Undecodable), 60);
    let batch = out.batch.unwrap();
    assert_eq!(batch.num_rows(), 3000 - bad);

    // One commit per Kafka partition, each with its txn (app id per table/topic/partition).
    let path = lake_root(&home).join("bronze_orders");
    let mut table = LakeTable::open_or_create(&path, &decoder.schema(), &["event_date"])
        .await
        .unwrap();
    let app = |p: i32| format!("bronze_orders/orders/{p}");
    for p in 0..3i32 {
        let mask: Vec<bool> = out
            .decoded
            .iter()
            .map(|&i| records[i].partition == p)
            .collect();
        let part = deltalake::arrow::compute::filter_record_batch(
            &batch,
            &deltalake::arrow::array::BooleanArray::from(mask),
        )
        .unwrap();
        let last = out
            .decoded
            .iter()
            .filter(|&&i| records[i].partition == p)
            .map(|&i| records[i].offset)
            .max()
            .unwrap();
        table
            .append(
                [part],
                Some(AppTxn {
                    app_id: app(p),
                    version: last,
                }),
            )
            .await
            .unwrap();
    }

    // A fresh handle (as after a restart) sees the versions and the rows.
    let reopened = LakeTable::open_or_create(&path, &decoder.schema(), &["event_date"])
        .await
        .unwrap();
    assert_eq!(reopened.version(), 3);
    for p in 0..3 {
        assert_eq!(reopened.txn_version(&app(p)).await.unwrap(), Some(999));
    }
    assert_eq!(reopened.row_count().unwrap(), 3000 - bad);
    let back = reopened.read_all().unwrap();
    assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 3000 - bad);
    assert!(
        back.iter()
            .all(|b| b.schema().fields().len() == decoder.schema().fields().len())
    );

    // Another engine reads the same table, counts and txn versions.
    let apps: Vec<String> = (0..3).map(app).collect();
    let app_refs: Vec<&str> = apps.iter().map(String::as_str).collect();
    let py = python_read(&path, &app_refs);
    assert_eq!(py["rows"], (3000 - bad) as u64, "{py}");
    assert_eq!(
        py["distinct_partition_offsets"],
        (3000 - bad) as u64,
        "{py}"
    );
    assert_eq!(py["version"], 3, "{py}");
    assert_eq!(py["partition_columns"], serde_json::json!(["event_date"]));
    for a in &apps {
        assert_eq!(py["txns"][a], 999, "{py}");
    }
}

fn wide_batch(start: i64, n: usize) -> RecordBatch {
    let ids = start..start + n as i64;
    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Utf8, true),
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("event_time", utc(), true),
        Field::new("_kafka_partition", DataType::Int32, true),
        Field::new("_kafka_offset", DataType::Int64, true),
        Field::new("_ingested_at", utc(), true),
        Field::new("event_date", DataType::Date32, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("ord-{i:010}")),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("cust-{:05}", i % 50_000)),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.clone().map(|i| (i % 10_000) as f64 / 7.0),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| ["EUR", "USD", "GBP"][(i % 3) as usize]),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone()
                .map(|i| ["CREATED", "PAID", "SHIPPED"][(i % 3) as usize]),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(ids.clone().map(|i| T0 * 1000 + i))
                .with_timezone("UTC"),
        ),
        Arc::new(Int32Array::from_iter_values(
            ids.clone().map(|i| (i % 6) as i32),
        )),
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(TimestampMicrosecondArray::from_value(T0 * 1000, n).with_timezone("UTC")),
        Arc::new(Date32Array::from_iter_values(
            ids.map(|i| 20_415 + (i % 2) as i32),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

/// Figures for the report, not a pass/fail gate: run with
/// `cargo nextest run --release --run-ignored only -E 'test(lake_throughput)' --no-capture`.
#[tokio::test]
#[ignore]
async fn lake_throughput() {
    // Append: 1M rows × 10 columns, partitioned by event_date (2 days), one commit with a txn.
    let dir = tempfile::tempdir().unwrap();
    let rows = 1_000_000usize;
    let batches: Vec<_> = (0..10)
        .map(|i| wide_batch(i * 100_000, rows / 10))
        .collect();
    let schema = batches[0].schema();
    let mut t = LakeTable::open_or_create(&dir.path().join("wide"), &schema, &["event_date"])
        .await
        .unwrap();
    let start = Instant::now();
    t.append(
        batches,
        Some(AppTxn {
            app_id: "bench".into(),
            version: rows as i64 - 1,
        }),
    )
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "append: {rows} rows x 10 cols in {secs:.3} s = {:.0} rows/s",
        rows as f64 / secs
    );
    assert_eq!(t.txn_version("bench").await.unwrap(), Some(rows as i64 - 1));

    // Decode: 1M orders, half v1 half v2, in calls of 100k records.
    let mut decoder = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
    decoder.add_writer_schema(1, builtin::ORDERS_V1).unwrap();
    decoder.add_writer_schema(2, builtin::ORDERS_V2).unwrap();
    let payloads: Vec<Vec<u8>> = (0..rows as u64)
        .map(|n| {
            if n % 2 == 0 {
                framed(1, SchemaVersion::V1, n)
            } else {
                framed(2, SchemaVersion::V2, n)
            }
        })
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let records: Vec<KafkaRecord<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| KafkaRecord {
            topic: "orders",
            partition: 0,
            offset: i as i64,
            key: None,
            timestamp_ms: Some(T0),
            payload: p,
        })
        .collect();
    let start = Instant::now();
    let mut decoded = 0;
    for chunk in records.chunks(100_000) {
        let out = decoder.decode(chunk, 0).unwrap();
        decoded += out.batch.map_or(0, |b| b.num_rows());
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(decoded, rows);
    eprintln!(
        "decode: {rows} orders ({} MB) in {secs:.3} s = {:.0} records/s",
        bytes / 1_000_000,
        rows as f64 / secs
    );

    // Decode with 1% garbage bodies (each forces a decoder rebuild and a replay).
    let mut dirty = payloads.clone();
    for (i, p) in dirty.iter_mut().enumerate() {
        if i % 100 == 50 {
            p.truncate(8);
        }
    }
    let records: Vec<KafkaRecord<'_>> = dirty
        .iter()
        .enumerate()
        .map(|(i, p)| KafkaRecord {
            topic: "orders",
            partition: 0,
            offset: i as i64,
            key: None,
            timestamp_ms: Some(T0),
            payload: p,
        })
        .collect();
    let start = Instant::now();
    let mut errors = 0;
    for chunk in records.chunks(100_000) {
        errors += decoder.decode(chunk, 0).unwrap().errors.len();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(errors, rows / 100);
    eprintln!(
        "decode with 1% truncated bodies: {rows} in {secs:.3} s = {:.0} records/s",
        rows as f64 / secs
    );
}
