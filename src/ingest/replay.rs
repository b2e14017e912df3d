//! `flowctl replay DLQ_TOPIC --from-offset N`: after a fix (a schema registered, a rule
//! relaxed, `max_record_bytes` raised), dead letters are decoded and validated again; those
//! that now pass land in their source topic's bronze table, with their original partition and
//! offset, exactly once.
//!
//! Exactly once: the replayed rows of one DLQ partition are committed to each bronze table with
//! a `txn` action `replay:<dlq topic>:<partition>` → last DLQ offset replayed. A replay starts
//! after that position whatever `--from-offset` says, so running it twice lands nothing twice.
//! Records that still fail stay in the DLQ (they are not produced again).
//!
//! The DLQ is read and replayed in chunks of at most `batch_records` records and `batch_bytes`
//! bytes (one commit per source table and DLQ partition in each), so a large DLQ neither sits
//! in memory at once nor overflows one batch's Arrow columns.
//!
//! A truncated dead letter (one too large for the DLQ topic, see [`super::dlq`]) is replayed
//! from its bytes in `bronze_dlq_audit`. When that row is missing (the batch that produced the
//! dead letter never reached its audit commit, and no ingest has redone it yet) the replay
//! stops there with [`IngestError::ReplayUnavailable`], before committing anything of that
//! chunk: passing over the record would move the replay position past it for good.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::dlq::{AUDIT_TABLE, audit_payloads, header};
use super::error::IngestError;
use super::raw::RawBatch;
use super::source::{IngestConsumer, consumer, partitions, watermarks};
use super::topic::TopicState;
use super::validate::Rules;
use crate::contracts::registry::Registry;
use crate::lake::{AppTxn, LakeTable, lake_root};

/// What a replay did, per source topic.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplaySummary {
    pub dlq_topic: String,
    /// DLQ records read (from every source topic).
    pub read: u64,
    /// DLQ records skipped because an earlier replay already handled them.
    pub already_replayed: u64,
    /// Truncated dead letters whose bytes were read from the audit table.
    pub from_audit: u64,
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
    /// `None`: a null value (a tombstone's dead letter).
    payload: Option<Vec<u8>>,
    /// The record was produced truncated: its bytes are in the audit table.
    truncated: bool,
}

impl DeadLetter {
    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }
}

/// How large a chunk of dead letters may grow.
#[derive(Debug, Clone, Copy)]
struct ChunkLimits {
    records: usize,
    bytes: usize,
}

type ChunkTx = tokio::sync::mpsc::Sender<Result<Vec<DeadLetter>, IngestError>>;

/// Reads `dlq_topic` from `from` (partition → first offset) to the high watermarks seen at
/// start, handing over chunks of dead letters. Blocks: run it on a thread of its own.
fn read_dlq(
    c: &IngestConsumer,
    dlq_topic: &str,
    from: &BTreeMap<i32, i64>,
    limits: ChunkLimits,
    tx: &ChunkTx,
) -> Result<(), IngestError> {
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
    if ends.is_empty() {
        return Ok(());
    }
    c.assign(&tpl).map_err(kafka)?;
    let mut chunk: Vec<DeadLetter> = Vec::new();
    let mut chunk_bytes = 0usize;
    let hand_over = |chunk: &mut Vec<DeadLetter>, bytes: &mut usize| {
        *bytes = 0;
        chunk.is_empty() || tx.blocking_send(Ok(std::mem::take(chunk))).is_ok()
    };
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
                    header(header::SOURCE_TOPIC),
                    header(header::SOURCE_PARTITION).and_then(|v| v.parse().ok()),
                    header(header::ORIGINAL_OFFSET).and_then(|v| v.parse().ok()),
                ) else {
                    tracing::warn!(
                        dlq_topic,
                        partition = p,
                        offset = o,
                        "DLQ record without source headers: skipped"
                    );
                    continue;
                };
                let letter = DeadLetter {
                    dlq_partition: p,
                    dlq_offset: o,
                    source_topic: t,
                    source_partition: sp,
                    original_offset: so,
                    timestamp_ms: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    truncated: header(header::TRUNCATED).as_deref() == Some("true"),
                };
                if !chunk.is_empty()
                    && (chunk.len() >= limits.records || chunk_bytes + letter.size() > limits.bytes)
                    && !hand_over(&mut chunk, &mut chunk_bytes)
                {
                    return Ok(());
                }
                chunk_bytes += letter.size();
                chunk.push(letter);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(dlq_topic, error = %e, "reading the DLQ"),
            None => {}
        }
    }
    hand_over(&mut chunk, &mut chunk_bytes);
    Ok(())
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
        opts.kafka.clone(),
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
    let mut r = Replayer {
        opts,
        registry,
        dlq_topic,
        only_source,
        audit: None,
        states: HashMap::new(),
        summary: ReplaySummary {
            dlq_topic: dlq_topic.to_string(),
            ..Default::default()
        },
    };
    let from: BTreeMap<i32, i64> = parts.iter().map(|&p| (p, from_offset)).collect();
    let limits = ChunkLimits {
        records: opts.batch_records.max(1),
        bytes: opts.batch_bytes.max(1),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let t = dlq_topic.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(e) = read_dlq(&c, &t, &from, limits, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    while let Some(chunk) = rx.recv().await {
        r.chunk(chunk?).await?;
    }
    reader.await.expect("DLQ reader panicked");
    Ok(r.summary)
}

/// A replay's state across chunks.
struct Replayer<'a> {
    opts: &'a super::IngestOptions,
    registry: &'a Registry,
    dlq_topic: &'a str,
    only_source: Option<&'a str>,
    /// The audit table, opened when a truncated dead letter first needs it.
    audit: Option<LakeTable>,
    states: HashMap<String, TopicState>,
    summary: ReplaySummary,
}

