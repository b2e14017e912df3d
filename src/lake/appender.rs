//! Appends by a table's one long-lived writer (the ingest's commit stage) at a cost per commit
//! that does not grow with the table.
//!
//! Why: after every commit delta-rs 1.1 brings the writer's table state up to date, and that
//! re-materialises the list of every active file with its statistics (and lists the whole log
//! for expired entries). Measured on bronze with 1,000-record batches: a commit took 0.12 s at
//! first and 2.3 s once the table held ~3,900 files, about 0.6 ms per file per commit, so a
//! `--follow` ingest would slow down without bound.
//!
//! How: delta-rs still prepares each commit (protocol checks, the log entry with its `add`,
//! `txn` and `commitInfo` actions), but the entry is written straight to the next version with
//! the log store's put-if-absent, without the state refresh. That is sound only while no other
//! writer committed since this handle last read or wrote the log, so the version written is
//! always `head + 1`: if another writer took it, the put fails, the table is read again (and
//! must still have the schema, partitioning and protocol the files were written for), and the
//! commit goes through delta-rs's full path, conflict checks included. Checkpoints are written
//! at the versions delta-rs would write them (every `delta.checkpointInterval` commits), by the
//! Delta kernel from the log, and expired log entries are cleaned up then.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::checkpoints::cleanup_expired_logs_for;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::table::config::TablePropertiesExt as _;

use super::append::{PartsWriter, append_operation};
use super::error::LakeError;
use super::table::{AppTxn, LakeTable, commit_properties, delta_err};

/// What a blind append relies on staying as it was when the table was last read: the files
/// were written for this schema and partitioning, and the log entry checked against this
/// protocol.
#[derive(PartialEq)]
struct Shape {
    schema: String,
    partition_columns: Vec<String>,
    protocol: String,
}

/// The only writer of a table for a while: appends files and app transactions in commits whose
/// cost does not depend on the table's size (see the module doc). Its [`LakeTable`] state
/// (files, transactions) is as of the last refresh, which is why it is not handed out.
pub struct Appender {
    table: LakeTable,
    /// The latest version this handle read or wrote.
    head: i64,
}

impl Appender {
    pub fn new(table: LakeTable) -> Self {
        let head = table.version();
        Appender { table, head }
    }

    /// The latest version this handle committed (or read, before its first commit; -1 for a
    /// table its first commit will create).
    pub fn version(&self) -> i64 {
        self.head
    }

    /// Creates the table now, empty, if its first commit has not ([`LakeTable::create_if_deferred`]).
    pub async fn create_if_deferred(&mut self, run_id: Option<i64>) -> Result<bool, LakeError> {
        let created = self.table.create_if_deferred(run_id).await?;
        if created {
            self.head = self.table.version();
        }
        Ok(created)
    }

    /// A writer of data files for this table, encoded with `props`.
    pub fn parts_writer(&self, props: &WriterProperties) -> Result<PartsWriter, LakeError> {
        self.table.parts_writer(props)
    }

    /// Writes `batches` (rows of any partitions) and commits them with `txns` and the run,
    /// like [`LakeTable::append_txns`]; returns the new version.
    pub async fn append_txns(
        &mut self,
        batches: impl IntoIterator<Item = RecordBatch>,
        txns: &[AppTxn],
        run_id: Option<i64>,
    ) -> Result<i64, LakeError> {
        let adds = self.table.write_files(batches).await?;
        self.commit_files(adds, txns, run_id).await
    }

