//! The dead-letter side: bad records go to a DLQ topic (original bytes, structured headers) and
//! to the `bronze_dlq_audit` Delta table.
//!
//! The audit table is the exactly-once record (its commits carry the source positions). Kafka
//! has no transactions here (the broker lacks them), so the DLQ *topic* is kept duplicate-free
//! another way: each audit commit also records, per DLQ partition, the last DLQ offset produced
//! so far. On start, whatever the DLQ holds after that offset was produced by a batch that never
//! reached its audit commit; those records' source positions are read back from their headers
//! and not produced again when the batch is redone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::error::IngestError;
use super::source::{IngestConsumer, RawBatch, RawRecord, watermarks};
use crate::contracts::broker::client_config;
use crate::contracts::wire::SchemaId;

/// The audit table's name under the lake.
pub const AUDIT_TABLE: &str = "bronze_dlq_audit";
/// The audit table's partition column.
pub const AUDIT_PARTITION: &str = "ingest_date";
/// Default DLQ topic.
pub const DEFAULT_DLQ_TOPIC: &str = "bronze_dlq";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The audit-table app id that records the last offset produced to a DLQ partition.
pub fn dlq_app_id(dlq_topic: &str, partition: i32) -> String {
    format!("{AUDIT_TABLE}:dlq:{dlq_topic}:{partition}")
}

/// A record that does not go to bronze, and why.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Index into the micro-batch's records.
    pub index: usize,
    /// DLQ `error_type`: DESERIALIZATION_ERROR, INVALID_ENUM, …
    pub error_type: String,
    pub detail: String,
    /// The expectation rule that failed (business rules only).
    pub rule: Option<String>,
    pub schema_id: Option<SchemaId>,
}

/// The `bronze_dlq_audit` schema (docs/tables.md).
pub fn audit_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("source_topic", DataType::Utf8, true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("original_offset", DataType::Int64, true),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("error_detail", DataType::Utf8, true),
        Field::new("rule", DataType::Utf8, true),
        Field::new("schema_id", DataType::Int32, true),
        Field::new("kafka_key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
        Field::new("kafka_timestamp", ts.clone(), true),
        Field::new("ingested_at", ts, true),
        Field::new("run_id", DataType::Int64, true),
        Field::new(AUDIT_PARTITION, DataType::Date32, true),
    ]))
}

