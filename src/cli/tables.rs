//! `flowctl tables`: list the lake's tables, their history, and rows of any version (time
//! travel by version or timestamp, with `--where`, `--columns`, `--limit`); maintenance
//! subcommands live in `tables_maint.rs`.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::{Args, Subcommand};
use polars::prelude::{AnyValue, DataFrame, col};

use super::UsageError;
use super::output::{Table, print_json, short};
use super::tables_maint::{self, CheckpointArgs, OptimizeArgs, VacuumArgs};
use super::tables_where;
use crate::config::Config;
use crate::lake::{LakeError, LakeTable, df_to_batch, lake_root, list_tables};

#[derive(Debug, Subcommand)]
pub enum TablesCmd {
    /// Every table: version, files, rows, size, last commit and the run that last wrote it.
    List(JsonArg),
    /// A table's commits, newest first.
    History(HistoryArgs),
    /// Rows of a table at its current version, or at `--version` / `--as-of` (time travel).
    Show(ShowArgs),
    /// Compact small files into target-size files (optionally Z-ordered); prints files
    /// before/after.
    Optimize(OptimizeArgs),
    /// Delete files no version within the retention needs; prints files before/after.
    Vacuum(VacuumArgs),
    /// Write a checkpoint of the current version.
    Checkpoint(CheckpointArgs),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub table: String,
    /// At most this many commits.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub table: String,
    /// Read this version.
    #[arg(long, conflicts_with = "as_of")]
    pub version: Option<i64>,
    /// Read the last version committed at or before this time (RFC 3339, `YYYY-MM-DD HH:MM:SS`
    /// UTC, or a date meaning its midnight UTC).
    #[arg(long)]
    pub as_of: Option<String>,
    /// At most this many rows (0: all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// A filter, e.g. `status = 'PAID' and amount > 100`, `coupon_code is null`,
    /// `currency in ('EUR', 'USD')`.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only these columns, comma-separated, in this order.
    #[arg(long)]
    pub columns: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cfg: &Config, cmd: TablesCmd) -> anyhow::Result<u8> {
    match cmd {
        TablesCmd::List(a) => list(&cfg.home, a.json).await,
        TablesCmd::History(a) => history(&cfg.home, a).await,
        TablesCmd::Show(a) => show(&cfg.home, a).await,
        TablesCmd::Optimize(a) => tables_maint::optimize(&cfg.home, a).await,
        TablesCmd::Vacuum(a) => tables_maint::vacuum(&cfg.home, a).await,
        TablesCmd::Checkpoint(a) => tables_maint::checkpoint(&cfg.home, a).await,
    }
}

/// Opens the table `name` of the lake; an unknown or malformed name is a usage error that
/// lists the tables there are.
pub async fn open_table(home: &Path, name: &str) -> anyhow::Result<LakeTable> {
    let lake = lake_root(home);
    let valid = crate::lake::valid_table_name(name);
    let known = list_tables(&lake)?;
    if !valid || !known.iter().any(|t| t == name) {
        return Err(UsageError(format!(
            "no table `{name}` in the lake ({}); tables: {}",
            lake.display(),
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        ))
        .into());
    }
    Ok(LakeTable::open(&lake.join(name)).await?)
}

/// Lake errors caused by what the user asked (a version that does not exist) exit 2.
pub fn usage_if_time_travel(e: LakeError) -> anyhow::Error {
    match e {
        LakeError::TimeTravel { .. } => UsageError(e.to_string()).into(),
        other => other.into(),
    }
}

pub fn human_bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn millis_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

