//! `flowctl flows list|validate|show`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::UsageError;
use super::output::{Table, print_json};
use crate::config::Config;
use crate::flow::{Flow, load_dir, load_file};
use crate::tasks::TaskRegistry;
use crate::vocab::SourceErrors;
use crate::vocab::format_duration;

#[derive(Debug, Subcommand)]
pub enum FlowsCmd {
    /// Every flow in the flows directory, with its schedule and task count.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Validate one file, or every file in the flows directory; exit 2 on any error.
    Validate {
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The DAG of one flow, in topological order.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cfg: &Config, cmd: FlowsCmd) -> anyhow::Result<u8> {
    let registry = TaskRegistry::builtin(cfg.task_settings());
    match cmd {
        FlowsCmd::List { json } => {
            let (flows, errors) = load_dir(&cfg.flows_dir, &registry);
            if json {
                let v: Vec<_> = flows.iter().map(flow_json).collect();
                print_json(
                    &json!({"flows": v, "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
                );
            } else {
                let mut t = Table::new(&["FLOW", "SCHEDULE", "TASKS", "MAX ACTIVE", "FILE"]);
                for f in &flows {
                    t.row(vec![
                        f.name.clone(),
                        f.schedule
                            .as_ref()
                            .map(|s| s.expr().to_string())
                            .unwrap_or_else(|| "-".into()),
                        f.tasks.len().to_string(),
                        f.max_active_runs.to_string(),
                        f.path.display().to_string(),
                    ]);
                }
                t.print();
                for e in &errors {
                    eprintln!("invalid: {e}");
                }
            }
            Ok(if errors.is_empty() { 0 } else { 2 })
        }
        FlowsCmd::Validate { file, json } => {
            let (flows, errors) = match &file {
                Some(f) => match load_file(f, &registry) {
                    Ok(flow) => (vec![flow], vec![]),
                    Err(SourceErrors(es)) => (vec![], es),
                },
                None => load_dir(&cfg.flows_dir, &registry),
            };
            if json {
                print_json(&json!({
                    "valid": flows.iter().map(|f| json!({"flow": f.name, "file": f.path})).collect::<Vec<_>>(),
                    "errors": errors.iter().map(|e| json!({"file": e.path, "line": e.line, "message": e.message})).collect::<Vec<_>>(),
                }));
            } else {
                for f in &flows {
                    println!(
                        "ok: {} ({}, {} tasks)",
                        f.path.display(),
                        f.name,
                        f.tasks.len()
                    );
                }
                for e in &errors {
                    eprintln!("error: {e}");
                }
            }
            Ok(if errors.is_empty() { 0 } else { 2 })
        }
        FlowsCmd::Show { name, json } => {
            let flow = find_flow(cfg, &registry, &name)?;
            if json {
                print_json(&flow_json(&flow));
                return Ok(0);
            }
            println!("flow {} ({})", flow.name, flow.path.display());
            if let Some(d) = &flow.description {
                println!("  {d}");
            }
            println!(
                "schedule: {}   max_active_runs: {}   params: {}",
                flow.schedule.as_ref().map(|s| s.expr()).unwrap_or("-"),
                flow.max_active_runs,
                if flow.params.is_empty() {
                    "-".to_string()
                } else {
                    flow.params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            );
            let mut t = Table::new(&[
                "#",
                "TASK",
                "KIND",
                "DEPENDS ON",
                "TRIGGER",
                "RETRIES",
                "TIMEOUT",
            ]);
            for (n, i) in flow.dag.topological_order().into_iter().enumerate() {
                let task = &flow.tasks[i];
                t.row(vec![
                    (n + 1).to_string(),
                    task.id.clone(),
                    task.kind.clone(),
                    if task.depends_on.is_empty() {
                        "-".into()
                    } else {
                        task.depends_on.join(", ")
                    },
                    task.trigger_rule.to_string(),
                    if task.retry.count == 0 {
                        "0".into()
                    } else {
                        format!(
                            "{} (from {}, ×{})",
                            task.retry.count,
                            format_duration(task.retry.delay),
                            task.retry.backoff
                        )
                    },
                    task.timeout
                        .map(format_duration)
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            t.print();
            Ok(0)
        }
    }
}

fn flow_json(f: &Flow) -> serde_json::Value {
    let order: Vec<&str> = f
        .dag
        .topological_order()
        .into_iter()
        .map(|i| f.tasks[i].id.as_str())
        .collect();
    json!({
        "name": f.name,
        "file": f.path,
        "description": f.description,
        "schedule": f.schedule.as_ref().map(|s| s.expr()),
        "catchup": f.catchup,
        "max_active_runs": f.max_active_runs,
        "params": f.params,
        "order": order,
        "tasks": f.tasks.iter().map(|t| json!({
            "id": t.id, "kind": t.kind, "depends_on": t.depends_on,
            "trigger_rule": t.trigger_rule.as_str(),
            "retries": {"count": t.retry.count, "delay_ms": t.retry.delay.as_millis() as u64,
                        "backoff": t.retry.backoff, "max_delay_ms": t.retry.max_delay.as_millis() as u64,
                        "jitter": t.retry.jitter},
            "timeout_ms": t.timeout.map(|d| d.as_millis() as u64),
        })).collect::<Vec<_>>(),
    })
}

/// Finds a flow by name in the flows directory (or by path when given a `.yaml` file).
pub fn find_flow(cfg: &Config, registry: &TaskRegistry, name: &str) -> anyhow::Result<Flow> {
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return Ok(load_file(std::path::Path::new(name), registry)?);
    }
    let (flows, errors) = load_dir(&cfg.flows_dir, registry);
    if let Some(f) = flows.into_iter().find(|f| f.name == name) {
        return Ok(f);
    }
    if !errors.is_empty() {
        return Err(SourceErrors(errors).into());
    }
    Err(UsageError(format!(
        "no flow named `{name}` in {} (see `flowctl flows list`)",
        cfg.flows_dir.display()
    ))
    .into())
}
