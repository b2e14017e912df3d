//! Kafka records (Confluent-framed Avro) → one bronze `RecordBatch` per call: plain record
//! schemas (the event contracts') through a one-pass decoder ([`direct`]), any other through
//! arrow-avro as below.
//!
//! Writer schemas are registered by id ([`BronzeDecoder::add_writer_schema`], fetched from the
//! registry by the caller) and every record is resolved to one reader schema, the latest, so v1
//! and v2 events land in the same columns (a field v1 lacks takes its Avro default, null for the
//! optional ones). A record that cannot be decoded comes back as a [`RecordError`] with the
//! reason, and decoding goes on with the next record: bad input never stops the batch.
//!
//! arrow-avro's `Decoder` appends a record's fields to its column builders one by one, so a
//! body that fails half way leaves them misaligned. So every body is first checked against its
//! writer schema ([`shape`]: lengths, varints, union and enum indices, UTF-8, nothing left over)
//! and one that does not fit is reported without reaching the decoder. Should a body that fits
//! still fail in arrow-avro, the decoder is rebuilt and the good records since the last flush
//! are decoded again (each good record at most once more). Framing faults (short message, wrong
//! magic, unknown or incompatible schema id) are caught before the decoder sees the record and
//! cost nothing extra.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{cast, concat_batches, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

use super::error::LakeError;
use crate::contracts::wire::{self, WireError};
use direct::{Direct, Rows};
use shape::{Shape, Verdict};

mod direct;
mod shape;

/// Rows decoded between two flushes of the arrow-avro decoder: more than a micro-batch holds,
/// so a batch of one writer schema comes out as one `RecordBatch` (smaller flushes would have
/// to be concatenated: one more copy of every row). Builders grow as rows come, so a large
/// limit costs no memory up front.
#[cfg(not(test))]
const DECODER_BATCH: usize = 1 << 20;
/// Small in tests, so flushes in the middle of a call are exercised.
#[cfg(test)]
const DECODER_BATCH: usize = 8192;
/// The payload column that `event_date` is derived from.
const EVENT_TIME: &str = "event_time";
const UTC: &str = "UTC";
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Hashes a schema id with one multiplication: the maps below are looked up several times per
/// record, and SipHash would cost more than decoding some records.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<u32, BuildHasherDefault<IdHasher>>;

/// One Kafka record as the consumer hands it over. Borrowed: decoding copies what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// The record's Kafka timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    pub payload: &'a [u8],
}

/// Why a record did not decode: the structural layer of validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeFault {
    /// Shorter than the 5-byte header, or the Avro body is cut short or malformed.
    Undecodable,
    /// First byte is not the Confluent magic byte 0.
    WrongMagic,
    /// The header names a schema id we were not given (the registry does not know it).
    UnknownSchemaId,
    /// The writer schema is known but does not resolve to the reader schema.
    SchemaMismatch,
}

impl DecodeFault {
    /// The DLQ `error_type`.
    pub fn error_type(self) -> &'static str {
        match self {
            DecodeFault::Undecodable => "DESERIALIZATION_ERROR",
            DecodeFault::WrongMagic => "WRONG_MAGIC_BYTE",
            DecodeFault::UnknownSchemaId => "UNKNOWN_SCHEMA",
            DecodeFault::SchemaMismatch => "SCHEMA_MISMATCH",
        }
    }
}

/// A record that did not decode, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record in the slice given to [`BronzeDecoder::decode`].
    pub index: usize,
    pub partition: i32,
    pub offset: i64,
    /// The schema id from the header, when the header was readable.
    pub schema_id: Option<u32>,
    pub fault: DecodeFault,
    pub detail: String,
}

