//! Tables created by their first commit. A writer that opened a table with
//! [`LakeTable::open_or_defer`] and failed before committing anything (a broker that was not
//! there, a topic that does not exist) leaves no table behind: the first commit creates the
//! table, its rows and `txn` actions in the same version 0. An empty table nobody wrote would
//! otherwise look like a table that was ingested and held nothing.
//!
//! Until then the handle answers as an empty table would: version -1, the schema and partition
//! columns it will be created with, no files, no transactions.

use std::path::Path;
use std::sync::Arc;

use deltalake::DeltaTableBuilder;
use deltalake::arrow::datatypes::{Field, Schema as ArrowSchema};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::kernel::{Action, Add, StructType};
use deltalake::writer::RecordBatchWriter;
use url::Url;

use super::error::LakeError;
use super::table::{AppTxn, LakeTable, commit_properties, delta_err};

/// What a table not created yet will be created with.
#[derive(Debug, Clone)]
pub(super) struct Deferred {
    columns: StructType,
    partition_by: Vec<String>,
    /// The Arrow schema the created table reads back with (`columns` through Delta's types),
    /// which is what its writers must write.
    arrow: Arc<ArrowSchema>,
}

impl Deferred {
    fn new(path: &Path, schema: &ArrowSchema, partition_by: &[&str]) -> Result<Self, LakeError> {
        let schema_err = |detail: String| LakeError::Schema {
            table: path.display().to_string(),
            detail,
        };
        let columns: StructType = schema
            .try_into_kernel()
            .map_err(|e| schema_err(e.to_string()))?;
        let arrow: ArrowSchema = (&columns)
            .try_into_arrow()
            .map_err(|e| schema_err(e.to_string()))?;
        Ok(Deferred {
            columns,
            partition_by: partition_by.iter().map(|c| c.to_string()).collect(),
            arrow: Arc::new(arrow),
        })
    }
}

impl LakeTable {
    /// Opens the table at `path`, or, when there is none, a handle whose first commit creates it
    /// with `schema` partitioned by `partition_by` (nothing is written before: see the module
    /// doc). An existing table keeps its own schema and partitioning.
    pub async fn open_or_defer(
        path: &Path,
        schema: &ArrowSchema,
        partition_by: &[&str],
    ) -> Result<LakeTable, LakeError> {
        if path.join("_delta_log").exists() {
            return LakeTable::open(path).await;
        }
        let abs = std::path::absolute(path).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let url = Url::from_directory_path(&abs)
            .map_err(|()| LakeError::BadPath(abs.display().to_string()))?;
        let table = DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(delta_err(path, "open"))?;
        Ok(LakeTable {
            table,
            deferred: Some(Deferred::new(path, schema, partition_by)?),
            path: abs,
        })
    }

