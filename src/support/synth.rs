//! Bronze tables straight from generated events, without Kafka: events are Avro-encoded and
//! framed exactly as the producer does, then decoded by the same [`BronzeDecoder`] the ingest
//! uses, with synthetic Kafka metadata (partition from the key, offsets counted per partition).
//! For `flowctl bench transform` and the transform tests, which need bronze data fast and
//! reproducibly.
//!
//! Events whose faults act on the wire (undecodable body, wrong magic byte, unknown schema id)
//! or on the schema (a value that does not fit) never reach bronze in the real pipeline (they go
//! to the DLQ); they are skipped here.

use std::path::Path;

use crate::contracts::domain::{EventKind, Fault};
use crate::contracts::encode::encode;
use crate::contracts::generate::Event;
use crate::contracts::schema::ParsedSchema;
use crate::contracts::schema::SchemaError;
use crate::contracts::wire::{self, SchemaId};
use crate::ingest::decode::DecodeError;
use crate::ingest::decode::{BronzeDecoder, KafkaRecord};
use crate::lake::{LakeError, LakeTable, lake_root};

/// Why synthetic bronze could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Kafka partitions of the synthetic topics.
pub const PARTITIONS: i32 = 3;

/// Whether an event with this fault can reach bronze at all.
pub fn reaches_bronze(e: &Event) -> bool {
    !matches!(
        e.fault,
        Some(
            Fault::Undecodable
                | Fault::WrongMagic
                | Fault::UnknownSchemaId
                | Fault::SchemaViolation
        )
    )
}

/// Whether an event that reached bronze also passes silver's rules (which judge the normalised
/// row): a clean event, or an "unknown currency" that is a real one once trimmed and
/// upper-cased (`usd`). Bronze's own rules refuse `usd` at ingest; this synthetic bronze is
/// written without them.
pub fn reaches_silver(e: &Event) -> bool {
    reaches_bronze(e)
        && match e.fault {
            None => true,
            Some(Fault::UnknownCurrency) => currency(e).is_some_and(|c| {
                crate::contracts::domain::currencies().contains(&c.trim().to_uppercase().as_str())
            }),
            Some(_) => false,
        }
}

fn currency(e: &Event) -> Option<&str> {
    match &e.value {
        apache_avro::types::Value::Record(f) => f.iter().find_map(|(n, v)| match v {
            apache_avro::types::Value::String(s) if n == "currency" => Some(s.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

/// The Kafka partition of a key: FNV-1a, stable across builds.
pub fn partition_of(key: Option<&str>) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.unwrap_or("").bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % PARTITIONS as u32) as i32
}

/// Appends events to one bronze table, keeping per-partition offsets across calls.
pub struct BronzeWriter {
    decoder: BronzeDecoder,
    table: LakeTable,
    topic: String,
    /// Writer schemas by id, to encode with.
    schemas: Vec<(SchemaId, ParsedSchema)>,
    next_offset: [i64; PARTITIONS as usize],
    pub ingested_at_us: i64,
}

impl BronzeWriter {
    /// Opens (or creates) `bronze_<topic>` under `home`. `schemas` are (id, Avro JSON) pairs; the
    /// last one is the reader schema (the latest version).
    pub async fn open(
        home: &Path,
        kind: EventKind,
        schemas: &[(SchemaId, &str)],
        ingested_at_us: i64,
    ) -> Result<BronzeWriter, SynthError> {
        let topic = match kind {
            EventKind::Orders => "orders",
            EventKind::Clickstream => "clickstream",
            EventKind::Payments => "payments",
        };
        let (_, reader) = schemas.last().expect("at least one schema");
        let mut decoder = BronzeDecoder::new(reader)?;
        let mut parsed = Vec::new();
        for (id, text) in schemas {
            decoder.add_writer_schema(*id, text)?;
            let p = ParsedSchema::parse(text)?;
            parsed.push((*id, p));
        }
        let path = lake_root(home).join(format!("bronze_{topic}"));
        let table = LakeTable::open_or_create(&path, &decoder.schema(), &["event_date"]).await?;
        let mut next_offset = [0i64; PARTITIONS as usize];
        if table.version() > 0 {
            // Go on after the offsets already there.
            let df = table
                .scan()?
                .group_by([polars::prelude::col("_kafka_partition")])
                .agg([polars::prelude::col("_kafka_offset").max()])
                .collect()
                .map_err(|e| LakeError::Polars {
                    table: path.display().to_string(),
                    detail: e.to_string(),
                })?;
            let parts = df
                .column("_kafka_partition")
                .ok()
                .and_then(|c| c.i32().ok().cloned());
            let offs = df
                .column("_kafka_offset")
                .ok()
                .and_then(|c| c.i64().ok().cloned());
            if let (Some(p), Some(o)) = (parts, offs) {
                for (p, o) in p.iter().zip(o.iter()) {
                    if let (Some(p), Some(o)) = (p, o) {
                        next_offset[p as usize] = o + 1;
                    }
                }
            }
        }
        Ok(BronzeWriter {
            decoder,
            table,
            topic: topic.to_string(),
            schemas: parsed,
            next_offset,
            ingested_at_us,
        })
    }

    /// Encodes `events` (each with the id of the schema it follows) and appends the ones that
    /// reach bronze as one commit; returns the new table version and how many rows it added.
    pub async fn append(
        &mut self,
        events: &[(SchemaId, &Event)],
    ) -> Result<(i64, usize), SynthError> {
        // (key, partition, offset, timestamp ms, framed payload)
        type Frame<'e> = (Option<&'e str>, i32, i64, i64, Vec<u8>);
        let mut frames: Vec<Frame<'_>> = Vec::new();
        for (id, e) in events {
            if !reaches_bronze(e) {
                continue;
            }
            let Some((_, parsed)) = self.schemas.iter().find(|(i, _)| i == id) else {
                continue;
            };
            let mut out = Vec::with_capacity(128);
            wire::write_header(&mut out, *id);
            if encode(&parsed.model, &e.value, &mut out).is_err() {
                continue;
            }
            let p = partition_of(e.key.as_deref());
            let offset = self.next_offset[p as usize];
            self.next_offset[p as usize] += 1;
            let ts_ms = self.ingested_at_us / 1000;
            frames.push((e.key.as_deref(), p, offset, ts_ms, out));
        }
        let records: Vec<KafkaRecord<'_>> = frames
            .iter()
            .map(|(key, p, offset, ts, payload)| KafkaRecord {
                topic: &self.topic,
                partition: *p,
                offset: *offset,
                key: key.map(str::as_bytes),
                timestamp_ms: Some(*ts),
                payload,
            })
            .collect();
        let out = self.decoder.decode(&records, self.ingested_at_us)?;
        let rows = out.batch.as_ref().map_or(0, |b| b.num_rows());
        let version = self.table.append(out.batch, None).await?;
        Ok((version, rows))
    }

    pub fn table(&self) -> &LakeTable {
        &self.table
    }
}
