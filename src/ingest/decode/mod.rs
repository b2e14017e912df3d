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
use deltalake::arrow::array::{BooleanArray, UInt32Array};
use deltalake::arrow::compute::{concat_batches, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

use crate::contracts::wire::{self, SchemaId, WireError};
use crate::lake::split_by_date;
pub use crate::quality::{BatchRow, Cell, Refusal, Row, RowJudge};
use direct::Direct;
pub use error::DecodeError;
use parts::{DatePart, DateParts, DirectRow};
use run::Run;
use shape::{Shape, Verdict};

mod direct;
mod error;
mod parts;
mod run;
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
/// The bronze partition column.
const EVENT_DATE: &str = "event_date";
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
    fn write_i32(&mut self, id: i32) {
        self.0 = u64::from(id as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<SchemaId, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<SchemaId, BuildHasherDefault<IdHasher>>;

/// arrow-avro keys writer schemas by an unsigned id: the same four header bytes.
fn fingerprint(id: SchemaId) -> Fingerprint {
    Fingerprint::Id(id as u32)
}

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
    pub schema_id: Option<SchemaId>,
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

/// What one call to [`BronzeDecoder::decode_parts`] produced.
#[derive(Debug)]
pub struct Decoded {
    /// The rows that decoded and passed the judge, in [`BronzeDecoder::schema`]: each batch
    /// holds one `event_date` (several batches may hold the same one), rows in input order.
    pub parts: Vec<RecordBatch>,
    /// The records that did not decode, in input order.
    pub errors: Vec<RecordError>,
    /// The records the judge refused: (index into the input, why), in input order.
    pub refused: Vec<(usize, Refusal)>,
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
    /// The payload column `event_date` is derived from, when there is one.
    event_time: Option<usize>,
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
    pub fn new(reader_schema: &str) -> Result<BronzeDecoder, DecodeError> {
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
            event_time: payload_schema.index_of(EVENT_TIME).ok(),
            payload_schema,
            schema: Arc::new(Schema::new(all)),
        })
    }

    /// The schema of the batches this decoder produces (what the bronze table is created with).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether `id` was registered (resolvable or not).
    pub fn knows(&self, id: SchemaId) -> bool {
        self.known.contains(&id) || self.mismatched.contains_key(&id)
    }

    /// Registers the writer schema for `id`. A schema that does not resolve to the reader schema
    /// is remembered as such (its records fail with [`DecodeFault::SchemaMismatch`]) and the
    /// reason is returned as an error; an id already registered is left alone.
    pub fn add_writer_schema(
        &mut self,
        id: SchemaId,
        writer_schema: &str,
    ) -> Result<(), DecodeError> {
        if self.knows(id) {
            return Ok(());
        }
        let writer = AvroSchema::new(writer_schema.to_string());
        // Try it alone first, so one bad schema cannot break the shared decoder.
        let mut alone = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let check = alone.set(fingerprint(id), writer.clone()).and_then(|_| {
            ReaderBuilder::new()
                .with_reader_schema(self.reader.clone())
                .with_writer_schema_store(alone)
                .build_decoder()
                .map(|_| ())
        });
        if let Err(e) = check {
            let detail = e.to_string();
            self.mismatched.insert(id, detail.clone());
            return Err(DecodeError::AvroSchema {
                what: format!("id {id} (as writer for the reader schema)"),
                detail,
            });
        }
        self.store
            .set(fingerprint(id), writer)
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

    fn build(&self, id: SchemaId) -> Result<Decoder, DecodeError> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let writer = self
            .store
            .lookup(&fingerprint(id))
            .cloned()
            .ok_or_else(|| avro_err(&format!("id {id}"), "not in the writer schema store"))?;
        store
            .set(fingerprint(id), writer)
            .map_err(|e| avro_err(&format!("id {id}"), e))?;
        ReaderBuilder::new()
            .with_batch_size(DECODER_BATCH)
            .with_reader_schema(self.reader.clone())
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(|e| avro_err("writer schema store", e))
    }

    /// Decodes `records` into one batch, rows in input order. `ingested_at_us` (µs since the
    /// epoch) is stamped on every row, so a caller can inject its clock.
    pub fn decode(
        &mut self,
        records: &[KafkaRecord<'_>],
        ingested_at_us: i64,
    ) -> Result<DecodeOutcome, DecodeError> {
        let pass = self.pass(records, ingested_at_us, None, false)?;
        let mut run = pass.run;
        // One part at most: nothing was routed.
        for part in pass.direct {
            let columns = part.rows.finish();
            run.push(columns, part.records, &self.payload_schema, &self.schema)?;
        }
        let (batch, decoded) = in_input_order(run, &self.schema)?;
        Ok(DecodeOutcome {
            batch,
            decoded,
            errors: pass.errors,
        })
    }

    /// Decodes `records` into bronze rows split by `event_date` (one batch per date or more,
    /// each in input order), leaving out the rows `judge` refuses. The one-pass decoder judges
    /// and routes each row as it decodes it, so its rows are never copied again; rows of the
    /// general path are judged, filtered and split afterwards.
    pub fn decode_parts(
        &mut self,
        records: &[KafkaRecord<'_>],
        ingested_at_us: i64,
        judge: Option<&dyn RowJudge>,
    ) -> Result<Decoded, DecodeError> {
        let mut pass = self.pass(records, ingested_at_us, judge, true)?;
        let mut parts = Vec::with_capacity(pass.direct.len() + 1);
        for part in std::mem::take(&mut pass.direct) {
            let columns = part.rows.finish();
            parts.push(pass.run.bronze_batch(
                columns,
                &part.records,
                &self.payload_schema,
                &self.schema,
            )?);
        }
        let (general, decoded) = in_input_order(pass.run, &self.schema)?;
        if let Some(batch) = general {
            let keep = judge.map(|j| {
                let mut keep = Vec::with_capacity(decoded.len());
                for (row, &index) in decoded.iter().enumerate() {
                    match j.judge(&BatchRow { batch: &batch, row }) {
                        Some(refusal) => {
                            pass.refused.push((index, refusal));
                            keep.push(false);
                        }
                        None => keep.push(true),
                    }
                }
                BooleanArray::from(keep)
            });
            parts.extend(split_by_date(&batch, keep.as_ref(), EVENT_DATE)?);
            pass.refused.sort_unstable_by_key(|(i, _)| *i);
        }
        parts.retain(|p| p.num_rows() > 0);
        Ok(Decoded {
            parts,
            errors: pass.errors,
            refused: pass.refused,
        })
    }

    /// One pass over `records`: framing checks, then each body through the one-pass decoder
    /// (judged and, with `route`, routed to its date's part) or through arrow-avro.
    fn pass<'r, 'a>(
        &mut self,
        records: &'r [KafkaRecord<'a>],
        ingested_at_us: i64,
        judge: Option<&dyn RowJudge>,
        route: bool,
    ) -> Result<Pass<'r, 'a>, DecodeError> {
        let mut run = Run {
            records,
            ingested_at_us,
            pending: IdMap::default(),
            decoded: Vec::new(),
            batches: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut refused = Vec::new();
        // Rows of the one-pass decoder (every id it covers writes the same reader columns).
        let mut direct = DateParts::new(&self.payload_schema, records.len());
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
            if let Some(decoder) = self.directs.get(&id) {
                let rows = direct.main();
                if let Err(reason) = decoder.decode(&r.payload[wire::HEADER_LEN..], rows) {
                    let detail = format!("Avro body does not decode with schema {id}: {reason}");
                    errors.push(fail(Some(id), DecodeFault::Undecodable, detail));
                    continue;
                }
                let (verdict, date) = {
                    let row = DirectRow {
                        rows,
                        record: r,
                        schema_id: id,
                        ingested_at_us,
                        event_time: self.event_time,
                    };
                    let verdict = judge.and_then(|j| j.judge(&row));
                    (verdict, route.then(|| row.event_date()).flatten())
                };
                if let Some(refusal) = verdict {
                    rows.drop_last();
                    refused.push((index, refusal));
                    continue;
                }
                direct.keep_last(index, route, date);
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
                        return Err(DecodeError::AvroSchema {
                            what: format!("record {i} on replay"),
                            detail: reason,
                        });
                    }
                }
                run.flush(&mut fresh, id, payload, schema)?;
                self.decoders.insert(id, fresh);
            }
        }
        for (id, decoder) in self.decoders.iter_mut() {
            run.flush(decoder, *id, &self.payload_schema, &self.schema)?;
        }
        Ok(Pass {
            run,
            direct: direct.into_parts(),
            errors,
            refused,
        })
    }
}

