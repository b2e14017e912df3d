//! Appends of rows already split by partition value (the bronze ingest path): each part is
//! written straight to its partition's file, without delta-rs sorting and copying every row by
//! partition again, and one commit carries every file and the app transactions.

use deltalake::arrow::array::{Array, BooleanArray, Date32Array, UInt32Array};
use deltalake::arrow::compute::{and, filter_record_batch, is_null, take_record_batch};
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::parquet::arrow::ArrowSchemaConverter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::basic::{Encoding, Type as PhysicalType};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};

use super::error::LakeError;
use super::table::{AppTxn, LakeTable, commit_properties, delta_err};

/// Up to this many dates in a batch, each date's rows are selected with one masked pass.
const MASKED_SPLIT_MAX: usize = 8;

/// Splits the rows of `batch` that `keep` selects (all rows without `keep`) by the value of the
/// `Date32` partition `column`: one batch per value, rows in their original order. A column
/// of another type, or none, gives one part with every kept row.
pub fn split_by_date(
    batch: &RecordBatch,
    keep: Option<&BooleanArray>,
    column: &str,
) -> Result<Vec<RecordBatch>, LakeError> {
    let whole = |keep: Option<&BooleanArray>| -> Result<Vec<RecordBatch>, LakeError> {
        Ok(match keep {
            Some(k) if k.true_count() < k.len() => vec![filter_record_batch(batch, k)?],
            _ => vec![batch.clone()],
        })
    };
    let Some(dates) = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
    else {
        return whole(keep);
    };
    // Distinct kept dates (rows of a date mostly come together).
    let mut values: Vec<i32> = Vec::new();
    let mut last = None;
    for (i, d) in dates.values().iter().enumerate() {
        if last == Some(*d) || !dates.is_valid(i) || keep.is_some_and(|k| !k.value(i)) {
            continue;
        }
        last = Some(*d);
        if !values.contains(d) {
            values.push(*d);
        }
    }
    let nulls = dates.null_count() > 0;
    if values.len() <= 1 && !nulls {
        return whole(keep);
    }
    values.sort_unstable();
    let mut parts = Vec::with_capacity(values.len() + 1);
    if values.len() > MASKED_SPLIT_MAX {
        // Many dates (a backfill): gather each date's rows instead of one pass per date.
        let mut rows: std::collections::BTreeMap<i32, Vec<u32>> = Default::default();
        for (i, d) in dates.values().iter().enumerate() {
            if dates.is_valid(i) && keep.is_none_or(|k| k.value(i)) {
                rows.entry(*d).or_default().push(i as u32);
            }
        }
        for idx in rows.into_values() {
            parts.push(take_record_batch(batch, &UInt32Array::from(idx))?);
        }
    } else {
        for v in values {
            let mask = BooleanArray::from_unary(dates, |d| d == v);
            let mask = match keep {
                Some(k) => and(&mask, k)?,
                None => mask,
            };
            parts.push(filter_record_batch(batch, &mask)?);
        }
    }
    if nulls {
        let mask = is_null(dates)?;
        let mask = match keep {
            Some(k) => and(&mask, k)?,
            None => mask,
        };
        let part = filter_record_batch(batch, &mask)?;
        if part.num_rows() > 0 {
            parts.push(part);
        }
    }
    Ok(parts)
}

/// Kafka metadata columns whose values climb or repeat within a batch (offsets, timestamps, a
/// handful of partitions, one schema id, one ingest time): delta encoding stores them in a few
/// bits each, without a dictionary's per-value hashing.
const DELTA_COLUMNS: &[&str] = &[
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_schema_id",
    "_ingested_at",
];

