//! Open-or-create, append (with a `txn` action in the same commit), version, history.
//!
//! Writes go through delta-rs's `RecordBatchWriter`, which needs no DataFusion: that keeps the
//! dependency tree (and the build) much smaller than the `write` operation would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use futures::TryStreamExt as _;
use url::Url;

use super::deferred::Deferred;
use super::error::LakeError;

/// Where the lake lives: `<home>/lake`. `home` is `Config::home` (`$FLOWCTL_HOME`).
pub fn lake_root(home: &Path) -> PathBuf {
    home.join("lake")
}

/// Whether `name` can be a table of the lake: letters, digits, `_`, `-` and `.`, not starting
/// with `.` — so it is one directory right under the lake, never `..` or a path elsewhere.
pub fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The directory of table `name` under `lake`; None when the name is not a table name (a
/// user's `../../elsewhere`, or a hostile app id in a Delta log).
pub fn table_dir(lake: &Path, name: &str) -> Option<PathBuf> {
    valid_table_name(name).then(|| lake.join(name))
}

/// An application transaction recorded with an append: `app_id` (e.g. table + topic +
/// partition) and `version` (e.g. the last Kafka offset included). Delta keeps the latest
/// version per app id; a reader sees it together with the rows or not at all.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppTxn {
    pub app_id: String,
    pub version: i64,
}

/// One entry of a table's history, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub version: i64,
    pub timestamp_ms: Option<i64>,
    pub operation: Option<String>,
}

/// A Delta table on local disk. Not `Clone` on purpose: one writer per table per process.
#[derive(Debug)]
pub struct LakeTable {
    pub(super) table: DeltaTable,
    pub(super) path: PathBuf,
    /// Set while the table is to be created by its first commit ([`LakeTable::open_or_defer`]).
    pub(super) deferred: Option<Deferred>,
}

/// A commit's properties: the `txn` actions of `txns` and, with `run_id`, the run that wrote
/// it (`flowctl_run_id`, and `userMetadata` `run=N` for other engines' history views).
pub(super) fn commit_properties(txns: &[AppTxn], run_id: Option<i64>) -> CommitProperties {
    let props = CommitProperties::default().with_application_transactions(
        txns.iter()
            .map(|t| Transaction::new(t.app_id.clone(), t.version))
            .collect(),
    );
    match run_id {
        Some(run) => props.with_metadata([
            ("flowctl_run_id".to_string(), serde_json::json!(run)),
            (
                "userMetadata".to_string(),
                serde_json::json!(format!("run={run}")),
            ),
        ]),
        None => props,
    }
}

pub(super) fn delta_err(
    path: &Path,
    step: &'static str,
) -> impl FnOnce(deltalake::DeltaTableError) -> LakeError {
    delta(path, step)
}

fn delta(path: &Path, step: &'static str) -> impl FnOnce(deltalake::DeltaTableError) -> LakeError {
    let table = path.display().to_string();
    move |source| LakeError::Delta {
        table,
        step,
        source: Box::new(source),
    }
}

