//! `flowctl bench scheduler`: the orchestrator's own overhead, every transition persisted.
//!
//! Three shapes on no-op tasks in a fresh state DB: a 40-task chain (Windmill's published
//! orchestrator benchmark: Airflow 2.7 took 116 s, Windmill 4.4 s), a 1,000-task fan-out/fan-in,
//! and 100 concurrent runs of a 10-task flow.

use std::path::Path;
use std::time::Instant;

use clap::Subcommand;

use crate::config::Config;
use crate::engine::state::RunState;
use crate::engine::{Engine, EngineConfig};
use crate::flow::parse_flow;
use crate::store::Store;
use crate::tasks::TaskRegistry;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Orchestrator overhead per task.
    Scheduler {
        /// Where to put the throwaway state DB (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

pub async fn run(_cfg: &Config, cmd: BenchCmd) -> anyhow::Result<u8> {
    match cmd {
        BenchCmd::Scheduler { dir } => scheduler(dir).await,
    }
}

fn chain(n: usize) -> String {
    let mut s = String::from("name: bench_chain\ntasks:\n");
    for i in 0..n {
        s.push_str(&format!("  - id: t{i}\n    kind: noop\n"));
        if i > 0 {
            s.push_str(&format!("    depends_on: [t{}]\n", i - 1));
        }
    }
    s
}

fn fan(n: usize) -> String {
    let mut s = String::from("name: bench_fan\ntasks:\n  - id: start\n    kind: noop\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - id: w{i}\n    kind: noop\n    depends_on: [start]\n"
        ));
    }
    s.push_str("  - id: end\n    kind: noop\n    depends_on: [");
    s.push_str(
        &(0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n");
    s
}

fn ten(name: &str) -> String {
    // A diamond-ish 10-task flow: 1 → 8 parallel → 1.
    let mut s = format!("name: {name}\nmax_active_runs: 1000\ntasks:\n  - id: a\n    kind: noop\n");
    for i in 0..8 {
        s.push_str(&format!(
            "  - id: m{i}\n    kind: noop\n    depends_on: [a]\n"
        ));
    }
    s.push_str("  - id: z\n    kind: noop\n    depends_on: [m0, m1, m2, m3, m4, m5, m6, m7]\n");
    s
}

async fn scheduler(dir: Option<std::path::PathBuf>) -> anyhow::Result<u8> {
    let tmp = tempdir_in(dir)?;
    let store = Store::open(&tmp.join("bench.db")).await?;
    let registry = TaskRegistry::builtin();
    let engine = Engine::new(
        store.clone(),
        registry.clone(),
        EngineConfig {
            home: tmp.clone(),
            concurrency: 64,
            ..EngineConfig::default()
        },
    );
    println!("flowctl bench scheduler (every state transition persisted to SQLite, WAL)");
    println!(
        "{:<34} {:>10} {:>8} {:>16}",
        "shape", "total", "tasks", "overhead/task"
    );

    for (label, yaml, runs) in [
        ("40-task chain", chain(40), 1usize),
        ("1,000-task fan-out/fan-in", fan(1000), 1),
        ("100 concurrent runs × 10 tasks", ten("bench_ten"), 100),
    ] {
        let flow =
            parse_flow(Path::new("<bench>"), &yaml, &registry).map_err(anyhow::Error::from)?;
        // Warm-up run, not counted (first-statement preparation, page cache).
        let warm = engine
            .submit(&flow, &Default::default(), "cli", None)
            .await?;
        engine.execute(warm.run_id()).await?;
        let started = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..runs {
            ids.push(
                engine
                    .submit(&flow, &Default::default(), "cli", None)
                    .await?
                    .run_id(),
            );
        }
        let mut handles = Vec::new();
        for id in ids {
            let e = engine.clone();
            handles.push(tokio::spawn(async move { e.execute(id).await }));
        }
        for h in handles {
            let state = h.await??;
            anyhow::ensure!(state == RunState::Success, "{label}: a run ended {state}");
        }
        let total = started.elapsed();
        let tasks = flow.tasks.len() * runs;
        println!(
            "{:<34} {:>9.3}s {:>8} {:>13.3} ms",
            label,
            total.as_secs_f64(),
            tasks,
            total.as_secs_f64() * 1000.0 / tasks as f64
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(0)
}

fn tempdir_in(dir: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let p = base.join(format!("flowctl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
