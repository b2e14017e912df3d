//! One topic's ingest state: its checker (decoder and rules), bronze table, positions and
//! counters. An ingest splits it into its two pipeline stages ([`TopicState::split`]): the
//! prepare side ([`super::prepare`]) and the commit side ([`super::commit`]).

use std::collections::BTreeMap;

use chrono::Utc;

use super::commit::TopicSink;
use super::decode::BronzeDecoder;
use super::dlq::AUDIT_TABLE;
use super::error::IngestError;
use super::positions::{self, Plan, Reset, Stored, app_id};
use super::prepare::{Checker, TopicPrep};
use super::raw::RawBatch;
use super::source::GroupHandle;
use super::validate::Rules;
use crate::contracts::domain::EventKind;
use crate::contracts::generate::SchemaVersion;
use crate::contracts::produce::schema_for;
use crate::contracts::registry::Registry;
use crate::lake::{AppTxn, Appender, LakeTable, bronze_writer_properties, lake_root};
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
    checker: Checker,
    bronze: LakeTable,
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
        max_record_bytes: usize,
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
        rules.warn_unknown_columns(&decoder.schema());
        let table_name = bronze_table(topic);
        let path = lake_root(home).join(&table_name);
        // Created by its first commit: an ingest that fails before leaves no empty table.
        let mut bronze =
            LakeTable::open_or_defer(&path, &decoder.schema(), &["event_date"]).await?;
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
            checker: Checker::new(topic, decoder, table_schema, rules, max_record_bytes),
            bronze,
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

    /// Splits the state into the prepare stage's part (topic number `index`) and the commit
    /// stage's, which reports group offsets through `group`.
    pub fn split(
        self,
        index: usize,
        group: GroupHandle,
    ) -> Result<(TopicPrep, TopicSink), IngestError> {
        let props = bronze_writer_properties(&self.checker.table_schema());
        Ok((
            TopicPrep {
                index,
                topic: self.topic.clone(),
                checker: self.checker,
                plans: self.plans,
            },
            TopicSink {
                topic: self.topic,
                table_name: self.table_name,
                bronze: Appender::new(self.bronze),
                highs: self.highs,
                summary: self.summary,
                group,
                props,
            },
        ))
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
        let checked = self.checker.check(&raw, registry, Utc::now()).await?;
        let mut still: BTreeMap<String, u64> = BTreeMap::new();
        for e in &checked.errors {
            *still.entry(e.fault.error_type().to_string()).or_default() += 1;
        }
        for (_, f) in checked.refused {
            *still.entry(f.category).or_default() += 1;
        }
        for (_, s) in &checked.screened {
            *still.entry(s.error_type().to_string()).or_default() += 1;
        }
        // The same rows, files and Parquet settings as an ingest batch.
        let parts = checked.parts;
        let landed: u64 = parts.iter().map(|p| p.num_rows() as u64).sum();
        let props = bronze_writer_properties(&self.checker.table_schema());
        self.summary.bronze_version = self
            .bronze
            .append_parts(parts, &[txn], run_id, &props)
            .await?;
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
