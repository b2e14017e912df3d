//! The first stage of a micro-batch: decode and validate its records, hand the bad ones to the
//! DLQ producer (without waiting for the broker) and build the rows both commits will write.
//! Nothing here touches a table: the commit stage ([`super::commit`]) does, in batch order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{AsArray, BooleanArray, Int32Array, Int64Array};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::datatypes::{Int32Type, Int64Type};
use deltalake::arrow::record_batch::RecordBatch;

use super::decode::{BronzeDecoder, RecordError};
use super::dlq::{BadRecord, Deliveries, DlqProducer, SourcePos, audit_batch};
use super::error::IngestError;
use super::positions::Plan;
use super::raw::RawBatch;
use super::screen::{Screened, screen};
use super::validate::{RuleFailure, Rules};
use crate::contracts::registry::{Registry, RegistryError};
use crate::contracts::wire::{self, SchemaId};
use crate::lake::{LakeError, conform};
use crate::quality::CompiledRules;
use crate::quality::RowJudge;

/// Decoding and validation of one topic's records: the decoder (writer schemas learnt from the
/// registry as their ids show up), the business rules and the bronze table's schema.
pub struct Checker {
    topic: String,
    decoder: BronzeDecoder,
    /// Schema ids the registry does not know (asked once).
    unknown_ids: HashSet<SchemaId>,
    table_schema: SchemaRef,
    rules: Rules,
    /// The rules compiled for the decoder to judge each row as it decodes it; `None` when
    /// there are none or some need Polars (then they run on the decoded parts).
    compiled: Option<CompiledRules>,
    /// Records larger than this (key and value bytes) are not decoded ([`screen`]).
    max_record_bytes: usize,
}

/// What [`Checker::check`] found in a batch of records.
pub struct Checked {
    /// The rows for bronze, in the table's schema, one batch per `event_date` (a batch may
    /// share its date with another): records that did not decode or broke a rule left out.
    pub parts: Vec<RecordBatch>,
    /// The records that decoded but broke a business rule: (record index, the first rule
    /// broken), in record order.
    pub refused: Vec<(usize, RuleFailure)>,
    /// The records that did not decode.
    pub errors: Vec<RecordError>,
    /// The records refused before decoding (null value, too large), in record order.
    pub screened: Vec<(usize, Screened)>,
    pub decode_s: f64,
    /// Rules run apart from decoding (the Polars evaluator); 0 when the decoder judged.
    pub rules_s: f64,
}

impl Checker {
    pub fn new(
        topic: &str,
        decoder: BronzeDecoder,
        table_schema: SchemaRef,
        rules: Rules,
        max_record_bytes: usize,
    ) -> Self {
        let compiled = rules.compile(&decoder.schema());
        Checker {
            topic: topic.to_string(),
            decoder,
            unknown_ids: HashSet::new(),
            table_schema,
            rules,
            compiled,
            max_record_bytes,
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
            // Registries hand out positive ids only: a negative one (a hostile header such as
            // `ff ff ff ff`) is unknown without asking.
            if id < 0 {
                self.unknown_ids.insert(id);
                continue;
            }
            match registry.schema_by_id(i64::from(id)).await {
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

    /// Decodes `raw` (stamping `now` as the ingest time) into bronze rows split by date,
    /// judging every row by the business rules (`now` is their clock too). Records with a
    /// null value or above `max_record_bytes` are screened out first and never decoded.
    pub async fn check(
        &mut self,
        raw: &RawBatch,
        registry: &Registry,
        now: DateTime<Utc>,
    ) -> Result<Checked, IngestError> {
        let screened = screen(raw, self.max_record_bytes);
        // The indices of the records the decoder sees, when some were screened out (else all).
        let kept: Option<Vec<usize>> = (!screened.is_empty()).then(|| {
            let mut out = screened.iter().map(|(i, _)| *i).peekable();
            (0..raw.records.len())
                .filter(|i| {
                    let screened = out.peek() == Some(i);
                    if screened {
                        out.next();
                    }
                    !screened
                })
                .collect()
        });
        let to_raw = |i: usize| kept.as_ref().map_or(i, |k| k[i]);
        self.learn_schemas(raw, registry).await?;
        let records = match &kept {
            None => raw.kafka_records(&self.topic),
            Some(k) => raw.kafka_records_at(&self.topic, k),
        };
        let t = Instant::now();
        let judge = self.compiled.as_ref().map(|c| c.at(now));
        let out = self.decoder.decode_parts(
            &records,
            now.timestamp_micros(),
            judge.as_ref().map(|j| j as &dyn RowJudge),
        )?;
        let decode_s = t.elapsed().as_secs_f64();
        let mut errors = out.errors;
        for e in &mut errors {
            e.index = to_raw(e.index);
        }
        let t = Instant::now();
        let (parts, refused) = match &self.compiled {
            Some(c) => {
                let refused = out
                    .refused
                    .iter()
                    .map(|(i, r)| (to_raw(*i), c.failure(r)))
                    .collect();
                (out.parts, refused)
            }
            None if self.rules.any() => self.judge_parts(raw, out.parts, now)?,
            None => (out.parts, Vec::new()),
        };
        let parts = parts
            .iter()
            .map(|p| conform(p, &self.table_schema))
            .collect::<Result<_, _>>()?;
        Ok(Checked {
            parts,
            refused,
            errors,
            screened,
            decode_s,
            rules_s: t.elapsed().as_secs_f64(),
        })
    }

    /// The Polars evaluator on decoded parts, for rules the decoder cannot judge: the parts
    /// without the refused rows, and the refused records (found by partition and offset).
    fn judge_parts(
        &self,
        raw: &RawBatch,
        parts: Vec<RecordBatch>,
        now: DateTime<Utc>,
    ) -> Result<Judged, IngestError> {
        let index: HashMap<(i32, i64), usize> = raw
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.partition, r.offset), i))
            .collect();
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(parts.len());
        for part in parts {
            let failures = self.rules.failures(&part, now)?;
            if failures.iter().all(Option::is_none) {
                kept.push(part);
                continue;
            }
            let (ps, offs) = positions(&part);
            let keep: BooleanArray = failures.iter().map(|f| Some(f.is_none())).collect();
            for (row, f) in failures.into_iter().enumerate() {
                if let Some(f) = f
                    && let Some(&i) = index.get(&(ps.value(row), offs.value(row)))
                {
                    refused.push((i, f));
                }
            }
            kept.push(filter_record_batch(&part, &keep).map_err(LakeError::from)?);
        }
        refused.sort_unstable_by_key(|(i, _)| *i);
        Ok((kept, refused))
    }
}