/// What one call to [`BronzeDecoder::decode`] produced.
#[derive(Debug)]
pub struct DecodeOutcome {
    /// The good records, in input order, in [`BronzeDecoder::schema`]; `None` if there were none.
    pub batch: Option<RecordBatch>,
    /// Indices (into the input) of the rows of `batch`, in order.
    pub decoded: Vec<usize>,
    /// The records that did not decode, in input order.
    pub errors: Vec<RecordError>,
}

/// Decodes Confluent-framed Avro into bronze rows: payload columns (reader schema), Kafka
/// metadata columns and `event_date`.
pub struct BronzeDecoder {
    reader: AvroSchema,
    store: SchemaStore,
    known: IdSet,
    /// Writer schemas that do not resolve to the reader schema, with the reason.
    mismatched: IdMap<String>,
    /// One arrow-avro decoder per writer schema id: a decoder switching schemas between
    /// records must flush each time, which makes mixed v1/v2 input very slow.
    decoders: IdMap<Decoder>,
    /// Per writer schema id, the structural check its bodies pass before they reach the
    /// decoder (absent: a schema the check does not understand).
    shapes: IdMap<Shape>,
    /// Per writer schema id, the one-pass decoder, when the schema is within its reach (then
    /// neither the check nor arrow-avro sees that id's records).
    directs: IdMap<Direct>,
    /// The reader schema's JSON.
    reader_text: String,
    payload_schema: SchemaRef,
    schema: SchemaRef,
}

impl std::fmt::Debug for BronzeDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BronzeDecoder")
            .field("known", &self.known)
            .field("mismatched", &self.mismatched)
            .finish_non_exhaustive()
    }
}

/// The type a column gets in Delta: timestamps become microseconds UTC (Delta's only unit),
/// recursively inside lists and structs.
fn delta_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        DataType::List(f) => DataType::List(Arc::new(delta_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(delta_field(f))),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(|f| delta_field(f)).collect()),
        other => other.clone(),
    }
}

fn delta_field(f: &Field) -> Field {
    Field::new(f.name(), delta_type(f.data_type()), f.is_nullable())
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        true,
    )
}

/// The columns bronze adds after the payload, in order.
fn metadata_fields() -> Vec<Field> {
    vec![
        Field::new("_kafka_topic", DataType::Utf8, true),
        Field::new("_kafka_partition", DataType::Int32, true),
        Field::new("_kafka_offset", DataType::Int64, true),
        Field::new("_kafka_key", DataType::Binary, true),
        ts_field("_kafka_timestamp"),
        Field::new("_schema_id", DataType::Int32, true),
        ts_field("_ingested_at"),
        Field::new("event_date", DataType::Date32, true),
    ]
}

impl BronzeDecoder {
    /// A decoder whose rows follow `reader_schema` (Avro JSON, normally the latest version of
    /// the topic's subject).
    pub fn new(reader_schema: &str) -> Result<BronzeDecoder, LakeError> {
        let reader = AvroSchema::new(reader_schema.to_string());
        // The payload columns: what the reader schema decodes to when it is also the writer.
        let mut probe = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        probe
            .set(Fingerprint::Id(0), reader.clone())
            .map_err(|e| avro_err("reader schema", e))?;
        let decoder = ReaderBuilder::new()
            .with_reader_schema(reader.clone())
            .with_writer_schema_store(probe)
            .build_decoder()
            .map_err(|e| avro_err("reader schema", e))?;
        let payload_fields: Vec<Field> = decoder
            .schema()
            .fields()
            .iter()
            .map(|f| delta_field(f))
            .collect();
        let payload_schema = Arc::new(Schema::new(payload_fields.clone()));
        let mut all = payload_fields;
        all.extend(metadata_fields());
        Ok(BronzeDecoder {
            reader,
            store: SchemaStore::new_with_type(FingerprintAlgorithm::Id),
            known: IdSet::default(),
            mismatched: IdMap::default(),
            decoders: IdMap::default(),
            shapes: IdMap::default(),
            directs: IdMap::default(),
            reader_text: reader_schema.to_string(),
            payload_schema,
            schema: Arc::new(Schema::new(all)),
        })
    }

