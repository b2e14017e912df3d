//! Lineage: which input positions made which table version, walked back to Kafka offsets.
//!
//! Every writer in flowctl records the positions it consumed as Delta `txn` actions in the same
//! commit as its rows: ingest records `<table>:<topic>:<partition>` → last Kafka offset, silver
//! and gold record `<table><-<source>` → the source version they processed up to. So lineage is
//! read from the Delta log itself — atomic with the data, visible to any engine — and needs no
//! second bookkeeping that could drift. The writing run comes from the commit metadata
//! (`flowctl_run_id` or `userMetadata: run=<id>`).

mod log;
pub mod openlineage;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use log::{CommitEntry, parse_commit, read_commits};

/// How deep a trace follows table → table links (a guard against cycles).
const MAX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("table {table} has no readable Delta log: {detail}")]
    NoTable { table: String, detail: String },
    #[error("table {table} has no version {version} (latest is {latest})")]
    NoVersion {
        table: String,
        version: i64,
        latest: i64,
    },
}

/// One position range a commit consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// Kafka offsets `from_offset..=to_offset` of one partition.
    Kafka {
        topic: String,
        partition: i32,
        from_offset: i64,
        to_offset: i64,
    },
    /// Versions `from_version..=to_version` of another table.
    Table {
        table: String,
        from_version: i64,
        to_version: i64,
    },
}

/// Everything the data of one table version derives from.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub table: String,
    pub version: i64,
    /// The run whose commit made this version, and its operation and time.
    pub run_id: Option<i64>,
    pub operation: Option<String>,
    pub committed_at: Option<String>,
    /// What the commit that made this version read (its increment).
    pub commit_inputs: Vec<Input>,
    /// Cumulatively, every Kafka partition read up to which offset …
    pub kafka: Vec<KafkaUpTo>,
    /// … and every source table at the version this one reflects, traced in turn.
    pub tables: Vec<Node>,
}

/// Kafka offsets of one partition reflected in a table version: all up to `to_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KafkaUpTo {
    pub topic: String,
    pub partition: i32,
    pub to_offset: i64,
}

/// What a `txn` app id says it is a position of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Kafka { topic: String, partition: i32 },
    Table(String),
}

fn position(table: &str, app_id: &str) -> Option<Position> {
    if let Some((_, source)) = app_id.split_once("<-") {
        return Some(Position::Table(source.to_string()));
    }
    let rest = app_id.strip_prefix(table)?.strip_prefix(':')?;
    // `<table>:dlq:<topic>:<p>` records what the DLQ topic holds, not an input.
    if rest.starts_with("dlq:") {
        return None;
    }
    let (topic, partition) = rest.rsplit_once(':')?;
    Some(Position::Kafka {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
    })
}

/// Traces `table` at `version` (default: latest) under `lake`.
pub fn trace(lake: &Path, table: &str, version: Option<i64>) -> Result<Node, LineageError> {
    trace_at(lake, table, version, 0)
}

fn trace_at(
    lake: &Path,
    table: &str,
    version: Option<i64>,
    depth: usize,
) -> Result<Node, LineageError> {
    let dir = crate::lake::table_dir(lake, table).ok_or_else(|| LineageError::NoTable {
        table: table.to_string(),
        detail: "not a table name (letters, digits, `_`, `-`, `.`; one directory under the lake)"
            .into(),
    })?;
    let commits = read_commits(&dir, version)?;
    let Some(last) = commits.last() else {
        return Err(LineageError::NoTable {
            table: table.to_string(),
            detail: "no commits".into(),
        });
    };
    if let Some(v) = version
        && last.version != v
    {
        return Err(LineageError::NoVersion {
            table: table.to_string(),
            version: v,
            latest: last.version,
        });
    }
    // Latest position per app id before the last commit, and at it.
    let mut before: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &commits[..commits.len() - 1] {
        for (app, v) in &c.txns {
            before.insert(app.as_str(), *v);
        }
    }
    let mut commit_inputs = Vec::new();
    for (app, v) in &last.txns {
        let from = before.get(app.as_str()).map_or(0, |p| p + 1);
        match position(table, app) {
            Some(Position::Kafka { topic, partition }) => commit_inputs.push(Input::Kafka {
                topic,
                partition,
                from_offset: from,
                to_offset: *v,
            }),
            Some(Position::Table(source)) => commit_inputs.push(Input::Table {
                table: source,
                from_version: from,
                to_version: *v,
            }),
            None => {}
        }
    }
    let mut at = before;
    for (app, v) in &last.txns {
        at.insert(app.as_str(), *v);
    }
    let mut kafka = Vec::new();
    let mut tables = Vec::new();
    for (app, v) in at {
        match position(table, app) {
            Some(Position::Kafka { topic, partition }) => kafka.push(KafkaUpTo {
                topic,
                partition,
                to_offset: v,
            }),
            Some(Position::Table(source)) if depth < MAX_DEPTH && v >= 0 => {
                match trace_at(lake, &source, Some(v), depth + 1) {
                    Ok(node) => tables.push(node),
                    Err(e) => tracing::warn!(table, source, error = %e, "lineage stops here"),
                }
            }
            _ => {}
        }
    }
    Ok(Node {
        table: table.to_string(),
        version: last.version,
        run_id: last.run_id,
        operation: last.operation.clone(),
        committed_at: last
            .timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339()),
        commit_inputs,
        kafka,
        tables,
    })
}

