//! Z-order for compaction: rows sorted by a key that interleaves the bits of each column's rank,
//! so rows close in *every* chosen column land in the same files and the per-file min/max
//! statistics of all those columns get tight (data skipping works for each of them, not just
//! for the first sort column as with a plain multi-column sort).
//!
//! Each column is first turned into its dense rank (ties share a rank, nulls rank first), which makes
//! any orderable type (numbers, strings, dates, timestamps) an unsigned integer, then the ranks
//! are scaled to the same bit width and interleaved most-significant bit first into a `u128`.

use deltalake::arrow::array::{RecordBatch, UInt32Array};
use deltalake::arrow::compute::kernels::rank::rank;
use deltalake::arrow::compute::{SortOptions, take_record_batch};
use deltalake::arrow::error::ArrowError;

/// The interleaved key of every row of `batch` over `columns` (names; must exist).
pub(super) fn zorder_keys(
    batch: &RecordBatch,
    columns: &[String],
) -> Result<Vec<u128>, ArrowError> {
    let rows = batch.num_rows();
    if columns.is_empty() || rows == 0 {
        return Ok(vec![0; rows]);
    }
    let bits = (128 / columns.len()).min(32) as u32;
    let mut ranks = Vec::with_capacity(columns.len());
    for name in columns {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name} to z-order by")))?;
        let r = rank(
            col.as_ref(),
            Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        )?;
        // Dense ranks 0..distinct (arrow's ranks leave gaps after ties), scaled into `bits`
        // bits so every column weighs the same.
        let mut distinct = r.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let n = distinct.len() as u128;
        let scaled: Vec<u128> = r
            .into_iter()
            .map(|v| {
                let dense = distinct.binary_search(&v).unwrap_or(0) as u128;
                if n <= (1u128 << bits) {
                    dense
                } else {
                    dense * (1u128 << bits) / n
                }
            })
            .collect();
        ranks.push(scaled);
    }
    let mut keys = vec![0u128; rows];
    for (row, key) in keys.iter_mut().enumerate() {
        let mut k = 0u128;
        for bit in (0..bits).rev() {
            for col in &ranks {
                k = (k << 1) | ((col[row] >> bit) & 1);
            }
        }
        *key = k;
    }
    Ok(keys)
}

/// `batch` with its rows in Z-order over `columns` (stable: equal keys keep their order).
pub(super) fn zorder_sort(
    batch: &RecordBatch,
    columns: &[String],
) -> Result<RecordBatch, ArrowError> {
    let keys = zorder_keys(batch, columns)?;
    let mut idx: Vec<u32> = (0..batch.num_rows() as u32).collect();
    idx.sort_by_key(|&i| keys[i as usize]);
    take_record_batch(batch, &UInt32Array::from(idx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(xs: Vec<i64>, ys: Vec<&str>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Int64, true),
                Field::new("y", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(xs)),
                Arc::new(StringArray::from(ys)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn one_column_is_a_plain_sort() {
        let b = batch(vec![3, 1, 2, 1], vec!["c", "a", "b", "z"]);
        let s = zorder_sort(&b, &["x".into()]).unwrap();
        let x = s.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(x.values(), &[1, 1, 2, 3]);
        let y = s.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        // Stable: the two 1s keep their input order.
        assert_eq!(y.value(0), "a");
        assert_eq!(y.value(1), "z");
    }

    #[test]
    fn two_columns_interleave_into_quadrants() {
        // A 4×4 grid: Z-order visits the 2×2 quadrants one after the other, so the first four
        // rows are the low-x/low-y quadrant, whatever the input order.
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let names = ["a", "b", "c", "d"];
        for x in (0..4).rev() {
            for y in names.iter().rev() {
                xs.push(x);
                ys.push(*y);
            }
        }
        let b = batch(xs, ys);
        let s = zorder_sort(&b, &["x".into(), "y".into()]).unwrap();
        let x = s.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let y = s.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let first: Vec<(i64, &str)> = (0..4).map(|i| (x.value(i), y.value(i))).collect();
        assert_eq!(first, vec![(0, "a"), (0, "b"), (1, "a"), (1, "b")]);
        assert_eq!(s.num_rows(), 16);
    }
}
