//! One topic's ingest state: its decoder, bronze table, positions and counters, and the
//! handling of one micro-batch (decode → validate → DLQ → audit commit → bronze commit).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;

use super::dlq::{AUDIT_TABLE, BadRecord, DlqProducer, SourcePos, audit_batch, dlq_app_id};
use super::error::IngestError;
use super::positions::{self, Plan, Reset, Stored, app_id};
use super::source::RawBatch;
use super::validate::Rules;
use crate::contracts::domain::EventKind;
use crate::contracts::generate::SchemaVersion;
use crate::contracts::produce::schema_for;
use crate::contracts::registry::{Registry, RegistryError};
use crate::contracts::wire;
use crate::lake::{AppTxn, BronzeDecoder, LakeTable, conform, lake_root};
use crate::metrics;

/// The bronze table of a topic: `bronze_<topic>`, with anything but letters, digits and `_`
/// replaced by `_` (`orders-bench` → `bronze_orders_bench`).
pub fn bronze_table(topic: &str) -> String {
    let clean: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("bronze_{}", clean.to_ascii_lowercase())
}

/// What ingest did for one topic.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TopicSummary {
    pub topic: String,
    pub table: String,
    /// Records read from Kafka in this run.
    pub records: u64,
    pub bronze_rows: u64,
    pub dlq_rows: u64,
    /// Records read again after a crash and found already committed (not written twice).
    pub replayed: u64,
    pub dlq_by_category: BTreeMap<String, u64>,
    /// partition → (first offset read, next offset after the run).
    pub ranges: BTreeMap<i32, (i64, i64)>,
    pub commits: u64,
    pub bronze_version: i64,
    /// How the run ended for this topic (caught up, limit, stopped…).
    pub end: Option<String>,
}

/// A topic being ingested.
pub struct TopicState {
    pub topic: String,
    pub table_name: String,
    decoder: BronzeDecoder,
    /// Schema ids the registry does not know (asked once).
    unknown_ids: HashSet<u32>,
    bronze: LakeTable,
    table_schema: SchemaRef,
    rules: Rules,
    pub plans: BTreeMap<i32, Plan>,
    /// High watermark per partition when the run started.
    pub highs: BTreeMap<i32, i64>,
    pub summary: TopicSummary,
}

impl TopicState {
    /// Resolves the reader schema (latest version of `<topic>-value`, or the built-in schema
    /// for a topic named after an event kind), opens or creates the bronze table (adding the
    /// columns a newer schema brings) and reads the committed positions.
    pub async fn open(
        topic: &str,
        registry: &Registry,
        home: &std::path::Path,
        rules: Rules,
    ) -> Result<TopicState, IngestError> {
        let subject = format!("{topic}-value");
        let reader = match registry.latest(&subject).await? {
            Some((_, text)) => text,
            None => {
                let kind = EventKind::for_topic(topic).ok_or_else(|| IngestError::NoSchema {
                    topic: topic.into(),
                    subject: subject.clone(),
                })?;
                let version = if kind == EventKind::Orders {
                    SchemaVersion::V2
                } else {
                    SchemaVersion::V1
                };
                let (_, text) = schema_for(topic, version).map_err(|_| IngestError::NoSchema {
                    topic: topic.into(),
                    subject: subject.clone(),
                })?;
                text.to_string()
            }
        };
        let decoder = BronzeDecoder::new(&reader)?;
        let table_name = bronze_table(topic);
        let path = lake_root(home).join(&table_name);
        let mut bronze =
            LakeTable::open_or_create(&path, &decoder.schema(), &["event_date"]).await?;
        let added = bronze.add_missing_columns(&decoder.schema()).await?;
        if !added.is_empty() {
            tracing::info!(table = %table_name, columns = ?added, "schema evolved: columns added");
        }
        let table_schema = bronze.arrow_schema()?;
        Ok(TopicState {
            topic: topic.to_string(),
            summary: TopicSummary {
                topic: topic.to_string(),
                table: table_name.clone(),
                ..Default::default()
            },
            table_name,
            decoder,
            unknown_ids: HashSet::new(),
            bronze,
            table_schema,
            rules,
            plans: BTreeMap::new(),
            highs: BTreeMap::new(),
        })
    }