/// What one [`BronzeDecoder::pass`] produced, before it is assembled into batches.
struct Pass<'r, 'a> {
    /// arrow-avro's rows (the general path).
    run: Run<'r, 'a>,
    /// The one-pass decoder's rows, one part per `event_date` when routed.
    direct: Vec<DatePart>,
    errors: Vec<RecordError>,
    /// Rows the judge refused: (record index, why), in input order.
    refused: Vec<(usize, Refusal)>,
}

/// The general path's rows as one batch in input order (they were flushed per schema id), with
/// the record index of each row.
fn in_input_order(
    mut run: Run<'_, '_>,
    schema: &SchemaRef,
) -> Result<(Option<RecordBatch>, Vec<usize>), DecodeError> {
    if !run.decoded.is_sorted() {
        let mut perm: Vec<u32> = (0..run.decoded.len() as u32).collect();
        perm.sort_unstable_by_key(|&i| run.decoded[i as usize]);
        let all = concat_batches(schema, &run.batches)?;
        let sorted = take_record_batch(&all, &UInt32Array::from(perm))?;
        run.batches = vec![sorted];
        run.decoded.sort_unstable();
    }
    let batch = match run.batches.len() {
        0 => None,
        1 => run.batches.pop(),
        _ => Some(concat_batches(schema, &run.batches)?),
    };
    Ok((batch, run.decoded))
}

fn avro_err(what: &str, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::AvroSchema {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod direct_cases;
#[cfg(test)]
mod direct_props;
#[cfg(test)]
mod parts_tests;
#[cfg(test)]
mod tests;
