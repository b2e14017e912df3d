//! The first stage of a micro-batch: decode and validate its records, hand the bad ones to the
//! DLQ producer (without waiting for the broker) and build the rows both commits will write.
//! Nothing here touches a table: the commit stage ([`super::commit`]) does, in batch order.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;

use super::dlq::{BadRecord, Deliveries, DlqProducer, SourcePos, audit_batch};
use super::error::IngestError;
use super::positions::Plan;
use super::source::RawBatch;
use super::validate::{RuleFailure, Rules};
use crate::contracts::registry::{Registry, RegistryError};
use crate::contracts::wire;
use crate::lake::{BronzeDecoder, RecordError, conform, split_by_date};

/// Decoding and validation of one topic's records: the decoder (writer schemas learnt from the
/// registry as their ids show up), the business rules and the bronze table's schema.
pub struct Checker {
    topic: String,
    decoder: BronzeDecoder,
    /// Schema ids the registry does not know (asked once).
    unknown_ids: HashSet<u32>,
    table_schema: SchemaRef,
    rules: Rules,
}

/// What [`Checker::check`] found in a batch of records.
pub struct Checked {
    /// The records that decoded, in record order, in the decoder's schema.
    pub batch: Option<RecordBatch>,
    /// The record index (into the raw batch) of each row of `batch`.
    pub rows: Vec<usize>,
    /// Per row of `batch`, the first business rule it breaks.
    pub failures: Vec<Option<RuleFailure>>,
    /// The records that did not decode.
    pub errors: Vec<RecordError>,
    pub decode_s: f64,
    pub rules_s: f64,
}

impl Checker {
    pub fn new(topic: &str, decoder: BronzeDecoder, table_schema: SchemaRef, rules: Rules) -> Self {
        Checker {
            topic: topic.to_string(),
            decoder,
            unknown_ids: HashSet::new(),
            table_schema,
            rules,
        }
    }

    /// The bronze table's schema.
    pub fn table_schema(&self) -> SchemaRef {
        self.table_schema.clone()
    }