    /// The schema of the batches this decoder produces (what the bronze table is created with).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether `id` was registered (resolvable or not).
    pub fn knows(&self, id: u32) -> bool {
        self.known.contains(&id) || self.mismatched.contains_key(&id)
    }

    /// Registers the writer schema for `id`. A schema that does not resolve to the reader schema
    /// is remembered as such (its records fail with [`DecodeFault::SchemaMismatch`]) and the
    /// reason is returned as an error; an id already registered is left alone.
    pub fn add_writer_schema(&mut self, id: u32, writer_schema: &str) -> Result<(), LakeError> {
        if self.knows(id) {
            return Ok(());
        }
        let writer = AvroSchema::new(writer_schema.to_string());
        // Try it alone first, so one bad schema cannot break the shared decoder.
        let mut alone = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let check = alone
            .set(Fingerprint::Id(id), writer.clone())
            .and_then(|_| {
                ReaderBuilder::new()
                    .with_reader_schema(self.reader.clone())
                    .with_writer_schema_store(alone)
                    .build_decoder()
                    .map(|_| ())
            });
        if let Err(e) = check {
            let detail = e.to_string();
            self.mismatched.insert(id, detail.clone());
            return Err(LakeError::AvroSchema {
                what: format!("id {id} (as writer for the reader schema)"),
                detail,
            });
        }
        self.store
            .set(Fingerprint::Id(id), writer)
            .map_err(|e| avro_err(&format!("id {id}"), e))?;
        match Shape::parse(writer_schema) {
            Some(shape) => {
                self.shapes.insert(id, shape);
            }
            None => tracing::debug!(id, "no structural pre-check for this writer schema"),
        }
        if let Some(direct) = Direct::new(writer_schema, &self.reader_text, &self.payload_schema) {
            self.directs.insert(id, direct);
        }
        self.known.insert(id);
        Ok(())
    }

