//! Kafka → bronze: the system of record. Every event that reached Kafka ends in exactly one
//! place — its `bronze_<topic>` table or the dead-letter queue — exactly once, whatever crashes.
//!
//! Per micro-batch: decode (wire format → writer schema by id from the registry → the latest
//! reader schema), validate (structural faults from the decoder, business rules from the bronze
//! table's expectation file), send bad records to the DLQ topic, commit them to
//! `bronze_dlq_audit`, then commit the good rows to bronze. Both commits carry the Kafka
//! positions as Delta `txn` actions (see [`positions`]); on start the consumer seeks from them.
//! Kafka group offsets are committed afterwards, for lag monitoring only.
//!
//! The work is pipelined ([`run`]): consumer threads read batch N+2 while the prepare stage
//! ([`prepare`]) decodes and validates batch N+1 and hands its bad records to the DLQ producer,
//! and the commit stage ([`commit`]) writes batch N: it waits for that batch's DLQ deliveries,
//! commits its audit rows, then its bronze rows (one Parquet file per `event_date`). Commits
//! happen one batch at a time in read order, and the first failure stops them: no batch commits
//! after an earlier one failed. The first batches of a run are smaller (an eighth, a quarter, a
//! half of `batch_records`) so that every stage has work sooner.

mod commit;
pub mod decode;
mod dlq;
mod error;
pub mod lag;
mod positions;
mod prepare;
mod raw;
mod replay;
mod run;
mod screen;
mod source;
mod topic;
mod validate;

use std::path::PathBuf;

use crate::kafka::KafkaSettings;
use std::time::Duration;

pub use dlq::{
    AUDIT_PARTITION, AUDIT_TABLE, DEFAULT_DLQ_MESSAGE_BYTES, DEFAULT_DLQ_TOPIC, audit_schema,
};
pub use error::IngestError;
pub use positions::{Reset, app_id};
pub use replay::{ReplaySummary, replay, replay_app_id};
pub use run::ingest;
pub use screen::{DEFAULT_MAX_RECORD_BYTES, NULL_VALUE, RECORD_TOO_LARGE};
pub use topic::{TopicSummary, bronze_table};
pub use validate::RuleFailure;

/// The consumer group whose committed offsets show ingest lag (informational only).
pub const DEFAULT_GROUP: &str = "flowctl-bronze";

/// Default [`IngestOptions::batch_bytes`]: far above what 100,000 records of the contracts'
/// events take (about 25 MB), so it only shortens batches of unusually large records.
pub const DEFAULT_BATCH_BYTES: usize = 64 << 20;

/// What to ingest and how far. Built by the CLI (`flowctl ingest`) and the `ingest_bronze` task.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub topics: Vec<String>,
    pub kafka: KafkaSettings,
    /// `FLOWCTL_HOME`: the lake lives under it.
    pub home: PathBuf,
    /// Where the bronze tables' expectation files are (their row rules are the business rules).
    pub expectations_dir: Option<PathBuf>,
    pub dlq_topic: String,
    pub group: String,
    /// Stop a topic after this many records (bounded runs only stop earlier).
    pub max_records: Option<u64>,
    /// Stop a topic after this long.
    pub max_duration: Option<Duration>,
    /// Records per micro-batch (one pair of commits); the first three batches of a run are
    /// smaller (see [`run`]).
    pub batch_records: usize,
    /// Key and value bytes per micro-batch: a batch ends before a record would take it past
    /// this (a batch holds at most this much, or one record), which bounds the memory of the
    /// batches in flight and keeps a batch's Arrow columns within their 2 GiB.
    pub batch_bytes: usize,
    /// Records larger than this (key and value bytes) are not decoded: they go to the DLQ as
    /// `RECORD_TOO_LARGE`, their bytes kept whole in the audit table, and the topic goes on.
    pub max_record_bytes: usize,
    /// The largest record the DLQ topic takes, when the broker does not report the topic's
    /// `max.message.bytes` (nisshi reports only configs set on the topic). Default: what the
    /// broker reports, else 1,000,000. Dead letters larger than this are produced truncated.
    pub dlq_max_message_bytes: Option<usize>,
    /// Keep consuming after the high watermark, committing every `commit_interval`.
    pub follow: bool,
    pub commit_interval: Duration,
    /// A bounded run whose partition stays silent this long before its target fails as stalled.
    pub idle_timeout: Duration,
    /// How long a DLQ send may wait for the broker before the batch fails (default 60 s).
    pub dlq_timeout: Duration,
    /// Explicit repair of out-of-range stored positions.
    pub reset: Option<Reset>,
    /// The flow run, recorded in commit metadata.
    pub run_id: Option<i64>,
}

impl IngestOptions {
    /// Defaults for `topics` on the cluster `kafka` names, with the lake under `home`.
    pub fn new(topics: Vec<String>, kafka: KafkaSettings, home: PathBuf) -> IngestOptions {
        IngestOptions {
            topics,
            kafka,
            home,
            expectations_dir: None,
            dlq_topic: DEFAULT_DLQ_TOPIC.to_string(),
            group: DEFAULT_GROUP.to_string(),
            max_records: None,
            max_duration: None,
            batch_records: 100_000,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            dlq_max_message_bytes: None,
            follow: false,
            commit_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            dlq_timeout: Duration::from_secs(60),
            reset: None,
            run_id: None,
        }
    }
}

/// What one ingest did, per topic.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestSummary {
    pub topics: Vec<TopicSummary>,
    pub seconds: f64,
}

impl IngestSummary {
    pub fn records(&self) -> u64 {
        self.topics.iter().map(|t| t.records).sum()
    }
    pub fn bronze_rows(&self) -> u64 {
        self.topics.iter().map(|t| t.bronze_rows).sum()
    }
    pub fn dlq_rows(&self) -> u64 {
        self.topics.iter().map(|t| t.dlq_rows).sum()
    }

    /// A human table: one line per topic, then the DLQ categories.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<16} {:<24} {:>10} {:>10} {:>8} {:>9} {:>8}\n",
            "TOPIC", "TABLE", "RECORDS", "BRONZE", "DLQ", "REPLAYED", "COMMITS"
        );
        for t in &self.topics {
            s.push_str(&format!(
                "{:<16} {:<24} {:>10} {:>10} {:>8} {:>9} {:>8}\n",
                t.topic, t.table, t.records, t.bronze_rows, t.dlq_rows, t.replayed, t.commits
            ));
        }
        for t in &self.topics {
            for (cat, n) in &t.dlq_by_category {
                s.push_str(&format!("  dlq {:<14} {:<26} {:>8}\n", t.topic, cat, n));
            }
            if let Some(end) = &t.end {
                s.push_str(&format!("  {}: {end}\n", t.topic));
            }
        }
        let rate = if self.seconds > 0.0 {
            self.records() as f64 / self.seconds
        } else {
            0.0
        };
        s.push_str(&format!(
            "{} records in {:.2}s ({:.0} records/s)\n",
            self.records(),
            self.seconds,
            rate
        ));
        s
    }
}
