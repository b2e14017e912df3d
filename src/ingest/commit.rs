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
//!    its Parquet files are written on another task during step 2, but committed only after;
//! 4. the consumer group offsets are committed (lag monitoring only).
//!
//! The first error ends the stage: no later batch commits after an earlier one failed.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::ProgressBar;
use tokio::sync::mpsc::Receiver;

use super::dlq::{AUDIT_TABLE, DlqProducer, dlq_app_id};
use super::error::IngestError;
use super::positions::app_id;
use super::prepare::Prepared;
use super::source::GroupHandle;
use super::topic::TopicSummary;
use crate::lake::{AppTxn, LakeTable};
use crate::metrics;
use deltalake::parquet::file::properties::WriterProperties;

/// The commit stage's state for one topic.
pub struct TopicSink {
    pub topic: String,
    pub table_name: String,
    pub bronze: LakeTable,
    /// High watermark per partition when the run started.
    pub highs: BTreeMap<i32, i64>,
    pub summary: TopicSummary,
    pub group: GroupHandle,
    /// How the bronze table's Parquet files are encoded.
    pub props: WriterProperties,
}

/// Commits prepared micro-batches in order.
pub struct Committer {
    pub audit: LakeTable,
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
    /// Commits every batch `rx` yields, in order, until it is closed; returns the per-topic
    /// summaries. Stops at the first error (dropping `rx`, which tells the prepare stage).
    pub async fn run(
        mut self,
        mut rx: Receiver<Prepared>,
    ) -> Result<Vec<TopicSummary>, IngestError> {
        // Time spent waiting for prepared batches (debug log: which stage holds the pipeline).
        let (mut waited, mut since) = (0f64, Instant::now());
        while let Some(batch) = rx.recv().await {
            waited += since.elapsed().as_secs_f64();
            self.commit(batch).await?;
            since = Instant::now();
        }
        tracing::debug!(waiting_for_batches_s = waited, "commit stage done");
        Ok(self.sinks.into_iter().map(|s| s.summary).collect())
    }

    async fn commit(&mut self, b: Prepared) -> Result<(), IngestError> {
        let queued_s = b.prepared.elapsed().as_secs_f64();
        let t_dlq = Instant::now();
        let (good_rows, bad_rows) = (b.good_rows(), b.bad_rows());
        let sink = &mut self.sinks[b.topic];
        let produced = self.dlq.delivered(b.dlq).await?;
        for (p, o) in produced {
            let e = self.dlq_last.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let dlq_wait_s = t_dlq.elapsed().as_secs_f64();

        // The bronze files are written on another task while the audit rows commit here: the
        // Parquet encoding is most of a batch's commit work, and the files stay invisible
        // until the bronze commit below, which still comes after the audit commit.
        let t_bronze = Instant::now();
        let writer = sink.bronze.parts_writer(&sink.props)?;
        let good = b.good;
        let mut files = AbortOnDrop(tokio::spawn(async move {
            Ok::<_, IngestError>(writer.write(good.parts).await?)
        }));

        let t_audit = Instant::now();
        if let Some(rows) = b.audit {
            let mut txns: Vec<AppTxn> = b
                .last
                .iter()
                .map(|(&p, &o)| AppTxn {
                    app_id: app_id(AUDIT_TABLE, &sink.topic, p),
                    version: o,
                })
                .collect();
            txns.extend(self.dlq_last.iter().map(|(&p, &o)| AppTxn {
                app_id: dlq_app_id(self.dlq.topic(), p),
                version: o,
            }));
            self.audit.append_txns([rows], &txns, self.run_id).await?;
            sink.summary.commits += 1;
            let m = metrics::get();
            for (category, n) in &b.bad_by_category {
                m.dlq_events
                    .with_label_values(&[sink.topic.as_str(), category.as_str()])
                    .inc_by(*n);
            }
            m.rows_written
                .with_label_values(&[AUDIT_TABLE])
                .inc_by(bad_rows);
        }
        let audit_s = t_audit.elapsed().as_secs_f64();

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
