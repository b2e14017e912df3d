//! Table maintenance without DataFusion: compaction (optimize, optionally Z-ordered), vacuum and
//! checkpoints.
//!
//! delta-rs's own `optimize` needs the `datafusion` feature, which flowctl leaves off (it
//! doubles the build). Compaction here is small: per partition, the files below the target
//! size are read back with the Parquet reader ([`LakeTable::read_files`]), rewritten through
//! `RecordBatchWriter` (which rolls a new file at the target size) and swapped in by one commit
//! of `remove`s + `add`s with `dataChange = false` and operation `OPTIMIZE`, so readers and
//! streaming consumers see no new data, and time travel to older versions keeps working until a
//! vacuum deletes the old files.
//!
//! Contract with concurrent writers (optimistic concurrency, as Delta intends): the plan is made
//! on one snapshot; before committing, the table is re-read and the commit goes against the
//! latest version only if every file the plan removes is still live. A concurrent append only
//! adds files, so it is kept (the optimize commit lands after it); a concurrent commit that
//! removed one of our files (another optimize, an overwrite) makes this optimize fail with
//! [`MaintainError::Conflict`], its new files deleted and nothing committed. The check and the
//! commit race only within the commit itself, which Delta's put-if-absent log write decides.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use deltalake::arrow::compute::concat_batches;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Remove};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};

use super::error::LakeError;
use super::inspect::FileInfo;
use super::scan::DataFile;
use super::table::{LakeTable, delta_err};
use super::zorder::zorder_sort;

/// Compaction's default target file size: 128 MiB, as Delta's.
pub const DEFAULT_TARGET_SIZE: u64 = 128 * 1024 * 1024;
/// Vacuum's default retention: 7 days, as Delta's `deletedFileRetentionDuration`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest retention vacuum accepts without `force`: a reader that started within the
/// last hour on an older version (time travel, a long query) still finds its files.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// A file is "small" (worth compacting) below this size. Half the target, not the target: the
/// writer rolls files on an estimate of the encoded size, so compacted files land somewhat
/// below the target and must not count as small again (that would rewrite them every run).
pub fn small_below(target_size: u64) -> u64 {
    target_size / 2
}
/// Rows handed to the writer at a time, so it can roll files at the target size.
const WRITE_CHUNK_ROWS: usize = 16 * 1024;
/// Commit attempts when other writers keep committing between our re-read and our commit.
const COMMIT_ATTEMPTS: usize = 5;

/// What went wrong in maintenance; everything else is a [`LakeError`].
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(
        "table {table}: vacuum retention {asked} is below the safe minimum {min}: readers of \
         older versions could lose their files; pass --force to go lower anyway"
    )]
    RetentionTooShort {
        table: String,
        asked: String,
        min: String,
    },
    #[error(
        "table {table}: a concurrent commit (now at version {version}) removed {file}, which this \
         optimize rewrote; nothing was committed, run it again"
    )]
    Conflict {
        table: String,
        version: i64,
        file: String,
    },
    #[error("table {table}: cannot z-order by {column}: no such column (columns: {columns})")]
    UnknownColumn {
        table: String,
        column: String,
        columns: String,
    },
    #[error("table {table}: {detail}")]
    Invalid { table: String, detail: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
}

impl MaintainError {
    /// True for errors in what the caller asked (exit code 2, never retried).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            MaintainError::RetentionTooShort { .. }
                | MaintainError::UnknownColumn { .. }
                | MaintainError::Invalid { .. }
        )
    }
}

/// How to compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptimizeOptions {
    /// New files roll over at about this size (bytes); files below half of it are compacted
    /// ([`small_below`]).
    pub target_size: u64,
    /// Z-order by these columns; every file of a partition that has two or more small files is
    /// rewritten then, not only the small ones, since the point is the order across files.
    pub zorder: Vec<String>,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            target_size: DEFAULT_TARGET_SIZE,
            zorder: Vec::new(),
        }
    }
}

/// One partition's files to rewrite.
#[derive(Debug, Clone)]
pub struct PartitionPlan {
    pub partition_values: HashMap<String, Option<String>>,
    pub files: Vec<FileInfo>,
}

