//! The command line: clap definitions and dispatch. One file per command group.
//!
//! Exit codes scripts can trust: 0 ok, 1 a run (or the command's work) failed, 2 usage or
//! validation error (nothing was run).

mod checks;
pub mod contracts;
mod flows;
mod ingest;
mod lineage;
pub mod output;
mod runs;
mod serve;
mod tables;
mod tables_maint;
mod tables_where;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::engine::Engine;
use crate::store::Store;
use crate::tasks::TaskRegistry;

#[derive(Debug, Parser)]
#[command(
    name = "flowctl",
    version,
    about = "Kafka → Delta medallion pipelines with quality gates, in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, validate and show flows (flows/*.yaml).
    #[command(subcommand)]
    Flows(flows::FlowsCmd),
    /// Start a run of a flow and wait for it (or --detach).
    Trigger(runs::TriggerArgs),
    /// Run history.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Task logs of a run.
    Logs(runs::LogsArgs),
    /// Re-run the failed part of a run (failed / upstream_failed tasks and what depends on them).
    Retry(runs::RunArgs),
    /// Cancel a queued or running run.
    Cancel(runs::RunArgs),
    /// Scheduler, web UI, JSON API and /metrics on one port.
    Serve(serve::ServeArgs),
    /// Scheduled flows: list, pause, unpause.
    #[command(subcommand)]
    Schedules(serve::SchedulesCmd),
    /// Execute one run in this process (used by `trigger --detach`).
    #[command(hide = true)]
    Worker(runs::WorkerArgs),
    /// Avro schemas in schemas/: register them, check compatibility.
    #[command(subcommand)]
    Schemas(contracts::SchemasCmd),
    /// The Confluent-compatible schema registry.
    #[command(subcommand)]
    Registry(contracts::RegistryCmd),
    /// Produce realistic synthetic events (Confluent wire format) to Kafka.
    Produce(contracts::ProduceArgs),
    /// Kafka → bronze outside a flow (bounded, or --follow until Ctrl-C).
    Ingest(ingest::IngestArgs),
    /// Quality check results of a run (`checks RUN`), or validate the expectation files
    /// (`checks validate [DIR]`).
    Checks(checks::ChecksArgs),
    /// Replay a dead-letter topic after a fix: records that now pass land in bronze, once.
    Replay(ingest::ReplayArgs),
    /// Which runs and input versions made a table version, back to Kafka offsets.
    Lineage(lineage::LineageArgs),
    /// Delta tables in the lake: list, history, show (time travel), optimize, vacuum,
    /// checkpoint.
    #[command(subcommand)]
    Tables(tables::TablesCmd),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
}

/// A usage or validation problem: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOWCTL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,deltalake_core::writer::stats=error")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses arguments, runs the command, maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<crate::vocab::SourceErrors>().is_some()
                || matches!(
                    e.downcast_ref::<crate::engine::EngineError>(),
                    Some(
                        crate::engine::EngineError::Params(_)
                            | crate::engine::EngineError::Conflict(_)
                    )
                )
                || matches!(
                    e.downcast_ref::<crate::store::StoreError>(),
                    Some(crate::store::StoreError::RunNotFound(_))
                );
            eprintln!("error: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let cfg = Config::from_env().map_err(|e| UsageError(e.to_string()))?;
    match cli.command {
        Command::Flows(cmd) => flows::run(&cfg, cmd),
        Command::Checks(a) => checks::run(&cfg, a).await,
        Command::Bench(cmd) => crate::bench::run(&cfg, cmd).await,
        Command::Tables(cmd) => tables::run(&cfg, cmd).await,
        Command::Schemas(cmd) => exit(contracts::schemas(cmd, &cfg).await?),
        Command::Registry(cmd) => exit(contracts::registry(cmd, &cfg).await?),
        Command::Produce(a) => exit(contracts::produce(a, &cfg).await?),
        Command::Ingest(a) => ingest::ingest(a, &cfg).await,
        Command::Lineage(a) => lineage::run(&cfg, a),
        Command::Replay(a) => ingest::replay(a, &cfg).await,
        other => {
            let engine = open_engine(&cfg).await?;
            let code = match other {
                Command::Trigger(a) => runs::trigger(&cfg, &engine, a).await,
                Command::Runs(cmd) => runs::runs(&engine, cmd).await,
                Command::Logs(a) => runs::logs(&engine, a).await,
                Command::Retry(a) => runs::retry(&engine, a).await,
                Command::Cancel(a) => runs::cancel(&engine, a).await,
                Command::Worker(a) => runs::worker(&engine, a).await,
                Command::Serve(a) => serve::serve(&cfg, engine.clone(), a).await,
                Command::Schedules(cmd) => serve::schedules(&cfg, &engine, cmd).await,
                Command::Flows(_)
                | Command::Checks(_)
                | Command::Bench(_)
                | Command::Tables(_)
                | Command::Schemas(_)
                | Command::Registry(_)
                | Command::Produce(_)
                | Command::Ingest(_)
                | Command::Lineage(_)
                | Command::Replay(_) => unreachable!("handled above"),
            };
            engine.store().close().await;
            code
        }
    }
}

fn exit(code: i32) -> anyhow::Result<u8> {
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Opens the store and runs crash recovery: every process that opens the store releases runs
/// left behind by dead processes.
pub async fn open_engine(cfg: &Config) -> anyhow::Result<Engine> {
    let store = Store::open(&cfg.db).await?;
    let engine = Engine::new(
        store,
        TaskRegistry::builtin(cfg.task_settings()),
        cfg.engine.clone(),
    );
    for r in engine.recover().await? {
        let tasks: Vec<String> = r.tasks.iter().map(|(t, s)| format!("{t} → {s}")).collect();
        eprintln!(
            "recovered run {} ({}) from dead owner {}: {}; resume it with `flowctl retry {}`",
            r.run_id,
            r.flow,
            r.dead_owner,
            if tasks.is_empty() {
                "no task was running".to_string()
            } else {
                tasks.join(", ")
            },
            r.run_id
        );
    }
    Ok(engine)
}