    /// Plans every partition from the stored positions and the log bounds; applies `reset`
    /// (recording the new positions in both tables before anything is read).
    pub async fn plan(
        &mut self,
        bounds: &BTreeMap<i32, (i64, i64)>,
        audit: &mut LakeTable,
        reset: Option<Reset>,
        run_id: Option<i64>,
    ) -> Result<(), IngestError> {
        let mut resets = Vec::new();
        for (&p, &(low, high)) in bounds {
            let stored = Stored {
                bronze: self
                    .bronze
                    .txn_version(&app_id(&self.table_name, &self.topic, p))
                    .await?,
                audit: audit
                    .txn_version(&app_id(AUDIT_TABLE, &self.topic, p))
                    .await?,
                low,
                high,
            };
            let plan = positions::plan(stored, reset).map_err(|o| IngestError::OutOfRange {
                topic: self.topic.clone(),
                partition: p,
                table: self.table_name.clone(),
                next: o.next(),
                low,
                high,
                problem: o.problem(),
            })?;
            if let Some(to) = plan.reset_to {
                tracing::warn!(topic = %self.topic, partition = p, from = ?stored.bronze, to, "offset reset");
                resets.push((p, to));
            }
            self.summary.ranges.insert(p, (plan.start, plan.start));
            self.highs.insert(p, high);
            self.plans.insert(p, plan);
        }
        if !resets.is_empty() {
            let txns = |table: &str| -> Vec<AppTxn> {
                resets
                    .iter()
                    .map(|&(p, v)| AppTxn {
                        app_id: app_id(table, &self.topic, p),
                        version: v,
                    })
                    .collect()
            };
            audit.append_txns([], &txns(AUDIT_TABLE), run_id).await?;
            let bronze_txns = txns(&self.table_name);
            self.bronze.append_txns([], &bronze_txns, run_id).await?;
        }
        Ok(())
    }