    fn build(&self, id: u32) -> Result<Decoder, LakeError> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let writer = self
            .store
            .lookup(&Fingerprint::Id(id))
            .cloned()
            .ok_or_else(|| avro_err(&format!("id {id}"), "not in the writer schema store"))?;
        store
            .set(Fingerprint::Id(id), writer)
            .map_err(|e| avro_err(&format!("id {id}"), e))?;
        ReaderBuilder::new()
            .with_batch_size(DECODER_BATCH)
            .with_reader_schema(self.reader.clone())
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(|e| avro_err("writer schema store", e))
    }

    /// Decodes `records` into one batch. `ingested_at_us` (µs since the epoch) is stamped on
    /// every row, so a caller can inject its clock.
    pub fn decode(
        &mut self,
        records: &[KafkaRecord<'_>],
        ingested_at_us: i64,
    ) -> Result<DecodeOutcome, LakeError> {
        let mut run = Run {
            records,
            ingested_at_us,
            pending: IdMap::default(),
            decoded: Vec::new(),
            batches: Vec::new(),
        };
        let mut errors = Vec::new();
        // Rows of the one-pass decoder (every id it covers writes the same reader columns).
        let mut direct_rows: Option<Rows> = None;
        let mut direct_index = Vec::new();
        for (index, r) in records.iter().enumerate() {
            let fail = |schema_id, fault, detail: String| RecordError {
                index,
                partition: r.partition,
                offset: r.offset,
                schema_id,
                fault,
                detail,
            };
            let id = match wire::split(r.payload) {
                Ok((id, _)) => id,
                Err(e @ WireError::BadMagic(_)) => {
                    errors.push(fail(None, DecodeFault::WrongMagic, e.to_string()));
                    continue;
                }
                Err(e @ WireError::TooShort(_)) => {
                    errors.push(fail(None, DecodeFault::Undecodable, e.to_string()));
                    continue;
                }
            };
            if let Some(why) = self.mismatched.get(&id) {
                let detail = format!("schema id {id} does not resolve to the reader schema: {why}");
                errors.push(fail(Some(id), DecodeFault::SchemaMismatch, detail));
                continue;
            }
            if !self.known.contains(&id) {
                let detail = format!("schema id {id} is not registered");
                errors.push(fail(Some(id), DecodeFault::UnknownSchemaId, detail));
                continue;
            }
            if let Some(direct) = self.directs.get(&id) {
                let rows = direct_rows
                    .get_or_insert_with(|| Rows::new(&self.payload_schema, records.len()));
                match direct.decode(&r.payload[wire::HEADER_LEN..], rows) {
                    Ok(()) => direct_index.push(index),
                    Err(reason) => {
                        let detail =
                            format!("Avro body does not decode with schema {id}: {reason}");
                        errors.push(fail(Some(id), DecodeFault::Undecodable, detail));
                    }
                }
                continue;
            }
            if let Some(shape) = self.shapes.get(&id)
                && let Verdict::Bad(reason) = shape.check(&r.payload[wire::HEADER_LEN..])
            {
                let detail = format!("Avro body does not decode with schema {id}: {reason}");
                errors.push(fail(Some(id), DecodeFault::Undecodable, detail));
                continue;
            }
            if !self.decoders.contains_key(&id) {
                let built = self.build(id)?;
                self.decoders.insert(id, built);
            }
            let decoder = self.decoders.get_mut(&id).expect("built above");
            let (payload, schema) = (&self.payload_schema, &self.schema);
            if let Err(reason) = run.feed(decoder, id, payload, schema, index)? {
                let detail = format!("Avro body does not decode with schema {id}: {reason}");
                errors.push(fail(Some(id), DecodeFault::Undecodable, detail));
                // The decoder may hold half a row: start afresh and replay the good ones.
                let mut fresh = self.build(id)?;
                let replay = run.pending.remove(&id).unwrap_or_default();
                for i in replay {
                    if let Err(reason) = run.feed(&mut fresh, id, payload, schema, i)? {
                        return Err(LakeError::AvroSchema {
                            what: format!("record {i} on replay"),
                            detail: reason,
                        });
                    }
                }
                run.flush(&mut fresh, id, payload, schema)?;
                self.decoders.insert(id, fresh);
            }
        }
        if let Some(rows) = direct_rows.filter(|r| r.len() > 0) {
            run.push(
                rows.finish(),
                direct_index,
                &self.payload_schema,
                &self.schema,
            )?;
        }
        for (id, decoder) in self.decoders.iter_mut() {
            run.flush(decoder, *id, &self.payload_schema, &self.schema)?;
        }
        // Rows were flushed per schema id: put them back in input order.
        if !run.decoded.is_sorted() {
            let mut perm: Vec<u32> = (0..run.decoded.len() as u32).collect();
            perm.sort_unstable_by_key(|&i| run.decoded[i as usize]);
            let all = concat_batches(&self.schema, &run.batches)?;
            let sorted = take_record_batch(&all, &UInt32Array::from(perm))?;
            run.batches = vec![sorted];
            run.decoded.sort_unstable();
        }
        let batch = match run.batches.len() {
            0 => None,
            1 => run.batches.pop(),
            _ => Some(concat_batches(&self.schema, &run.batches)?),
        };
        Ok(DecodeOutcome {
            batch,
            decoded: run.decoded,
            errors,
        })
    }
}

