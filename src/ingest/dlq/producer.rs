//! Producing dead letters, whatever their size.
//!
//! A DLQ record is the original key and value plus headers, so a record that fit its source
//! topic can be too large for the DLQ topic (a source topic allowing 2 MB, a DLQ topic allowing
//! 1 MB). Failing the batch for it would fail every run at the same record and stop its topic
//! for good. Instead such a record is produced *truncated*: no value (an empty one, not null),
//! its key only when at most [`TRUNCATED_KEY_MAX`] bytes, and headers that say so (`truncated`,
//! `original_value_bytes`, `original_key_bytes`, `payload_in`); its full bytes are in its
//! audit row, which every bad record gets in the same batch. It is still exactly one DLQ record
//! with the same source headers, so the read-back on start ([`super::tail`]) skips it like any
//! other, and `flowctl replay` takes its bytes from the audit table.
//!
//! Too large is known before sending in almost every case: the producer's `message.max.bytes`
//! is set from the DLQ topic's limit ([`dlq_message_limit`]) and librdkafka refuses a larger
//! record on the spot, which is replaced by its truncated form in the same place of the
//! sequence. A broker whose real limit is below the one assumed refuses after sending; then
//! the truncated form is produced when the delivery report comes back ([`DlqProducer::delivered`]).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::{AUDIT_TABLE, BadRecord, SourcePos, header};
use crate::ingest::error::IngestError;
use crate::ingest::raw::RawBatch;
use crate::kafka::{KafkaSettings, producer_config, topic_max_message_bytes};

/// The DLQ record limit assumed when neither the broker nor the options say: librdkafka's
/// default `message.max.bytes`, what DLQ records were held to before, and below what Kafka
/// (1,048,588) and nisshi (1 MiB, not reported) accept by default.
pub const DEFAULT_DLQ_MESSAGE_BYTES: usize = 1_000_000;

/// librdkafka counts a record's key, value, headers and record framing against
/// `message.max.bytes`, the broker the whole record batch (61 bytes of batch header more): this
/// much is left for the difference, so that a record librdkafka lets through fits the topic.
const BATCH_FRAMING: usize = 128;

/// The largest key a truncated record keeps (a key is an identifier: rarely larger).
const TRUNCATED_KEY_MAX: usize = 1024;

/// librdkafka's bounds for `message.max.bytes`.
const CLIENT_MESSAGE_BYTES: (usize, usize) = (1000, 1_000_000_000);

/// The largest DLQ record (as the broker counts a record batch) to produce to `topic`:
/// `configured` when given, else the topic's `max.message.bytes` as the broker reports it, else
/// [`DEFAULT_DLQ_MESSAGE_BYTES`]. A broker that cannot describe topic configs gets the default
/// too: a wrong guess costs truncated dead letters (their bytes are in the audit table), not
/// a failed ingest.
pub async fn dlq_message_limit(
    kafka: &KafkaSettings,
    topic: &str,
    configured: Option<usize>,
) -> usize {
    if let Some(n) = configured {
        return n;
    }
    match topic_max_message_bytes(kafka, topic).await {
        Ok(reported) => reported.unwrap_or(DEFAULT_DLQ_MESSAGE_BYTES),
        Err(e) => {
            tracing::warn!(topic, error = %e, "DLQ topic limit unknown: assuming {DEFAULT_DLQ_MESSAGE_BYTES} bytes");
            DEFAULT_DLQ_MESSAGE_BYTES
        }
    }
}

/// Produces DLQ records with an idempotent producer. Clones share the producer.
#[derive(Clone)]
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
}

/// DLQ records handed to the producer, not yet known to be written.
#[derive(Default)]
pub struct Deliveries(Vec<DeliveryFuture>);