    /// Registers the writer schemas of ids seen in `raw` that the decoder does not know yet.
    async fn learn_schemas(
        &mut self,
        raw: &RawBatch,
        registry: &Registry,
    ) -> Result<(), IngestError> {
        let mut ids = HashSet::new();
        for r in &raw.records {
            if let Ok((id, _)) = wire::split(raw.payload(r))
                && !self.decoder.knows(id)
                && !self.unknown_ids.contains(&id)
            {
                ids.insert(id);
            }
        }
        for id in ids {
            match registry.schema_by_id(id as i64).await {
                Ok(text) => {
                    if let Err(e) = self.decoder.add_writer_schema(id, &text) {
                        tracing::warn!(topic = %self.topic, id, error = %e, "writer schema does not resolve");
                    }
                }
                Err(RegistryError::SchemaNotFound(_)) => {
                    self.unknown_ids.insert(id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Handles one micro-batch; returns the next offset per partition (for group commits).
    pub async fn handle(
        &mut self,
        raw: RawBatch,
        ctx: &mut BatchContext<'_>,
    ) -> Result<BTreeMap<i32, i64>, IngestError> {
        let started = Instant::now();
        self.learn_schemas(&raw, ctx.registry).await?;
        let now = Utc::now();
        let now_us = now.timestamp_micros();
        let records = raw.kafka_records(&self.topic);
        let t_decode = Instant::now();
        let out = self.decoder.decode(&records, now_us)?;
        let decode_s = t_decode.elapsed().as_secs_f64();
        let mut bad: Vec<BadRecord> = out
            .errors
            .iter()
            .map(|e| BadRecord {
                index: e.index,
                error_type: e.fault.error_type().to_string(),
                detail: e.detail.clone(),
                rule: None,
                schema_id: e.schema_id,
            })
            .collect();
        let plans = &self.plans;
        let offset_of = |i: usize| (raw.records[i].partition, raw.records[i].offset);
        let mut good = None;
        let mut replayed_good = 0u64;
        let t_rules = Instant::now();
        if let Some(batch) = &out.batch {
            let failures = self.rules.failures(batch, now)?;
            let mut keep = Vec::with_capacity(batch.num_rows());
            for (row, failure) in failures.into_iter().enumerate() {
                let index = out.decoded[row];
                let (p, o) = offset_of(index);
                match failure {
                    Some(f) => {
                        let schema_id = wire::split(raw.payload(&raw.records[index]))
                            .ok()
                            .map(|(id, _)| id);
                        bad.push(BadRecord {
                            index,
                            error_type: f.category,
                            detail: f.detail,
                            rule: Some(f.rule),
                            schema_id,
                        });
                        keep.push(false);
                    }
                    None => {
                        let new = plans.get(&p).is_none_or(|pl| o > pl.bronze_done);
                        replayed_good += u64::from(!new);
                        keep.push(new);
                    }
                }
            }
            let mask = BooleanArray::from(keep);
            let kept = filter_record_batch(batch, &mask).map_err(crate::lake::LakeError::from)?;
            good = Some(conform(&kept, &self.table_schema)?);
        }
        let rules_s = t_rules.elapsed().as_secs_f64();
        let t_dlq = Instant::now();
        let before = bad.len();
        bad.retain(|b| {
            let (p, o) = offset_of(b.index);
            plans.get(&p).is_none_or(|pl| o > pl.audit_done)
        });
        bad.sort_by_key(|b| b.index);
        let good_rows = good.as_ref().map_or(0, |g| g.num_rows()) as u64;
        self.summary.replayed += (before - bad.len()) as u64 + replayed_good;
        let last = raw.last_offsets();

        if !bad.is_empty() {
            let produced = ctx.dlq.send(&self.topic, &raw, &bad, ctx.dlq_skip).await?;
            for (p, o) in produced {
                let e = ctx.dlq_last.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
            let rows = audit_batch(&self.topic, &raw, &bad, now_us, ctx.run_id)?;
            let mut txns: Vec<AppTxn> = last
                .iter()
                .map(|(&p, &o)| AppTxn {
                    app_id: app_id(AUDIT_TABLE, &self.topic, p),
                    version: o,
                })
                .collect();
            txns.extend(ctx.dlq_last.iter().map(|(&p, &o)| AppTxn {
                app_id: dlq_app_id(ctx.dlq.topic(), p),
                version: o,
            }));
            ctx.audit.append_txns([rows], &txns, ctx.run_id).await?;
            self.summary.commits += 1;
            let m = metrics::get();
            for b in &bad {
                *self
                    .summary
                    .dlq_by_category
                    .entry(b.error_type.clone())
                    .or_default() += 1;
                m.dlq_events
                    .with_label_values(&[self.topic.as_str(), b.error_type.as_str()])
                    .inc();
            }
            m.rows_written
                .with_label_values(&[AUDIT_TABLE])
                .inc_by(bad.len() as u64);
        }

        let dlq_s = t_dlq.elapsed().as_secs_f64();
        let t_commit = Instant::now();
        let txns: Vec<AppTxn> = last
            .iter()
            .map(|(&p, &o)| AppTxn {
                app_id: app_id(&self.table_name, &self.topic, p),
                version: o,
            })
            .collect();
        self.summary.bronze_version = self.bronze.append_txns(good, &txns, ctx.run_id).await?;
        tracing::debug!(
            topic = %self.topic,
            records = raw.records.len(),
            decode_s,
            rules_s,
            dlq_s,
            bronze_commit_s = t_commit.elapsed().as_secs_f64(),
            "micro-batch"
        );
        self.summary.commits += 1;

        let mut next = BTreeMap::new();
        for (&p, &o) in &last {
            if let Some(pl) = self.plans.get_mut(&p) {
                pl.bronze_done = pl.bronze_done.max(o);
                pl.audit_done = pl.audit_done.max(o);
            }
            if let Some(r) = self.summary.ranges.get_mut(&p) {
                r.1 = r.1.max(o + 1);
            }
            next.insert(p, o + 1);
        }
        self.summary.records += raw.records.len() as u64;
        self.summary.bronze_rows += good_rows;
        self.summary.dlq_rows += bad.len() as u64;
        let m = metrics::get();
        m.events_ingested
            .with_label_values(&[self.topic.as_str()])
            .inc_by(good_rows);
        m.rows_written
            .with_label_values(&[self.table_name.as_str()])
            .inc_by(good_rows);
        m.ingest_batch_duration
            .with_label_values(&[self.topic.as_str()])
            .observe(started.elapsed().as_secs_f64());
        Ok(next)
    }
}

impl TopicState {
    /// Replays dead letters of this topic (`raw`: records re-addressed to their source partition
    /// and offset): those that now decode and pass the rules are appended to bronze in one commit
    /// carrying `txn` (the DLQ position replayed up to); the others are counted by category and
    /// stay where they are. Returns (rows landed, still failing by category).
    pub async fn replay(
        &mut self,
        raw: RawBatch,
        registry: &Registry,
        txn: AppTxn,
        run_id: Option<i64>,
    ) -> Result<(u64, BTreeMap<String, u64>), IngestError> {
        self.learn_schemas(&raw, registry).await?;
        let now = Utc::now();
        let records = raw.kafka_records(&self.topic);
        let out = self.decoder.decode(&records, now.timestamp_micros())?;
        let mut still: BTreeMap<String, u64> = BTreeMap::new();
        for e in &out.errors {
            *still.entry(e.fault.error_type().to_string()).or_default() += 1;
        }
        let mut good = None;
        if let Some(batch) = &out.batch {
            let failures = self.rules.failures(batch, now)?;
            let keep: Vec<bool> = failures.iter().map(Option::is_none).collect();
            for f in failures.into_iter().flatten() {
                *still.entry(f.category).or_default() += 1;
            }
            let kept = filter_record_batch(batch, &BooleanArray::from(keep))
                .map_err(crate::lake::LakeError::from)?;
            good = Some(conform(&kept, &self.table_schema)?);
        }
        let landed = good.as_ref().map_or(0, |g| g.num_rows()) as u64;
        self.summary.bronze_version = self.bronze.append_txns(good, &[txn], run_id).await?;
        self.summary.bronze_rows += landed;
        metrics::get()
            .rows_written
            .with_label_values(&[self.table_name.as_str()])
            .inc_by(landed);
        Ok((landed, still))
    }

    /// The last DLQ offset replayed into this table for `app_id`, if any.
    pub async fn replayed_up_to(&self, app_id: &str) -> Result<Option<i64>, IngestError> {
        Ok(self.bronze.txn_version(app_id).await?)
    }
}

/// What every topic's batches share: the audit table, the DLQ and the registry.
pub struct BatchContext<'a> {
    pub registry: &'a Registry,
    pub audit: &'a mut LakeTable,
    pub dlq: &'a DlqProducer,
    /// DLQ records already produced by a batch that never reached its audit commit.
    pub dlq_skip: &'a HashSet<SourcePos>,
    /// Last offset produced per DLQ partition (recorded with every audit commit).
    pub dlq_last: &'a mut BTreeMap<i32, i64>,
    pub run_id: Option<i64>,
}
