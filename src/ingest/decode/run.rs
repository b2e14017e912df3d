//! The bookkeeping of one decode call: arrow-avro's rows per writer schema (fed, flushed,
//! replayed after a bad body) and the assembly of bronze batches — payload columns plus the
//! Kafka metadata columns and `event_date` — for both decode paths.

use std::sync::Arc;

use arrow_avro::reader::Decoder;
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

use super::DecodeError;
use super::{EVENT_TIME, IdMap, KafkaRecord, MICROS_PER_DAY, UTC, avro_err};
use crate::contracts::wire::{self, SchemaId};

/// The state of one `decode` call.
pub(super) struct Run<'r, 'a> {
    pub records: &'r [KafkaRecord<'a>],
    pub ingested_at_us: i64,
    /// Records in each id's decoder, not yet flushed.
    pub pending: IdMap<Vec<usize>>,
    /// Records in `batches`.
    pub decoded: Vec<usize>,
    pub batches: Vec<RecordBatch>,
}

impl Run<'_, '_> {
    /// Feeds record `index` (framing already checked). `Ok(Err(reason))`: the record is bad and
    /// the decoder must be rebuilt.
    pub fn feed(
        &mut self,
        decoder: &mut Decoder,
        id: SchemaId,
        payload: &SchemaRef,
        schema: &SchemaRef,
        index: usize,
    ) -> Result<Result<(), String>, DecodeError> {
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

    pub fn flush(
        &mut self,
        decoder: &mut Decoder,
        id: SchemaId,
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(), DecodeError> {
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
    pub fn push(
        &mut self,
        columns: Vec<ArrayRef>,
        rows: Vec<usize>,
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(), DecodeError> {
        let batch = self.bronze_batch(columns, &rows, payload, schema)?;
        self.batches.push(batch);
        self.decoded.extend(rows);
        Ok(())
    }

    /// Payload `columns` of the records at `rows` with their metadata columns and `event_date`:
    /// a batch of the bronze schema.
    pub fn bronze_batch(
        &self,
        mut columns: Vec<ArrayRef>,
        rows: &[usize],
        payload: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, DecodeError> {
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
        let recs = || rows.iter().map(|&i| &self.records[i]);
        columns.push(Arc::new(topics(recs(), rows.len())));
        columns.push(Arc::new(Int32Array::from_iter_values(
            recs().map(|r| r.partition),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            recs().map(|r| r.offset),
        )));
        columns.push(Arc::new(keys(recs(), rows.len())));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter(recs().map(|r| kafka_micros(r.timestamp_ms)))
                .with_timezone(UTC),
        ));
        // Framing was checked before the record reached the decoder: bytes 1..5 are the id.
        columns.push(Arc::new(Int32Array::from_iter_values(
            recs().map(|r| wire::split(r.payload).map_or(0, |(id, _)| id)),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_value(self.ingested_at_us, rows.len())
                .with_timezone(UTC),
        ));
        columns.push(Arc::new(event_date));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// A Kafka timestamp (ms) in the µs of `_kafka_timestamp`: null when it does not fit (the
/// producer sets it, to any long).
pub(super) fn kafka_micros(ms: Option<i64>) -> Option<i64> {
    ms?.checked_mul(1000)
}

/// The `_kafka_topic` column of `records` (`n` of them). A batch normally holds one topic: then
/// the column is built in one allocation instead of by a builder growing value by value.
fn topics<'r, 'a: 'r>(
    records: impl Iterator<Item = &'r KafkaRecord<'a>> + Clone,
    n: usize,
) -> StringArray {
    let mut all = records.clone();
    let Some(value) = all.next().map(|r| r.topic) else {
        return StringArray::from(Vec::<&str>::new());
    };
    if !all.all(|r| std::ptr::eq(r.topic, value) || r.topic == value) {
        return StringArray::from_iter_values(records.map(|r| r.topic));
    }
    let len = value.len();
    let offsets: Vec<i32> = (0..=n).map(|i| (i * len) as i32).collect();
    // SAFETY: offsets start at 0, rise by `len` and end at `n * len`, the length of `bytes`;
    // the bytes are copies of one valid UTF-8 string.
    unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(value.as_bytes().repeat(n)),
            None,
        )
    }
}

/// The Kafka keys of `records` (`n` of them) as one binary column, sized up front.
fn keys<'r, 'a: 'r>(
    records: impl Iterator<Item = &'r KafkaRecord<'a>> + Clone,
    n: usize,
) -> BinaryArray {
    let bytes: usize = records.clone().map(|r| r.key.map_or(0, <[u8]>::len)).sum();
    let mut b = BinaryBuilder::with_capacity(n, bytes);
    for r in records {
        b.append_option(r.key);
    }
    b.finish()
}
