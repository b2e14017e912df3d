//! What can stop an ingest, saying which step failed and where (topic, partition, offsets).

use super::decode::DecodeError;
use crate::contracts::registry::RegistryError;
use crate::kafka::BrokerError;
use crate::lake::LakeError;

/// Why an ingest stopped. Bad *records* never end up here: they go to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("kafka {step} for topic {topic}: {detail}")]
    Kafka {
        topic: String,
        step: &'static str,
        detail: String,
    },
    #[error("topic {0} does not exist on the broker (create it, or produce to it first)")]
    NoSuchTopic(String),
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error(
        "no reader schema for topic {topic}: subject {subject} has no version and the topic name \
         names no built-in event kind (register one with `flowctl schemas register`)"
    )]
    NoSchema { topic: String, subject: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("expectations: {0}")]
    Expectations(String),
    #[error(
        "topic {topic} partition {partition}: the stored position (next offset {next}, committed \
         in {table}) is {problem} (log start {low}, log end {high}); nothing was skipped or \
         re-read. Rerun with `flowctl ingest --topics {topic} --reset-offsets earliest` to \
         re-read from {low}, or `--reset-offsets latest` to start at {high}"
    )]
    OutOfRange {
        topic: String,
        partition: i32,
        table: String,
        next: i64,
        low: i64,
        high: i64,
        problem: &'static str,
    },
    #[error(
        "topic {topic} partition {partition} stalled at offset {at} before reaching {target}: \
         the broker sent nothing for {idle_secs}s (everything before {at} is committed; a retry \
         resumes there)"
    )]
    Stalled {
        topic: String,
        partition: i32,
        at: i64,
        target: i64,
        idle_secs: u64,
    },
    #[error(
        "DLQ {dlq_topic} partition {partition} offset {offset} is a truncated dead letter (too \
         large for the DLQ topic) of {source_topic} partition {source_partition} offset \
         {original_offset}, and {table} holds no row with its bytes: the batch that produced it \
         never reached its audit commit. Run `flowctl ingest --topics {source_topic}` to finish \
         that batch, then replay again (nothing from this point on was replayed)"
    )]
    ReplayUnavailable {
        dlq_topic: String,
        partition: i32,
        offset: i64,
        source_topic: String,
        source_partition: i32,
        original_offset: i64,
        table: &'static str,
    },
    #[error("dead-letter queue {topic}: {detail}")]
    Dlq { topic: String, detail: String },
    #[error("ingest lock {path}: {detail}")]
    Lock { path: String, detail: String },
}

impl IngestError {
    /// Whether a retry may succeed: broker and registry hiccups may; a missing schema or an
    /// offset problem needs a human.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Broker(_)
            | IngestError::Kafka { .. }
            | IngestError::Stalled { .. }
            | IngestError::Dlq { .. }
            | IngestError::Lake(_)
            | IngestError::Decode(_)
            | IngestError::Lock { .. } => true,
            IngestError::Registry(e) => !matches!(
                e,
                RegistryError::InvalidSchema(_) | RegistryError::SchemaNotFound(_)
            ),
            IngestError::NoSuchTopic(_)
            | IngestError::NoSchema { .. }
            | IngestError::Expectations(_)
            | IngestError::OutOfRange { .. }
            | IngestError::ReplayUnavailable { .. } => false,
        }
    }
}
