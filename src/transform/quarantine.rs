//! Rows that failed silver's rules → `silver_quarantine`, nothing silently dropped.
//!
//! Quarantine is published by the transform itself, not gated: it is the record of what was
//! refused, and a failing silver gate must not hide why rows were refused. It stays idempotent
//! without a txn: a bronze row is identified by (source table, Kafka partition, offset), and a row
//! already quarantined is not added again, whichever run or bronze version brings it back.

use std::path::Path;

use polars::prelude::*;
use serde_json::{Map, Value};

use super::schema::silver_quarantine;
use super::{Entity, TransformError, pl};
use crate::lake::{StageMode, StageSpec, df_to_batch, stage};

/// Failed rows of one entity's increment.
pub(super) struct QuarantineBatch<'a> {
    pub entity: Entity,
    pub source_table: &'a str,
    pub source_version: i64,
    /// Bronze rows with a `_failed` column (comma-separated rule names).
    pub rows: DataFrame,
    pub run_id: Option<i64>,
    pub now_us: i64,
}

fn json_of(v: AnyValue<'_>) -> Value {
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => b.into(),
        AnyValue::String(s) => s.into(),
        AnyValue::StringOwned(s) => s.as_str().into(),
        AnyValue::Int32(i) => i.into(),
        AnyValue::Int64(i) => i.into(),
        AnyValue::UInt32(i) => i.into(),
        AnyValue::Float64(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        AnyValue::Date(d) => super::date_string(d).into(),
        AnyValue::Datetime(us, _, _) | AnyValue::DatetimeOwned(us, _, _) => us.into(),
        AnyValue::Binary(b) => String::from_utf8_lossy(b).into_owned().into(),
        AnyValue::BinaryOwned(b) => String::from_utf8_lossy(&b).into_owned().into(),
        AnyValue::List(s) => Value::Array(s.iter().map(json_of).collect()),
        AnyValue::StructOwned(payload) => {
            let (values, fields) = *payload;
            Value::Object(
                fields
                    .iter()
                    .zip(values)
                    .map(|(f, v)| (f.name().to_string(), json_of(v)))
                    .collect(),
            )
        }
        other => other.to_string().into(),
    }
}

/// The bronze row as one JSON object (payload and Kafka metadata), so a quarantined row can be
/// inspected and replayed without the bronze table.
fn row_json(df: &DataFrame) -> Vec<String> {
    let columns: Vec<&Column> = df
        .columns()
        .iter()
        .filter(|c| c.name().as_str() != "_failed")
        .collect();
    (0..df.height())
        .map(|i| {
            let mut obj = Map::new();
            for c in &columns {
                let v = c
                    .get(i)
                    .map(|v| json_of(v.into_static()))
                    .unwrap_or(Value::Null);
                obj.insert(c.name().to_string(), v);
            }
            Value::Object(obj).to_string()
        })
        .collect()
}

/// Publishes the rows not quarantined before; returns how many were added.
pub(super) async fn quarantine_rows(
    home: &Path,
    q: QuarantineBatch<'_>,
) -> Result<usize, TransformError> {
    let def = silver_quarantine();
    let table = def.open(home).await?;
    let target = match q.entity {
        Entity::Orders => "silver_orders",
        Entity::Clickstream => "silver_clickstream",
        Entity::Payments => "silver_payments",
    };
    let json = Series::new("row_json".into(), row_json(&q.rows));
    let day = q.now_us.div_euclid(86_400_000_000) as i32;
    let mut new = q
        .rows
        .lazy()
        .with_column(lit(json).alias("row_json"))
        .select([
            lit(target).alias("target_table"),
            col(q.entity.key())
                .str()
                .strip_chars(lit(NULL))
                .alias("business_key"),
            col("_failed").alias("failed_rules"),
            lit(q.source_table).alias("source_table"),
            lit(q.source_version)
                .cast(DataType::Int64)
                .alias("source_version"),
            col("_kafka_partition"),
            col("_kafka_offset"),
            col("row_json"),
            lit(q.now_us)
                .cast(DataType::Datetime(
                    TimeUnit::Microseconds,
                    Some(TimeZone::UTC),
                ))
                .alias("quarantined_at"),
            match q.run_id {
                Some(r) => lit(r).cast(DataType::Int64),
                None => lit(NULL).cast(DataType::Int64),
            }
            .alias("run_id"),
            lit(day).cast(DataType::Date).alias("quarantine_date"),
        ]);
    if !table.files()?.is_empty() {
        let seen = table
            .scan()?
            .filter(col("source_table").eq(lit(q.source_table)))
            .select([col("_kafka_partition"), col("_kafka_offset")]);
        new = new.join(
            seen,
            [col("_kafka_partition"), col("_kafka_offset")],
            [col("_kafka_partition"), col("_kafka_offset")],
            JoinArgs::new(JoinType::Anti),
        );
    }
    let new = new
        .unique_stable(
            Some(cols(["_kafka_partition", "_kafka_offset"])),
            UniqueKeepStrategy::First,
        )
        .collect()
        .map_err(pl(def.name, "quarantine"))?;
    if new.height() == 0 {
        return Ok(0);
    }
    let batch = df_to_batch(&new, Some(&table.arrow_schema()?))?;
    let spec = StageSpec {
        run_id: q.run_id,
        ..StageSpec::new(StageMode::Append)
    };
    let staged = stage(home, def.name, &table, [batch], spec).await?;
    staged.publish(home).await?;
    Ok(new.height())
}
