//! `flowctl trigger`, `runs list|show`, `logs`, `retry`, `cancel` and the hidden `worker`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::UsageError;
use super::flows::find_flow;
use super::output::{Table, print_json, short, span, time};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::store::{AttemptRow, RunFilter, RunRow, Submitted};
use crate::tasks::TaskRegistry;
use crate::vocab::state::RunState;

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Flow name (or path to a flow file).
    pub flow: String,
    /// Run parameter, repeatable: --param from=2026-01-01
    #[arg(long = "param", value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
    /// A second trigger with the same key returns the existing run instead of starting another.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print the run id and return; a background worker executes the run.
    #[arg(long)]
    pub detach: bool,
    #[arg(long)]
    pub json: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, found `{s}`"))?;
    if k.trim().is_empty() {
        return Err(format!("empty parameter name in `{s}`"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Runs, newest first.
    List {
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs with an id below this one (next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// One run with every task attempt.
    Show {
        run: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub run: i64,
    pub task: Option<String>,
    /// Keep printing new lines until the run finishes.
    #[arg(long, short)]
    pub follow: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub run: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    pub run: i64,
}

pub async fn trigger(cfg: &Config, engine: &Engine, a: TriggerArgs) -> anyhow::Result<u8> {
    let flow = find_flow(cfg, engine.registry(), &a.flow)?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in a.params {
        if params.insert(k.clone(), v).is_some() {
            return Err(UsageError(format!(
                "--param {k} is given twice; give each parameter once"
            ))
            .into());
        }
    }
    let submitted = engine
        .submit(&flow, &params, "cli", a.idempotency_key.as_deref())
        .await?;
    let id = submitted.run_id();
    if !a.json {
        match submitted {
            Submitted::Created(_) => println!("run {id} of {} created", flow.name),
            Submitted::Existing(_) => println!(
                "run {id} of {} already exists for idempotency key `{}`; not starting another",
                flow.name,
                a.idempotency_key.as_deref().unwrap_or_default()
            ),
        }
    }
    if a.detach {
        if matches!(submitted, Submitted::Created(_)) {
            spawn_worker(cfg, id)?;
        }
        if a.json {
            print_json(
                &json!({"run_id": id, "created": matches!(submitted, Submitted::Created(_))}),
            );
        }
        return Ok(0);
    }
    let state = execute_interruptible(engine, id, |e| e.execute(id)).await?;
    report(engine, id, a.json).await?;
    engine.notifier().drain(NOTIFY_DRAIN).await;
    Ok(exit_for(state))
}

/// How long a command that ran a flow waits for its notifications before exiting: enough for
/// every retry of a webhook that times out each time.
const NOTIFY_DRAIN: std::time::Duration = std::time::Duration::from_secs(75);

/// Runs `f` and turns Ctrl-C into a cancel request, so an interrupted trigger still records
/// the run as cancelled rather than leaving it to crash recovery.
async fn execute_interruptible<'a, F, Fut>(
    engine: &'a Engine,
    id: i64,
    f: F,
) -> anyhow::Result<RunState>
where
    F: FnOnce(&'a Engine) -> Fut,
    Fut: std::future::Future<Output = Result<RunState, EngineError>>,
{
    let fut = f(engine);
    tokio::pin!(fut);
    tokio::select! {
        r = &mut fut => Ok(r?),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: cancelling run {id}…");
            engine.store().request_cancel(id).await?;
            Ok(fut.await?)
        }
    }
}

fn spawn_worker(cfg: &Config, id: i64) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let logs = cfg.home.join("workers");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("run-{id}.log")))?;
    let exe = std::env::current_exe()?;
    std::process::Command::new(exe)
        .args(["worker", &id.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start a background worker for run {id}: {e}"))?;
    Ok(())
}

pub async fn worker(engine: &Engine, a: WorkerArgs) -> anyhow::Result<u8> {
    let state = engine.execute(a.run).await?;
    engine.notifier().drain(NOTIFY_DRAIN).await;
    Ok(exit_for(state))
}

fn exit_for(state: RunState) -> u8 {
    if state == RunState::Success { 0 } else { 1 }
}

pub async fn retry(engine: &Engine, a: RunArgs) -> anyhow::Result<u8> {
    let id = a.run;
    if !a.json {
        println!("retrying run {id}");
    }
    let state = execute_interruptible(engine, id, |e| e.retry(id)).await?;
    report(engine, id, a.json).await?;
    engine.notifier().drain(NOTIFY_DRAIN).await;
    Ok(exit_for(state))
}

pub async fn cancel(engine: &Engine, a: RunArgs) -> anyhow::Result<u8> {
    let before = engine.store().get_run(a.run).await?;
    if before.state.is_terminal() {
        let msg = format!(
            "run {} already finished ({}); nothing to cancel",
            a.run, before.state
        );
        if a.json {
            print_json(&json!({"run_id": a.run, "state": before.state.as_str(), "message": msg}));
        } else {
            println!("{msg}");
        }
        return Ok(0);
    }
    let state = engine.cancel(a.run, Duration::from_secs(30)).await?;
    if a.json {
        print_json(&json!({"run_id": a.run, "state": state.as_str()}));
    } else if state == RunState::Cancelled {
        println!("run {} cancelled", a.run);
    } else {
        println!(
            "cancel requested; run {} is still {} (its owner stops it at its next heartbeat)",
            a.run, state
        );
    }
    Ok(if state == RunState::Cancelled || !state.is_terminal() {
        0
    } else {
        1
    })
}

pub async fn runs(engine: &Engine, cmd: RunsCmd) -> anyhow::Result<u8> {
    match cmd {
        RunsCmd::List {
            flow,
            state,
            limit,
            before,
            json,
        } => {
            if limit == 0 {
                return Err(UsageError("--limit must be at least 1".into()).into());
            }
            let state = state
                .map(|s| s.parse::<RunState>().map_err(UsageError))
                .transpose()?;
            let rows = engine
                .store()
                .list_runs(&RunFilter {
                    flow,
                    state,
                    limit,
                    before_id: before,
                })
                .await?;
            if json {
                print_json(&json!({"runs": rows}));
                return Ok(0);
            }
            let mut t = Table::new(&[
                "RUN", "FLOW", "STATE", "SOURCE", "CREATED", "DURATION", "ERROR",
            ]);
            for r in &rows {
                t.row(vec![
                    r.id.to_string(),
                    r.flow.clone(),
                    r.state.to_string(),
                    r.trigger_source.clone(),
                    time(Some(r.created_at)),
                    span(r.started_at, r.ended_at),
                    short(r.error.as_deref(), 60),
                ]);
            }
            if t.is_empty() {
                println!("no runs");
            } else {
                t.print();
            }
            Ok(0)
        }
        RunsCmd::Show { run, json } => {
            report(engine, run, json).await?;
            Ok(0)
        }
    }
}

/// Prints a run and its tasks: the outcome table `trigger` and `runs show` share.
async fn report(engine: &Engine, id: i64, as_json: bool) -> anyhow::Result<()> {
    let run = engine.store().get_run(id).await?;
    let attempts = engine.store().attempts(id).await?;
    if as_json {
        print_json(
            &json!({"run": run, "attempts": attempts, "tasks": task_summary(engine.registry(), &run, &attempts)}),
        );
        return Ok(());
    }
    println!(
        "run {} of {}: {}{}",
        run.id,
        run.flow,
        run.state,
        run.started_at
            .map(|_| format!(" in {}", span(run.started_at, run.ended_at)))
            .unwrap_or_default()
    );
    if !run.params.is_empty() {
        println!(
            "params: {}",
            run.params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let Some(e) = &run.error {
        println!("note: {e}");
    }
    let mut t = Table::new(&["TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR"]);
    for s in task_summary(engine.registry(), &run, &attempts) {
        t.row(vec![
            s["task"].as_str().unwrap_or_default().to_string(),
            s["state"].as_str().unwrap_or_default().to_string(),
            s["attempts"].to_string(),
            s["duration"].as_str().unwrap_or_default().to_string(),
            short(s["error"].as_str(), 70),
        ]);
    }
    t.print();
    Ok(())
}

/// Latest state per task in flow order, with the number of attempts that started.
fn task_summary(
    registry: &TaskRegistry,
    run: &RunRow,
    attempts: &[AttemptRow],
) -> Vec<serde_json::Value> {
    let order: Vec<String> = crate::flow::parse_flow(
        std::path::Path::new(&run.flow_path),
        &run.flow_yaml,
        registry,
    )
    .map(|f| {
        f.dag
            .topological_order()
            .into_iter()
            .map(|i| f.tasks[i].id.clone())
            .collect()
    })
    .unwrap_or_else(|_| {
        let mut ids: Vec<String> = attempts.iter().map(|a| a.task_id.clone()).collect();
        ids.dedup();
        ids
    });
    order
        .iter()
        .filter_map(|id| {
            let mine: Vec<&AttemptRow> = attempts.iter().filter(|a| &a.task_id == id).collect();
            let last = mine.iter().max_by_key(|a| a.attempt)?;
            let started = mine.iter().filter(|a| a.started_at.is_some()).count();
            let last_started = mine.iter().filter(|a| a.started_at.is_some()).max_by_key(|a| a.attempt);
            let error = last
                .error
                .clone()
                .or_else(|| mine.iter().rev().find_map(|a| a.error.clone()).filter(|_| last.state.is_failure()));
            Some(json!({
                "task": id,
                "state": last.state.as_str(),
                "attempts": started,
                "duration": last_started.map(|a| span(a.started_at, a.ended_at)).unwrap_or_else(|| "-".into()),
                "error": error,
            }))
        })
        .collect()
}

/// Log lines read from the store per query.
const LOG_PAGE: u32 = 5_000;

pub async fn logs(engine: &Engine, a: LogsArgs) -> anyhow::Result<u8> {
    let store = engine.store();
    store.get_run(a.run).await?;
    let mut after = 0;
    loop {
        let rows = store
            .logs(a.run, a.task.as_deref(), after, LOG_PAGE)
            .await?;
        for (id, l) in &rows {
            after = *id;
            if a.json {
                println!("{}", serde_json::to_string(l)?);
            } else {
                println!(
                    "{} {}#{} [{}] {}",
                    l.ts.format("%H:%M:%S%.3f"),
                    l.task_id,
                    l.attempt,
                    l.stream,
                    l.line
                );
            }
        }
        if rows.len() == LOG_PAGE as usize {
            continue; // more is stored already: read it before waiting for new lines
        }
        if !a.follow || (rows.is_empty() && store.get_run(a.run).await?.state.is_terminal()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(0)
}
