//! Write-audit-publish: new data is written as Parquet files into the table folder but not
//! committed; the pending commit (adds, removes, app transactions, base version, operation) is
//! recorded under `$FLOWCTL_HOME/staging/<table>/pending.json`. A gate (`crate::wap`) reads the
//! candidate ([`StagedCommit::candidate_df`]), then publishes it in one Delta commit or discards it.
//!
//! Contract:
//! - Until [`StagedCommit::publish`] returns, readers of the table (flowctl, Python, Spark) see
//!   the base version: uncommitted files are invisible to Delta readers.
//! - Publishing is one atomic Delta commit (removes + adds + txn actions + commit info whose
//!   `userMetadata` is `run=<id>`). It refuses when the table moved since the base version:
//!   the caller restages from the new version (a concurrent writer's rows are never lost).
//! - At most one pending commit per table: staging again discards the previous one (its files
//!   are deleted; they were never in the log).
//! - A crash between publish and the pending file's removal leaves a pending file whose base
//!   version is stale: publishing it again notices its files are already live and only removes
//!   the record; discarding it never deletes a file the log references.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::Utc;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::error::LakeError;
use super::scan::{DataFile, scan_files};
use super::table::{AppTxn, LakeTable, delta_err};

/// How the staged files relate to the base version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageMode {
    /// Only adds files.
    Append,
    /// Removes every file of the given partitions (of the first partition column) and adds the
    /// new ones: recomputing some dates without touching the others.
    ReplacePartitions,
    /// Removes every file: for small tables rebuilt whole.
    Overwrite,
}

/// What to stage besides the rows.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub mode: StageMode,
    /// For [`StageMode::ReplacePartitions`]: the partition values (as the log writes them, e.g.
    /// `2025-11-23`) to replace. Partitions the new rows fall in are added automatically.
    pub partitions: Vec<String>,
    /// App transactions committed with the rows (e.g. the last bronze version processed).
    pub txns: Vec<AppTxn>,
    /// The flowctl run, recorded as `userMetadata: run=<id>` in the commit.
    pub run_id: Option<i64>,
}

impl StageSpec {
    pub fn new(mode: StageMode) -> StageSpec {
        StageSpec {
            mode,
            partitions: Vec::new(),
            txns: Vec::new(),
            run_id: None,
        }
    }
}

/// A pending commit, as recorded on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedCommit {
    /// Table name (folder under the lake).
    pub table: String,
    pub table_path: PathBuf,
    pub base_version: i64,
    pub mode: StageMode,
    pub partition_column: Option<String>,
    /// Partitions replaced (ReplacePartitions only).
    pub partitions: Vec<String>,
    pub adds: Vec<Add>,
    pub removes: Vec<Remove>,
    pub txns: Vec<AppTxn>,
    pub run_id: Option<i64>,
    pub staged_at: String,
    /// Rows in the added files.
    pub rows_added: i64,
}

/// Where pending commits of `table` are recorded.
pub fn staging_dir(home: &Path, table: &str) -> PathBuf {
    home.join("staging").join(table)
}