fn avro_err(what: &str, e: impl std::fmt::Display) -> LakeError {
    LakeError::AvroSchema {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// The state of one `decode` call.
struct Run<'r, 'a> {
    records: &'r [KafkaRecord<'a>],
    ingested_at_us: i64,
    /// Records in each id's decoder, not yet flushed.
    pending: IdMap<Vec<usize>>,
    /// Records in `batches`.
    decoded: Vec<usize>,
    batches: Vec<RecordBatch>,
}

impl Run<'_, '_> {
    /// Feeds record `index` (framing already checked). `Ok(Err(reason))`: the record is bad and
    /// the decoder must be rebuilt.
    fn feed(
        &mut self,
        decoder: &mut Decoder,
        id: u32,
        payload: &SchemaRef,
        schema: &SchemaRef,
        index: usize,
    ) -> Result<Result<(), String>, LakeError> {
        let msg = self.records[index].payload;
        let mut rest = msg;
        loop {
            let n = match decoder.decode(rest) {
                Ok(n) => n,
                Err(e) => return Ok(Err(e.to_string())),
            };
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            if decoder.batch_is_full() {
                // Capacity reached, or the writer schema changed: flush, then go on.
                self.flush(decoder, id, payload, schema)?;
                continue;
            }
            return Ok(Err(format!(
                "the body ends early ({} of {} bytes read)",
                msg.len() - rest.len(),
                msg.len()
            )));
        }
        let rows = decoder.batch_size() - decoder.capacity();
        let pending = self.pending.entry(id).or_default();
        if rows <= pending.len() {
            return Ok(Err(format!(
                "the body ends early ({} bytes after the header)",
                msg.len().saturating_sub(wire::HEADER_LEN)
            )));
        }
        if rows > pending.len() + 1 {
            return Ok(Err("bytes follow the Avro body of the record".into()));
        }
        pending.push(index);
        Ok(Ok(()))
    }

    fn flush(
        &mut self,
        decoder: &mut Decoder,
        id: u32,
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(), LakeError> {
        let Some(body) = decoder
            .flush()
            .map_err(|e| avro_err("flushing the decoder", e))?
        else {
            return Ok(());
        };
        let rows = self.pending.remove(&id).unwrap_or_default();
        debug_assert_eq!(rows.len(), body.num_rows());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (col, field) in body.columns().iter().zip(payload.fields()) {
            columns.push(if col.data_type() == field.data_type() {
                col.clone()
            } else {
                cast(col, field.data_type())?
            });
        }
        self.push(columns, rows, payload, schema)
    }

    /// Adds decoded rows (payload `columns` of the records at `rows`) with their metadata
    /// columns and `event_date`.
    fn push(
        &mut self,
        mut columns: Vec<ArrayRef>,
        rows: Vec<usize>,
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(), LakeError> {
        let event_date: Date32Array = match payload.index_of(EVENT_TIME) {
            Ok(i) => {
                let micros = cast(
                    &columns[i],
                    &DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
                )?;
                let micros = micros
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .expect("cast to µs timestamps");
                micros.unary(|us| us.div_euclid(MICROS_PER_DAY) as i32)
            }
            Err(_) => Date32Array::new_null(rows.len()),
        };
        let recs = rows.iter().map(|&i| &self.records[i]);
        columns.push(Arc::new(StringArray::from_iter_values(
            recs.clone().map(|r| r.topic),
        )));
        columns.push(Arc::new(Int32Array::from_iter_values(
            recs.clone().map(|r| r.partition),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            recs.clone().map(|r| r.offset),
        )));
        columns.push(Arc::new(BinaryArray::from_iter(
            recs.clone().map(|r| r.key),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter(
                recs.clone().map(|r| r.timestamp_ms.map(|ms| ms * 1000)),
            )
            .with_timezone(UTC),
        ));
        columns.push(Arc::new(Int32Array::from_iter_values(recs.clone().map(
            |r| {
                // Framing was checked before the record reached the decoder.
                let id = wire::split(r.payload).map(|(id, _)| id).unwrap_or_default();
                id as i32
            },
        ))));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_value(self.ingested_at_us, rows.len())
                .with_timezone(UTC),
        ));
        columns.push(Arc::new(event_date));
        self.batches
            .push(RecordBatch::try_new(schema.clone(), columns)?);
        self.decoded.extend(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
