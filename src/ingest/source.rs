//! The Kafka side of ingest: one consumer thread per topic that reads assigned partitions from
//! planned offsets and hands over micro-batches, so consuming overlaps with decoding and
//! committing. Handled batches come back to the thread to be refilled (their memory stays
//! mapped); the first batches of a run ramp up in size so the stages behind start sooner.
//!
//! Partitions are *assigned*, not subscribed: positions come from the Delta log, and a group
//! rebalance must never move them. The group id exists only so lag can be committed for
//! monitoring tools. A bounded run stops each partition at the high watermark seen at start (or
//! at partition EOF); a partition that goes silent before that for `idle_timeout` ends the run as
//! stalled (what was read is still committed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::error::IngestError;
use super::raw::RawBatch;
use crate::kafka::{KafkaSettings, consumer_config};

/// How long a metadata or watermark request may take.
const META_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the consumer thread stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every partition reached its target (bounded run).
    CaughtUp,
    /// `max_records` or `max_duration` reached.
    Limit,
    /// Asked to stop (Ctrl-C, cancel, timeout).
    Stopped,
    /// A partition went silent before its target.
    Stalled {
        partition: i32,
        at: i64,
        target: i64,
    },
    /// The consumer failed in a way a retry may fix.
    Failed(String),
}

/// What the consumer thread sends.
#[derive(Debug)]
pub enum SourceMsg {
    Batch(RawBatch),
    End(End),
}

/// Where and how far to read.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub topic: String,
    /// partition → (first offset, target end offset exclusive; `None` in follow mode).
    pub partitions: BTreeMap<i32, (i64, Option<i64>)>,
    /// Records per batch once the first batches have ramped up (`batch_limit`).
    pub batch_records: usize,
    /// Bytes (keys and values) per batch: a batch is handed over before a record would take it
    /// past this, so a batch holds at most this much or one record. Large records then cannot
    /// pile up in one batch beyond what its Arrow columns (32-bit offsets: 2 GiB) and memory
    /// hold.
    pub batch_bytes: usize,
    /// Longest time a batch collects before it is handed over (follow mode's commit interval).
    pub batch_interval: Duration,
    pub idle_timeout: Duration,
    pub max_records: Option<u64>,
    pub max_duration: Option<Duration>,
}

/// The channel all consumer threads of one ingest send to: (topic index, message).
pub type SourceTx = tokio::sync::mpsc::Sender<(usize, SourceMsg)>;

/// A running consumer thread. Dropping it stops the thread (which also ends on its own when
/// the receiving side is gone).
pub struct Source {
    consumer: Arc<IngestConsumer>,
    stop: Arc<AtomicBool>,
    topic: String,
    /// Handled batches go back to the thread, which refills them: the arena stays allocated
    /// (and its pages mapped) instead of being freed and faulted in again for every batch.
    recycle: std::sync::mpsc::SyncSender<RawBatch>,
}

/// What the commit stage needs of a topic's consumer: committing group offsets and reading
/// high watermarks (both for lag monitoring only).
#[derive(Clone)]
pub struct GroupHandle {
    consumer: Arc<IngestConsumer>,
    topic: String,
}

/// librdkafka reports partition EOF (which ingest asks for, to end bounded batches) through the
/// client's error callback as well; the default context logs each at ERROR. This one does not.
pub struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// The consumer type ingest uses.
pub type IngestConsumer = BaseConsumer<QuietEof>;

/// The largest fetch response the consumer accepts (librdkafka's maximum). Below a record's
/// size a fetch fails ("Invalid response size … increase receive.message.max.bytes") and is
/// retried forever: with the default, 100 MB, one record of 102 MB that the broker accepted
/// stalled its partition on every run. Nothing is allocated up front; a response is as large
/// as `fetch.max.bytes` (50 MB), or as the first record batch when that is larger.
const RECEIVE_MESSAGE_MAX_BYTES: i32 = i32::MAX;

/// A consumer for `group` on the `kafka` cluster, configured for explicit assignment and no automatic
/// offset handling, and able to read any record the broker holds.
pub fn consumer(kafka: &KafkaSettings, group: &str) -> Result<IngestConsumer, KafkaError> {
    consumer_config(kafka, group)
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("allow.auto.create.topics", "false")
        .set(
            "receive.message.max.bytes",
            RECEIVE_MESSAGE_MAX_BYTES.to_string(),
        )
        .create_with_context(QuietEof)
}