/// What optimize will rewrite, made on one snapshot. Execute it with [`OptimizePlan::execute`];
/// the split lets a test commit something in between.
#[derive(Debug, Clone)]
pub struct OptimizePlan {
    pub read_version: i64,
    pub files_before: usize,
    pub options: OptimizeOptions,
    pub partitions: Vec<PartitionPlan>,
}

/// What optimize did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptimizeReport {
    pub read_version: i64,
    /// The OPTIMIZE commit; none when there was nothing to compact.
    pub version: Option<i64>,
    pub files_before: usize,
    pub files_after: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub partitions_compacted: usize,
    pub bytes_removed: i64,
    pub bytes_added: i64,
    pub rows_rewritten: usize,
    pub zorder: Vec<String>,
    pub elapsed_ms: u64,
}

/// Plans a compaction of `table`'s current snapshot.
pub fn plan_optimize(
    table: &LakeTable,
    options: OptimizeOptions,
) -> Result<OptimizePlan, MaintainError> {
    let name = table.path().display().to_string();
    if options.target_size == 0 {
        return Err(MaintainError::Invalid {
            table: name,
            detail: "target size must be above 0".into(),
        });
    }
    let schema = table.arrow_schema()?;
    let parts = table.partition_columns()?;
    for c in &options.zorder {
        if schema.field_with_name(c).is_err() {
            return Err(MaintainError::UnknownColumn {
                table: name,
                column: c.clone(),
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if parts.contains(c) {
            return Err(MaintainError::Invalid {
                table: name,
                detail: format!("{c} is a partition column: z-ordering by it changes nothing"),
            });
        }
    }
    let files = table.file_infos()?;
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<FileInfo>> = BTreeMap::new();
    for f in &files {
        let key = parts
            .iter()
            .map(|c| f.partition_values.get(c).cloned().flatten())
            .collect();
        groups.entry(key).or_default().push(f.clone());
    }
    let mut partitions = Vec::new();
    for (_, group) in groups {
        let zorder = !options.zorder.is_empty();
        let is_small = |f: &FileInfo| (f.size as u64) < small_below(options.target_size);
        let small = group.iter().filter(|f| is_small(f)).count();
        // Only a partition with at least two small files is rewritten (one small file alone is
        // as compact as it gets), so a run right after another finds nothing to do. Plain
        // compaction rewrites the small files; Z-order the whole partition (the order is across
        // files), which happens again only once new small files have arrived.
        if small < 2 {
            continue;
        }
        let mut candidates: Vec<FileInfo> = if zorder {
            group
        } else {
            group.into_iter().filter(|f| is_small(f)).collect()
        };
        candidates.sort_by(|a, b| a.path.cmp(&b.path));
        partitions.push(PartitionPlan {
            partition_values: candidates[0].partition_values.clone(),
            files: candidates,
        });
    }
    Ok(OptimizePlan {
        read_version: table.version(),
        files_before: files.len(),
        options,
        partitions,
    })
}

impl OptimizePlan {
    /// Rewrites the planned files and commits the swap (see the module doc for the contract
    /// with concurrent writers). Leaves `table` at the latest version.
    pub async fn execute(self, table: &mut LakeTable) -> Result<OptimizeReport, MaintainError> {
        let started = std::time::Instant::now();
        let path = table.path().to_path_buf();
        let mut report = OptimizeReport {
            read_version: self.read_version,
            version: None,
            files_before: self.files_before,
            files_after: self.files_before,
            files_removed: 0,
            files_added: 0,
            partitions_compacted: 0,
            bytes_removed: 0,
            bytes_added: 0,
            rows_rewritten: 0,
            zorder: self.options.zorder.clone(),
            elapsed_ms: 0,
        };
        if self.partitions.is_empty() {
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        let mut writer = RecordBatchWriter::for_table(&table.table)
            .map_err(delta_err(&path, "optimize"))?
            .with_target_file_size(self.options.target_size);
        let mut adds = Vec::new();
        for part in &self.partitions {
            let files: Vec<DataFile> = part
                .files
                .iter()
                .map(|f| DataFile {
                    path: f.path.clone(),
                    partition_values: f.partition_values.clone(),
                })
                .collect();
            let batches = table.read_files(&files)?;
            let mut batches = if self.options.zorder.is_empty() {
                batches
            } else {
                let schema = table.arrow_schema()?;
                let all = concat_batches(&schema, &batches).map_err(LakeError::from)?;
                vec![zorder_sort(&all, &self.options.zorder).map_err(LakeError::from)?]
            };
            for batch in batches.drain(..) {
                report.rows_rewritten += batch.num_rows();
                let mut offset = 0;
                while offset < batch.num_rows() {
                    let len = WRITE_CHUNK_ROWS.min(batch.num_rows() - offset);
                    writer
                        .write(batch.slice(offset, len))
                        .await
                        .map_err(delta_err(&path, "optimize write"))?;
                    offset += len;
                }
            }
            // One flush per partition: files never mix partitions and memory stays bounded.
            adds.extend(
                writer
                    .flush()
                    .await
                    .map_err(delta_err(&path, "optimize flush"))?,
            );
        }
        for add in &mut adds {
            add.data_change = false;
        }
        let now = Utc::now().timestamp_millis();
        let removed: Vec<&FileInfo> = self.partitions.iter().flat_map(|p| &p.files).collect();
        let removes: Vec<Remove> = removed
            .iter()
            .map(|f| Remove {
                path: f.path.clone(),
                data_change: false,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(f.partition_values.clone()),
                size: Some(f.size),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            })
            .collect();
        report.files_removed = removes.len();
        report.files_added = adds.len();
        report.partitions_compacted = self.partitions.len();
        report.bytes_removed = removed.iter().map(|f| f.size).sum();
        report.bytes_added = adds.iter().map(|a| a.size).sum();
        let new_paths: Vec<String> = adds.iter().map(|a| a.path.clone()).collect();
        let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
        actions.extend(adds.into_iter().map(Action::Add));
        let metrics = serde_json::json!({
            "numRemovedFiles": report.files_removed,
            "numAddedFiles": report.files_added,
            "numRemovedBytes": report.bytes_removed,
            "numAddedBytes": report.bytes_added,
            "partitionsOptimized": report.partitions_compacted,
            "numRowsRewritten": report.rows_rewritten,
            "zOrderBy": self.options.zorder,
        });
        let result = commit_swap(table, &removed, actions, &self.options, metrics).await;
        match result {
            Ok(version) => {
                report.version = Some(version);
                report.files_after = table.file_infos()?.len();
                report.elapsed_ms = started.elapsed().as_millis() as u64;
                Ok(report)
            }
            Err(e) => {
                // Never committed, so never referenced: safe to delete.
                for p in &new_paths {
                    let _ = std::fs::remove_file(path.join(p));
                }
                Err(e)
            }
        }
    }
}

/// The commit loop: re-read, check every removed file is still live, commit against exactly
/// that version (no blind rebase), and start over when someone else won the version.
async fn commit_swap(
    table: &mut LakeTable,
    removed: &[&FileInfo],
    actions: Vec<Action>,
    options: &OptimizeOptions,
    metrics: serde_json::Value,
) -> Result<i64, MaintainError> {
    let path = table.path().to_path_buf();
    let mut last_err = None;
    for _ in 0..COMMIT_ATTEMPTS {
        table.refresh().await?;
        let live: HashSet<String> = table.file_infos()?.into_iter().map(|f| f.path).collect();
        if let Some(gone) = removed.iter().find(|f| !live.contains(&f.path)) {
            return Err(MaintainError::Conflict {
                table: path.display().to_string(),
                version: table.version(),
                file: gone.path.clone(),
            });
        }
        let base = table.version();
        let props = CommitProperties::default()
            .with_metadata([("operationMetrics".to_string(), metrics.clone())]);
        let snapshot = table
            .table
            .snapshot()
            .map_err(delta_err(&path, "snapshot"))?;
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: options.target_size as i64,
        };
        let outcome = CommitBuilder::from(props)
            .with_actions(actions.clone())
            .with_max_retries(0)
            .build(Some(snapshot), table.table.log_store(), operation)
            .await;
        match outcome {
            Ok(done) => {
                let version = done.version() as i64;
                table.refresh().await?;
                return Ok(version);
            }
            Err(e) => {
                table.refresh().await?;
                if table.version() == base {
                    // Not a lost race: a real failure.
                    return Err(delta_err(&path, "optimize commit")(e).into());
                }
                last_err = Some(e);
            }
        }
    }
    Err(delta_err(&path, "optimize commit")(last_err.expect("an attempt failed")).into())
}

/// Compacts `table` in one call: [`plan_optimize`] then [`OptimizePlan::execute`].
pub async fn optimize(
    table: &mut LakeTable,
    options: OptimizeOptions,
) -> Result<OptimizeReport, MaintainError> {
    plan_optimize(table, options)?.execute(table).await
}

/// How to vacuum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacuumOptions {
    /// Files removed from the table longer ago than this are deleted.
    pub retain: Duration,
    /// List what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Allow a retention below [`MIN_RETENTION`].
    pub force: bool,
}

/// What vacuum did (or would do, on a dry run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VacuumReport {
    pub dry_run: bool,
    pub retain_secs: u64,
    /// Parquet files in the table folder before and after.
    pub files_on_disk_before: usize,
    pub files_on_disk_after: usize,
    /// Files of the current version (never deleted).
    pub live_files: usize,
    pub deleted: Vec<String>,
}

/// Data files under the table folder (the log excluded), relative paths.
pub fn files_on_disk(root: &Path) -> Result<Vec<String>, LakeError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), LakeError> {
        let entries = std::fs::read_dir(dir).map_err(|source| LakeError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if e.file_name() != "_delta_log" {
                    walk(root, &p, out)?;
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Deletes the files that no version within `retain` needs (delta-rs `vacuum`, lite mode: only
/// files the log removed; files of the current version are never candidates). Refuses a
/// retention below [`MIN_RETENTION`] unless `force`.
pub async fn vacuum(
    table: &mut LakeTable,
    options: VacuumOptions,
) -> Result<VacuumReport, MaintainError> {
    let path = table.path().to_path_buf();
    if options.retain < MIN_RETENTION && !options.force {
        return Err(MaintainError::RetentionTooShort {
            table: path.display().to_string(),
            asked: crate::vocab::format_duration(options.retain),
            min: crate::vocab::format_duration(MIN_RETENTION),
        });
    }
    table.refresh().await?;
    let before = files_on_disk(&path)?;
    let retention =
        chrono::Duration::from_std(options.retain).map_err(|e| MaintainError::Invalid {
            table: path.display().to_string(),
            detail: format!("retention out of range: {e}"),
        })?;
    let (new_table, metrics) = table
        .table
        .clone()
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_dry_run(options.dry_run)
        .await
        .map_err(delta_err(&path, "vacuum"))?;
    table.table = new_table;
    table.refresh().await?;
    let after = files_on_disk(&path)?;
    let mut deleted: Vec<String> = metrics
        .files_deleted
        .into_iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    deleted.sort();
    Ok(VacuumReport {
        dry_run: options.dry_run,
        retain_secs: options.retain.as_secs(),
        files_on_disk_before: before.len(),
        files_on_disk_after: after.len(),
        live_files: table.file_infos()?.len(),
        deleted,
    })
}

/// What a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointReport {
    pub version: i64,
    /// Files in `_delta_log` before and after (the checkpoint adds its Parquet file; old
    /// commits stay until log cleanup).
    pub log_files_before: usize,
    pub log_files_after: usize,
}

fn log_files(root: &Path) -> Result<usize, LakeError> {
    let dir = root.join("_delta_log");
    Ok(std::fs::read_dir(&dir)
        .map_err(|source| LakeError::Io {
            path: dir.display().to_string(),
            source,
        })?
        .flatten()
        .filter(|e| e.path().is_file())
        .count())
}

/// Writes a checkpoint of the current version, so readers replay one Parquet file instead of
/// every JSON commit since the last one (delta-rs's kernel checkpoint writer; no DataFusion).
pub async fn checkpoint(table: &mut LakeTable) -> Result<CheckpointReport, MaintainError> {
    let path = table.path().to_path_buf();
    table.refresh().await?;
    let before = log_files(&path)?;
    deltalake::protocol::checkpoints::create_checkpoint(&table.table, None)
        .await
        .map_err(delta_err(&path, "checkpoint"))?;
    Ok(CheckpointReport {
        version: table.version(),
        log_files_before: before,
        log_files_after: log_files(&path)?,
    })
}

/// Parses a size like `128MiB`, `64MB`, `512KiB`, `1GiB` or plain bytes `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size `{text}`: expected a number then a unit, e.g. `128MiB`"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "bad size `{text}`: unknown unit `{other}` (use B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("bad size `{text}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 * 1024 * 1024));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("2 KiB"), Ok(2048));
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(
            parse_size("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
    }
}
