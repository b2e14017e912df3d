//! `flowctl tables optimize|vacuum|checkpoint`: the maintenance operations of
//! [`crate::lake::maintain`] on one table, printing files before/after.

use std::io::Write as _;
use std::path::Path;

use clap::Args;

use super::UsageError;
use super::output::print_json;
use super::tables::{human_bytes, open_table};
use crate::lake::maintain::{
    self, DEFAULT_TARGET_SIZE, MaintainError, OptimizeOptions, VacuumOptions,
};
use crate::vocab::{format_duration, parse_duration};

#[derive(Debug, Args)]
pub struct OptimizeArgs {
    pub table: String,
    /// Files below this size are compacted into files of about this size (e.g. 128MiB, 64MB).
    #[arg(long, default_value = "128MiB")]
    pub target_size: String,
    /// Z-order the rewritten files by these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub zorder: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    pub table: String,
    /// Keep files removed less than this long ago (e.g. 168h, 7d, 30m).
    #[arg(long, default_value = "168h")]
    pub retain: String,
    /// List the files that would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow a retention below the 1 hour minimum.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    pub table: String,
    #[arg(long)]
    pub json: bool,
}

/// Usage errors (retention, unknown column) exit 2; the rest exit 1.
fn classify(e: MaintainError) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

pub async fn optimize(home: &Path, a: OptimizeArgs) -> anyhow::Result<u8> {
    let target = maintain::parse_size(&a.target_size)
        .map_err(|e| UsageError(format!("--target-size: {e}")))?;
    let mut t = open_table(home, &a.table).await?;
    let options = OptimizeOptions {
        target_size: if target == 0 {
            DEFAULT_TARGET_SIZE
        } else {
            target
        },
        zorder: a.zorder.iter().map(|c| c.trim().to_string()).collect(),
    };
    let report = maintain::optimize(&mut t, options)
        .await
        .map_err(classify)?;
    if a.json {
        print_json(&serde_json::json!({ "table": a.table, "optimize": report }));
        return Ok(0);
    }
    match report.version {
        None => println!(
            "{}: nothing to compact at version {} ({} files; no partition has two or more \
             files below half the target size)",
            a.table, report.read_version, report.files_before
        ),
        Some(v) => println!(
            "{}: files {} → {} (removed {}, added {} in {} partition{}), {} → {}, {} rows \
             rewritten{}, version {v} (OPTIMIZE) in {} ms",
            a.table,
            report.files_before,
            report.files_after,
            report.files_removed,
            report.files_added,
            report.partitions_compacted,
            if report.partitions_compacted == 1 {
                ""
            } else {
                "s"
            },
            human_bytes(report.bytes_removed),
            human_bytes(report.bytes_added),
            report.rows_rewritten,
            if report.zorder.is_empty() {
                String::new()
            } else {
                format!(", z-ordered by {}", report.zorder.join(", "))
            },
            report.elapsed_ms
        ),
    }
    Ok(0)
}

pub async fn vacuum(home: &Path, a: VacuumArgs) -> anyhow::Result<u8> {
    let retain = parse_duration(&a.retain).map_err(|e| UsageError(format!("--retain: {e}")))?;
    let mut t = open_table(home, &a.table).await?;
    let report = maintain::vacuum(
        &mut t,
        VacuumOptions {
            retain,
            dry_run: a.dry_run,
            force: a.force,
        },
    )
    .await
    .map_err(classify)?;
    if a.json {
        print_json(&serde_json::json!({ "table": a.table, "vacuum": report }));
        return Ok(0);
    }
    if report.dry_run {
        println!(
            "{}: dry run, retention {}: would delete {} of {} files on disk ({} live files kept)",
            a.table,
            format_duration(retain),
            report.deleted.len(),
            report.files_on_disk_before,
            report.live_files
        );
        // Written through a lock that ignores errors: `| head` closing the pipe is not a failure.
        let mut out = std::io::stdout().lock();
        for f in &report.deleted {
            let _ = writeln!(out, "  {f}");
        }
    } else {
        println!(
            "{}: retention {}: files on disk {} → {} (deleted {}, {} live files kept)",
            a.table,
            format_duration(retain),
            report.files_on_disk_before,
            report.files_on_disk_after,
            report.deleted.len(),
            report.live_files
        );
    }
    Ok(0)
}

pub async fn checkpoint(home: &Path, a: CheckpointArgs) -> anyhow::Result<u8> {
    let mut t = open_table(home, &a.table).await?;
    let report = maintain::checkpoint(&mut t).await.map_err(classify)?;
    if a.json {
        print_json(&serde_json::json!({ "table": a.table, "checkpoint": report }));
        return Ok(0);
    }
    println!(
        "{}: checkpoint at version {}: log files {} → {}",
        a.table, report.version, report.log_files_before, report.log_files_after
    );
    Ok(0)
}