/// The topic's partitions, sorted. Errors when the topic does not exist.
pub fn partitions(consumer: &IngestConsumer, topic: &str) -> Result<Vec<i32>, IngestError> {
    let md = consumer
        .fetch_metadata(Some(topic), META_TIMEOUT)
        .map_err(|e| IngestError::Kafka {
            topic: topic.into(),
            step: "metadata",
            detail: e.to_string(),
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(IngestError::NoSuchTopic(topic.into()));
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(IngestError::NoSuchTopic(topic.into()));
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    Ok(ps)
}

/// `(low, high)` watermarks of one partition.
pub fn watermarks(
    consumer: &IngestConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), IngestError> {
    consumer
        .fetch_watermarks(topic, partition, META_TIMEOUT)
        .map_err(|e| IngestError::Kafka {
            topic: topic.into(),
            step: "watermarks",
            detail: format!("partition {partition}: {e}"),
        })
}

impl Source {
    /// Assigns the planned partitions and starts the consumer thread. Partitions whose start is
    /// already at their target are not assigned at all.
    pub fn start(
        consumer: IngestConsumer,
        plan: SourcePlan,
        index: usize,
        tx: SourceTx,
    ) -> Result<Source, IngestError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &(start, target)) in &plan.partitions {
            if target.is_none_or(|t| start < t) {
                tpl.add_partition_offset(&plan.topic, p, Offset::Offset(start))
                    .map_err(|e| kafka(&plan.topic, "assign", e))?;
            }
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka(&plan.topic, "assign", e))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let topic = plan.topic.clone();
        let (recycle, recycled) = std::sync::mpsc::sync_channel(2);
        {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            let out = Out {
                index,
                tx,
                recycled,
            };
            std::thread::Builder::new()
                .name(format!("ingest-{}", plan.topic))
                .spawn(move || run(&consumer, plan, &stop, &out))
                .map_err(|e| IngestError::Kafka {
                    topic: topic.clone(),
                    step: "consumer thread",
                    detail: e.to_string(),
                })?;
        }
        Ok(Source {
            consumer,
            stop,
            topic,
            recycle,
        })
    }

    /// Asks the thread to hand over what it has and end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Gives a handled batch back to the thread for reuse (dropped if it has enough).
    pub fn recycle(&self, batch: RawBatch) {
        let _ = self.recycle.try_send(batch);
    }

    /// The handle the commit stage uses for group offsets and lag.
    pub fn group(&self) -> GroupHandle {
        GroupHandle {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }
}

impl GroupHandle {
    /// Commits `next` offsets (partition → next offset to read) to the consumer group, for lag
    /// monitoring only. Best effort: the Delta log is the source of truth.
    pub fn commit(&self, next: &BTreeMap<i32, i64>) {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in next {
            let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(topic = %self.topic, error = %e, "group offset commit failed");
        }
    }

    /// The current high watermark of a partition (for lag in follow mode). Blocks for up to
    /// the metadata timeout.
    pub fn high_watermark(&self, partition: i32) -> Option<i64> {
        watermarks(&self.consumer, &self.topic, partition)
            .ok()
            .map(|(_, h)| h)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kafka(topic: &str, step: &'static str, e: KafkaError) -> IngestError {
    IngestError::Kafka {
        topic: topic.into(),
        step,
        detail: e.to_string(),
    }
}

/// Where the consumer thread hands its batches, and gets them back.
struct Out {
    index: usize,
    tx: SourceTx,
    recycled: std::sync::mpsc::Receiver<RawBatch>,
}

impl Out {
    /// Hands `b` over (blocking while the channel is full) and leaves an empty batch, a
    /// recycled one when there is one, in its place. False when the receiver is gone. The
    /// arena kept for the next batch is at most `batch_bytes` (a batch that held one huge
    /// record does not make every later one reserve as much).
    fn send(&self, b: &mut RawBatch, batch_bytes: usize) -> bool {
        if b.records.is_empty() {
            return true;
        }
        let fresh = match self.recycled.try_recv() {
            Ok(mut r) => {
                r.arena.clear();
                r.arena.shrink_to(batch_bytes);
                r.records.clear();
                r
            }
            Err(_) => RawBatch::with_capacity(b.records.len(), b.arena.len().min(batch_bytes)),
        };
        let full = std::mem::replace(b, fresh);
        self.tx
            .blocking_send((self.index, SourceMsg::Batch(full)))
            .is_ok()
    }
}

/// The size of the batch handed over after `handed_over` others: the first ones ramp up (an
/// eighth, a quarter, a half of `batch_records`, but not below 1,000 records), so the stages
/// behind start working while the rest of the first full batch is still being read.
fn batch_limit(batch_records: usize, handed_over: u32) -> usize {
    const RAMP: u32 = 3;
    if handed_over >= RAMP {
        return batch_records;
    }
    (batch_records >> (RAMP - handed_over)).clamp(batch_records.min(1000), batch_records)
}

/// Messages handled between two looks at the clock while records keep arriving: reading the
/// clock per record costs more than the rest of the loop.
const CLOCK_EVERY: u32 = 1024;

/// The consumer thread's loop.
fn run(consumer: &IngestConsumer, plan: SourcePlan, stop: &AtomicBool, out: &Out) {
    let started = Instant::now();
    // partition → (next offset expected, target)
    let mut open: BTreeMap<i32, (i64, Option<i64>)> = plan
        .partitions
        .iter()
        .filter(|(_, (s, t))| t.is_none_or(|t| *s < t))
        .map(|(&p, &v)| (p, v))
        .collect();
    let bounded = plan.partitions.values().all(|(_, t)| t.is_some());
    let mut batch = RawBatch::default();
    let mut batch_started = Instant::now();
    let mut last_message = Instant::now();
    let mut total: u64 = 0;
    // Messages since the clock was last read (CLOCK_EVERY).
    let mut unclocked: u32 = 0;
    let mut handed_over: u32 = 0;
    let end = loop {
        if stop.load(Ordering::SeqCst) {
            break End::Stopped;
        }
        if bounded && open.is_empty() {
            break End::CaughtUp;
        }
        if plan.max_records.is_some_and(|m| total >= m) {
            break End::Limit;
        }
        // Whether a record was added to the batch.
        let mut got = false;
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Ok(m)) => 'msg: {
                let (p, off) = (m.partition(), m.offset());
                let Some(&(_, target)) = open.get(&p) else {
                    break 'msg;
                };
                if target.is_some_and(|t| off >= t) {
                    open.remove(&p);
                    break 'msg;
                }
                got = true;
                let size = m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
                if !batch.records.is_empty() && batch.arena.len() + size > plan.batch_bytes {
                    if !out.send(&mut batch, plan.batch_bytes) {
                        return;
                    }
                    handed_over += 1;
                    batch_started = Instant::now();
                    last_message = batch_started;
                }
                batch.push(p, off, m.timestamp().to_millis(), m.key(), m.payload());
                total += 1;
                if target.is_some_and(|t| off + 1 >= t) {
                    open.remove(&p);
                } else if let Some(e) = open.get_mut(&p) {
                    e.0 = off + 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if bounded => {
                open.remove(&p);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                // Transport errors are retried by librdkafka itself; a partition that stays
                // silent ends the run as stalled below.
                tracing::warn!(topic = %plan.topic, error = %e, "consumer error");
                if let KafkaError::MessageConsumption(code) = &e
                    && matches!(code, rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange)
                {
                    break End::Failed(e.to_string());
                }
            }
        }
        if got {
            unclocked += 1;
        }
        let full = batch.records.len() >= batch_limit(plan.batch_records, handed_over)
            || batch.arena.len() >= plan.batch_bytes;
        // Time matters only when the broker went quiet, or every CLOCK_EVERY messages.
        let now = (full || !got || unclocked >= CLOCK_EVERY).then(Instant::now);
        if let Some(now) = now {
            if unclocked > 0 {
                last_message = now;
                unclocked = 0;
            }
            if plan.max_duration.is_some_and(|d| now - started >= d) {
                break End::Limit;
            }
        }
        let due = now.is_some_and(|now| now - batch_started >= plan.batch_interval);
        if full || (!batch.records.is_empty() && due) {
            if !out.send(&mut batch, plan.batch_bytes) {
                return;
            }
            handed_over += 1;
            // Time spent waiting for the downstream stages is not broker silence.
            batch_started = Instant::now();
            last_message = batch_started;
            continue;
        }
        if bounded
            && !got
            && let Some(now) = now
            && now - last_message >= plan.idle_timeout
            && let Some((&p, &(at, Some(target)))) = open.iter().next()
        {
            break End::Stalled {
                partition: p,
                at,
                target,
            };
        }
    };
    tracing::debug!(
        topic = %plan.topic,
        records = total,
        seconds = started.elapsed().as_secs_f64(),
        ?end,
        "consumer done"
    );
    if out.send(&mut batch, plan.batch_bytes) {
        let _ = out.tx.blocking_send((out.index, SourceMsg::End(end)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_batches_ramp_up() {
        let sizes: Vec<usize> = (0..5).map(|n| batch_limit(100_000, n)).collect();
        assert_eq!(sizes, vec![12_500, 25_000, 50_000, 100_000, 100_000]);
        // Never below 1,000 records, never above the batch size.
        assert_eq!(batch_limit(4_000, 0), 1_000);
        assert_eq!(batch_limit(500, 0), 500);
        assert_eq!(batch_limit(1, 1), 1);
    }
}
