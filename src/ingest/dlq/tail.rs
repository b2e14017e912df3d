//! Reading the DLQ tail back on start: the records produced after the offsets the audit table
//! accounts for came from a batch that never reached its audit commit, and are not produced
//! again when that batch is redone. Only their headers are read, so truncated records count
//! the same as whole ones.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{SourcePos, header};
use crate::ingest::error::IngestError;
use crate::ingest::source::{IngestConsumer, watermarks};

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
                        get(header::SOURCE_TOPIC),
                        get(header::SOURCE_PARTITION).and_then(|p| p.parse().ok()),
                        get(header::ORIGINAL_OFFSET).and_then(|o| o.parse().ok()),
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

fn dlq_err(topic: &str, detail: String) -> IngestError {
    IngestError::Dlq {
        topic: topic.to_string(),
        detail,
    }
}
