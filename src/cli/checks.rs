//! `flowctl checks RUN` (the quality results a run stored) and `flowctl checks validate [DIR]`
//! (the expectation files, every problem with file:line).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{Table, print_json};
use crate::config::Config;
use crate::quality::load_dir;
use crate::store::{QualityRow, Store};
use crate::vocab::SourceErrors;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChecksArgs {
    #[command(subcommand)]
    cmd: Option<ChecksCmd>,
    /// The run whose stored check results to print; exit 1 when any failed.
    run: Option<i64>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ChecksCmd {
    /// Validate the expectation files (default: the expectations directory); exit 2 on errors.
    Validate {
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cfg: &Config, args: ChecksArgs) -> anyhow::Result<u8> {
    match (args.cmd, args.run) {
        (Some(ChecksCmd::Validate { dir, json }), _) => Ok(validate(
            dir.unwrap_or_else(|| cfg.expectations_dir.clone()),
            &cfg.schemas_dir,
            json,
        )),
        (None, Some(run)) => results(cfg, run, args.json).await,
        (None, None) => Err(super::UsageError(
            "say which run: `flowctl checks RUN`, or `flowctl checks validate [DIR]`".into(),
        )
        .into()),
    }
}

/// The columns of every table whose shape is known before anything runs: each bronze table
/// from its topic's latest Avro contract in `schemas_dir`, the DLQ audit table, and the silver
/// and gold tables from their definitions. Tables not listed are not checked.
fn known_columns(schemas_dir: &Path) -> HashMap<String, Vec<String>> {
    let names = |s: &deltalake::arrow::datatypes::Schema| -> Vec<String> {
        s.fields().iter().map(|f| f.name().clone()).collect()
    };
    let mut out: HashMap<String, Vec<String>> = crate::transform::schema::all()
        .iter()
        .map(|d| (d.name.to_string(), names(&d.schema)))
        .collect();
    out.insert(
        crate::ingest::AUDIT_TABLE.to_string(),
        names(&crate::ingest::audit_schema()),
    );
    // Oldest version first, so the latest (the reader schema) wins.
    for file in crate::contracts::schema::load_dir(schemas_dir).unwrap_or_default() {
        let topic = file.subject.trim_end_matches("-value");
        if let Ok(decoder) = crate::ingest::decode::BronzeDecoder::new(&file.text) {
            out.insert(crate::ingest::bronze_table(topic), names(&decoder.schema()));
        }
    }
    out
}

fn validate(dir: PathBuf, schemas_dir: &Path, json: bool) -> u8 {
    let known = known_columns(schemas_dir);
    let loaded = load_dir(&dir).and_then(|set| {
        let unknown = set.unknown_columns(|t| known.get(t).cloned());
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(SourceErrors(unknown))
        }
    });
    match loaded {
        Ok(set) => {
            if json {
                let tables: Vec<_> = set
                    .tables()
                    .map(|t| {
                        json!({"table": t.name(), "file": t.path(), "rules": t.rule_count(), "checks": t.check_count()})
                    })
                    .collect();
                print_json(&json!({"valid": tables, "errors": [], "total": set.total_count()}));
            } else {
                for t in set.tables() {
                    println!(
                        "ok: {} ({} rules, {} checks)",
                        t.path().display(),
                        t.rule_count(),
                        t.check_count()
                    );
                }
                println!(
                    "{} tables, {} rules and checks in all",
                    set.tables().count(),
                    set.total_count()
                );
            }
            0
        }
        Err(SourceErrors(errors)) => {
            if json {
                print_json(&json!({
                    "valid": [],
                    "errors": errors.iter().map(|e| json!({"file": e.path, "line": e.line, "message": e.message})).collect::<Vec<_>>(),
                }));
            } else {
                for e in &errors {
                    eprintln!("error: {e}");
                }
            }
            2
        }
    }
}

async fn results(cfg: &Config, run: i64, json: bool) -> anyhow::Result<u8> {
    let store = Store::open(&cfg.db).await?;
    let r = async {
        store.get_run(run).await?;
        store.quality_results(run).await
    }
    .await;
    store.close().await;
    let rows = r?;
    let count = |o: &str| rows.iter().filter(|r| r.outcome == o).count();
    let failed = rows
        .iter()
        .any(|r| r.outcome == "fail" || r.outcome == "error");
    if json {
        print_json(&json!({
            "run_id": run,
            "results": rows,
            "summary": {"pass": count("pass"), "warn": count("warn"), "fail": count("fail"), "error": count("error")},
        }));
    } else if rows.is_empty() {
        println!("run {run}: no quality results recorded");
    } else {
        print_table(&rows);
        // Not println!: `flowctl checks 7 | head` must not panic on the closed pipe.
        let _ = writeln!(
            std::io::stdout(),
            "{} checks: {} pass, {} warn, {} fail, {} error",
            rows.len(),
            count("pass"),
            count("warn"),
            count("fail"),
            count("error")
        );
    }
    Ok(if failed { 1 } else { 0 })
}

fn print_table(rows: &[QualityRow]) {
    let mut t = Table::new(&[
        "TABLE",
        "VERSION",
        "CHECK",
        "OBSERVED",
        "THRESHOLD",
        "SEVERITY",
        "OUTCOME",
    ]);
    for r in rows {
        t.row(vec![
            r.table_name.clone(),
            r.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            r.check_name.clone(),
            r.observed.clone().unwrap_or_else(|| "-".into()),
            r.threshold.clone().unwrap_or_else(|| "-".into()),
            r.severity.clone(),
            r.outcome.clone(),
        ]);
    }
    t.print();
}