fn too_large(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

fn hdr<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn len_or_null(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(|| "null".to_string(), |b| b.len().to_string())
}

/// The headers of a truncated record: `headers` (the whole record's) and what was left out.
fn truncated_headers(
    headers: OwnedHeaders,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> OwnedHeaders {
    headers
        .insert(hdr(header::TRUNCATED, "true"))
        .insert(hdr(header::ORIGINAL_VALUE_BYTES, &len_or_null(value)))
        .insert(hdr(header::ORIGINAL_KEY_BYTES, &len_or_null(key)))
        .insert(hdr(header::PAYLOAD_IN, AUDIT_TABLE))
}

/// A record's key as its truncated form keeps it.
fn truncated_key(key: Option<&[u8]>) -> Option<&[u8]> {
    key.filter(|k| k.len() <= TRUNCATED_KEY_MAX)
}

impl DlqProducer {
    /// `timeout`: how long a DLQ record may wait for the broker before its batch fails (and the
    /// attempt with it, to be retried). `max_message_bytes`: the DLQ topic's limit
    /// ([`dlq_message_limit`]); larger records are produced truncated.
    pub fn new(
        kafka: &KafkaSettings,
        topic: &str,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<DlqProducer, IngestError> {
        let client_max = max_message_bytes
            .saturating_sub(BATCH_FRAMING)
            .clamp(CLIENT_MESSAGE_BYTES.0, CLIENT_MESSAGE_BYTES.1);
        let producer = producer_config(kafka)
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .set("message.max.bytes", client_max.to_string())
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

    /// Hands `record` to the producer, waiting while its queue is full.
    async fn send<'a>(
        &self,
        mut record: FutureRecord<'a, [u8], [u8]>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, [u8], [u8]>)> {
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands the records of `bad` that are not in `skip` to the producer without waiting for
    /// the broker: the caller goes on with other work and waits with [`DlqProducer::delivered`]
    /// before it commits the audit rows. Records are produced in call order (one idempotent
    /// producer), so a later batch's records never get lower DLQ offsets than an earlier one's.
    /// A record too large for the DLQ topic is replaced by its truncated form, in its place.
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
                .insert(hdr(header::ERROR_TYPE, &b.error_type))
                .insert(hdr(header::SOURCE_TOPIC, source_topic))
                .insert(hdr(header::SOURCE_PARTITION, &partition))
                .insert(hdr(header::ORIGINAL_OFFSET, &offset))
                .insert(hdr(header::ERROR_DETAIL, &b.detail))
                .insert(hdr(header::SCHEMA_ID, &schema_id))
                .insert(hdr(header::RULE, b.rule.as_deref().unwrap_or("")));
            let (key, value) = (raw.key(r), raw.value(r));
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            // A null value stays null: the record is a tombstone's dead letter.
            if let Some(v) = value {
                record = record.payload(v);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            let delivery = match self.send(record).await {
                Ok(f) => f,
                Err((e, back)) if too_large(&e) => {
                    let headers = back.headers.unwrap_or_else(OwnedHeaders::new);
                    tracing::info!(
                        topic = %self.topic, source_topic, partition = r.partition,
                        offset = r.offset, bytes = r.size(),
                        "dead letter too large for the DLQ topic: produced truncated (bytes kept in the audit table)"
                    );
                    self.send_truncated(headers, key, value).await?
                }
                Err((e, _)) => return Err(dlq_err(&self.topic, e.to_string())),
            };
            pending.push(delivery);
        }
        Ok(Deliveries(pending))
    }

    /// Hands over the truncated form of a record with `headers`, `key` and `value`.
    async fn send_truncated(
        &self,
        headers: OwnedHeaders,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, IngestError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .headers(truncated_headers(headers, key, value))
            .payload(&[]);
        if let Some(k) = truncated_key(key) {
            record = record.key(k);
        }
        self.send(record).await.map_err(|(e, _)| {
            dlq_err(
                &self.topic,
                format!("even the truncated dead letter (headers only) was refused: {e}"),
            )
        })
    }

    /// Waits for every delivery of `pending` and returns the last offset written per DLQ
    /// partition (empty when nothing was sent). The first failure fails the batch.
    ///
    /// A record the broker refused as too large is produced again truncated, and waited for.
    /// Its offset is *not* returned: records of later batches were handed over before it and
    /// may sit below it, and the audit commit recording this batch's offsets promises that
    /// nothing below them is still unaccounted for (a crash before the next audit commit would
    /// then produce those records twice). Left out, it is merely read back on a later start,
    /// its source record already audited.
    pub async fn delivered(&self, pending: Deliveries) -> Result<BTreeMap<i32, i64>, IngestError> {
        let mut last = BTreeMap::new();
        for f in pending.0 {
            match f.await {
                Ok(Ok(d)) => {
                    let e = last.entry(d.partition).or_insert(d.offset);
                    *e = (*e).max(d.offset);
                }
                Ok(Err((e, refused))) if too_large(&e) => self.replace(&refused).await?,
                Ok(Err((e, _))) => return Err(dlq_err(&self.topic, e.to_string())),
                Err(_) => return Err(dlq_err(&self.topic, "producer dropped".into())),
            }
        }
        Ok(last)
    }

    /// Produces the truncated form of a record the broker refused as too large.
    async fn replace(&self, refused: &OwnedMessage) -> Result<(), IngestError> {
        tracing::warn!(
            topic = %self.topic,
            bytes = refused.payload().map_or(0, <[u8]>::len),
            "the broker refused a dead letter as too large (its limit is below the one assumed; \
             set max.message.bytes on the DLQ topic or the ingest's dlq_max_message_bytes): \
             produced truncated"
        );
        let headers = refused.headers().cloned().unwrap_or_else(OwnedHeaders::new);
        let f = self
            .send_truncated(headers, refused.key(), refused.payload())
            .await?;
        match f.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(dlq_err(
                &self.topic,
                format!("the truncated form of a dead letter too large for the topic: {e}"),
            )),
            Err(_) => Err(dlq_err(&self.topic, "producer dropped".into())),
        }
    }

    /// Waits (up to `timeout`) until nothing handed to the producer is still in flight: after a
    /// failed batch, so that a retry reading the DLQ back on start sees every record produced.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(topic = %self.topic, error = %e, "DLQ producer flush");
        }
    }
}

fn dlq_err(topic: &str, detail: String) -> IngestError {
    IngestError::Dlq {
        topic: topic.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn a_truncated_record_says_what_was_left_out_and_where_it_is() {
        let h = truncated_headers(
            OwnedHeaders::new().insert(hdr(header::ERROR_TYPE, "INVALID_CURRENCY")),
            Some(b"order-1"),
            Some(&[0u8; 1_040_005]),
        );
        let got: Vec<(String, String)> = h
            .iter()
            .map(|x| {
                (
                    x.key.to_string(),
                    String::from_utf8_lossy(x.value.unwrap()).into_owned(),
                )
            })
            .collect();
        let want = [
            ("error_type", "INVALID_CURRENCY"),
            ("truncated", "true"),
            ("original_value_bytes", "1040005"),
            ("original_key_bytes", "7"),
            ("payload_in", "bronze_dlq_audit"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        let null = truncated_headers(OwnedHeaders::new(), None, None);
        assert_eq!(null.get(1).value, Some(&b"null"[..]));
        assert_eq!(
            truncated_key(Some(&[1u8; 1024])).map(<[u8]>::len),
            Some(1024)
        );
        assert_eq!(truncated_key(Some(&[1u8; 1025])), None);
    }
}