fn rfc3339(ms: Option<i64>) -> serde_json::Value {
    millis_time(ms)
        .map(|t| serde_json::json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(serde_json::Value::Null)
}

async fn list(home: &Path, json: bool) -> anyhow::Result<u8> {
    let lake = lake_root(home);
    let mut rows = Vec::new();
    for name in list_tables(&lake)? {
        let t = LakeTable::open(&lake.join(&name))
            .await
            .with_context(|| format!("opening table {name}"))?;
        let stats = t.stats()?;
        let commits = t.commits(Some(20)).await?;
        let last = commits.first();
        let run = commits.iter().find_map(|c| c.run_id);
        rows.push(serde_json::json!({
            "table": name,
            "version": stats.version,
            "files": stats.files,
            "rows": stats.rows,
            "bytes": stats.bytes,
            "last_commit": rfc3339(last.and_then(|c| c.timestamp_ms)),
            "last_operation": last.and_then(|c| c.operation.clone()),
            "last_run_id": run,
        }));
    }
    if json {
        print_json(&serde_json::json!({ "lake": lake.display().to_string(), "tables": rows }));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no tables in {}", lake.display());
        return Ok(0);
    }
    let mut out = Table::new(&[
        "TABLE",
        "VERSION",
        "FILES",
        "ROWS",
        "SIZE",
        "LAST COMMIT",
        "OPERATION",
        "LAST RUN",
    ]);
    for r in rows {
        out.row(vec![
            r["table"].as_str().unwrap_or("").to_string(),
            r["version"].to_string(),
            r["files"].to_string(),
            r["rows"].to_string(),
            human_bytes(r["bytes"].as_i64().unwrap_or(0)),
            r["last_commit"]
                .as_str()
                .map(|s| s.replace('T', " ").trim_end_matches('Z').to_string())
                .unwrap_or_else(|| "-".into()),
            r["last_operation"].as_str().unwrap_or("-").to_string(),
            r["last_run_id"]
                .as_i64()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    out.print();
    Ok(0)
}

async fn history(home: &Path, a: HistoryArgs) -> anyhow::Result<u8> {
    let t = open_table(home, &a.table).await?;
    let commits = t.commits(a.limit).await?;
    if a.json {
        let list: Vec<_> = commits
            .iter()
            .map(|c| {
                serde_json::json!({
                    "version": c.version,
                    "timestamp": rfc3339(c.timestamp_ms),
                    "operation": c.operation,
                    "run_id": c.run_id,
                    "operation_parameters": c.operation_parameters,
                    "operation_metrics": c.operation_metrics,
                })
            })
            .collect();
        print_json(&serde_json::json!({ "table": a.table, "commits": list }));
        return Ok(0);
    }
    let mut out = Table::new(&["VERSION", "TIME", "OPERATION", "RUN", "DETAILS"]);
    for c in &commits {
        let details = if c.operation_metrics.is_null() {
            c.operation_parameters.to_string()
        } else {
            c.operation_metrics.to_string()
        };
        out.row(vec![
            c.version.to_string(),
            super::output::time(millis_time(c.timestamp_ms)),
            c.operation.clone().unwrap_or_else(|| "-".into()),
            c.run_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            short(Some(details.as_str()), 80),
        ]);
    }
    out.print();
    Ok(0)
}

/// `--as-of` text → milliseconds since the epoch.
pub fn parse_as_of(text: &str) -> Result<i64, UsageError> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(UsageError(format!(
        "--as-of `{text}`: expected an RFC 3339 timestamp (2025-06-01T12:00:00Z), \
         `YYYY-MM-DD HH:MM:SS` (UTC) or a date (YYYY-MM-DD)"
    )))
}

fn cell(v: AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => "null".into(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// Rows of `df` as JSON objects, through arrow-rs's JSON writer (nested types included).
fn df_json(df: &DataFrame) -> anyhow::Result<serde_json::Value> {
    let batch = df_to_batch(df, None)?;
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    writer.write_batches(&[&batch])?;
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(serde_json::json!([]));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

async fn show(home: &Path, a: ShowArgs) -> anyhow::Result<u8> {
    let t = open_table(home, &a.table).await?;
    let version = match (a.version, a.as_of.as_deref()) {
        (Some(v), _) => {
            t.check_version(v).map_err(usage_if_time_travel)?;
            v
        }
        (None, Some(at)) => t
            .version_as_of(parse_as_of(at)?)
            .await
            .map_err(usage_if_time_travel)?,
        (None, None) => t.version(),
    };
    let files = t.files_at(version).await?;
    let mut lf = t.scan_files(&files)?;
    let schema = lf
        .collect_schema()
        .map_err(|e| anyhow::anyhow!("table {}: {e}", a.table))?;
    if let Some(w) = &a.filter {
        lf = lf.filter(tables_where::compile(w, &schema).map_err(UsageError)?);
    }
    if let Some(c) = &a.columns {
        let names = tables_where::columns(c, &schema).map_err(UsageError)?;
        if names.is_empty() {
            return Err(UsageError("--columns: name at least one column".into()).into());
        }
        lf = lf.select(names.into_iter().map(col).collect::<Vec<_>>());
    }
    if a.limit > 0 {
        lf = lf.limit(a.limit as u32);
    }
    let df = lf
        .collect()
        .map_err(|e| anyhow::anyhow!("table {} at version {version}: {e}", a.table))?;
    if a.json {
        print_json(&serde_json::json!({
            "table": a.table,
            "version": version,
            "current_version": t.version(),
            "columns": df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "row_count": df.height(),
            "rows": df_json(&df)?,
        }));
        return Ok(0);
    }
    let names: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
    let mut out = Table::new(&names);
    for i in 0..df.height() {
        let mut row = Vec::with_capacity(df.width());
        for c in df.columns() {
            row.push(short(Some(&cell(c.get(i)?)), 60));
        }
        out.row(row);
    }
    out.print();
    println!(
        "({} row{} of {} at version {version}{})",
        df.height(),
        if df.height() == 1 { "" } else { "s" },
        a.table,
        if a.limit > 0 && df.height() == a.limit {
            format!("; --limit {} reached", a.limit)
        } else {
            String::new()
        }
    );
    Ok(0)
}
