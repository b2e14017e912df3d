//! What `flowctl tables` shows about a table without reading its rows: the tables in the lake,
//! per-table statistics from the log (files, rows, bytes), the commit history with who wrote
//! each version, and which version a timestamp names (time travel `--as-of`).
//!
//! Everything here comes from the Delta log alone, so it is cheap even on big tables.

use std::collections::HashMap;
use std::path::Path;

use futures::TryStreamExt as _;

use super::error::LakeError;
use super::table::{LakeTable, delta_err};

/// One data file of the current snapshot, with what compaction and `tables list` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Relative to the table folder.
    pub path: String,
    pub partition_values: HashMap<String, Option<String>>,
    pub size: i64,
    pub rows: Option<usize>,
}

/// Totals of a table's current version, from the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    pub version: i64,
    pub files: usize,
    pub rows: usize,
    pub bytes: i64,
}

/// One commit of a table's history, newest first, with what the commit info says about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CommitDetail {
    pub version: i64,
    /// Commit time in milliseconds since the epoch (the commit info's timestamp).
    pub timestamp_ms: Option<i64>,
    pub operation: Option<String>,
    /// The flowctl run that wrote the version: commit metadata `flowctl_run_id`, else
    /// `userMetadata` `run=<id>`; none for commits made outside a run (maintenance, tests).
    pub run_id: Option<i64>,
    pub operation_parameters: serde_json::Value,
    pub operation_metrics: serde_json::Value,
}

/// Names of the Delta tables under `lake` (folders holding a `_delta_log`), sorted.
pub fn list_tables(lake: &Path) -> Result<Vec<String>, LakeError> {
    let entries = match std::fs::read_dir(lake) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LakeError::Io {
                path: lake.display().to_string(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_delta_log").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn run_id_of(
    info: &HashMap<String, serde_json::Value>,
    user_metadata: Option<&str>,
) -> Option<i64> {
    run_from(
        info.get("flowctl_run_id"),
        user_metadata.or_else(|| info.get("userMetadata").and_then(|v| v.as_str())),
    )
}

/// The flowctl run recorded in a `commitInfo` object of the Delta log (the same rule as
/// [`CommitDetail::run_id`]), for readers that parse the log's JSON themselves.
pub fn commit_run_id(commit_info: &serde_json::Value) -> Option<i64> {
    run_from(
        commit_info.get("flowctl_run_id"),
        commit_info.get("userMetadata").and_then(|v| v.as_str()),
    )
}

/// `flowctl_run_id` (a number or a numeric string), else `run=<id>` among the comma-, space- or
/// semicolon-separated parts of `userMetadata`.
fn run_from(
    flowctl_run_id: Option<&serde_json::Value>,
    user_metadata: Option<&str>,
) -> Option<i64> {
    if let Some(v) = flowctl_run_id {
        if let Some(n) = v.as_i64() {
            return Some(n);
        }
        if let Some(n) = v.as_str().and_then(|s| s.parse().ok()) {
            return Some(n);
        }
    }
    user_metadata?
        .split([',', ' ', ';'])
        .find_map(|part| part.strip_prefix("run="))
        .and_then(|s| s.parse().ok())
}

impl LakeTable {
    /// The current snapshot's data files with sizes and row counts.
    pub fn file_infos(&self) -> Result<Vec<FileInfo>, LakeError> {
        let snap = self
            .table
            .snapshot()
            .map_err(delta_err(&self.path, "snapshot"))?;
        Ok(snap
            .log_data()
            .iter()
            .map(|f| FileInfo {
                path: f.path().to_string(),
                partition_values: f.partition_values_map(),
                size: f.size(),
                rows: f.num_records(),
            })
            .collect())
    }

    /// Version, file count, rows and bytes of the current snapshot.
    pub fn stats(&self) -> Result<TableStats, LakeError> {
        let files = self.file_infos()?;
        let rows = match files.iter().map(|f| f.rows).sum::<Option<usize>>() {
            Some(n) => n,
            None => self.row_count()?,
        };
        Ok(TableStats {
            version: self.version(),
            files: files.len(),
            rows,
            bytes: files.iter().map(|f| f.size).sum(),
        })
    }

    /// Up to `limit` commits, newest first, with run ids and operation metrics.
    pub async fn commits(&self, limit: Option<usize>) -> Result<Vec<CommitDetail>, LakeError> {
        let infos: Vec<_> = self
            .table
            .history(limit)
            .try_collect()
            .await
            .map_err(delta_err(&self.path, "history"))?;
        let current = self.version();
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let run_id = run_id_of(&c.info, c.user_metadata.as_deref());
                let metrics = c
                    .info
                    .get("operationMetrics")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                CommitDetail {
                    version: current - i as i64,
                    timestamp_ms: c.in_commit_timestamp.or(c.timestamp),
                    operation: c.operation,
                    run_id,
                    operation_parameters: c
                        .operation_parameters
                        .map(|p| serde_json::json!(p))
                        .unwrap_or(serde_json::Value::Null),
                    operation_metrics: metrics,
                }
            })
            .collect())
    }

    /// The last version committed at or before `at_ms` (milliseconds since the epoch), from the
    /// commit infos' timestamps. A time before the first commit is an error that names the
    /// first commit's time, so the user sees what range exists.
    pub async fn version_as_of(&self, at_ms: i64) -> Result<i64, LakeError> {
        let commits = self.commits(None).await?;
        if let Some(c) = commits
            .iter()
            .find(|c| c.timestamp_ms.is_some_and(|t| t <= at_ms))
        {
            return Ok(c.version);
        }
        let first = commits
            .iter()
            .rev()
            .find_map(|c| c.timestamp_ms)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "unknown".into());
        let asked = chrono::DateTime::from_timestamp_millis(at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| at_ms.to_string());
        Err(LakeError::TimeTravel {
            table: self.path.display().to_string(),
            detail: format!(
                "{asked} is before the table's first commit (version {} at {first})",
                commits.last().map(|c| c.version).unwrap_or(0)
            ),
        })
    }

    /// Checks that `version` exists (0 ..= current), with an error that gives the range.
    pub fn check_version(&self, version: i64) -> Result<(), LakeError> {
        let current = self.version();
        if version < 0 || version > current {
            return Err(LakeError::TimeTravel {
                table: self.path.display().to_string(),
                detail: format!("version {version} does not exist (versions are 0..={current})"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_comes_from_metadata_or_user_metadata() {
        let mut info = HashMap::new();
        assert_eq!(run_id_of(&info, None), None);
        assert_eq!(run_id_of(&info, Some("run=42")), Some(42));
        info.insert("flowctl_run_id".to_string(), serde_json::json!(7));
        assert_eq!(run_id_of(&info, Some("run=42")), Some(7));
        let mut info = HashMap::new();
        info.insert("userMetadata".to_string(), serde_json::json!("x=1,run=9"));
        assert_eq!(run_id_of(&info, None), Some(9));
    }
}
