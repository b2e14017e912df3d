//! `flowctl bench ingest`: Kafka → bronze throughput against the raw consume rate, in one run.
//!
//! Produces a few million orders events (1% faults) to a fresh topic, then measures (1) a bare
//! consumer that reads and discards every record (from assignment to the last record) and (2)
//! the full ingest — decode, business rules, DLQ, Delta commits — in a child `flowctl ingest`
//! (its own clock: from its start, table and DLQ setup included, to the last commit), whose
//! peak RSS comes from `wait4`. Both consumers use the same librdkafka fetch settings. The
//! targets (≥ 200k events/s, ≥ 50% of the raw rate, memory flat in the topic size) are printed
//! next to the figures, not asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::contracts::generate::SchemaVersion;
use crate::contracts::produce::{Pacing, ProduceOptions, produce};
use crate::contracts::registry::Registry;
use crate::kafka::{KafkaSettings, consumer_config, ensure_topic};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Orders events to produce and ingest.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Share of injected faults (they go to the DLQ).
    #[arg(long, default_value_t = 0.01)]
    bad_ratio: f64,
    /// Records per micro-batch.
    #[arg(long, default_value_t = 100_000)]
    batch_records: usize,
    /// Where the throwaway lake and state DB go (default: a temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the topic's state DB (its registry) and print how to run the same ingest again,
    /// e.g. under a profiler; the lake of the measured run is deleted all the same.
    #[arg(long)]
    keep: bool,
}

/// Reads every record of `topic` and discards it: the ceiling any ingest can reach. Same
/// librdkafka fetch settings as the ingest's consumer (`ingest::source::consumer`): with the
/// default `fetch.queue.backoff.ms` (1 s) this loop, which polls slower than librdkafka
/// prefetches, sat idle for a second now and then, and the ceiling came out anywhere between
/// 0.7 and 1.8M events/s.
fn raw_consume(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<(u64, u64, f64)> {
    let c: BaseConsumer = consumer_config(kafka, &format!("bench-raw-{topic}")).create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(15))?;
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0u64;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(15))?;
        expected += (hi - lo) as u64;
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))?;
    }
    c.assign(&tpl)?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    // The clock is read only when the broker goes quiet: per record it would cost more than the
    // rest of this loop.
    let mut quiet_since: Option<Instant> = None;
    while n < expected {
        match c.poll(Duration::from_millis(100)) {
            Some(m) => {
                let m = m?;
                bytes += m.payload_len() as u64;
                n += 1;
                quiet_since = None;
            }
            None => {
                if quiet_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(30)
                {
                    break;
                }
            }
        }
    }
    Ok((n, bytes, started.elapsed().as_secs_f64()))
}

/// Runs `cmd` and returns its exit status with its peak resident memory in bytes.
fn run_measured(cmd: &mut std::process::Command) -> anyhow::Result<(std::process::Output, u64)> {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    // Collect the output on threads so a full pipe cannot block the child.
    let mut child = child;
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut v).map(|_| v)
    });
    let mut status: libc::c_int = 0;
    // SAFETY: plain wait4 on our own child; rusage is a POD out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    use std::os::unix::process::ExitStatusExt;
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out_t.join().expect("reader thread")?,
        stderr: err_t.join().expect("reader thread")?,
    };
    // ru_maxrss is in KiB on Linux.
    Ok((output, usage.ru_maxrss as u64 * 1024))
}

