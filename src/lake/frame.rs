//! The one place where the two Arrows meet: arrow-rs `RecordBatch`es (what delta-rs reads and
//! writes) and Polars `DataFrame`s (what the transforms and checks compute on).
//!
//! Columns cross through the Arrow C Data Interface, which both crates implement with the same
//! `#[repr(C)]` structs, so no data is copied for primitive columns. Polars exports with
//! `CompatLevel::oldest()` so strings are `LargeUtf8` and lists `LargeList` rather than view
//! types, which delta-rs handles poorly; [`df_to_batch`] then casts to the table's own schema
//! when one is given (e.g. `LargeUtf8` → `Utf8`, `Datetime(µs, UTC)` stays µs UTC).

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, make_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use polars::prelude::{CompatLevel, DataFrame, IntoColumn, PlSmallStr, Series};
use polars_arrow::ffi as pffi;

use super::error::LakeError;
use super::table::LakeTable;

fn bridge_err(what: impl std::fmt::Display) -> LakeError {
    LakeError::Bridge(what.to_string())
}

/// One arrow-rs column (all its chunks) → one Polars series.
fn column_to_series(name: &str, chunks: &[ArrayRef]) -> Result<Series, LakeError> {
    let mut arrays = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let (array, schema) = to_ffi(&chunk.to_data())?;
        // SAFETY: arrow-rs and polars-arrow both define these as the C Data Interface's
        // `#[repr(C)]` ArrowArray / ArrowSchema; the release callbacks travel with them.
        let (array, schema): (pffi::ArrowArray, pffi::ArrowSchema) = unsafe {
            (
                std::mem::transmute::<FFI_ArrowArray, pffi::ArrowArray>(array),
                std::mem::transmute::<FFI_ArrowSchema, pffi::ArrowSchema>(schema),
            )
        };
        let field = unsafe { pffi::import_field_from_c(&schema) }.map_err(bridge_err)?;
        let imported = unsafe { pffi::import_array_from_c(array, field.dtype().clone()) }
            .map_err(bridge_err)?;
        arrays.push(imported);
    }
    Series::from_arrow_chunks(PlSmallStr::from(name), arrays).map_err(bridge_err)
}

/// An empty series with the Polars type of `field`.
fn empty_series(field: &Field) -> Result<Series, LakeError> {
    let schema = FFI_ArrowSchema::try_from(field)?;
    // SAFETY: as in `column_to_series`.
    let schema: pffi::ArrowSchema = unsafe { std::mem::transmute(schema) };
    let pfield = unsafe { pffi::import_field_from_c(&schema) }.map_err(bridge_err)?;
    let dtype = polars::prelude::DataType::from_arrow_field(&pfield);
    Ok(Series::new_empty(
        PlSmallStr::from(field.name().as_str()),
        &dtype,
    ))
}

/// arrow-rs batches (all in `schema`) → one DataFrame with the same columns, in order.
pub fn batches_to_df(schema: &Schema, batches: &[RecordBatch]) -> Result<DataFrame, LakeError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let series = if batches.iter().all(|b| b.num_rows() == 0) {
            empty_series(field)?
        } else {
            let chunks: Vec<ArrayRef> = batches
                .iter()
                .filter(|b| b.num_rows() > 0)
                .map(|b| b.column(i).clone())
                .collect();
            column_to_series(field.name(), &chunks)?
        };
        columns.push(series.into_column());
    }
    DataFrame::new_infer_height(columns).map_err(bridge_err)
}

/// A DataFrame → one arrow-rs batch. With `target`, columns are matched by name and cast to the
/// target's types (the table's schema), and a column the frame lacks becomes nulls.
pub fn df_to_batch(df: &DataFrame, target: Option<&SchemaRef>) -> Result<RecordBatch, LakeError> {
    let arrays = df.rechunk_to_arrow(CompatLevel::oldest());
    let mut fields = Vec::with_capacity(arrays.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(arrays.len());
    for (column, array) in df.columns().iter().zip(arrays) {
        let pfield =
            polars_arrow::datatypes::Field::new(column.name().clone(), array.dtype().clone(), true);
        let schema = pffi::export_field_to_c(&pfield);
        let array = pffi::export_array_to_c(array);
        // SAFETY: as in `column_to_series`, the other way round.
        let (array, schema): (FFI_ArrowArray, FFI_ArrowSchema) = unsafe {
            (
                std::mem::transmute::<pffi::ArrowArray, FFI_ArrowArray>(array),
                std::mem::transmute::<pffi::ArrowSchema, FFI_ArrowSchema>(schema),
            )
        };
        let data = unsafe { from_ffi(array, &schema) }?;
        let field = Field::try_from(&schema)?;
        fields.push(field.with_nullable(true));
        columns.push(make_array(data));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    match target {
        None => Ok(batch),
        Some(t) => conform(&batch, t),
    }
}

/// `batch` with `target`'s columns, in `target`'s order and types.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, LakeError> {
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let col = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => cast(c, field.data_type())?,
            None => deltalake::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        };
        columns.push(col);
    }
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

impl LakeTable {
    /// The current version as one DataFrame (partition columns included).
    pub fn read_df(&self) -> Result<DataFrame, LakeError> {
        let schema = self.arrow_schema()?;
        batches_to_df(&schema, &self.read_all()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        Array, Date32Array, Float64Array, Int64Array, ListArray, StringArray,
        TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Int32Type, TimeUnit};

    fn sample() -> RecordBatch {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new("items", list.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Float64Array::from(vec![1.5, 2.25, -3.0])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_700_000_000_000_000, 0, 5])
                        .with_timezone("UTC"),
                ),
                Arc::new(Date32Array::from(vec![19000, 19001, 19002])),
                Arc::new(list),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_values_and_types() {
        let batch = sample();
        let schema = batch.schema();
        let df = batches_to_df(&schema, &[batch.clone(), batch.clone()]).unwrap();
        assert_eq!(df.height(), 6);
        assert_eq!(df.width(), 6);
        let sum: i64 = df
            .column("n")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .flatten()
            .sum();
        assert_eq!(sum, 12);
        let back = df_to_batch(&df, Some(&schema)).unwrap();
        assert_eq!(back.num_rows(), 6);
        assert_eq!(back.schema(), schema);
        for i in 0..schema.fields().len() {
            assert_eq!(
                back.column(i).slice(0, 3).to_data(),
                batch.column(i).to_data()
            );
        }
        assert_eq!(back.column(0).null_count(), 2);
    }

    #[test]
    fn empty_input_keeps_the_schema() {
        let batch = sample();
        let df = batches_to_df(&batch.schema(), &[]).unwrap();
        assert_eq!(df.height(), 0);
        assert_eq!(df.width(), 6);
        let back = df_to_batch(&df, Some(&batch.schema())).unwrap();
        assert_eq!(back.num_rows(), 0);
    }
}