    /// Whether the table is still to be created by its first commit.
    pub fn is_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Creates a deferred table now, empty (a writer that finished without committing anything
    /// still leaves the table its readers expect). Returns whether it created it.
    pub async fn create_if_deferred(&mut self, run_id: Option<i64>) -> Result<bool, LakeError> {
        if self.deferred.is_none() {
            return Ok(false);
        }
        self.create_with(Vec::new(), &[], run_id).await?;
        Ok(true)
    }

    pub(super) fn deferred_schema(&self) -> Option<Arc<ArrowSchema>> {
        self.deferred.as_ref().map(|d| d.arrow.clone())
    }

    pub(super) fn deferred_partitions(&self) -> Option<Vec<String>> {
        self.deferred.as_ref().map(|d| d.partition_by.clone())
    }

    /// A writer of data files for a deferred table (the folder is made by the first file).
    pub(super) fn deferred_writer(&self) -> Option<Result<RecordBatchWriter, LakeError>> {
        let d = self.deferred.as_ref()?;
        let url = match Url::from_directory_path(&self.path) {
            Ok(u) => u,
            Err(()) => return Some(Err(LakeError::BadPath(self.path.display().to_string()))),
        };
        Some(
            RecordBatchWriter::try_new(url, d.arrow.clone(), Some(d.partition_by.clone()), None)
                .map_err(delta_err(&self.path, "append")),
        )
    }

    /// Adds `fields` to the schema a deferred table will be created with.
    pub(super) fn widen_deferred(&mut self, fields: Vec<Field>) -> Result<(), LakeError> {
        let Some(d) = &self.deferred else {
            return Ok(());
        };
        let mut all: Vec<Field> = d
            .arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        all.extend(fields);
        let parts: Vec<&str> = d.partition_by.iter().map(String::as_str).collect();
        let widened = Deferred::new(&self.path, &ArrowSchema::new(all), &parts)?;
        self.deferred = Some(widened);
        Ok(())
    }

    /// Creates the deferred table in one commit with `adds` and `txns`: version 0. Another
    /// writer that created it first makes this fail (nothing written twice); the handle stays
    /// deferred then.
    pub(super) async fn create_with(
        &mut self,
        adds: Vec<Add>,
        txns: &[AppTxn],
        run_id: Option<i64>,
    ) -> Result<i64, LakeError> {
        let d = self
            .deferred
            .clone()
            .expect("only deferred tables are created");
        std::fs::create_dir_all(&self.path).map_err(|source| LakeError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        let table = self
            .table
            .clone()
            .create()
            .with_columns(d.columns.fields().cloned())
            .with_partition_columns(d.partition_by.clone())
            .with_actions(adds.into_iter().map(Action::Add))
            .with_commit_properties(commit_properties(txns, run_id))
            .await
            .map_err(delta_err(&self.path, "create"))?;
        self.table = table;
        self.deferred = None;
        Ok(self.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::{batch, schema};
    use crate::lake::{Appender, lake_root};

    fn txn(app: &str, version: i64) -> AppTxn {
        AppTxn {
            app_id: app.into(),
            version,
        }
    }

    #[tokio::test]
    async fn a_deferred_table_is_created_by_its_first_commit_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = lake_root(dir.path()).join("bronze_orders");
        let t = LakeTable::open_or_defer(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        assert!(t.is_deferred());
        assert_eq!(t.version(), -1);
        assert_eq!(t.txn_version("a").await.unwrap(), None);
        assert_eq!(t.partition_columns().unwrap(), vec!["event_date"]);
        assert!(t.files().unwrap().is_empty());
        assert!(!path.exists(), "nothing on disk before the first commit");
        drop(t);
        // Never committed: nothing left behind.
        assert!(!path.exists());

        let t = LakeTable::open_or_defer(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        let mut a = Appender::new(t);
        let v = a
            .append_txns([batch(0..10, 2)], &[txn("a", 9)], Some(7))
            .await
            .unwrap();
        assert_eq!(v, 0, "rows and txn in the creating commit");
        let v = a
            .append_txns([batch(10..12, 2)], &[txn("a", 11)], None)
            .await
            .unwrap();
        assert_eq!(v, 1);
        let again = LakeTable::open_or_defer(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        assert!(!again.is_deferred());
        assert_eq!(again.version(), 1);
        assert_eq!(again.txn_version("a").await.unwrap(), Some(11));
        assert_eq!(again.row_count().unwrap(), 12);
        assert_eq!(again.partition_columns().unwrap(), vec!["event_date"]);
        let commits = again.commits(None).await.unwrap();
        let first = commits.iter().find(|c| c.version == 0).unwrap();
        assert_eq!(first.run_id, Some(7), "the creating commit names its run");
    }

    #[tokio::test]
    async fn a_deferred_table_can_be_created_empty_and_its_files_written_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut t = LakeTable::open_or_defer(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        assert!(t.create_if_deferred(None).await.unwrap());
        assert!(!t.create_if_deferred(None).await.unwrap());
        assert_eq!((t.version(), t.row_count().unwrap()), (0, 0));

        let path = dir.path().join("u");
        let t = LakeTable::open_or_defer(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        let props = crate::lake::bronze_writer_properties(&t.arrow_schema().unwrap());
        let parts = crate::lake::split_by_date(&batch(0..6, 3), None, "event_date").unwrap();
        let mut a = Appender::new(t);
        let adds = a.parts_writer(&props).unwrap().write(parts).await.unwrap();
        assert_eq!(adds.len(), 3);
        assert_eq!(a.commit_files(adds, &[txn("b", 5)], None).await.unwrap(), 0);
        let t = LakeTable::open(&path).await.unwrap();
        assert_eq!(t.row_count().unwrap(), 6);
        assert_eq!(t.txn_version("b").await.unwrap(), Some(5));
    }
}