pub async fn bench_ingest(cfg: &Config, a: BenchIngestArgs) -> anyhow::Result<u8> {
    // The measured ingest must validate: without the business rules it would write bad rows
    // (scattered over many `event_date` partitions) instead of dead-lettering them.
    let rules = cfg.expectations_dir.clone();
    anyhow::ensure!(
        rules.join("bronze_orders.yaml").is_file(),
        "bench ingest measures the ingest with its business rules, and {} holds no \
         bronze_orders.yaml: run it from the repository root or set FLOWCTL_EXPECTATIONS_DIR",
        rules.display()
    );
    let rules = std::path::absolute(&rules)?;
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let home = base.join(format!("flowctl-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let kafka = cfg.kafka.clone();
    let topic = format!(
        "bench-orders-{}-{}",
        std::process::id(),
        Utc::now().timestamp()
    );
    ensure_topic(&kafka, &topic, a.partitions).await?;
    let registry = Registry::new(
        cfg.schema_registry.as_ref(),
        Store::open(&home.join("state.db")).await?,
    );
    println!(
        "bench ingest: producing {} orders events to {topic}…",
        a.events
    );
    let summary = produce(
        ProduceOptions {
            topic: topic.clone(),
            version: SchemaVersion::V2,
            seed: 7,
            bad_ratio: a.bad_ratio,
            late_ratio: 0.03,
            duplicate_ratio: 0.02,
            pacing: Pacing::Count(a.events),
            partitions: a.partitions,
            base_time_ms: Utc::now().timestamp_millis(),
            progress: false,
            compression: "lz4".into(),
            linger_ms: 20,
            stop: None,
        },
        &registry,
        &kafka,
    )
    .await?;
    println!(
        "  produced  {:>10} events in {:.2}s",
        summary.sent, summary.elapsed_secs
    );

    let (b, t) = (kafka.clone(), topic.clone());
    let (raw_n, raw_bytes, raw_secs) =
        tokio::task::spawn_blocking(move || raw_consume(&b, &t)).await??;
    let raw_rate = raw_n as f64 / raw_secs;
    println!(
        "  raw consume {:>8} events in {:.2}s: {:>9.0} events/s ({:.0} MB/s)",
        raw_n,
        raw_secs,
        raw_rate,
        raw_bytes as f64 / raw_secs / 1e6
    );

    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "ingest",
        "--topics",
        &topic,
        "--json",
        "--batch-records",
        &a.batch_records.to_string(),
        "--dlq-topic",
        &format!("{topic}-dlq"),
    ])
    .env("FLOWCTL_HOME", &home)
    .env("FLOWCTL_EXPECTATIONS_DIR", &rules)
    .env_remove("FLOWCTL_DB");
    let (out, peak) = tokio::task::spawn_blocking(move || run_measured(&mut cmd)).await??;
    anyhow::ensure!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With FLOWCTL_LOG set (e.g. flowctl=debug) the ingest's own diagnostics, such as the
    // per-micro-batch phase timings, are shown.
    if std::env::var_os("FLOWCTL_LOG").is_some() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let records = s["topics"][0]["records"].as_u64().unwrap_or(0);
    let secs = s["seconds"].as_f64().unwrap_or(f64::NAN);
    let rate = records as f64 / secs;
    println!(
        "  bronze ingest {:>6} events in {:.2}s: {:>9.0} events/s  ({} to bronze, {} to the DLQ, {} commits)",
        records,
        secs,
        rate,
        s["topics"][0]["bronze_rows"],
        s["topics"][0]["dlq_rows"],
        s["topics"][0]["commits"],
    );
    println!(
        "  ratio bronze/raw: {:.0}%   peak RSS of the ingest process: {:.0} MiB (batch {} records)",
        100.0 * rate / raw_rate,
        peak as f64 / 1048576.0,
        a.batch_records
    );
    println!(
        "  targets: ≥ 200000 events/s [{}], ≥ 50% of raw [{}]",
        if rate >= 200_000.0 { "met" } else { "MISSED" },
        if rate >= 0.5 * raw_rate {
            "met"
        } else {
            "MISSED"
        },
    );
    if a.keep {
        let _ = std::fs::remove_dir_all(home.join("lake"));
        let _ = std::fs::remove_dir_all(home.join("locks"));
        println!(
            "  kept {}: to ingest the same topic again into a fresh lake, copy its state.db to a \
             new FLOWCTL_HOME and run\n    FLOWCTL_HOME=<new> FLOWCTL_EXPECTATIONS_DIR={} \
             flowctl ingest --topics {topic} --batch-records {} --dlq-topic <new>",
            home.display(),
            rules.display(),
            a.batch_records
        );
    } else {
        let _ = std::fs::remove_dir_all(&home);
    }
    anyhow::ensure!(
        records == summary.sent,
        "ingested {records} of {} events",
        summary.sent
    );
    Ok(0)
}
