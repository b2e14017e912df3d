//! The dead-letter side: bad records go to a DLQ topic (original key and bytes, structured
//! headers) and to the `bronze_dlq_audit` Delta table.
//!
//! The audit table is the exactly-once record (its commits carry the source positions) and the
//! one place that always holds a bad record's bytes whole: a record too large for the DLQ
//! topic is produced there truncated ([`producer`]), its headers saying so and where the full
//! bytes are. Kafka has no transactions here (the broker lacks them), so the DLQ *topic* is
//! kept duplicate-free another way: each audit commit also records, per DLQ partition, the last
//! DLQ offset produced so far. On start, whatever the DLQ holds after that offset was produced
//! by a batch that never reached its audit commit; those records' source positions are read
//! back from their headers ([`tail`]) and not produced again when the batch is redone. A
//! truncated record carries the same source headers, so it is read back and skipped the same.

mod audit;
mod producer;
mod tail;

pub use audit::{AUDIT_PARTITION, AUDIT_TABLE, audit_batch, audit_payloads, audit_schema};
pub use producer::{DEFAULT_DLQ_MESSAGE_BYTES, Deliveries, DlqProducer, dlq_message_limit};
pub use tail::produced_after;

use crate::contracts::wire::SchemaId;

/// Default DLQ topic.
pub const DEFAULT_DLQ_TOPIC: &str = "bronze_dlq";

/// The headers of a DLQ record. The first seven are on every record; the rest only on a
/// truncated one (their absence means the record is whole).
pub mod header {
    pub const ERROR_TYPE: &str = "error_type";
    pub const SOURCE_TOPIC: &str = "source_topic";
    pub const SOURCE_PARTITION: &str = "source_partition";
    pub const ORIGINAL_OFFSET: &str = "original_offset";
    pub const ERROR_DETAIL: &str = "error_detail";
    /// The Confluent schema id (signed, as the wire carries it); empty when unreadable.
    pub const SCHEMA_ID: &str = "schema_id";
    /// The expectation rule that failed; empty for structural faults.
    pub const RULE: &str = "rule";
    /// `true`: the record's value (and its key, when larger than 1 KiB) was left out because
    /// the whole record does not fit the DLQ topic; the value is empty, never null.
    pub const TRUNCATED: &str = "truncated";
    /// The original value's length in bytes, or `null` for a null value.
    pub const ORIGINAL_VALUE_BYTES: &str = "original_value_bytes";
    /// The original key's length in bytes, or `null` for a null key.
    pub const ORIGINAL_KEY_BYTES: &str = "original_key_bytes";
    /// Where the full bytes are: the audit table, whose row for (`source_topic`,
    /// `source_partition`, `original_offset`) holds them (`kafka_key`, `payload`).
    pub const PAYLOAD_IN: &str = "payload_in";
}

/// The audit-table app id that records the last offset produced to a DLQ partition.
pub fn dlq_app_id(dlq_topic: &str, partition: i32) -> String {
    format!("{AUDIT_TABLE}:dlq:{dlq_topic}:{partition}")
}

/// One source position, as DLQ headers carry it.
pub type SourcePos = (String, i32, i64);

/// The longest `error_detail` kept, in bytes. Details quote what they found (a rule's
/// `found "…"`), and a multi-megabyte string must not become a multi-megabyte header (one that
/// would not fit the DLQ topic even with the value left out) or audit cell; the record's bytes
/// are kept anyway.
const MAX_DETAIL_BYTES: usize = 1024;

/// A record that does not go to bronze, and why.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Index into the micro-batch's records.
    pub index: usize,
    /// DLQ `error_type`: DESERIALIZATION_ERROR, INVALID_ENUM, …
    pub error_type: String,
    /// Why, at most [`MAX_DETAIL_BYTES`] (the DLQ header and the audit row say the same).
    pub detail: String,
    /// The expectation rule that failed (business rules only).
    pub rule: Option<String>,
    pub schema_id: Option<SchemaId>,
}

impl BadRecord {
    pub fn new(
        index: usize,
        error_type: &str,
        detail: String,
        rule: Option<String>,
        schema_id: Option<SchemaId>,
    ) -> BadRecord {
        BadRecord {
            index,
            error_type: error_type.to_string(),
            detail: bounded_detail(detail),
            rule,
            schema_id,
        }
    }
}

/// `detail` cut to [`MAX_DETAIL_BYTES`] at a character boundary, saying so.
fn bounded_detail(detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… (cut at {end} of {} bytes)",
        &detail[..end],
        detail.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_bounded_at_a_character_boundary() {
        let short = BadRecord::new(0, "INVALID_ENUM", "status must be …".into(), None, None);
        assert_eq!(short.detail, "status must be …");
        let long = format!(
            "currency must be one of [EUR], found \"{}\"",
            "é".repeat(5000)
        );
        let b = BadRecord::new(0, "INVALID_CURRENCY", long.clone(), None, Some(-1));
        assert!(b.detail.len() < MAX_DETAIL_BYTES + 64, "{}", b.detail.len());
        assert!(
            b.detail
                .starts_with("currency must be one of [EUR], found \"éé")
        );
        assert!(b.detail.ends_with(&format!("of {} bytes)", long.len())));
    }
}
