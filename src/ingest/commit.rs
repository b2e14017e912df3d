//! The second stage of a micro-batch: wait for its DLQ deliveries, commit its audit rows, then
//! its bronze rows, then report the group offsets. One task does this for every topic, one
//! batch at a time in the order the prepare stage handed them over, so commits stay strictly
//! in order while the next batch is being decoded.
//!
//! Per batch, exactly as [`super::positions`] assumes:
//! 1. the batch's DLQ records are delivered (else it fails here, before any commit);
//! 2. `bronze_dlq_audit` gets the bad rows in one commit carrying `txn` actions
//!    `bronze_dlq_audit:<topic>:<partition>` → last offset and, per DLQ partition, the last DLQ
//!    offset produced so far (only when the batch has bad rows);
//! 3. `bronze_<topic>` gets the good rows in one commit carrying `txn` actions
//!    `<table>:<topic>:<partition>` → last offset (even with no rows: that moves the position);
//!    its Parquet files are written on another task from the moment a writing slot is free
//!    (the batch before may still be committing), but committed only after step 2;
//! 4. the consumer group offsets are committed (lag monitoring only).
//!
//! The first error ends the stage: no later batch commits after an earlier one failed.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use indicatif::ProgressBar;
use tokio::sync::mpsc::Receiver;

use super::dlq::{AUDIT_TABLE, DlqProducer, dlq_app_id};
use super::error::IngestError;
use super::positions::app_id;
use super::prepare::Prepared;
use super::source::GroupHandle;
use super::topic::TopicSummary;
use crate::lake::{AppTxn, Appender};
use crate::metrics;
use deltalake::parquet::file::properties::WriterProperties;

/// How many batches may have their bronze files being written at once: the one committing and
/// the next. A batch's Parquet encoding (most of its commit work) then starts as soon as the
/// batch is prepared and a slot is free, not only once the batch before it has committed; that
/// keeps both cores busy while the pipeline drains. Costs one batch of memory more.
const WRITES_IN_FLIGHT: usize = 2;

/// A prepared batch (its good rows moved out) whose bronze files are being written.
struct Writing {
    batch: Prepared,
    good_rows: u64,
    /// The good rows' Kafka timestamps (µs since the epoch), for the end-to-end latency.
    event_times: Vec<i64>,
    files: AbortOnDrop<Result<Vec<deltalake::kernel::Add>, IngestError>>,
    started: Instant,
}

/// The commit stage's state for one topic.
pub struct TopicSink {
    pub topic: String,
    pub table_name: String,
    pub bronze: Appender,
    /// High watermark per partition when the run started.
    pub highs: BTreeMap<i32, i64>,
    pub summary: TopicSummary,
    pub group: GroupHandle,
    /// How the bronze table's Parquet files are encoded.
    pub props: WriterProperties,
}

/// Commits prepared micro-batches in order.
pub struct Committer {
    pub audit: Appender,
    pub sinks: Vec<TopicSink>,
    pub dlq: DlqProducer,
    /// Last offset produced per DLQ partition (recorded with every audit commit).
    pub dlq_last: BTreeMap<i32, i64>,
    pub run_id: Option<i64>,
    /// Follow mode: lag is measured against the current high watermark, not the one at start.
    pub follow: bool,
    pub progress: ProgressBar,
}

impl Committer {
    /// Commits every batch `rx` yields, in order, until it is closed; returns itself for
    /// [`Committer::finish`]. Stops at the first error (dropping `rx`, which tells the prepare
    /// stage).
    pub async fn run(mut self, mut rx: Receiver<Prepared>) -> Result<Committer, IngestError> {
        let mut writing = VecDeque::with_capacity(WRITES_IN_FLIGHT);
        // Time spent waiting for prepared batches (debug log: which stage holds the pipeline).
        let mut waited = 0f64;
        loop {
            if writing.is_empty() {
                let since = Instant::now();
                let Some(batch) = rx.recv().await else { break };
                waited += since.elapsed().as_secs_f64();
                writing.push_back(self.start(batch)?);
            }
            self.top_up(&mut rx, &mut writing)?;
            let head = writing.pop_front().expect("a batch is being written");
            self.commit(head, &mut rx, &mut writing).await?;
        }
        tracing::debug!(waiting_for_batches_s = waited, "commit stage done");
        Ok(self)
    }