    /// Registers the writer schemas of ids seen in `raw` that the decoder does not know yet.
    async fn learn_schemas(
        &mut self,
        raw: &RawBatch,
        registry: &Registry,
    ) -> Result<(), IngestError> {
        let mut ids = HashSet::new();
        let mut last = None;
        for r in &raw.records {
            if let Ok((id, _)) = wire::split(raw.payload(r))
                && last.replace(id) != Some(id)
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

    /// Decodes `raw` (stamping `now` as the ingest time) and runs the business rules on the
    /// rows that decoded.
    pub async fn check(
        &mut self,
        raw: &RawBatch,
        registry: &Registry,
        now: DateTime<Utc>,
    ) -> Result<Checked, IngestError> {
        self.learn_schemas(raw, registry).await?;
        let records = raw.kafka_records(&self.topic);
        let t = Instant::now();
        let out = self.decoder.decode(&records, now.timestamp_micros())?;
        let decode_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let failures = match &out.batch {
            Some(b) => self.rules.failures(b, now)?,
            None => Vec::new(),
        };
        Ok(Checked {
            batch: out.batch,
            rows: out.decoded,
            failures,
            errors: out.errors,
            decode_s,
            rules_s: t.elapsed().as_secs_f64(),
        })
    }

    /// The rows of `batch` whose `keep` is true, in the bronze table's schema, still to be
    /// selected: the commit stage splits them by `event_date` ([`GoodRows::parts`]), which
    /// spreads the copy over both stages.
    pub fn bronze_candidates(
        &self,
        batch: &RecordBatch,
        keep: Vec<bool>,
    ) -> Result<GoodRows, IngestError> {
        let all = keep.iter().all(|k| *k);
        Ok(GoodRows {
            batch: conform(batch, &self.table_schema)?,
            keep: (!all).then(|| BooleanArray::from(keep)),
        })
    }
}

/// The rows of a batch that go to bronze: the decoded rows and which of them to keep.
pub struct GoodRows {
    pub batch: RecordBatch,
    /// `None`: every row.
    pub keep: Option<BooleanArray>,
}

impl GoodRows {
    pub fn len(&self) -> usize {
        self.keep
            .as_ref()
            .map_or(self.batch.num_rows(), |k| k.true_count())
    }

    /// The kept rows, one batch per `event_date` (the bronze partition column): one file each.
    pub fn parts(&self) -> Result<Vec<RecordBatch>, IngestError> {
        Ok(split_by_date(
            &self.batch,
            self.keep.as_ref(),
            "event_date",
        )?)
    }
}

/// One micro-batch decoded and validated, its bad records on their way to the DLQ: what the
/// commit stage needs to write it.
pub struct Prepared {
    /// Index of the topic (in the ingest's topic list).
    pub topic: usize,
    /// Records read from Kafka.
    pub records: u64,
    /// The rows for bronze (records already there from an earlier run are left out).
    pub good: Option<GoodRows>,
    /// Audit rows of the bad records (records already in the audit table are left out).
    pub audit: Option<RecordBatch>,
    /// The bad records' DLQ deliveries, still in flight.
    pub dlq: Deliveries,
    /// Bad records by DLQ `error_type`.
    pub bad_by_category: BTreeMap<String, u64>,
    /// Records found already committed by an earlier run.
    pub replayed: u64,
    /// The last offset per partition: what both commits record as `txn` versions.
    pub last: BTreeMap<i32, i64>,
    /// When the batch reached the prepare stage.
    pub started: Instant,
    /// When the prepare stage handed it over.
    pub prepared: Instant,
}

impl Prepared {
    pub fn good_rows(&self) -> u64 {
        self.good.as_ref().map_or(0, |g| g.len() as u64)
    }
    pub fn bad_rows(&self) -> u64 {
        self.audit.as_ref().map_or(0, |a| a.num_rows() as u64)
    }
}

/// The prepare stage's state for one topic.
pub struct TopicPrep {
    pub index: usize,
    pub topic: String,
    pub checker: Checker,
    /// Per partition, what the tables held when the run started.
    pub plans: BTreeMap<i32, Plan>,
}

/// What every topic's prepare step shares.
pub struct PrepContext<'a> {
    pub registry: &'a Registry,
    pub dlq: &'a DlqProducer,
    /// DLQ records already produced by a batch that never reached its audit commit.
    pub dlq_skip: &'a HashSet<SourcePos>,
    pub run_id: Option<i64>,
}

impl TopicPrep {
    /// Decodes and validates `raw`, hands its new bad records to the DLQ producer and builds
    /// the rows of both commits. Records at or below a table's stored position are left out of
    /// that table (a batch redone after a crash).
    pub async fn prepare(
        &mut self,
        raw: &RawBatch,
        ctx: &PrepContext<'_>,
    ) -> Result<Prepared, IngestError> {
        let started = Instant::now();
        let now = Utc::now();
        let checked = self.checker.check(raw, ctx.registry, now).await?;
        let t_rest = Instant::now();
        let mut bad: Vec<BadRecord> = checked
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
        // Only a batch redone after a crash holds records the tables already have: look each
        // record up only then.
        let first = raw.first_offsets();
        let redone = |done: fn(&Plan) -> i64| {
            first
                .iter()
                .any(|(p, &o)| plans.get(p).is_some_and(|pl| o <= done(pl)))
        };
        let (bronze_redone, audit_redone) = (redone(|p| p.bronze_done), redone(|p| p.audit_done));
        let mut replayed = 0u64;
        let mut good = None;
        if let Some(batch) = &checked.batch {
            let mut keep = Vec::with_capacity(batch.num_rows());
            for (row, failure) in checked.failures.into_iter().enumerate() {
                let index = checked.rows[row];
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
                    None if !bronze_redone => keep.push(true),
                    None => {
                        let (p, o) = offset_of(index);
                        let new = plans.get(&p).is_none_or(|pl| o > pl.bronze_done);
                        replayed += u64::from(!new);
                        keep.push(new);
                    }
                }
            }
            good = Some(self.checker.bronze_candidates(batch, keep)?);
        }
        let before = bad.len();
        if audit_redone {
            bad.retain(|b| {
                let (p, o) = offset_of(b.index);
                plans.get(&p).is_none_or(|pl| o > pl.audit_done)
            });
        }
        replayed += (before - bad.len()) as u64;
        bad.sort_by_key(|b| b.index);
        let rest_s = t_rest.elapsed().as_secs_f64();

        let t_dlq = Instant::now();
        let (dlq, audit) = if bad.is_empty() {
            (Deliveries::default(), None)
        } else {
            let dlq = ctx
                .dlq
                .enqueue(&self.topic, raw, &bad, ctx.dlq_skip)
                .await?;
            let rows = audit_batch(&self.topic, raw, &bad, now.timestamp_micros(), ctx.run_id)?;
            (dlq, Some(rows))
        };
        let mut bad_by_category = BTreeMap::new();
        for b in &bad {
            *bad_by_category.entry(b.error_type.clone()).or_default() += 1;
        }
        let last = raw.last_offsets();
        // A later batch of this run never holds records at or below these.
        for (&p, &o) in &last {
            if let Some(pl) = self.plans.get_mut(&p) {
                pl.bronze_done = pl.bronze_done.max(o);
                pl.audit_done = pl.audit_done.max(o);
            }
        }
        tracing::debug!(
            topic = %self.topic,
            records = raw.records.len(),
            decode_s = checked.decode_s,
            rules_s = checked.rules_s,
            split_s = rest_s,
            dlq_send_s = t_dlq.elapsed().as_secs_f64(),
            "micro-batch prepared"
        );
        Ok(Prepared {
            topic: self.index,
            records: raw.records.len() as u64,
            good,
            audit,
            dlq,
            bad_by_category,
            replayed,
            last,
            started,
            prepared: Instant::now(),
        })
    }
}