/// The audit rows for `bad` (records of `raw` from `topic`).
pub fn audit_batch(
    topic: &str,
    raw: &RawBatch,
    bad: &[BadRecord],
    ingested_at_us: i64,
    run_id: Option<i64>,
) -> Result<RecordBatch, IngestError> {
    let rec = |b: &BadRecord| -> &RawRecord { &raw.records[b.index] };
    let n = bad.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![topic; n])),
        Arc::new(Int32Array::from_iter_values(
            bad.iter().map(|b| rec(b).partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            bad.iter().map(|b| rec(b).offset),
        )),
        Arc::new(StringArray::from_iter_values(
            bad.iter().map(|b| b.error_type.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            bad.iter().map(|b| b.detail.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            bad.iter().map(|b| b.rule.as_deref()),
        )),
        Arc::new(Int32Array::from_iter(bad.iter().map(|b| b.schema_id))),
        Arc::new(BinaryArray::from_iter(bad.iter().map(|b| raw.key(rec(b))))),
        Arc::new(BinaryArray::from_iter_values(
            bad.iter().map(|b| raw.payload(rec(b))),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                bad.iter().map(|b| rec(b).timestamp_ms.map(|t| t * 1000)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![ingested_at_us; n]).with_timezone("UTC")),
        Arc::new(Int64Array::from(vec![run_id; n])),
        Arc::new(Date32Array::from(vec![
            ingested_at_us.div_euclid(MICROS_PER_DAY)
                as i32;
            n
        ])),
    ];
    RecordBatch::try_new(audit_schema(), columns)
        .map_err(|e| IngestError::Lake(crate::lake::LakeError::Arrow(e)))
}

/// Produces DLQ records with an idempotent producer. Clones share the producer.
#[derive(Clone)]
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
}

/// One source position, as DLQ headers carry it.
pub type SourcePos = (String, i32, i64);

impl DlqProducer {
    /// `timeout`: how long a DLQ record may wait for the broker before its batch fails (and the
    /// attempt with it, to be retried).
    pub fn new(
        bootstrap: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<DlqProducer, IngestError> {
        let producer = client_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .create()
            .map_err(|e| dlq_err(topic, e.to_string()))?;
        Ok(DlqProducer {
            producer,
            topic: topic.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Gets the producer ready for its first record without waiting for it: the topic's
    /// metadata (its leader) is fetched on a thread of its own. A first send otherwise waits for
    /// that lookup (half a second for a topic just created), holding up the first commit and,
    /// behind it, the whole pipeline.
    pub fn warm_up(&self) {
        let (producer, topic) = (self.producer.clone(), self.topic.clone());
        let spawned = std::thread::Builder::new()
            .name("dlq-warm-up".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                let r = producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(10));
                tracing::debug!(
                    topic,
                    seconds = t.elapsed().as_secs_f64(),
                    ok = r.is_ok(),
                    "DLQ producer warmed up"
                );
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no thread to warm the DLQ producer up");
        }
    }

    /// Hands the records of `bad` that are not in `skip` to the producer without waiting for
    /// the broker: the caller goes on with other work and waits with [`DlqProducer::delivered`]
    /// before it commits the audit rows. Records are produced in call order (one idempotent
    /// producer), so a later batch's records never get lower DLQ offsets than an earlier one's.
    pub async fn enqueue(
        &self,
        source_topic: &str,
        raw: &RawBatch,
        bad: &[BadRecord],
        skip: &HashSet<SourcePos>,
    ) -> Result<Deliveries, IngestError> {
        let mut pending = Vec::with_capacity(bad.len());
        let mut pos = (source_topic.to_string(), 0, 0);
        for b in bad {
            let r = &raw.records[b.index];
            (pos.1, pos.2) = (r.partition, r.offset);
            if skip.contains(&pos) {
                continue;
            }
            let (partition, offset) = (r.partition.to_string(), r.offset.to_string());
            let schema_id = b.schema_id.map(|i| i.to_string()).unwrap_or_default();
            let headers = OwnedHeaders::new()
                .insert(hdr("error_type", &b.error_type))
                .insert(hdr("source_topic", source_topic))
                .insert(hdr("source_partition", &partition))
                .insert(hdr("original_offset", &offset))
                .insert(hdr("error_detail", &b.detail))
                .insert(hdr("schema_id", &schema_id))
                .insert(hdr("rule", b.rule.as_deref().unwrap_or("")));
            let mut record = FutureRecord::to(&self.topic)
                .payload(raw.payload(r))
                .headers(headers);
            if let Some(k) = raw.key(r) {
                record = record.key(k);
            }
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(f) => break f,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(dlq_err(&self.topic, e.to_string())),
                }
            };
            pending.push(delivery);
        }
        Ok(Deliveries(pending))
    }

    /// Waits for every delivery of `pending` and returns the last offset written per DLQ
    /// partition (empty when nothing was sent). The first failure fails the batch.
    pub async fn delivered(&self, pending: Deliveries) -> Result<BTreeMap<i32, i64>, IngestError> {
        let mut last = BTreeMap::new();
        for f in pending.0 {
            match f.await {
                Ok(Ok(d)) => {
                    let e = last.entry(d.partition).or_insert(d.offset);
                    *e = (*e).max(d.offset);
                }
                Ok(Err((e, _))) => return Err(dlq_err(&self.topic, e.to_string())),
                Err(_) => return Err(dlq_err(&self.topic, "producer dropped".into())),
            }
        }
        Ok(last)
    }

    /// Waits (up to `timeout`) until nothing handed to the producer is still in flight: after a
    /// failed batch, so that a retry reading the DLQ back on start sees every record produced.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(topic = %self.topic, error = %e, "DLQ producer flush");
        }
    }
}

/// DLQ records handed to the producer, not yet known to be written.
#[derive(Default)]
pub struct Deliveries(Vec<rdkafka::producer::DeliveryFuture>);

fn hdr<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn dlq_err(topic: &str, detail: String) -> IngestError {
    IngestError::Dlq {
        topic: topic.to_string(),
        detail,
    }
}

/// The source positions of DLQ records produced after the recorded offsets (`recorded`: DLQ
/// partition → last offset an audit commit accounts for; a partition absent from it is read
/// from its start). Those records came from a batch whose audit commit never happened.
pub fn produced_after(
    consumer: &IngestConsumer,
    dlq_topic: &str,
    partitions: &[i32],
    recorded: &BTreeMap<i32, i64>,
) -> Result<HashSet<SourcePos>, IngestError> {
    let mut out = HashSet::new();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in partitions {
        let (low, high) = watermarks(consumer, dlq_topic, p)?;
        let from = recorded.get(&p).map(|o| o + 1).unwrap_or(low).max(low);
        if from < high {
            tpl.add_partition_offset(dlq_topic, p, Offset::Offset(from))
                .map_err(|e| dlq_err(dlq_topic, e.to_string()))?;
            ends.insert(p, high);
        }
    }
    if ends.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| dlq_err(dlq_topic, e.to_string()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(dlq_err(
                dlq_topic,
                "timed out reading the DLQ tail back on start".into(),
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some(h) = m.headers() {
                    let get = |name: &str| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .map(str::to_string)
                    };
                    if let (Some(t), Some(p), Some(o)) = (
                        get("source_topic"),
                        get("source_partition").and_then(|p| p.parse().ok()),
                        get("original_offset").and_then(|o| o.parse().ok()),
                    ) {
                        out.insert((t, p, o));
                    }
                }
                if ends
                    .get(&m.partition())
                    .is_some_and(|&h| m.offset() + 1 >= h)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(topic = dlq_topic, error = %e, "reading the DLQ"),
            None => {}
        }
    }
    consumer
        .unassign()
        .map_err(|e| dlq_err(dlq_topic, e.to_string()))?;
    Ok(out)
}