    /// Commits files written by [`Appender::parts_writer`] with `txns` and the run; returns the
    /// new version.
    pub async fn commit_files(
        &mut self,
        adds: Vec<deltalake::kernel::Add>,
        txns: &[AppTxn],
        run_id: Option<i64>,
    ) -> Result<i64, LakeError> {
        if self.table.is_deferred() {
            // The first commit creates the table (see `lake::deferred`).
            self.head = self.table.commit_files(adds, txns, run_id).await?;
            return Ok(self.head);
        }
        let path = self.table.path.clone();
        let version = self.head + 1;
        let written = {
            let snapshot = self
                .table
                .table
                .snapshot()
                .map_err(delta_err(&path, "snapshot"))?;
            let operation = append_operation(snapshot.metadata().partition_columns().to_vec());
            let log_store = self.table.table.log_store();
            let prepared = CommitBuilder::from(commit_properties(txns, run_id))
                .with_actions(adds.iter().cloned().map(Action::Add).collect())
                .build(Some(snapshot), log_store.clone(), operation)
                .into_prepared_commit_future()
                .await
                .map_err(delta_err(&path, "commit"))?;
            log_store
                .write_commit_entry(
                    version as u64,
                    prepared.commit_or_bytes().clone(),
                    uuid::Uuid::new_v4(),
                )
                .await
        };
        match written {
            Ok(()) => {
                self.head = version;
                self.checkpoint_if_due().await?;
                Ok(version)
            }
            Err(TransactionError::VersionAlreadyExists(_)) => {
                // Another writer committed since this handle last looked: read the table again
                // and commit through delta-rs's full path, which checks for conflicts.
                let before = self.shape()?;
                self.table.refresh().await?;
                if self.shape()? != before {
                    return Err(LakeError::Changed {
                        table: path.display().to_string(),
                    });
                }
                let v = self.table.commit_files(adds, txns, run_id).await?;
                self.head = v;
                Ok(v)
            }
            Err(e) => Err(delta_err(&path, "commit")(e.into())),
        }
    }

    /// Writes a checkpoint when the version just committed is one delta-rs would checkpoint
    /// at, and then cleans up expired log entries (delta-rs lists the log for that after every
    /// commit). The checkpoint is written by the Delta kernel from the log itself: this handle's
    /// table state is not brought up to date, so its memory stays what it was at the start.
    async fn checkpoint_if_due(&mut self) -> Result<(), LakeError> {
        let path = self.table.path.clone();
        let (interval, cleanup, retention) = {
            let snapshot = self
                .table
                .table
                .snapshot()
                .map_err(delta_err(&path, "snapshot"))?;
            let config = snapshot.table_config();
            (
                config.checkpoint_interval().get() as i64,
                config.enable_expired_log_cleanup(),
                config.log_retention_duration(),
            )
        };
        if (self.head + 1) % interval != 0 {
            return Ok(());
        }
        let log_store = self.table.table.log_store();
        let root = log_store
            .transaction_url(None)
            .map_err(delta_err(&path, "checkpoint"))?;
        let engine = log_store.engine(None);
        let version = self.head as u64;
        tokio::task::spawn_blocking(move || {
            let snapshot = delta_kernel::snapshot::Snapshot::builder_for(root)
                .at_version(version)
                .build(engine.as_ref())?;
            snapshot.checkpoint(engine.as_ref(), None).map(|_| ())
        })
        .await
        .expect("checkpoint writer panicked")
        .map_err(|e| delta_err(&path, "checkpoint")(e.into()))?;
        tracing::debug!(
            table = %path.display(),
            version = self.head,
            "checkpoint"
        );
        if cleanup {
            let cutoff = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
            cleanup_expired_logs_for(version, log_store.as_ref(), cutoff, None)
                .await
                .map_err(delta_err(&path, "log cleanup"))?;
        }
        Ok(())
    }

    fn shape(&self) -> Result<Shape, LakeError> {
        let snapshot = self
            .table
            .table
            .snapshot()
            .map_err(delta_err(&self.table.path, "snapshot"))?;
        Ok(Shape {
            schema: format!("{:?}", snapshot.schema()),
            partition_columns: snapshot.metadata().partition_columns().to_vec(),
            protocol: format!("{:?}", snapshot.protocol()),
        })
    }
}

#[cfg(test)]
#[path = "appender_tests.rs"]
mod tests;
