//! Delta tables under the lake, read straight from their `_delta_log` JSON commits: versions,
//! live files, row counts (from `add` stats), schema, and the flowctl run that wrote each commit
//! (`commitInfo.flowctl_run_id`, or `userMetadata` holding `run=<id>`).
//!
//! A table whose log has a checkpoint is listed with its versions only; reading Parquet
//! checkpoints belongs to the lake module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub timestamp_ms: Option<i64>,
    pub operation: Option<String>,
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub path: PathBuf,
    pub versions: Vec<VersionInfo>,
    pub files: usize,
    /// None when some file lacks stats or the log is checkpointed.
    pub row_count: Option<u64>,
    pub schema: Vec<(String, String)>,
}

/// Every Delta table up to three levels below `lake`, by name.
pub fn list_tables(lake: &Path) -> Vec<TableInfo> {
    let mut out = Vec::new();
    walk(lake, 0, &mut out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<TableInfo>) {
    if dir.join("_delta_log").is_dir() {
        if let Some(t) = read_table(dir) {
            out.push(t);
        }
        return;
    }
    if depth >= 3 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        walk(&d, depth + 1, out);
    }
}

pub(super) fn read_table(dir: &Path) -> Option<TableInfo> {
    let log = dir.join("_delta_log");
    let mut commits: Vec<(u64, PathBuf)> = std::fs::read_dir(&log)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let stem = p.file_name()?.to_str()?.strip_suffix(".json")?.to_string();
            Some((stem.parse().ok()?, p))
        })
        .collect();
    commits.sort();
    let checkpointed = log.join("_last_checkpoint").exists();
    let mut live: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut schema = Vec::new();
    let mut versions = Vec::new();
    for (v, path) in &commits {
        let text = std::fs::read_to_string(path).ok()?;
        let mut info = VersionInfo {
            version: *v,
            timestamp_ms: None,
            operation: None,
            run_id: None,
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(action) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(add) = action.get("add") {
                let rows = add
                    .get("stats")
                    .and_then(|s| s.as_str())
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|s| s.get("numRecords").and_then(Value::as_u64));
                if let Some(p) = add.get("path").and_then(Value::as_str) {
                    live.insert(p.to_string(), rows);
                }
            } else if let Some(rm) = action.get("remove") {
                if let Some(p) = rm.get("path").and_then(Value::as_str) {
                    live.remove(p);
                }
            } else if let Some(meta) = action.get("metaData") {
                if let Some(s) = meta
                    .get("schemaString")
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                {
                    schema = s["fields"]
                        .as_array()
                        .map(|fs| {
                            fs.iter()
                                .map(|f| {
                                    let ty = match &f["type"] {
                                        Value::String(t) => t.clone(),
                                        other => other
                                            .get("type")
                                            .and_then(Value::as_str)
                                            .unwrap_or("complex")
                                            .to_string(),
                                    };
                                    (f["name"].as_str().unwrap_or("?").to_string(), ty)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                }
            } else if let Some(ci) = action.get("commitInfo") {
                info.timestamp_ms = ci.get("timestamp").and_then(Value::as_i64);
                info.operation = ci
                    .get("operation")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                info.run_id = crate::lake::commit_run_id(ci);
            }
        }
        versions.push(info);
    }
    let row_count = if checkpointed {
        None
    } else {
        live.values().copied().sum::<Option<u64>>()
    };
    Some(TableInfo {
        name: dir.file_name()?.to_string_lossy().into_owned(),
        path: dir.to_path_buf(),
        versions,
        files: live.len(),
        row_count,
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_adds_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("silver").join("silver_orders");
        std::fs::create_dir_all(t.join("_delta_log")).unwrap();
        std::fs::write(
            t.join("_delta_log/00000000000000000000.json"),
            concat!(
                r#"{"commitInfo":{"timestamp":1700000000000,"operation":"WRITE","flowctl_run_id":7}}"#, "\n",
                r#"{"metaData":{"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"order_id\",\"type\":\"string\"},{\"name\":\"items\",\"type\":{\"type\":\"array\"}}]}"}}"#, "\n",
                r#"{"add":{"path":"a.parquet","stats":"{\"numRecords\":10}"}}"#, "\n",
                r#"{"add":{"path":"b.parquet","stats":"{\"numRecords\":5}"}}"#, "\n",
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("_delta_log/00000000000000000001.json"),
            concat!(
                r#"{"commitInfo":{"timestamp":1700000001000,"operation":"OPTIMIZE","userMetadata":"run=8"}}"#, "\n",
                r#"{"remove":{"path":"a.parquet"}}"#, "\n",
                r#"{"remove":{"path":"b.parquet"}}"#, "\n",
                r#"{"add":{"path":"c.parquet","stats":"{\"numRecords\":15}"}}"#, "\n",
            ),
        )
        .unwrap();
        let tables = list_tables(dir.path());
        assert_eq!(tables.len(), 1);
        let t = &tables[0];
        assert_eq!(t.name, "silver_orders");
        assert_eq!(t.versions.len(), 2);
        assert_eq!(t.versions[0].run_id, Some(7));
        assert_eq!(t.versions[1].run_id, Some(8));
        assert_eq!(t.versions[1].operation.as_deref(), Some("OPTIMIZE"));
        assert_eq!(t.files, 1);
        assert_eq!(t.row_count, Some(15));
        assert_eq!(
            t.schema,
            vec![
                ("order_id".into(), "string".into()),
                ("items".into(), "array".into())
            ]
        );
    }
}