    /// After a run that succeeded: creates the tables no commit created (a topic with nothing
    /// new, no bad record yet), empty, since readers expect them once an ingest ran; returns
    /// the per-topic summaries. A run that failed does not get here, and leaves no table that
    /// its commits did not create.
    pub async fn finish(mut self) -> Result<Vec<TopicSummary>, IngestError> {
        self.audit.create_if_deferred(self.run_id).await?;
        for sink in &mut self.sinks {
            if sink.bronze.create_if_deferred(self.run_id).await? {
                sink.summary.bronze_version = sink.bronze.version();
            }
        }
        Ok(self.sinks.into_iter().map(|s| s.summary).collect())
    }

    /// Starts writing the bronze files of `b` on another task. They stay invisible until its
    /// bronze commit, which comes after its audit commit and after every earlier batch's.
    fn start(&self, mut b: Prepared) -> Result<Writing, IngestError> {
        let sink = &self.sinks[b.topic];
        let writer = sink.bronze.parts_writer(&sink.props)?;
        let good_rows = b.good_rows();
        let parts = std::mem::take(&mut b.good.parts);
        let event_times = kafka_timestamps(&parts);
        let files = AbortOnDrop(tokio::spawn(async move {
            Ok::<_, IngestError>(writer.write(parts).await?)
        }));
        Ok(Writing {
            batch: b,
            good_rows,
            event_times,
            files,
            started: Instant::now(),
        })
    }

