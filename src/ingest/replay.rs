//! `flowctl replay DLQ_TOPIC --from-offset N`: after a fix (a schema registered, a rule
//! relaxed), dead letters are decoded and validated again; those that now pass land in their
//! source topic's bronze table, with their original partition and offset, exactly once.
//!
//! Exactly once: the replayed rows of one DLQ partition are committed to each bronze table with
//! a `txn` action `replay:<dlq topic>:<partition>` → last DLQ offset replayed. A replay starts
//! after that position whatever `--from-offset` says, so running it twice lands nothing twice.
//! Records that still fail stay in the DLQ (they are not produced again).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::error::IngestError;
use super::source::{IngestConsumer, RawBatch, RawRecord, consumer, partitions, watermarks};
use super::topic::TopicState;
use super::validate::Rules;
use crate::contracts::registry::Registry;
use crate::lake::AppTxn;

/// What a replay did, per source topic.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplaySummary {
    pub dlq_topic: String,
    /// DLQ records read (from every source topic).
    pub read: u64,
    /// DLQ records skipped because an earlier replay already handled them.
    pub already_replayed: u64,
    /// Per source topic: rows that now landed in bronze.
    pub landed: BTreeMap<String, u64>,
    /// Per source topic and category: records that still fail.
    pub still_failing: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The `txn` app id of a replay position.
pub fn replay_app_id(dlq_topic: &str, partition: i32) -> String {
    format!("replay:{dlq_topic}:{partition}")
}

/// One DLQ record, re-addressed to where it came from.
struct DeadLetter {
    dlq_partition: i32,
    dlq_offset: i64,
    source_topic: String,
    source_partition: i32,
    original_offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn read_dlq(
    c: &IngestConsumer,
    dlq_topic: &str,
    from: &BTreeMap<i32, i64>,
) -> Result<Vec<DeadLetter>, IngestError> {
    let kafka = |e: KafkaError| IngestError::Kafka {
        topic: dlq_topic.to_string(),
        step: "replay",
        detail: e.to_string(),
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for (&p, &start) in from {
        let (low, high) = watermarks(c, dlq_topic, p)?;
        let start = start.max(low);
        if start < high {
            tpl.add_partition_offset(dlq_topic, p, Offset::Offset(start))
                .map_err(kafka)?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl).map_err(kafka)?;
    let mut idle = std::time::Instant::now();
    while !ends.is_empty() {
        if idle.elapsed() > Duration::from_secs(30) {
            return Err(IngestError::Kafka {
                topic: dlq_topic.to_string(),
                step: "replay",
                detail: "the broker sent nothing for 30s before the DLQ's end".into(),
            });
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = std::time::Instant::now();
                let (p, o) = (m.partition(), m.offset());
                if ends.get(&p).is_some_and(|&h| o + 1 >= h) {
                    ends.remove(&p);
                }
                let header = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .map(str::to_string)
                    })
                };
                let (Some(t), Some(sp), Some(so)) = (
                    header("source_topic"),
                    header("source_partition").and_then(|v| v.parse().ok()),
                    header("original_offset").and_then(|v| v.parse().ok()),
                ) else {
                    tracing::warn!(
                        dlq_topic,
                        partition = p,
                        offset = o,
                        "DLQ record without source headers: skipped"
                    );
                    continue;
                };
                out.push(DeadLetter {
                    dlq_partition: p,
                    dlq_offset: o,
                    source_topic: t,
                    source_partition: sp,
                    original_offset: so,
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(dlq_topic, error = %e, "reading the DLQ"),
            None => {}
        }
    }
    Ok(out)
}

/// Replays `dlq_topic` from `from_offset` (every partition) into the bronze tables of the
/// source topics its records name (only `only_source` when given).
pub async fn replay(
    opts: &super::IngestOptions,
    registry: &Registry,
    dlq_topic: &str,
    from_offset: i64,
    only_source: Option<&str>,
) -> Result<ReplaySummary, IngestError> {
    let _lock = super::run::lock(&opts.home).await?;
    let (b, g, t) = (
        opts.bootstrap.clone(),
        opts.group.clone(),
        dlq_topic.to_string(),
    );
    let (c, parts) = tokio::task::spawn_blocking(move || {
        let c = consumer(&b, &g).map_err(|e| IngestError::Kafka {
            topic: t.clone(),
            step: "replay",
            detail: e.to_string(),
        })?;
        let parts = partitions(&c, &t)?;
        Ok::<_, IngestError>((c, parts))
    })
    .await
    .expect("kafka metadata call panicked")?;
    let mut summary = ReplaySummary {
        dlq_topic: dlq_topic.to_string(),
        ..Default::default()
    };
    let from: BTreeMap<i32, i64> = parts.iter().map(|&p| (p, from_offset)).collect();
    let t = dlq_topic.to_string();
    let letters = tokio::task::spawn_blocking(move || read_dlq(&c, &t, &from))
        .await
        .expect("DLQ read panicked")?;
    summary.read = letters.len() as u64;

    // Group by source topic, then by DLQ partition (one commit per pair).
    let mut by_source: BTreeMap<String, BTreeMap<i32, Vec<DeadLetter>>> = BTreeMap::new();
    for l in letters {
        if only_source.is_some_and(|s| s != l.source_topic) {
            continue;
        }
        by_source
            .entry(l.source_topic.clone())
            .or_default()
            .entry(l.dlq_partition)
            .or_default()
            .push(l);
    }
    let mut states: HashMap<String, TopicState> = HashMap::new();
    for (source, per_partition) in by_source {
        if !states.contains_key(&source) {
            let rules = Rules::for_table(opts.expectations_dir.as_deref(), &source)?;
            let state = TopicState::open(&source, registry, &opts.home, rules).await?;
            states.insert(source.clone(), state);
        }
        let state = states.get_mut(&source).expect("inserted above");
        for (dlq_partition, letters) in per_partition {
            let app = replay_app_id(dlq_topic, dlq_partition);
            let done = state.replayed_up_to(&app).await?.unwrap_or(-1);
            let mut raw = RawBatch::default();
            let mut last = done;
            for l in letters.iter().filter(|l| l.dlq_offset > done) {
                let key = l.key.as_ref().map(|k| {
                    let s = raw.arena.len();
                    raw.arena.extend_from_slice(k);
                    s..raw.arena.len()
                });
                let s = raw.arena.len();
                raw.arena.extend_from_slice(&l.payload);
                raw.records.push(RawRecord {
                    partition: l.source_partition,
                    offset: l.original_offset,
                    timestamp_ms: l.timestamp_ms,
                    key,
                    payload: s..raw.arena.len(),
                });
                last = last.max(l.dlq_offset);
            }
            summary.already_replayed += (letters.len() - raw.records.len()) as u64;
            if raw.records.is_empty() {
                continue;
            }
            let txn = AppTxn {
                app_id: app,
                version: last,
            };
            let (landed, still) = state.replay(raw, registry, txn, opts.run_id).await?;
            *summary.landed.entry(source.clone()).or_default() += landed;
            let s = summary.still_failing.entry(source.clone()).or_default();
            for (k, n) in still {
                *s.entry(k).or_default() += n;
            }
        }
    }
    Ok(summary)
}