fn pending_file(home: &Path, table: &str) -> PathBuf {
    staging_dir(home, table).join("pending.json")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The pending commit of `table`, if one was staged and neither published nor discarded.
pub fn staged(home: &Path, table: &str) -> Result<Option<StagedCommit>, LakeError> {
    let path = pending_file(home, table);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| LakeError::Staging {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
}

fn rows_of(add: &Add) -> i64 {
    add.stats
        .as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["numRecords"].as_i64())
        .unwrap_or(0)
}

/// Writes `batches` into `table`'s folder without committing and records the pending commit.
/// Any previous pending commit of the table is discarded first. `name` is the table's name
/// (its folder under the lake).
pub async fn stage(
    home: &Path,
    name: &str,
    table: &LakeTable,
    batches: impl IntoIterator<Item = RecordBatch>,
    spec: StageSpec,
) -> Result<StagedCommit, LakeError> {
    if let Some(old) = staged(home, name)? {
        old.discard(home).await?;
    }
    let partition_column = table.partition_columns()?.into_iter().next();
    let adds = write_files(table, batches, partition_column.as_deref()).await?;
    let mut partitions: BTreeSet<String> = spec.partitions.into_iter().collect();
    let files = table.files()?;
    let removes: Vec<DataFile> = match spec.mode {
        StageMode::Append => Vec::new(),
        StageMode::Overwrite => files,
        StageMode::ReplacePartitions => {
            let Some(pc) = &partition_column else {
                return Err(LakeError::Staging {
                    path: table.path.display().to_string(),
                    detail: "replacing partitions of an unpartitioned table".into(),
                });
            };
            for a in &adds {
                if let Some(Some(v)) = a.partition_values.get(pc) {
                    partitions.insert(v.clone());
                }
            }
            files
                .into_iter()
                .filter(|f| {
                    f.partition_values
                        .get(pc)
                        .cloned()
                        .flatten()
                        .is_some_and(|v| partitions.contains(&v))
                })
                .collect()
        }
    };
    let now = Utc::now().timestamp_millis();
    let removes = removes
        .into_iter()
        .map(|f| Remove {
            path: f.path,
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(f.partition_values),
            size: None,
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        })
        .collect();
    let staged = StagedCommit {
        table: name.to_string(),
        table_path: table.path.clone(),
        base_version: table.version(),
        mode: spec.mode,
        partition_column,
        partitions: if spec.mode == StageMode::ReplacePartitions {
            partitions.into_iter().collect()
        } else {
            Vec::new()
        },
        rows_added: adds.iter().map(rows_of).sum(),
        adds,
        removes,
        txns: spec.txns,
        run_id: spec.run_id,
        staged_at: Utc::now().to_rfc3339(),
    };
    staged.save(home)?;
    Ok(staged)
}

/// Rows per writer below which splitting the write is not worth it.
const PARALLEL_WRITE_ROWS: usize = 250_000;

/// Writes `batches` as Parquet files in the table folder (uncommitted) and returns their adds.
/// The Parquet encoder is single-threaded, so a large write of a partitioned table is split by
/// partition value over one writer per core, each on its own tokio task: every partition still
/// goes to one writer, so the file layout is the same as with a single writer.
async fn write_files(
    table: &LakeTable,
    batches: impl IntoIterator<Item = RecordBatch>,
    partition_column: Option<&str>,
) -> Result<Vec<Add>, LakeError> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writers = (rows / PARALLEL_WRITE_ROWS).clamp(1, cores);
    let groups = match partition_column {
        Some(c) if writers > 1 => split_by_partition(batches, c, writers)?,
        _ => vec![batches],
    };
    let mut tasks = Vec::with_capacity(groups.len());
    for group in groups {
        let mut writer =
            RecordBatchWriter::for_table(&table.table).map_err(delta_err(&table.path, "stage"))?;
        tasks.push(tokio::spawn(async move {
            for batch in group {
                writer.write(batch).await?;
            }
            writer.flush().await
        }));
    }
    let mut adds = Vec::new();
    for t in tasks {
        let written = t.await.map_err(|e| LakeError::Staging {
            path: table.path.display().to_string(),
            detail: format!("a writer task failed: {e}"),
        })?;
        adds.extend(written.map_err(delta_err(&table.path, "stage"))?);
    }
    Ok(adds)
}

/// `batches` in `n` groups, a partition value always in the same group.
fn split_by_partition(
    batches: Vec<RecordBatch>,
    column: &str,
    n: usize,
) -> Result<Vec<Vec<RecordBatch>>, LakeError> {
    use deltalake::arrow::array::BooleanArray;
    use deltalake::arrow::compute::{cast, filter_record_batch};
    use deltalake::arrow::datatypes::DataType;

    let mut groups = vec![Vec::new(); n];
    for batch in batches {
        let Some(col) = batch.column_by_name(column) else {
            groups[0].push(batch);
            continue;
        };
        // Dates and integers spread by value; anything else by its string form's hash.
        let keys: Vec<u64> = match cast(col, &DataType::Int64) {
            Ok(ints) => {
                let ints = ints
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::Int64Array>()
                    .expect("cast to Int64");
                ints.iter().map(|v| v.unwrap_or(0) as u64).collect()
            }
            Err(_) => {
                let strings = cast(col, &DataType::Utf8)?;
                let strings = strings
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::StringArray>()
                    .expect("cast to Utf8");
                strings
                    .iter()
                    .map(|v| {
                        v.unwrap_or("")
                            .bytes()
                            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
                    })
                    .collect()
            }
        };
        for (g, group) in groups.iter_mut().enumerate() {
            let mask = BooleanArray::from_iter(keys.iter().map(|k| Some(*k as usize % n == g)));
            let part = filter_record_batch(&batch, &mask)?;
            if part.num_rows() > 0 {
                group.push(part);
            }
        }
    }
    Ok(groups.into_iter().filter(|g| !g.is_empty()).collect())
}