    /// Starts the file writes of batches already prepared, without waiting for any, up to
    /// [`WRITES_IN_FLIGHT`].
    fn top_up(
        &self,
        rx: &mut Receiver<Prepared>,
        writing: &mut VecDeque<Writing>,
    ) -> Result<(), IngestError> {
        while writing.len() < WRITES_IN_FLIGHT {
            match rx.try_recv() {
                Ok(b) => writing.push_back(self.start(b)?),
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        w: Writing,
        rx: &mut Receiver<Prepared>,
        writing: &mut VecDeque<Writing>,
    ) -> Result<(), IngestError> {
        let Writing {
            batch: b,
            good_rows,
            event_times,
            mut files,
            started: t_bronze,
        } = w;
        let queued_s = b.prepared.elapsed().as_secs_f64();
        let t_dlq = Instant::now();
        let bad_rows = b.bad_rows();
        let produced = self.dlq.delivered(b.dlq).await?;
        for (p, o) in produced {
            let e = self.dlq_last.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let dlq_wait_s = t_dlq.elapsed().as_secs_f64();

        let t_audit = Instant::now();
        if let Some(rows) = b.audit {
            let topic = &self.sinks[b.topic].topic;
            let mut txns: Vec<AppTxn> = b
                .last
                .iter()
                .map(|(&p, &o)| AppTxn {
                    app_id: app_id(AUDIT_TABLE, topic, p),
                    version: o,
                })
                .collect();
            txns.extend(self.dlq_last.iter().map(|(&p, &o)| AppTxn {
                app_id: dlq_app_id(self.dlq.topic(), p),
                version: o,
            }));
            self.audit.append_txns([rows], &txns, self.run_id).await?;
            let m = metrics::get();
            for (category, n) in &b.bad_by_category {
                m.dlq_events
                    .with_label_values(&[topic.as_str(), category.as_str()])
                    .inc_by(*n);
            }
            m.rows_written
                .with_label_values(&[AUDIT_TABLE])
                .inc_by(bad_rows);
            self.sinks[b.topic].summary.commits += 1;
        }
        let audit_s = t_audit.elapsed().as_secs_f64();
        // Batches prepared during the audit commit start writing while this one's files finish.
        self.top_up(rx, writing)?;

        let sink = &mut self.sinks[b.topic];
        let adds = (&mut files.0).await.expect("bronze file writer panicked")?;
        let txns: Vec<AppTxn> = b
            .last
            .iter()
            .map(|(&p, &o)| AppTxn {
                app_id: app_id(&sink.table_name, &sink.topic, p),
                version: o,
            })
            .collect();
        sink.summary.bronze_version = sink.bronze.commit_files(adds, &txns, self.run_id).await?;
        sink.summary.commits += 1;
        observe_latency(&sink.table_name, &event_times);
        // Includes the audit commit, which the file writing overlaps.
        let bronze_s = t_bronze.elapsed().as_secs_f64();

        let mut next = BTreeMap::new();
        for (&p, &o) in &b.last {
            if let Some(r) = sink.summary.ranges.get_mut(&p) {
                r.1 = r.1.max(o + 1);
            }
            next.insert(p, o + 1);
        }
        sink.group.commit(&next);
        let s = &mut sink.summary;
        s.records += b.records;
        s.bronze_rows += good_rows;
        s.dlq_rows += bad_rows;
        s.replayed += b.replayed;
        for (category, n) in b.bad_by_category {
            *s.dlq_by_category.entry(category).or_default() += n;
        }
        let m = metrics::get();
        let topic = sink.topic.as_str();
        for (p, o) in &next {
            let start_high = sink.highs.get(p).copied().unwrap_or(*o);
            let high = if self.follow {
                sink.group.high_watermark(*p).unwrap_or(start_high)
            } else {
                start_high
            };
            m.consumer_lag
                .with_label_values(&[topic, &p.to_string()])
                .set((high - o).max(0));
        }
        m.events_ingested
            .with_label_values(&[topic])
            .inc_by(good_rows);
        m.rows_written
            .with_label_values(&[sink.table_name.as_str()])
            .inc_by(good_rows);
        m.ingest_batch_duration
            .with_label_values(&[topic])
            .observe(b.started.elapsed().as_secs_f64());
        self.progress.inc(b.records);
        tracing::debug!(
            topic,
            records = b.records,
            queued_s,
            dlq_wait_s,
            audit_s,
            bronze_s,
            "micro-batch committed"
        );
        Ok(())
    }
}

/// Aborts a spawned task when dropped before it finished (an audit commit failed: the files
/// being written are not needed).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `_kafka_timestamp` column of `parts` (null timestamps left out).
fn kafka_timestamps(parts: &[deltalake::arrow::array::RecordBatch]) -> Vec<i64> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::TimestampMicrosecondType;
    let mut out = Vec::new();
    for part in parts {
        let Some(col) = part.column_by_name("_kafka_timestamp") else {
            continue;
        };
        let Some(ts) = col.as_primitive_opt::<TimestampMicrosecondType>() else {
            continue;
        };
        out.extend(
            (0..ts.len())
                .filter(|&i| ts.is_valid(i))
                .map(|i| ts.value(i)),
        );
    }
    out
}

/// `flowctl_end_to_end_latency_seconds{table}`: from each event's Kafka timestamp to the commit
/// that made it visible in `table`. A producer clock ahead of ours counts as zero.
pub fn observe_latency(table: &str, event_times_us: &[i64]) {
    if event_times_us.is_empty() {
        return;
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    // A local histogram adds without atomics and is flushed once: an observation per event
    // stays cheap at a million events a second.
    let h = metrics::get()
        .end_to_end_latency
        .with_label_values(&[table])
        .local();
    for &t in event_times_us {
        h.observe(now_us.saturating_sub(t).max(0) as f64 / 1e6);
    }
    h.flush();
}