/// Parts without their refused rows, and the refused records (index, rule broken).
type Judged = (Vec<RecordBatch>, Vec<(usize, RuleFailure)>);

/// A bronze batch's `_kafka_partition` and `_kafka_offset` columns.
fn positions(batch: &RecordBatch) -> (&Int32Array, &Int64Array) {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("a bronze batch has {name}"))
    };
    (
        col("_kafka_partition").as_primitive::<Int32Type>(),
        col("_kafka_offset").as_primitive::<Int64Type>(),
    )
}

/// The rows of a micro-batch that go to bronze, one batch per `event_date` (the bronze
/// partition column): one file each.
pub struct GoodRows {
    pub parts: Vec<RecordBatch>,
}

impl GoodRows {
    pub fn len(&self) -> usize {
        self.parts.iter().map(RecordBatch::num_rows).sum()
    }

    /// Leaves out the rows at or below `done(partition)`, the position bronze already holds (a
    /// batch redone after a crash); returns how many were left out.
    fn drop_committed(&mut self, done: impl Fn(i32) -> Option<i64>) -> Result<u64, IngestError> {
        let mut dropped = 0u64;
        for part in &mut self.parts {
            let (ps, offs) = positions(part);
            let keep: BooleanArray = ps
                .values()
                .iter()
                .zip(offs.values())
                .map(|(&p, &o)| Some(done(p).is_none_or(|d| o > d)))
                .collect();
            let kept = keep.true_count();
            if kept < part.num_rows() {
                dropped += (part.num_rows() - kept) as u64;
                *part = filter_record_batch(part, &keep).map_err(LakeError::from)?;
            }
        }
        self.parts.retain(|p| p.num_rows() > 0);
        Ok(dropped)
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
    pub good: GoodRows,
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
        self.good.len() as u64
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
            .map(|e| {
                BadRecord::new(
                    e.index,
                    e.fault.error_type(),
                    e.detail.clone(),
                    None,
                    e.schema_id,
                )
            })
            .collect();
        for (index, s) in &checked.screened {
            let schema_id = raw
                .value(&raw.records[*index])
                .and_then(|v| wire::split(v).ok())
                .map(|(id, _)| id);
            bad.push(BadRecord::new(
                *index,
                s.error_type(),
                s.detail(),
                None,
                schema_id,
            ));
        }
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
        for (index, f) in checked.refused {
            let schema_id = wire::split(raw.payload(&raw.records[index]))
                .ok()
                .map(|(id, _)| id);
            bad.push(BadRecord::new(
                index,
                &f.category,
                f.detail,
                Some(f.rule),
                schema_id,
            ));
        }
        let mut good = GoodRows {
            parts: checked.parts,
        };
        let mut replayed = 0u64;
        if bronze_redone {
            replayed += good.drop_committed(|p| plans.get(&p).map(|pl| pl.bronze_done))?;
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