/// Parquet settings for the bronze tables, chosen by measurement (Parquet encoding of 2M real
/// bronze orders rows, `flowctl bench ingest` for the whole path):
/// - snappy; chunk statistics but no page index (Delta reads only file-level statistics);
/// - a 64 KiB dictionary page limit, so a high-cardinality column gives up on its dictionary
///   early while enums and codes keep it; a float column that gives up falls back to
///   BYTE_STREAM_SPLIT (half the encoding time of plain + snappy on `amount`);
/// - no statistics for string and binary columns, whose min/max over ids, keys and a handful of
///   codes cannot skip a bronze file, nor for anything inside a list, which Delta's data
///   skipping never reads (they were a sixth of the nested `items` column's encoding time);
/// - integers inside lists and the Kafka metadata columns ([`DELTA_COLUMNS`]) delta-encoded,
///   without a dictionary.
///
/// Against the defaults: about a quarter less encoding CPU, files about a tenth smaller. Every
/// encoding used is standard Parquet that Spark, pyarrow and delta-rs read.
pub fn bronze_writer_properties(schema: &ArrowSchema) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_created_by(format!("flowctl {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_page_size_limit(64 * 1024);
    let Ok(parquet) = ArrowSchemaConverter::new().convert(schema) else {
        // A schema Parquet cannot hold fails later, when it is written.
        return b.build();
    };
    for leaf in parquet.columns() {
        let path = leaf.path().clone();
        let nested = leaf.max_rep_level() > 0;
        let top = path.parts().first().map(String::as_str).unwrap_or_default();
        let integer = matches!(
            leaf.physical_type(),
            PhysicalType::INT32 | PhysicalType::INT64
        );
        if nested || leaf.physical_type() == PhysicalType::BYTE_ARRAY {
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
        if integer && (nested || DELTA_COLUMNS.contains(&top)) {
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        } else if matches!(
            leaf.physical_type(),
            PhysicalType::FLOAT | PhysicalType::DOUBLE
        ) {
            b = b.set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    b.build()
}

/// Writes a table's data files without committing them: it owns what it needs, so the files
/// can be written on another task while the table commits something else (the bronze ingest
/// writes a batch's files while its DLQ audit rows commit). Files never committed are orphans
/// no reader sees (`vacuum` removes them).
pub struct PartsWriter {
    writer: RecordBatchWriter,
    partition_columns: Vec<String>,
    path: std::path::PathBuf,
}

impl PartsWriter {
    /// Writes `parts` (each holding rows of a single partition value: one file each, written
    /// without re-partitioning) and returns their `add` actions.
    pub async fn write(
        self,
        parts: Vec<RecordBatch>,
    ) -> Result<Vec<deltalake::kernel::Add>, LakeError> {
        write_parts(self.writer, parts, &self.partition_columns)
            .await
            .map_err(delta_err(&self.path, "append"))
    }
}

impl LakeTable {
    /// A writer of data files for this table, encoded with `props`.
    pub fn parts_writer(&self, props: &WriterProperties) -> Result<PartsWriter, LakeError> {
        let writer = match self.deferred_writer() {
            Some(w) => w?,
            None => RecordBatchWriter::for_table(&self.table)
                .map_err(delta_err(&self.path, "append"))?,
        };
        Ok(PartsWriter {
            writer: writer.with_writer_properties(props.clone()),
            partition_columns: self.partition_columns()?,
            path: self.path.clone(),
        })
    }

    /// Appends `parts` as one commit carrying `txns` and, with `run_id`, the run in the commit
    /// metadata, like [`LakeTable::append_txns`]: [`LakeTable::parts_writer`], then
    /// [`LakeTable::commit_files`]. With no parts the commit still records the transactions.
    pub async fn append_parts(
        &mut self,
        parts: Vec<RecordBatch>,
        txns: &[AppTxn],
        run_id: Option<i64>,
        props: &WriterProperties,
    ) -> Result<i64, LakeError> {
        let adds = self.parts_writer(props)?.write(parts).await?;
        self.commit_files(adds, txns, run_id).await
    }

    /// Commits files written by a [`PartsWriter`] of this table, with `txns` and the run.
    pub async fn commit_files(
        &mut self,
        adds: Vec<deltalake::kernel::Add>,
        txns: &[AppTxn],
        run_id: Option<i64>,
    ) -> Result<i64, LakeError> {
        if self.is_deferred() {
            return self.create_with(adds, txns, run_id).await;
        }
        let operation = append_operation(self.partition_columns()?);
        let props = commit_properties(txns, run_id);
        let snapshot = self
            .table
            .snapshot()
            .map_err(delta_err(&self.path, "snapshot"))?;
        let finalized = CommitBuilder::from(props)
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(delta_err(&self.path, "commit"))?;
        // The new version's state comes with the commit: no need to read the log back.
        self.table.state = Some(finalized.snapshot());
        Ok(finalized.version() as i64)
    }
}

/// The operation an append commit records (a `WRITE` in append mode, naming the partitioning).
pub(super) fn append_operation(partition_columns: Vec<String>) -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
        predicate: None,
    }
}

/// Writes `parts` (single partition value each) with `writer` and returns the files' adds.
async fn write_parts(
    mut writer: RecordBatchWriter,
    parts: Vec<RecordBatch>,
    partition_columns: &[String],
) -> Result<Vec<deltalake::kernel::Add>, deltalake::DeltaTableError> {
    for part in parts.into_iter().filter(|p| p.num_rows() > 0) {
        if partition_columns.is_empty() {
            writer.write(part).await?;
            continue;
        }
        let mut values = indexmap::IndexMap::new();
        for c in partition_columns {
            let col = part.column_by_name(c).ok_or_else(|| {
                deltalake::DeltaTableError::generic(format!("partition column {c} missing"))
            })?;
            let v = deltalake::kernel::scalars::ScalarExt::from_array(col.as_ref(), 0).ok_or_else(
                || deltalake::DeltaTableError::generic(format!("partition column {c}: no value")),
            )?;
            values.insert(c.clone(), v);
        }
        writer
            .write_partition(part, &values, WriteMode::Default)
            .await?;
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::{batch, schema};
    use deltalake::arrow::array::{AsArray, Int64Array};
    use deltalake::arrow::datatypes::{Date32Type, Int64Type};
    use std::sync::Arc;

    fn ids(b: &RecordBatch) -> Vec<i64> {
        b.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    fn dates(b: &RecordBatch) -> Vec<Option<i32>> {
        b.column(2).as_primitive::<Date32Type>().iter().collect()
    }

    #[test]
    fn one_part_per_date_rows_in_order_and_only_kept_rows() {
        let b = batch(0..30, 3);
        let parts = split_by_date(&b, None, "event_date").unwrap();
        assert_eq!(parts.len(), 3);
        for (n, p) in parts.iter().enumerate() {
            let want: Vec<i64> = (0..30).filter(|i| i % 3 == n as i64).collect();
            assert_eq!(ids(p), want);
            assert!(dates(p).iter().all(|d| *d == Some(20_000 + n as i32)));
        }
        let keep = BooleanArray::from_iter((0..30).map(|i| Some(i % 4 != 0)));
        let parts = split_by_date(&b, Some(&keep), "event_date").unwrap();
        let mut all: Vec<i64> = parts.iter().flat_map(ids).collect();
        all.sort_unstable();
        assert_eq!(all, (0..30).filter(|i| i % 4 != 0).collect::<Vec<_>>());
        // One date: the batch itself, or its kept rows.
        assert_eq!(
            split_by_date(&batch(0..5, 1), None, "event_date").unwrap()[0].num_rows(),
            5
        );
        let keep = BooleanArray::from(vec![true, false, true, true, false]);
        let one = split_by_date(&batch(0..5, 1), Some(&keep), "event_date").unwrap();
        assert_eq!(ids(&one[0]), vec![0, 2, 3]);
        // No such column: everything kept in one part.
        assert_eq!(split_by_date(&b, None, "nope").unwrap().len(), 1);
    }

    #[test]
    fn many_dates_and_null_dates() {
        let b = batch(0..200, 20);
        let keep = BooleanArray::from_iter((0..200).map(|i| Some(i != 7)));
        let parts = split_by_date(&b, Some(&keep), "event_date").unwrap();
        assert_eq!(parts.len(), 20);
        for p in &parts {
            let d = dates(p);
            assert!(d.iter().all(|x| *x == d[0]));
            assert!(ids(p).is_sorted());
        }
        assert_eq!(parts.iter().map(|p| p.num_rows()).sum::<usize>(), 199);

        let with_nulls = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(deltalake::arrow::array::StringArray::from(vec![
                    "a", "b", "c", "d",
                ])),
                Arc::new(Date32Array::from(vec![Some(5), None, Some(6), None])),
            ],
        )
        .unwrap();
        let parts = split_by_date(&with_nulls, None, "event_date").unwrap();
        let got: Vec<Vec<i64>> = parts.iter().map(ids).collect();
        assert_eq!(got, vec![vec![1], vec![3], vec![2, 4]]);
    }

    #[tokio::test]
    async fn parts_commit_once_with_their_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = LakeTable::open_or_create(dir.path(), &schema(), &["event_date"])
            .await
            .unwrap();
        let props = bronze_writer_properties(&schema());
        let parts = split_by_date(&batch(0..50, 2), None, "event_date").unwrap();
        let txn = |v| AppTxn {
            app_id: "t:topic:0".into(),
            version: v,
        };
        let v = t
            .append_parts(parts, &[txn(49)], Some(7), &props)
            .await
            .unwrap();
        assert_eq!(v, 1);
        assert_eq!(t.version(), 1);
        assert_eq!(t.txn_version("t:topic:0").await.unwrap(), Some(49));
        assert_eq!(t.row_count().unwrap(), 50);
        // One file per date, under its partition folder.
        let files = t.files().unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.path.starts_with("event_date=")));
        // No rows: the position still moves.
        let v = t
            .append_parts(Vec::new(), &[txn(60)], None, &props)
            .await
            .unwrap();
        assert_eq!(v, 2);
        assert_eq!(t.txn_version("t:topic:0").await.unwrap(), Some(60));
        // A fresh handle reads the same, rows whole.
        let again = LakeTable::open(dir.path()).await.unwrap();
        assert_eq!(again.version(), 2);
        let mut all: Vec<i64> = again.read_all().unwrap().iter().flat_map(ids).collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }
}
