//! `flowctl bench transform --rows N`: silver + gold over N generated bronze rows, timed, against
//! the same logic in Python Polars (`benches/transform.py`) on the same bronze files.
//!
//! Bronze is written without Kafka ([`crate::support::synth`]): 40% orders (half v1, half v2),
//! 40% clickstream, 20% payments, spread over 14 days of event time with the generator's late
//! events, duplicates and a small share of bad values. Silver and gold then run exactly as the
//! task kinds run them (stage, then publish); the gate's checks are not part of the timing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::contracts::domain::EventKind;
use crate::contracts::generate::{Event, GenConfig, Generator, SchemaVersion};
use crate::contracts::schema::builtin;
use crate::lake::staged;
use crate::support::synth::BronzeWriter;
use crate::transform::gold::{GoldRun, aggregate_gold};
use crate::transform::rules::SilverRules;
use crate::transform::silver::{SilverRun, transform_entity};
use crate::transform::{Entity, TransformError};

/// 2025-11-01T00:00:00Z: the first simulated event time.
const T0_MS: i64 = 1_761_955_200_000;
const DAYS: i64 = 14;
const CHUNK: usize = 50_000;

#[derive(Debug, clap::Args)]
pub struct BenchTransformArgs {
    /// Bronze rows to generate (all topics together).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Where to put the throwaway FLOWCTL_HOME (default: the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Python Polars script to compare with.
    #[arg(long, default_value = "benches/transform.py")]
    pub script: PathBuf,
    /// Skip the Python comparison.
    #[arg(long)]
    pub no_python: bool,
    /// Keep the generated tables.
    #[arg(long)]
    pub keep: bool,
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

async fn generate_kind(home: PathBuf, kind: EventKind, count: usize) -> anyhow::Result<usize> {
    let ingested = (T0_MS + (DAYS + 1) * 86_400_000) * 1000;
    let schemas: Vec<(i32, &str)> = match kind {
        EventKind::Orders => vec![(1, builtin::ORDERS_V1), (2, builtin::ORDERS_V2)],
        EventKind::Clickstream => vec![(3, builtin::CLICKSTREAM)],
        EventKind::Payments => vec![(4, builtin::PAYMENTS)],
    };
    let mut writer = BronzeWriter::open(&home, kind, &schemas, ingested).await?;
    let mut cfg = GenConfig::new(kind, 42, T0_MS);
    cfg.bad_ratio = 0.005;
    cfg.spacing_ms = (DAYS * 86_400_000) as f64 / count.max(1) as f64;
    let halves: Vec<(i32, GenConfig, usize)> = if kind == EventKind::Orders {
        let mut v2 = cfg.clone();
        v2.version = SchemaVersion::V2;
        v2.seed = 43;
        vec![(1, cfg, count / 2), (2, v2, count - count / 2)]
    } else {
        vec![(schemas[0].0, cfg, count)]
    };
    let mut rows = 0;
    for (id, cfg, n) in halves {
        let mut generator = Generator::new(cfg).take(n).peekable();
        while generator.peek().is_some() {
            let chunk: Vec<Event> = generator.by_ref().take(CHUNK).collect();
            let refs: Vec<(i32, &Event)> = chunk.iter().map(|e| (id, e)).collect();
            rows += writer.append(&refs).await?.1;
        }
    }
    Ok(rows)
}

/// "Now" for both engines' rules: a day after the last simulated event.
fn now_us() -> i64 {
    (T0_MS + (DAYS + 1) * 86_400_000) * 1000
}

async fn publish_all(home: &Path, tables: &[String]) -> anyhow::Result<()> {
    for t in tables {
        if let Some(s) = staged(home, t)? {
            s.publish(home).await?;
        }
    }
    Ok(())
}

struct Timings {
    silver_s: f64,
    gold_s: f64,
    silver_rows: usize,
    revenue_orders: i64,
    revenue: f64,
}

async fn run_flowctl(home: &Path, rules: SilverRules) -> anyhow::Result<Timings> {
    let started = Instant::now();
    let run = SilverRun {
        run_id: Some(1),
        now_us: now_us(),
        schema_versions: [(1, 1), (2, 2)].into_iter().collect(),
        rules,
        backfill: None,
    };
    let mut staged_tables = Vec::new();
    let mut silver_rows = 0;
    for e in Entity::ALL {
        let t = Instant::now();
        let r = transform_entity(home, e, &run).await?;
        println!(
            "  silver {:<12} {:>10} rows in, {:>8} quarantined, {:>8} duplicates, {:>10} rows out, staged in {:.2} s",
            r.entity,
            r.rows_in,
            r.quarantined,
            r.duplicates_removed,
            r.rows_staged,
            t.elapsed().as_secs_f64()
        );
        silver_rows += r.rows_staged;
        staged_tables.extend(r.staged);
    }
    publish_all(home, &staged_tables).await?;
    let silver_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let report = aggregate_gold(
        home,
        &GoldRun {
            run_id: Some(1),
            now_us: run.now_us,
        },
    )
    .await?;
    publish_all(home, &report.staged).await?;
    let gold_s = started.elapsed().as_secs_f64();
    let gold = crate::transform::schema::gold_daily_revenue()
        .open(home)
        .await?;
    let totals = gold
        .scan()?
        .select([
            polars::prelude::col("orders").sum(),
            polars::prelude::col("revenue").sum(),
        ])
        .collect()
        .map_err(|e| TransformError::Polars {
            table: "gold_daily_revenue".into(),
            step: "totals",
            source: e,
        })?;
    let revenue_orders = totals
        .column("orders")?
        .get(0)?
        .extract::<i64>()
        .unwrap_or(0);
    let revenue = totals
        .column("revenue")?
        .get(0)?
        .extract::<f64>()
        .unwrap_or(0.0);
    Ok(Timings {
        silver_s,
        gold_s,
        silver_rows,
        revenue_orders,
        revenue,
    })
}

/// `path` as given, else relative to the source tree flowctl was built from (the bench is a
/// developer's tool, run from the repo or from its build).
fn find_in_repo(path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    beside.exists().then_some(beside)
}

pub async fn bench_transform(
    cfg: &crate::config::Config,
    args: BenchTransformArgs,
) -> anyhow::Result<u8> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = base.join(format!("flowctl-bench-transform-{}", std::process::id()));
    let home = tmp.join("home");
    std::fs::create_dir_all(&home)?;
    println!(
        "flowctl bench transform: {} bronze rows in {}",
        args.rows,
        home.display()
    );
    let started = Instant::now();
    let n_orders = args.rows * 4 / 10;
    let n_clicks = args.rows * 4 / 10;
    let n_payments = args.rows - n_orders - n_clicks;
    let mut jobs = Vec::new();
    for (kind, n) in [
        (EventKind::Orders, n_orders),
        (EventKind::Clickstream, n_clicks),
        (EventKind::Payments, n_payments),
    ] {
        let home = home.clone();
        jobs.push(tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(generate_kind(home, kind, n))
        }));
    }
    let mut bronze_rows = 0;
    for j in jobs {
        bronze_rows += j.await??;
    }
    println!(
        "  bronze: {bronze_rows} rows generated in {:.1} s (not timed below); peak RSS so far {:.0} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let expectations = find_in_repo(&cfg.expectations_dir.clone())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("expectations"));
    let rules = SilverRules::load(&expectations)?;
    let t = run_flowctl(&home, rules).await?;
    let total = t.silver_s + t.gold_s;
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>14} {:>12}",
        "", "silver s", "gold s", "total s", "rows/s", "peak MiB"
    );
    println!(
        "{:<28} {:>10.2} {:>10.2} {:>10.2} {:>14.0} {:>12.0}",
        "flowctl (Rust Polars)",
        t.silver_s,
        t.gold_s,
        total,
        bronze_rows as f64 / total,
        peak_rss_mib()
    );
    let mut code = 0u8;
    if total > 60.0 && args.rows >= 10_000_000 {
        println!("  over the 60 s target");
        code = 1;
    }
    if !args.no_python {
        match find_in_repo(&args.script) {
            None => println!(
                "  python: {} not found (run from the repo root)",
                args.script.display()
            ),
            Some(script) => {
                let out = tokio::process::Command::new("python3")
                    .arg(&script)
                    .arg("--lake")
                    .arg(crate::lake::lake_root(&home))
                    .arg("--out")
                    .arg(tmp.join("python"))
                    .arg("--expectations")
                    .arg(&expectations)
                    .output()
                    .await?;
                if !out.status.success() {
                    println!(
                        "  python failed ({}); install: python3 -m pip install -r tests/python/requirements.txt\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    code = 1;
                } else {
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                    let py_total =
                        v["silver_s"].as_f64().unwrap_or(0.0) + v["gold_s"].as_f64().unwrap_or(0.0);
                    println!(
                        "{:<28} {:>10.2} {:>10.2} {:>10.2} {:>14.0} {:>12.0}",
                        format!("python polars {}", v["polars"].as_str().unwrap_or("?")),
                        v["silver_s"].as_f64().unwrap_or(0.0),
                        v["gold_s"].as_f64().unwrap_or(0.0),
                        py_total,
                        bronze_rows as f64 / py_total,
                        v["peak_mib"].as_f64().unwrap_or(0.0)
                    );
                    println!("  ratio flowctl/python (time): {:.2}", total / py_total);
                    let same = v["silver_rows"].as_u64() == Some(t.silver_rows as u64)
                        && v["revenue_orders"].as_i64() == Some(t.revenue_orders)
                        && (v["revenue"].as_f64().unwrap_or(f64::NAN) - t.revenue).abs() < 0.01;
                    println!(
                        "  same results: {} (silver rows {} vs {}, gold orders {} vs {}, revenue {:.2} vs {:.2})",
                        if same { "yes" } else { "NO" },
                        t.silver_rows,
                        v["silver_rows"],
                        t.revenue_orders,
                        v["revenue_orders"],
                        t.revenue,
                        v["revenue"].as_f64().unwrap_or(f64::NAN)
                    );
                    if !same {
                        code = 1;
                    }
                }
            }
        }
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(code)
}