impl StagedCommit {
    fn save(&self, home: &Path) -> Result<(), LakeError> {
        let dir = staging_dir(home, &self.table);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = pending_file(home, &self.table);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| LakeError::Staging {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn forget(&self, home: &Path) -> Result<(), LakeError> {
        let path = pending_file(home, &self.table);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    async fn open(&self) -> Result<LakeTable, LakeError> {
        LakeTable::open(&self.table_path).await
    }

    /// What the table would hold once published: the base version's files minus the removes
    /// plus the adds, as one DataFrame.
    pub async fn candidate_df(&self) -> Result<DataFrame, LakeError> {
        let table = self.open().await?;
        let removed: BTreeSet<&str> = self.removes.iter().map(|r| r.path.as_str()).collect();
        let mut files: Vec<DataFile> = table
            .files_at(self.base_version)
            .await?
            .into_iter()
            .filter(|f| !removed.contains(f.path.as_str()))
            .collect();
        files.extend(self.adds.iter().map(|a| DataFile {
            path: a.path.clone(),
            partition_values: a.partition_values.clone(),
        }));
        let schema = table.arrow_schema()?;
        let parts = table.partition_columns()?;
        scan_files(&table.path, &schema, &parts, &files)?
            .collect()
            .map_err(|e| LakeError::Polars {
                table: self.table.clone(),
                detail: e.to_string(),
            })
    }

    /// Commits the staged actions as one Delta version and removes the pending record. Refuses
    /// ([`LakeError::Moved`]) if the table is no longer at the base version.
    pub async fn publish(&self, home: &Path) -> Result<i64, LakeError> {
        let table = self.open().await?;
        if table.version() != self.base_version {
            // A crash between our commit and the removal of the pending record: the commit is
            // there (every add is live), so publishing again is a no-op, not a conflict.
            let live: BTreeSet<String> = table.files()?.into_iter().map(|f| f.path).collect();
            if !self.adds.is_empty() && self.adds.iter().all(|a| live.contains(&a.path)) {
                self.forget(home)?;
                return Ok(table.version());
            }
            return Err(LakeError::Moved {
                table: self.table.clone(),
                base: self.base_version,
                current: table.version(),
            });
        }
        let mut actions: Vec<Action> = Vec::with_capacity(self.adds.len() + self.removes.len());
        actions.extend(self.removes.iter().cloned().map(Action::Remove));
        actions.extend(self.adds.iter().cloned().map(Action::Add));
        let partition_by = self.partition_column.clone().map(|c| vec![c]);
        let operation = DeltaOperation::Write {
            mode: match self.mode {
                StageMode::Append => SaveMode::Append,
                _ => SaveMode::Overwrite,
            },
            partition_by,
            predicate: match (self.mode, &self.partition_column) {
                (StageMode::ReplacePartitions, Some(c)) => Some(format!(
                    "{c} IN ({})",
                    self.partitions
                        .iter()
                        .map(|p| format!("'{p}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => None,
            },
        };
        let mut metadata: HashMap<String, serde_json::Value> = HashMap::new();
        if let Some(run) = self.run_id {
            metadata.insert("userMetadata".into(), format!("run={run}").into());
        }
        metadata.insert("flowctl.stagedAt".into(), self.staged_at.clone().into());
        let props = CommitProperties::default()
            .with_metadata(metadata)
            .with_application_transactions(
                self.txns
                    .iter()
                    .map(|t| Transaction::new(t.app_id.clone(), t.version))
                    .collect(),
            );
        let snapshot = table
            .table
            .snapshot()
            .map_err(delta_err(&table.path, "snapshot"))?;
        let finalized = CommitBuilder::from(props)
            .with_actions(actions)
            .with_max_retries(0)
            .build(Some(snapshot), table.table.log_store(), operation)
            .await
            .map_err(delta_err(&table.path, "publish"))?;
        self.forget(home)?;
        Ok(finalized.version() as i64)
    }

    /// Drops the pending commit: deletes its files (never a file the log references) and the
    /// pending record. The table is untouched.
    pub async fn discard(&self, home: &Path) -> Result<(), LakeError> {
        let referenced: BTreeSet<String> = match self.open().await {
            Ok(t) => t.files()?.into_iter().map(|f| f.path).collect(),
            Err(_) => BTreeSet::new(),
        };
        for add in &self.adds {
            if referenced.contains(&add.path) {
                continue;
            }
            let file = self.table_path.join(&add.path);
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&file)(e));
                }
                _ => {}
            }
        }
        self.forget(home)
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
