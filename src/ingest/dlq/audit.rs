//! The `bronze_dlq_audit` table: one row per dead letter with its facts and its bytes whole,
//! whatever became of it in the DLQ topic. Replay reads a truncated dead letter's bytes back
//! from here ([`audit_payloads`]).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use polars::prelude::{DataFrame, IntoColumn, NamedFrom, Series, col, lit};

use super::BadRecord;
use crate::ingest::error::IngestError;
use crate::ingest::raw::{RawBatch, RawRecord};
use crate::lake::{LakeError, LakeTable};

/// The audit table's name under the lake.
pub const AUDIT_TABLE: &str = "bronze_dlq_audit";
/// The audit table's partition column.
pub const AUDIT_PARTITION: &str = "ingest_date";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The `bronze_dlq_audit` schema (docs/tables.md).
pub fn audit_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("source_topic", DataType::Utf8, true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("original_offset", DataType::Int64, true),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("error_detail", DataType::Utf8, true),
        Field::new("rule", DataType::Utf8, true),
        Field::new("schema_id", DataType::Int32, true),
        Field::new("kafka_key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
        Field::new("kafka_timestamp", ts.clone(), true),
        Field::new("ingested_at", ts, true),
        Field::new("run_id", DataType::Int64, true),
        Field::new(AUDIT_PARTITION, DataType::Date32, true),
    ]))
}

/// The audit rows for `bad` (records of `raw` from `topic`). A null value stays null in
/// `payload`; every other value is kept whole, however large.
pub fn audit_batch(
    topic: &str,
    raw: &RawBatch,
    bad: &[BadRecord],
    ingested_at_us: i64,
    run_id: Option<i64>,
) -> Result<RecordBatch, IngestError> {
    let rec = |b: &BadRecord| -> &RawRecord { &raw.records[b.index] };
    let n = bad.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![topic; n])),
        Arc::new(Int32Array::from_iter_values(
            bad.iter().map(|b| rec(b).partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            bad.iter().map(|b| rec(b).offset),
        )),
        Arc::new(StringArray::from_iter_values(
            bad.iter().map(|b| b.error_type.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            bad.iter().map(|b| b.detail.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            bad.iter().map(|b| b.rule.as_deref()),
        )),
        Arc::new(Int32Array::from_iter(bad.iter().map(|b| b.schema_id))),
        Arc::new(BinaryArray::from_iter(bad.iter().map(|b| raw.key(rec(b))))),
        Arc::new(BinaryArray::from_iter(
            bad.iter().map(|b| raw.value(rec(b))),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                bad.iter().map(|b| rec(b).timestamp_ms.map(|t| t * 1000)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![ingested_at_us; n]).with_timezone("UTC")),
        Arc::new(Int64Array::from(vec![run_id; n])),
        Arc::new(Date32Array::from(vec![
            ingested_at_us.div_euclid(MICROS_PER_DAY)
                as i32;
            n
        ])),
    ];
    RecordBatch::try_new(audit_schema(), columns)
        .map_err(|e| IngestError::Lake(LakeError::Arrow(e)))
}

/// A dead letter's key and value as the audit table holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPayload {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The audit rows' key and value of `source_topic`'s records at `positions` (partition,
/// offset); positions without an audit row are absent from the answer. Reads only those rows'
/// columns (Polars pushes the filter down to the Parquet files).
pub async fn audit_payloads(
    audit: &LakeTable,
    source_topic: &str,
    positions: &[(i32, i64)],
) -> Result<HashMap<(i32, i64), AuditPayload>, IngestError> {
    if positions.is_empty() {
        return Ok(HashMap::new());
    }
    let offsets = Series::new(
        "offsets".into(),
        positions.iter().map(|(_, o)| *o).collect::<Vec<i64>>(),
    );
    let lf = audit
        .scan()?
        .filter(
            col("source_topic")
                .eq(lit(source_topic.to_string()))
                .and(col("original_offset").is_in(lit(offsets).implode(false), false)),
        )
        .select([
            col("source_partition"),
            col("original_offset"),
            col("kafka_key"),
            col("payload"),
        ]);
    let table = audit.path().display().to_string();
    let polars = move |e: polars::prelude::PolarsError| {
        IngestError::Lake(LakeError::Polars {
            table: table.clone(),
            detail: e.to_string(),
        })
    };
    // Polars' reader blocks on its own runtime: off the async threads.
    let df: DataFrame = tokio::task::spawn_blocking(move || lf.collect())
        .await
        .expect("audit scan panicked")
        .map_err(&polars)?;
    let wanted: std::collections::HashSet<(i32, i64)> = positions.iter().copied().collect();
    let column = |name: &str| {
        df.column(name)
            .map(|c| c.clone().into_column().take_materialized_series())
            .map_err(&polars)
    };
    let (parts, offs, keys, values) = (
        column("source_partition")?,
        column("original_offset")?,
        column("kafka_key")?,
        column("payload")?,
    );
    let (parts, offs) = (parts.i32().map_err(&polars)?, offs.i64().map_err(&polars)?);
    let (keys, values) = (
        keys.binary().map_err(&polars)?,
        values.binary().map_err(&polars)?,
    );
    let mut out = HashMap::new();
    for i in 0..df.height() {
        let (Some(p), Some(o)) = (parts.get(i), offs.get(i)) else {
            continue;
        };
        if wanted.contains(&(p, o)) {
            out.insert(
                (p, o),
                AuditPayload {
                    key: keys.get(i).map(<[u8]>::to_vec),
                    value: values.get(i).map(<[u8]>::to_vec),
                },
            );
        }
    }
    Ok(out)
}
