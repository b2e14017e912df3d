//! Kafka records (Confluent-framed Avro) → one bronze `RecordBatch` per call, with arrow-avro.
//!
//! Writer schemas are registered by id ([`BronzeDecoder::add_writer_schema`], fetched from the
//! registry by the caller) and every record is resolved to one reader schema, the latest, so v1
//! and v2 events land in the same columns (a field v1 lacks takes its Avro default, null for the
//! optional ones). A record that cannot be decoded comes back as a [`RecordError`] with the
//! reason, and decoding goes on with the next record: bad input never stops the batch.
//!
//! arrow-avro's `Decoder` appends a record's fields to its column builders one by one, so a
//! body that fails half way leaves them misaligned. On such a failure the decoder is rebuilt and
//! the good records since the last flush are decoded again (each good record at most once more).
//! Framing faults (short message, wrong magic, unknown or incompatible schema id) are caught
//! before the decoder sees the record and cost nothing extra.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

use super::error::LakeError;
use crate::contracts::wire::{self, WireError};

/// Rows decoded between two flushes of the arrow-avro decoder.
const DECODER_BATCH: usize = 8192;
/// The payload column that `event_date` is derived from.
const EVENT_TIME: &str = "event_time";
const UTC: &str = "UTC";
const MICROS_PER_DAY: i64 = 86_400_000_000;

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
    known: HashSet<u32>,
    /// Writer schemas that do not resolve to the reader schema, with the reason.
    mismatched: HashMap<u32, String>,
    decoder: Option<Decoder>,
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
            known: HashSet::new(),
            mismatched: HashMap::new(),
            decoder: None,
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
        self.known.insert(id);
        self.decoder = None;
        Ok(())
    }

    fn build(&self) -> Result<Decoder, LakeError> {
        ReaderBuilder::new()
            .with_batch_size(DECODER_BATCH)
            .with_reader_schema(self.reader.clone())
            .with_writer_schema_store(self.store.clone())
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
            pending: Vec::new(),
            decoded: Vec::new(),
            batches: Vec::new(),
        };
        let mut errors = Vec::new();
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
            if self.decoder.is_none() {
                self.decoder = Some(self.build()?);
            }
            let decoder = self.decoder.as_mut().expect("built above");
            if let Err(reason) = run.feed(decoder, &self.payload_schema, &self.schema, index)? {
                let detail = format!("Avro body does not decode with schema {id}: {reason}");
                errors.push(fail(Some(id), DecodeFault::Undecodable, detail));
                // The decoder may hold half a row: start afresh and replay the good ones.
                let mut fresh = self.build()?;
                let replay = std::mem::take(&mut run.pending);
                for i in replay {
                    if let Err(reason) =
                        run.feed(&mut fresh, &self.payload_schema, &self.schema, i)?
                    {
                        return Err(LakeError::AvroSchema {
                            what: format!("record {i} on replay"),
                            detail: reason,
                        });
                    }
                }
                run.flush(&mut fresh, &self.payload_schema, &self.schema)?;
                self.decoder = Some(fresh);
            }
        }
        if let Some(decoder) = self.decoder.as_mut() {
            run.flush(decoder, &self.payload_schema, &self.schema)?;
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
    /// Records in the decoder, not yet flushed.
    pending: Vec<usize>,
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
                self.flush(decoder, payload, schema)?;
                continue;
            }
            return Ok(Err(format!(
                "the body ends early ({} of {} bytes read)",
                msg.len() - rest.len(),
                msg.len()
            )));
        }
        let rows = decoder.batch_size() - decoder.capacity();
        if rows <= self.pending.len() {
            return Ok(Err(format!(
                "the body ends early ({} bytes after the header)",
                msg.len().saturating_sub(wire::HEADER_LEN)
            )));
        }
        if rows > self.pending.len() + 1 {
            return Ok(Err("bytes follow the Avro body of the record".into()));
        }
        self.pending.push(index);
        Ok(Ok(()))
    }

    fn flush(
        &mut self,
        decoder: &mut Decoder,
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(), LakeError> {
        let Some(body) = decoder
            .flush()
            .map_err(|e| avro_err("flushing the decoder", e))?
        else {
            return Ok(());
        };
        let rows = std::mem::take(&mut self.pending);
        debug_assert_eq!(rows.len(), body.num_rows());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (col, field) in body.columns().iter().zip(payload.fields()) {
            columns.push(if col.data_type() == field.data_type() {
                col.clone()
            } else {
                cast(col, field.data_type())?
            });
        }
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
mod tests {
    use super::*;
    use crate::contracts::encode::encode;
    use crate::contracts::generate::{SchemaVersion, order};
    use crate::contracts::schema::{ParsedSchema, builtin};
    use deltalake::arrow::array::{AsArray, Date32Array};
    use deltalake::arrow::datatypes::Int64Type;

    const T0: i64 = 1_763_900_000_000; // 2025-11-23T12:13:20Z
    const V1: u32 = 11;
    const V2: u32 = 12;

    pub(crate) fn framed(id: u32, version: SchemaVersion, n: u64) -> Vec<u8> {
        let text = match version {
            SchemaVersion::V1 => builtin::ORDERS_V1,
            SchemaVersion::V2 => builtin::ORDERS_V2,
        };
        let parsed = ParsedSchema::parse(text).unwrap();
        let mut out = Vec::new();
        wire::write_header(&mut out, id);
        encode(&parsed.model, &order(7, n, version, T0), &mut out).unwrap();
        out
    }

    fn decoder() -> BronzeDecoder {
        let mut d = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
        d.add_writer_schema(V1, builtin::ORDERS_V1).unwrap();
        d.add_writer_schema(V2, builtin::ORDERS_V2).unwrap();
        d
    }

    fn records(payloads: &[Vec<u8>]) -> Vec<KafkaRecord<'_>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| KafkaRecord {
                topic: "orders",
                partition: 3,
                offset: 100 + i as i64,
                key: Some(b"k".as_slice()),
                timestamp_ms: Some(T0),
                payload: p,
            })
            .collect()
    }

    fn strings(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
        let a = cast(batch.column_by_name(col).unwrap(), &DataType::Utf8).unwrap();
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    fn offsets(batch: &RecordBatch) -> Vec<i64> {
        let a = batch.column_by_name("_kafka_offset").unwrap();
        a.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn v1_and_v2_land_in_one_batch_with_metadata() {
        let mut d = decoder();
        let payloads: Vec<_> = (0..6)
            .map(|n| {
                let v = if n % 2 == 0 {
                    SchemaVersion::V1
                } else {
                    SchemaVersion::V2
                };
                framed(if n % 2 == 0 { V1 } else { V2 }, v, n)
            })
            .collect();
        let out = d.decode(&records(&payloads), 42).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 6);
        assert_eq!(b.schema(), d.schema());
        assert_eq!(out.decoded, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(offsets(&b), vec![100, 101, 102, 103, 104, 105]);
        // v1 rows: coupon_code is null (its default), channel takes its default "web".
        let coupons = strings(&b, "coupon_code");
        let channels = strings(&b, "channel");
        for i in [0, 2, 4] {
            assert_eq!(coupons[i], None);
            assert_eq!(channels[i].as_deref(), Some("web"));
        }
        assert!(channels.iter().all(Option::is_some));
        let ids = cast(b.column_by_name("_schema_id").unwrap(), &DataType::Int64).unwrap();
        assert_eq!(
            ids.as_primitive::<Int64Type>().values().to_vec(),
            vec![11, 12, 11, 12, 11, 12]
        );
        assert_eq!(strings(&b, "_kafka_topic")[0].as_deref(), Some("orders"));
        // event_date is the UTC day of event_time.
        let et = b.column_by_name("event_time").unwrap();
        assert_eq!(
            et.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        let dates = b.column_by_name("event_date").unwrap();
        let dates = dates.as_any().downcast_ref::<Date32Array>().unwrap();
        let ts = et
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        for i in 0..6 {
            assert_eq!(
                dates.value(i) as i64,
                ts.value(i).div_euclid(MICROS_PER_DAY)
            );
        }
        let ingested = b.column_by_name("_ingested_at").unwrap();
        let ingested = ingested
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert!(ingested.values().iter().all(|&v| v == 42));
    }

    #[test]
    fn bad_records_are_reported_and_the_rest_decode() {
        let mut d = decoder();
        let good = framed(V2, SchemaVersion::V2, 1);
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 6);
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0xff; 9]);
        let mut wrong_magic = good.clone();
        wrong_magic[0] = 7;
        let mut unknown = good.clone();
        unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
        let payloads = vec![
            framed(V1, SchemaVersion::V1, 0), // 0 good
            b"\x00\x00".to_vec(),             // 1 too short
            wrong_magic,                      // 2
            good.clone(),                     // 3 good
            unknown,                          // 4
            truncated,                        // 5
            good.clone(),                     // 6 good
            trailing,                         // 7
            b"\x00\x00\x00\x00\x0c\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(), // 8 garbage body
            good.clone(),                                                             // 9 good
        ];
        let out = d.decode(&records(&payloads), 0).unwrap();
        let faults: Vec<_> = out.errors.iter().map(|e| (e.index, e.fault)).collect();
        assert_eq!(
            faults,
            vec![
                (1, DecodeFault::Undecodable),
                (2, DecodeFault::WrongMagic),
                (4, DecodeFault::UnknownSchemaId),
                (5, DecodeFault::Undecodable),
                (7, DecodeFault::Undecodable),
                (8, DecodeFault::Undecodable),
            ]
        );
        assert_eq!(out.errors[2].schema_id, Some(999));
        assert_eq!(out.errors[2].offset, 104);
        assert!(
            out.errors[2].detail.contains("999"),
            "{}",
            out.errors[2].detail
        );
        assert_eq!(out.decoded, vec![0, 3, 6, 9]);
        let b = out.batch.unwrap();
        assert_eq!(offsets(&b), vec![100, 103, 106, 109]);
        // The replayed rows are whole: every good row has its order id.
        assert!(strings(&b, "order_id").iter().all(Option::is_some));
        // And the decoder is still usable afterwards.
        let again = d.decode(&records(&[good]), 0).unwrap();
        assert_eq!(again.batch.unwrap().num_rows(), 1);
    }

    #[test]
    fn incompatible_writer_schema_is_a_schema_mismatch() {
        let mut d = decoder();
        assert!(
            d.add_writer_schema(13, builtin::ORDERS_INCOMPATIBLE)
                .is_err()
        );
        let mut p = framed(V2, SchemaVersion::V2, 0);
        p[1..5].copy_from_slice(&13u32.to_be_bytes());
        let out = d
            .decode(&records(&[p, framed(V2, SchemaVersion::V2, 1)]), 0)
            .unwrap();
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].fault, DecodeFault::SchemaMismatch);
        assert_eq!(out.decoded, vec![1]);
    }

    #[test]
    fn many_records_across_flushes_and_replays_keep_order() {
        let mut d = decoder();
        let n = DECODER_BATCH * 2 + 500;
        let payloads: Vec<_> = (0..n)
            .map(|i| {
                if i % 997 == 5 {
                    b"\x00\x00\x00\x00\x0c\xff\xff".to_vec()
                } else if i % 3 == 0 {
                    framed(V1, SchemaVersion::V1, i as u64)
                } else {
                    framed(V2, SchemaVersion::V2, i as u64)
                }
            })
            .collect();
        let out = d.decode(&records(&payloads), 0).unwrap();
        let bad: Vec<usize> = (0..n).filter(|i| i % 997 == 5).collect();
        assert_eq!(out.errors.iter().map(|e| e.index).collect::<Vec<_>>(), bad);
        let good: Vec<usize> = (0..n).filter(|i| i % 997 != 5).collect();
        assert_eq!(out.decoded, good);
        let b = out.batch.unwrap();
        let want: Vec<i64> = good.iter().map(|&i| 100 + i as i64).collect();
        assert_eq!(offsets(&b), want);
    }

    #[test]
    fn no_writer_schemas_means_every_record_is_unknown() {
        let mut d = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
        let out = d
            .decode(&records(&[framed(V2, SchemaVersion::V2, 0)]), 0)
            .unwrap();
        assert!(out.batch.is_none());
        assert_eq!(out.errors[0].fault, DecodeFault::UnknownSchemaId);
    }
}