impl Node {
    /// An indented tree for humans.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s, 0);
        s
    }

    fn render_into(&self, s: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        s.push_str(&format!(
            "{pad}{} v{}  written by {} ({}){}\n",
            self.table,
            self.version,
            self.run_id
                .map_or_else(|| "no flowctl run".to_string(), |r| format!("run {r}")),
            self.operation.as_deref().unwrap_or("?"),
            self.committed_at
                .as_deref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default(),
        ));
        for i in &self.commit_inputs {
            match i {
                Input::Kafka {
                    topic,
                    partition,
                    from_offset,
                    to_offset,
                } => s.push_str(&format!(
                    "{pad}  this commit read kafka {topic}[{partition}] offsets {from_offset}..={to_offset}\n"
                )),
                Input::Table {
                    table,
                    from_version,
                    to_version,
                } => s.push_str(&format!(
                    "{pad}  this commit read {table} versions {from_version}..={to_version}\n"
                )),
            }
        }
        for k in &self.kafka {
            s.push_str(&format!(
                "{pad}  ← kafka {}[{}] offsets ..={}\n",
                k.topic, k.partition, k.to_offset
            ));
        }
        for t in &self.tables {
            t.render_into(s, depth + 1);
        }
    }

    /// Every Kafka partition this version reflects, through every table in between.
    pub fn kafka_sources(&self) -> Vec<KafkaUpTo> {
        let mut out = self.kafka.clone();
        for t in &self.tables {
            out.extend(t.kafka_sources());
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(dir: &Path, table: &str, v: i64, lines: &[&str]) {
        let log = dir.join(table).join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join(format!("{v:020}.json")), lines.join("\n")).unwrap();
    }

    #[test]
    fn walks_gold_back_to_kafka_offsets() {
        let d = tempfile::tempdir().unwrap();
        let lake = d.path();
        let ci = r#"{"commitInfo":{"operation":"WRITE","flowctl_run_id":3}}"#;
        commit(
            lake,
            "bronze_orders",
            0,
            &[r#"{"commitInfo":{"operation":"CREATE TABLE"}}"#],
        );
        commit(
            lake,
            "bronze_orders",
            1,
            &[
                ci,
                r#"{"txn":{"appId":"bronze_orders:orders:0","version":99}}"#,
            ],
        );
        commit(
            lake,
            "bronze_orders",
            2,
            &[
                ci,
                r#"{"txn":{"appId":"bronze_orders:orders:0","version":149}}"#,
                r#"{"txn":{"appId":"bronze_orders:orders:1","version":60}}"#,
            ],
        );
        commit(
            lake,
            "bronze_orders",
            3,
            &[
                ci,
                r#"{"txn":{"appId":"bronze_orders:orders:0","version":400}}"#,
            ],
        );
        commit(
            lake,
            "silver_orders",
            0,
            &[
                ci,
                r#"{"txn":{"appId":"silver_orders<-bronze_orders","version":1}}"#,
            ],
        );
        commit(
            lake,
            "silver_orders",
            1,
            &[
                ci,
                r#"{"txn":{"appId":"silver_orders<-bronze_orders","version":2}}"#,
            ],
        );
        commit(
            lake,
            "gold_daily_revenue",
            0,
            &[
                ci,
                r#"{"txn":{"appId":"gold_daily_revenue<-silver_orders","version":1}}"#,
            ],
        );

        let g = trace(lake, "gold_daily_revenue", None).unwrap();
        assert_eq!(g.run_id, Some(3));
        assert_eq!(
            g.commit_inputs,
            vec![Input::Table {
                table: "silver_orders".into(),
                from_version: 0,
                to_version: 1
            }]
        );
        let s = &g.tables[0];
        assert_eq!((s.table.as_str(), s.version), ("silver_orders", 1));
        assert_eq!(
            s.commit_inputs,
            vec![Input::Table {
                table: "bronze_orders".into(),
                from_version: 2,
                to_version: 2
            }]
        );
        // bronze at version 2, not its latest (3): offsets up to 149 and 60, not 400.
        let b = &s.tables[0];
        assert_eq!(b.version, 2);
        assert_eq!(
            b.commit_inputs,
            vec![
                Input::Kafka {
                    topic: "orders".into(),
                    partition: 0,
                    from_offset: 100,
                    to_offset: 149
                },
                Input::Kafka {
                    topic: "orders".into(),
                    partition: 1,
                    from_offset: 0,
                    to_offset: 60
                },
            ]
        );
        assert_eq!(
            g.kafka_sources(),
            vec![
                KafkaUpTo {
                    topic: "orders".into(),
                    partition: 0,
                    to_offset: 149
                },
                KafkaUpTo {
                    topic: "orders".into(),
                    partition: 1,
                    to_offset: 60
                },
            ]
        );
        assert!(g.render().contains("kafka orders[0] offsets 100..=149"));
        assert!(matches!(
            trace(lake, "silver_orders", Some(7)),
            Err(LineageError::NoVersion { latest: 1, .. })
        ));
    }

    #[test]
    fn dlq_positions_are_not_inputs() {
        assert_eq!(
            position("bronze_dlq_audit", "bronze_dlq_audit:dlq:bronze_dlq:0"),
            None
        );
        assert_eq!(
            position("bronze_dlq_audit", "bronze_dlq_audit:orders-x:2"),
            Some(Position::Kafka {
                topic: "orders-x".into(),
                partition: 2
            })
        );
    }
}