impl Replayer<'_> {
    /// Replays one chunk: one commit per (source table, DLQ partition) it holds letters of.
    async fn chunk(&mut self, letters: Vec<DeadLetter>) -> Result<(), IngestError> {
        self.summary.read += letters.len() as u64;
        let mut groups: BTreeMap<(String, i32), Vec<DeadLetter>> = BTreeMap::new();
        for l in letters {
            if self.only_source.is_some_and(|s| s != l.source_topic) {
                continue;
            }
            groups
                .entry((l.source_topic.clone(), l.dlq_partition))
                .or_default()
                .push(l);
        }
        for ((source, dlq_partition), letters) in groups {
            if !self.states.contains_key(&source) {
                let rules = Rules::for_table(self.opts.expectations_dir.as_deref(), &source)?;
                let state = TopicState::open(
                    &source,
                    self.registry,
                    &self.opts.home,
                    rules,
                    self.opts.max_record_bytes,
                )
                .await?;
                self.states.insert(source.clone(), state);
            }
            let app = replay_app_id(self.dlq_topic, dlq_partition);
            let state = &self.states[&source];
            let done = state.replayed_up_to(&app).await?.unwrap_or(-1);
            let read = letters.len();
            let todo: Vec<DeadLetter> = letters
                .into_iter()
                .filter(|l| l.dlq_offset > done)
                .collect();
            self.summary.already_replayed += (read - todo.len()) as u64;
            if todo.is_empty() {
                continue;
            }
            let raw = self.raw_batch(&source, &todo).await?;
            let last = todo.iter().map(|l| l.dlq_offset).max().unwrap_or(done);
            let txn = AppTxn {
                app_id: app,
                version: last,
            };
            let state = self.states.get_mut(&source).expect("opened above");
            let (landed, still) = state
                .replay(raw, self.registry, txn, self.opts.run_id)
                .await?;
            *self.summary.landed.entry(source.clone()).or_default() += landed;
            let s = self
                .summary
                .still_failing
                .entry(source.clone())
                .or_default();
            for (k, n) in still {
                *s.entry(k).or_default() += n;
            }
        }
        Ok(())
    }

    /// The letters as records of their source topic; truncated ones with their bytes from the
    /// audit table.
    async fn raw_batch(
        &mut self,
        source: &str,
        letters: &[DeadLetter],
    ) -> Result<RawBatch, IngestError> {
        let truncated: Vec<(i32, i64)> = letters
            .iter()
            .filter(|l| l.truncated)
            .map(|l| (l.source_partition, l.original_offset))
            .collect();
        let mut from_audit = HashMap::new();
        if !truncated.is_empty() {
            if self.audit.is_none() {
                let path = lake_root(&self.opts.home).join(AUDIT_TABLE);
                if path.join("_delta_log").exists() {
                    self.audit = Some(LakeTable::open(&path).await?);
                }
            }
            if let Some(audit) = &self.audit {
                from_audit = audit_payloads(audit, source, &truncated).await?;
            }
            self.summary.from_audit += from_audit.len() as u64;
        }
        let mut raw = RawBatch::default();
        for l in letters {
            let (key, payload) = if l.truncated {
                let Some(full) = from_audit.get(&(l.source_partition, l.original_offset)) else {
                    return Err(IngestError::ReplayUnavailable {
                        dlq_topic: self.dlq_topic.to_string(),
                        partition: l.dlq_partition,
                        offset: l.dlq_offset,
                        source_topic: source.to_string(),
                        source_partition: l.source_partition,
                        original_offset: l.original_offset,
                        table: AUDIT_TABLE,
                    });
                };
                (full.key.as_deref(), full.value.as_deref())
            } else {
                (l.key.as_deref(), l.payload.as_deref())
            };
            raw.push(
                l.source_partition,
                l.original_offset,
                l.timestamp_ms,
                key,
                payload,
            );
        }
        Ok(raw)
    }
}