impl LakeTable {
    /// Opens the table at `path`, creating it (and its folder) with `schema` partitioned by
    /// `partition_by` if there is none. An existing table keeps its own schema and partitioning.
    pub async fn open_or_create(
        path: &Path,
        schema: &ArrowSchema,
        partition_by: &[&str],
    ) -> Result<LakeTable, LakeError> {
        std::fs::create_dir_all(path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let abs = std::path::absolute(path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let url = Url::from_directory_path(&abs)
            .map_err(|()| LakeError::BadPath(abs.display().to_string()))?;
        // A folder without a log is a table to create: build the handle without loading a log
        // (loading would fail, and delta-rs logs that failure as an error).
        let table = if abs.join("_delta_log").exists() {
            DeltaTable::try_from_url(url)
                .await
                .map_err(delta(path, "open"))?
        } else {
            deltalake::DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(delta(path, "open"))?
        };
        if table.version().is_some() {
            return Ok(LakeTable {
                table,
                path: abs,
                deferred: None,
            });
        }
        let struct_type: deltalake::kernel::StructType =
            schema.try_into_kernel().map_err(|e| LakeError::Schema {
                table: path.display().to_string(),
                detail: e.to_string(),
            })?;
        let table = table
            .create()
            .with_columns(struct_type.fields().cloned())
            .with_partition_columns(partition_by.iter().map(|c| c.to_string()))
            .await
            .map_err(delta(path, "create"))?;
        Ok(LakeTable {
            table,
            path: abs,
            deferred: None,
        })
    }

    /// Opens an existing table; an error if `path` holds no Delta table.
    pub async fn open(path: &Path) -> Result<LakeTable, LakeError> {
        let abs = std::path::absolute(path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let url = Url::from_directory_path(&abs)
            .map_err(|()| LakeError::BadPath(abs.display().to_string()))?;
        let table = DeltaTable::try_from_url(url)
            .await
            .map_err(delta(path, "open"))?;
        if table.version().is_none() {
            return Err(LakeError::Read {
                table: path.display().to_string(),
                file: "_delta_log".into(),
                detail: "no Delta table here".into(),
            });
        }
        Ok(LakeTable {
            table,
            path: abs,
            deferred: None,
        })
    }

    /// The table's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current table version (0 right after creation).
    pub fn version(&self) -> i64 {
        self.table.version().map(|v| v as i64).unwrap_or(-1)
    }

    /// The table's Arrow schema, partition columns included.
    pub fn arrow_schema(&self) -> Result<Arc<ArrowSchema>, LakeError> {
        if let Some(schema) = self.deferred_schema() {
            return Ok(schema);
        }
        let writer =
            RecordBatchWriter::for_table(&self.table).map_err(delta(&self.path, "schema"))?;
        Ok(writer.arrow_schema())
    }

    /// The table's partition columns.
    pub fn partition_columns(&self) -> Result<Vec<String>, LakeError> {
        if let Some(parts) = self.deferred_partitions() {
            return Ok(parts);
        }
        let snap = self
            .table
            .snapshot()
            .map_err(delta(&self.path, "snapshot"))?;
        Ok(snap.metadata().partition_columns().to_vec())
    }

    /// Appends `batches` as one commit and returns the new table version. With `txn`, the commit
    /// also records that application transaction, atomically with the rows.
    ///
    /// This does not check `txn` against the stored version: a caller that wants exactly-once
    /// reads [`LakeTable::txn_version`] first and skips what is already there.
    pub async fn append(
        &mut self,
        batches: impl IntoIterator<Item = RecordBatch>,
        txn: Option<AppTxn>,
    ) -> Result<i64, LakeError> {
        self.append_txns(batches, txn.as_slice(), None).await
    }

    /// Appends `batches` as one commit carrying every transaction in `txns` (e.g. one per Kafka
    /// partition the rows came from) and, with `run_id`, commit metadata `flowctl_run_id` (the
    /// UI's "which run wrote it"). With no rows the commit still records the transactions: that
    /// is how a consumer moves past input that produced no rows (an all-garbage batch).
    pub async fn append_txns(
        &mut self,
        batches: impl IntoIterator<Item = RecordBatch>,
        txns: &[AppTxn],
        run_id: Option<i64>,
    ) -> Result<i64, LakeError> {
        let adds = self.write_files(batches).await?;
        self.commit_files(adds, txns, run_id).await
    }

    /// Writes `batches` (rows of any partitions) as data files of this table, not yet committed,
    /// and returns their `add` actions.
    pub(super) async fn write_files(
        &self,
        batches: impl IntoIterator<Item = RecordBatch>,
    ) -> Result<Vec<deltalake::kernel::Add>, LakeError> {
        let mut writer = match self.deferred_writer() {
            Some(w) => w?,
            None => {
                RecordBatchWriter::for_table(&self.table).map_err(delta(&self.path, "append"))?
            }
        };
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            writer
                .write(batch)
                .await
                .map_err(delta(&self.path, "append"))?;
        }
        writer.flush().await.map_err(delta(&self.path, "append"))
    }

    /// Adds the columns of `schema` that the table lacks (nullable), in one metadata commit, so
    /// a newer reader schema (orders v2) can be appended; older rows read them as null. Returns
    /// the names added (none: no commit).
    pub async fn add_missing_columns(
        &mut self,
        schema: &ArrowSchema,
    ) -> Result<Vec<String>, LakeError> {
        let current = self.arrow_schema()?;
        let missing: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| current.field_with_name(f.name()).is_err())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let names = missing.iter().map(|f| f.name().clone()).collect();
        if self.is_deferred() {
            self.widen_deferred(missing)?;
            return Ok(names);
        }
        let as_struct: deltalake::kernel::StructType = (&ArrowSchema::new(missing))
            .try_into_kernel()
            .map_err(|e| LakeError::Schema {
                table: self.path.display().to_string(),
                detail: e.to_string(),
            })?;
        self.table = self
            .table
            .clone()
            .add_columns()
            .with_fields(as_struct.fields().cloned().collect::<Vec<_>>())
            .await
            .map_err(delta(&self.path, "add columns"))?;
        Ok(names)
    }

    /// The version last committed for `app_id`, or `None` if no commit carried it.
    pub async fn txn_version(&self, app_id: &str) -> Result<Option<i64>, LakeError> {
        if self.is_deferred() {
            return Ok(None);
        }
        let snap = self
            .table
            .snapshot()
            .map_err(delta(&self.path, "snapshot"))?;
        snap.transaction_version(self.table.log_store().as_ref(), app_id)
            .await
            .map_err(delta(&self.path, "txn_version"))
    }

    /// Re-reads the log, picking up commits made by other writers (a deferred table another
    /// writer created meanwhile becomes that table).
    pub async fn refresh(&mut self) -> Result<(), LakeError> {
        if self.is_deferred() {
            if self.path.join("_delta_log").exists() {
                *self = LakeTable::open(&self.path.clone()).await?;
            }
            return Ok(());
        }
        self.table
            .update_state()
            .await
            .map_err(delta(&self.path, "refresh"))
    }

    /// Up to `limit` commits, newest first.
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<Commit>, LakeError> {
        let infos: Vec<_> = self
            .table
            .history(limit)
            .try_collect()
            .await
            .map_err(delta(&self.path, "history"))?;
        let current = self.version();
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, c)| Commit {
                version: current - i as i64,
                timestamp_ms: c.timestamp,
                operation: c.operation,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::{batch, schema};
    use deltalake::arrow::array::{Date32Array, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field};

    fn txn(app: &str, version: i64) -> Option<AppTxn> {
        Some(AppTxn {
            app_id: app.into(),
            version,
        })
    }

    #[tokio::test]
    async fn append_records_txn_and_reopen_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = lake_root(dir.path()).join("bronze_orders");
        let mut t = LakeTable::open_or_create(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        assert_eq!(t.version(), 0);
        assert_eq!(t.txn_version("orders-0").await.unwrap(), None);
        let v = t
            .append([batch(0..10, 2)], txn("orders-0", 9))
            .await
            .unwrap();
        assert_eq!(v, 1);
        let v = t
            .append([batch(10..15, 2)], txn("orders-1", 4))
            .await
            .unwrap();
        assert_eq!(v, 2);

        let again = LakeTable::open_or_create(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        assert_eq!(again.version(), 2);
        assert_eq!(again.txn_version("orders-0").await.unwrap(), Some(9));
        assert_eq!(again.txn_version("orders-1").await.unwrap(), Some(4));
        assert_eq!(again.partition_columns().unwrap(), vec!["event_date"]);
        assert_eq!(again.row_count().unwrap(), 15);
        // Partitioned on disk: one folder per day.
        let days: Vec<_> = std::fs::read_dir(again.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("event_date="))
            .collect();
        assert_eq!(days.len(), 2, "{days:?}");
        // Rows come back whole, partition column included.
        let mut ids = Vec::new();
        for b in again.read_all().unwrap() {
            assert_eq!(b.schema().field(2).name(), "event_date");
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let d = b.column(2).as_any().downcast_ref::<Date32Array>().unwrap();
            for i in 0..b.num_rows() {
                assert_eq!(d.value(i), 20_000 + (id.value(i) % 2) as i32);
                ids.push(id.value(i));
            }
        }
        ids.sort();
        assert_eq!(ids, (0..15).collect::<Vec<_>>());
        let history = again.history(None).await.unwrap();
        assert_eq!(
            history.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![2, 1, 0]
        );
        assert_eq!(history[2].operation.as_deref(), Some("CREATE TABLE"));
    }

    /// The exactly-once building block: a writer that crashed after its commit finds the stored
    /// version on restart and skips a batch that is not newer.
    #[tokio::test]
    async fn a_replayed_batch_is_detectable_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut t = LakeTable::open_or_create(&path, &schema(), &[])
            .await
            .unwrap();
        async fn append_once(t: &mut LakeTable, b: RecordBatch, last_offset: i64) -> bool {
            match t.txn_version("app").await.unwrap() {
                Some(done) if done >= last_offset => false,
                _ => {
                    t.append([b], txn("app", last_offset)).await.unwrap();
                    true
                }
            }
        }
        assert!(append_once(&mut t, batch(0..10, 2), 9).await);
        // A second process (same table, fresh handle) replays the same and an older batch.
        let mut t2 = LakeTable::open_or_create(&path, &schema(), &[])
            .await
            .unwrap();
        assert!(!append_once(&mut t2, batch(0..10, 2), 9).await);
        assert!(!append_once(&mut t2, batch(0..5, 2), 4).await);
        assert!(append_once(&mut t2, batch(10..12, 2), 11).await);
        t.refresh().await.unwrap();
        assert_eq!(t.txn_version("app").await.unwrap(), Some(11));
        assert_eq!(t.row_count().unwrap(), 12);
        assert_eq!(t.version(), 2);
    }

    #[tokio::test]
    async fn an_append_with_the_wrong_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = LakeTable::open_or_create(dir.path(), &schema(), &[])
            .await
            .unwrap();
        let other = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![Field::new(
                "x",
                DataType::Int64,
                true,
            )])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let err = t.append([other], None).await.unwrap_err();
        assert!(err.to_string().contains("append"), "{err}");
        assert_eq!(t.version(), 0);
    }
}
