//! Appends of rows already split by partition value (the bronze ingest path): each part is
//! written straight to its partition's file (no re-partitioning in delta-rs), parts on their own
//! threads when there are several, then one commit carries every file and the app transactions.

use deltalake::arrow::array::{Array, BooleanArray, Date32Array};
use deltalake::arrow::compute::{and, filter_record_batch, is_null};
use deltalake::arrow::datatypes::{DataType, Schema as ArrowSchema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Action;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};

use super::error::LakeError;
use super::table::{AppTxn, LakeTable, delta_err};

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
    let mut values: Vec<i32> = Vec::new();
    for (i, d) in dates.values().iter().enumerate() {
        if dates.is_valid(i) && keep.is_none_or(|k| k.value(i)) && !values.contains(d) {
            values.push(*d);
        }
    }
    let nulls = dates.null_count() > 0;
    if values.len() <= 1 && !nulls {
        return whole(keep);
    }
    values.sort_unstable();
    let mut parts = Vec::with_capacity(values.len() + 1);
    for v in values {
        let mask = BooleanArray::from_unary(dates, |d| d == v);
        let mask = match keep {
            Some(k) => and(&mask, k)?,
            None => mask,
        };
        parts.push(filter_record_batch(batch, &mask)?);
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

/// Parquet settings for the bronze tables: Delta only reads file-level (row group) statistics,
/// so no page index is written; high-cardinality columns give up on dictionary encoding after a
/// small dictionary; `_kafka_key` (binary, which Delta keeps no statistics for) gets none.
pub fn bronze_writer_properties(schema: &ArrowSchema) -> WriterProperties {
    let exp = std::env::var("FLOWCTL_EXP_PQ").unwrap_or_default();
    if exp == "default" {
        return WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
    }
    let compression = if exp.contains("zstd1") {
        Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level"))
    } else if exp.contains("lz4") {
        Compression::LZ4_RAW
    } else if exp.contains("none") {
        Compression::UNCOMPRESSED
    } else {
        Compression::SNAPPY
    };
    let mut b = WriterProperties::builder()
        .set_created_by(format!("flowctl {}", env!("CARGO_PKG_VERSION")))
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Chunk);
    if !exp.contains("bigdict") {
        b = b.set_dictionary_page_size_limit(64 * 1024);
    }
    if exp.contains("nodict") {
        b = b.set_dictionary_enabled(false);
    }
    if !exp.contains("keystats") {
        for f in schema.fields() {
            if f.name() == "_kafka_key" || (!exp.contains("strstats") && f.data_type() == &DataType::Utf8) {
                b = b.set_column_statistics_enabled(
                    ColumnPath::from(f.name().as_str()),
                    EnabledStatistics::None,
                );
            }
        }
    }
    b.build()
}

impl LakeTable {
    /// Appends `parts` (each holding rows of a single partition value) as one commit carrying
    /// `txns` and, with `run_id`, the run in the commit metadata (as [`LakeTable::append_txns`]).
    /// Up to `writers` parts are encoded at once, each on a thread of its own. With no parts the
    /// commit still records the transactions.
    pub async fn append_parts(
        &mut self,
        parts: Vec<RecordBatch>,
        txns: &[AppTxn],
        run_id: Option<i64>,
        props: &WriterProperties,
        writers: usize,
    ) -> Result<i64, LakeError> {
        let partition_columns = self.partition_columns()?;
        let parts: Vec<RecordBatch> = parts.into_iter().filter(|b| b.num_rows() > 0).collect();
        // Parts in `writers` groups, largest first, each group to the least loaded writer.
        let writers = writers.clamp(1, parts.len().max(1));
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(parts[i].num_rows()));
        let mut groups: Vec<(usize, Vec<RecordBatch>)> = vec![(0, Vec::new()); writers];
        let mut parts: Vec<Option<RecordBatch>> = parts.into_iter().map(Some).collect();
        for i in order {
            let g = groups
                .iter_mut()
                .min_by_key(|(rows, _)| *rows)
                .expect("at least one writer");
            let part = parts[i].take().expect("each part once");
            g.0 += part.num_rows();
            g.1.push(part);
        }
        let mut adds = Vec::new();
        let mut tasks = Vec::new();
        for (_, group) in groups.into_iter().filter(|(rows, _)| *rows > 0) {
            let writer = RecordBatchWriter::for_table(&self.table)
                .map_err(delta_err(&self.path, "append"))?
                .with_writer_properties(props.clone());
            let columns = partition_columns.clone();
            let job = write_group(writer, group, columns);
            if writers == 1 {
                adds.extend(job.await.map_err(delta_err(&self.path, "append"))?);
            } else {
                let rt = tokio::runtime::Handle::current();
                tasks.push(tokio::task::spawn_blocking(move || rt.block_on(job)));
            }
        }
        for t in tasks {
            let written = t.await.map_err(|e| LakeError::Staging {
                path: self.path.display().to_string(),
                detail: format!("a writer thread failed: {e}"),
            })?;
            adds.extend(written.map_err(delta_err(&self.path, "append"))?);
        }
        let mut props = CommitProperties::default().with_application_transactions(
            txns.iter()
                .map(|t| Transaction::new(t.app_id.clone(), t.version))
                .collect(),
        );
        if let Some(run) = run_id {
            props = props.with_metadata([
                ("flowctl_run_id".to_string(), serde_json::json!(run)),
                (
                    "userMetadata".to_string(),
                    serde_json::json!(format!("run={run}")),
                ),
            ]);
        }
        let snapshot = self
            .table
            .snapshot()
            .map_err(delta_err(&self.path, "snapshot"))?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
            predicate: None,
        };
        let finalized = CommitBuilder::from(props)
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(delta_err(&self.path, "commit"))?;
        let version = finalized.version() as i64;
        self.table.state = Some(finalized.snapshot());
        Ok(version)
    }
}

/// Writes `parts` (single partition value each) with `writer` and returns the files' adds.
async fn write_group(
    mut writer: RecordBatchWriter,
    parts: Vec<RecordBatch>,
    partition_columns: Vec<String>,
) -> Result<Vec<deltalake::kernel::Add>, deltalake::DeltaTableError> {
    for part in parts {
        if partition_columns.is_empty() {
            writer.write(part).await?;
            continue;
        }
        let mut values = indexmap::IndexMap::new();
        for c in &partition_columns {
            let col = part.column_by_name(c).ok_or_else(|| {
                deltalake::DeltaTableError::generic(format!("partition column {c} missing"))
            })?;
            let v = deltalake::kernel::scalars::ScalarExt::from_array(col.as_ref(), 0)
                .ok_or_else(|| {
                    deltalake::DeltaTableError::generic(format!(
                        "partition column {c}: no value"
                    ))
                })?;
            values.insert(c.clone(), v);
        }
        writer
            .write_partition(part, &values, WriteMode::Default)
            .await?;
    }
    writer.flush().await
}
