//! Reading a table's Delta log for lineage: per commit, who wrote it and which input positions
//! it records as `txn` actions. The log is the record: the positions are committed atomically
//! with the rows, so lineage can never disagree with the data.

use std::path::Path;

use serde_json::Value;

use super::LineageError;

/// One commit of a table, as far as lineage cares.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitEntry {
    pub version: i64,
    pub timestamp_ms: Option<i64>,
    pub operation: Option<String>,
    /// The flowctl run that wrote it (`flowctl_run_id`, or `userMetadata: run=<id>`).
    pub run_id: Option<i64>,
    /// `(app id, version)` of every `txn` action in the commit.
    pub txns: Vec<(String, i64)>,
    /// Rows added (from the `add` actions' statistics) and files added / removed.
    pub rows_added: i64,
    pub files_added: usize,
    pub files_removed: usize,
}

/// Parses one commit file's text.
pub fn parse_commit(version: i64, text: &str) -> CommitEntry {
    let mut e = CommitEntry {
        version,
        timestamp_ms: None,
        operation: None,
        run_id: None,
        txns: Vec::new(),
        rows_added: 0,
        files_added: 0,
        files_removed: 0,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(ci) = v.get("commitInfo") {
            e.timestamp_ms = ci.get("timestamp").and_then(Value::as_i64);
            e.operation = ci
                .get("operation")
                .and_then(Value::as_str)
                .map(str::to_string);
            e.run_id = crate::lake::commit_run_id(ci);
        } else if let Some(t) = v.get("txn") {
            if let (Some(app), Some(ver)) = (
                t.get("appId").and_then(Value::as_str),
                t.get("version").and_then(Value::as_i64),
            ) {
                e.txns.push((app.to_string(), ver));
            }
        } else if let Some(a) = v.get("add") {
            e.files_added += 1;
            e.rows_added += a
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|s| s.get("numRecords").and_then(Value::as_i64))
                .unwrap_or(0);
        } else if v.get("remove").is_some() {
            e.files_removed += 1;
        }
    }
    e
}

/// Every JSON commit of the table at `path` up to `until` (inclusive), oldest first.
pub fn read_commits(path: &Path, until: Option<i64>) -> Result<Vec<CommitEntry>, LineageError> {
    let log = path.join("_delta_log");
    let rd = std::fs::read_dir(&log).map_err(|e| LineageError::NoTable {
        table: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut versions: Vec<i64> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".json")?;
            (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
                .then(|| stem.parse().ok())
                .flatten()
        })
        .filter(|v| until.is_none_or(|u| *v <= u))
        .collect();
    versions.sort_unstable();
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        let file = log.join(format!("{v:020}.json"));
        let text = std::fs::read_to_string(&file).map_err(|e| LineageError::NoTable {
            table: file.display().to_string(),
            detail: e.to_string(),
        })?;
        out.push(parse_commit(v, &text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writer_positions_and_rows() {
        let text = concat!(
            r#"{"commitInfo":{"timestamp":5,"operation":"WRITE","flowctl_run_id":12}}"#,
            "\n",
            r#"{"txn":{"appId":"bronze_orders:orders:0","version":41}}"#,
            "\n",
            r#"{"txn":{"appId":"bronze_orders:orders:1","version":7}}"#,
            "\n",
            r#"{"add":{"path":"a","stats":"{\"numRecords\":30}"}}"#,
            "\n",
            r#"{"add":{"path":"b","stats":"{\"numRecords\":12}"}}"#,
            "\n",
            r#"{"remove":{"path":"c"}}"#,
        );
        let e = parse_commit(3, text);
        assert_eq!(e.run_id, Some(12));
        assert_eq!(e.operation.as_deref(), Some("WRITE"));
        assert_eq!(
            e.txns,
            vec![
                ("bronze_orders:orders:0".to_string(), 41),
                ("bronze_orders:orders:1".to_string(), 7)
            ]
        );
        assert_eq!((e.rows_added, e.files_added, e.files_removed), (42, 2, 1));
        let staged = parse_commit(
            1,
            r#"{"commitInfo":{"operation":"WRITE","userMetadata":"run=9"}}"#,
        );
        assert_eq!(staged.run_id, Some(9));
    }
}
