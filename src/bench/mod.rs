//! `flowctl bench …`: the benchmarks, each printing figures (never asserting them). This file
//! holds `bench scheduler` — the orchestrator's own overhead, every transition persisted — and
//! `bench web`; `ingest` and `transform` have files of their own.
//!
//!
//! Three shapes on no-op tasks in a fresh state DB: a 40-task chain (Windmill's published
//! orchestrator benchmark: Airflow 2.7 took 116 s, Windmill 4.4 s), a 1,000-task fan-out/fan-in,
//! and 100 concurrent runs of a 10-task flow.

use std::path::Path;
use std::time::Instant;

use clap::Subcommand;

mod ingest;
mod transform;

use crate::config::Config;
use crate::engine::{Engine, EngineConfig};
use crate::flow::parse_flow;
use crate::store::Store;
use crate::tasks::TaskRegistry;
use crate::vocab::state::RunState;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Avro-encoded events per second to the broker (orders, acks=all, idempotent, lz4).
    Produce(crate::cli::contracts::BenchProduceArgs),
    /// Web latency with a large history: the runs page, a run page, /api/runs, /metrics.
    Web {
        /// Runs to put in the history first.
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Kafka → bronze events per second against the raw consume rate, and peak memory.
    Ingest(ingest::BenchIngestArgs),
    /// Silver + gold over N generated bronze rows, against the same logic in Python Polars.
    Transform(transform::BenchTransformArgs),
    /// Orchestrator overhead per task.
    Scheduler {
        /// Where to put the throwaway state DB (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

pub async fn run(cfg: &Config, cmd: BenchCmd) -> anyhow::Result<u8> {
    match cmd {
        BenchCmd::Produce(a) => {
            Ok(u8::try_from(crate::cli::contracts::bench_produce(a, cfg).await?).unwrap_or(1))
        }
        BenchCmd::Scheduler { dir } => scheduler(cfg, dir).await,
        BenchCmd::Ingest(a) => ingest::bench_ingest(cfg, a).await,
        BenchCmd::Web { runs, dir } => web(cfg, runs, dir).await,
        BenchCmd::Transform(a) => transform::bench_transform(cfg, a).await,
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

async fn scheduler(cfg: &Config, dir: Option<std::path::PathBuf>) -> anyhow::Result<u8> {
    let tmp = tempdir_in(dir)?;
    let (store, registry, engine) = bench_engine(cfg, &tmp).await?;
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

/// A fresh state DB in `tmp` and an engine over it, with room for wide fan-outs.
async fn bench_engine(cfg: &Config, tmp: &Path) -> anyhow::Result<(Store, TaskRegistry, Engine)> {
    let store = Store::open(&tmp.join("bench.db")).await?;
    let registry = TaskRegistry::builtin(cfg.task_settings());
    let engine = Engine::new(
        store.clone(),
        registry.clone(),
        EngineConfig {
            home: tmp.to_path_buf(),
            concurrency: 64,
            ..EngineConfig::default()
        },
    );
    Ok((store, registry, engine))
}

fn tempdir_in(dir: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let p = base.join(format!("flowctl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

async fn web(cfg: &Config, runs: usize, dir: Option<std::path::PathBuf>) -> anyhow::Result<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tmp = tempdir_in(dir)?;
    let flows_dir = tmp.join("flows");
    std::fs::create_dir_all(&flows_dir)?;
    std::fs::write(flows_dir.join("ten.yaml"), ten("bench_web"))?;
    let (store, registry, engine) = bench_engine(cfg, &tmp).await?;
    let flow = parse_flow(&flows_dir.join("ten.yaml"), &ten("bench_web"), &registry)
        .map_err(anyhow::Error::from)?;
    let fill = Instant::now();
    // A realistic history: executed runs (every task row written), a tenth of them failed.
    let mut handles = Vec::new();
    for i in 0..runs {
        let id = engine
            .submit(&flow, &Default::default(), "cli", None)
            .await?
            .run_id();
        let e = engine.clone();
        handles.push(tokio::spawn(async move { e.execute(id).await }));
        if i % 200 == 199 {
            for h in handles.drain(..) {
                h.await??;
            }
        }
    }
    for h in handles {
        h.await??;
    }
    println!(
        "history: {runs} runs × {} tasks written in {:.1}s",
        flow.tasks.len(),
        fill.elapsed().as_secs_f64()
    );

    let state = crate::web::AppState::new(engine.clone(), flows_dir, tmp.clone(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, crate::web::router(state)).await });

    async fn get(
        addr: std::net::SocketAddr,
        path: &str,
    ) -> anyhow::Result<(std::time::Duration, usize)> {
        let start = Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::ensure!(
            buf.starts_with(b"HTTP/1.1 200"),
            "GET {path}: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        );
        Ok((start.elapsed(), buf.len()))
    }
    let last = store
        .list_runs(&crate::store::RunFilter {
            limit: 1,
            ..Default::default()
        })
        .await?[0]
        .id;
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        "request (50 each, sequential)", "median", "p95", "bytes"
    );
    for path in [
        "/runs".to_string(),
        "/runs?flow=bench_web&state=success".to_string(),
        format!("/runs?before={}", last / 2),
        format!("/runs/{last}"),
        "/api/runs?limit=50".to_string(),
        "/metrics".to_string(),
    ] {
        get(addr, &path).await?; // warm-up
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..50 {
            let (t, b) = get(addr, &path).await?;
            times.push(t);
            bytes = b;
        }
        times.sort();
        println!(
            "{:<40} {:>8.2}ms {:>8.2}ms {:>10}",
            path,
            times[25].as_secs_f64() * 1000.0,
            times[47].as_secs_f64() * 1000.0,
            bytes
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(0)
}
