//! CLI for data contracts: `flowctl schemas register|check`, `flowctl registry serve`,
//! `flowctl produce` and `flowctl bench produce`. Each entry point returns the process exit code:
//! 0 ok, 1 the operation ran and failed (incompatible schema, undelivered events), 2 usage or
//! validation error (bad arguments, a file that is not a schema).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::contracts::generate::SchemaVersion;
use crate::contracts::produce::{Pacing, ProduceOptions, produce as run_produce, schema_for};
use crate::contracts::registry::{Registry, RegistryError, registry_app};
use crate::contracts::schema::{ParsedSchema, load_dir};
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum SchemasCmd {
    /// Register every `.avsc` in a folder under subject `<topic>-value` (orders-v2.avsc → orders-value),
    /// oldest version first. Uses FLOWCTL_SCHEMA_REGISTRY_URL when set, else the embedded registry.
    Register {
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Say whether a schema file may be registered under a subject (its compatibility level
    /// applies). Exit 0 compatible, 1 incompatible, 2 not a valid schema.
    Check {
        file: PathBuf,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCmd {
    /// Serve the Confluent-compatible schema registry API on the state DB.
    Serve(RegistryServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RegistryServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaVersionArg {
    V1,
    V2,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("amount").required(true).args(["count", "rate"])))]
pub struct ProduceArgs {
    /// Topic; its name picks the event family (orders, clickstream, payments).
    #[arg(long)]
    pub topic: String,
    /// Produce this many events as fast as possible.
    #[arg(long, conflicts_with_all = ["rate", "duration"])]
    pub count: Option<u64>,
    /// Events per second (with --duration).
    #[arg(long, requires = "duration")]
    pub rate: Option<u64>,
    /// How long to produce at --rate, e.g. 30s, 5m, 1h, 500ms.
    #[arg(long, requires = "rate", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Share of events carrying an injected fault (0 to 1), spread over every category that
    /// applies to the topic; 0 for clean data only.
    #[arg(long, default_value_t = 0.05, value_parser = parse_ratio)]
    pub bad_ratio: f64,
    /// Share of clean events whose event_time is 1–48 hours in the past.
    #[arg(long, default_value_t = 0.03, value_parser = parse_ratio)]
    pub late_ratio: f64,
    /// Share of events that re-send the previous clean event (same business key and payload).
    #[arg(long, default_value_t = 0.02, value_parser = parse_ratio)]
    pub duplicate_ratio: f64,
    /// Random seed; the same seed gives the same events. Random when omitted (printed in the
    /// summary). Produce payments with the seed used for orders so payments refer to real orders.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Orders schema version.
    #[arg(long, value_enum, default_value = "v1")]
    pub schema_version: SchemaVersionArg,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Event-time "now" (RFC 3339); fix it with --seed for byte-identical runs.
    #[arg(long)]
    pub base_time: Option<DateTime<Utc>>,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BenchProduceArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    #[arg(long, default_value = "bench-orders")]
    pub topic: String,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    #[arg(long)]
    pub json: bool,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("expected a number between 0 and 1, found `{s}`"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("expected a number between 0 and 1, found {r}"))
    }
}

/// A positive duration (`500ms`, `30s`, `5m`, `1h`, or plain seconds), in the flow-file syntax.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::vocab::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration must be positive, found `{s}`"));
    }
    Ok(d)
}

/// The registry `cfg` names: external, or the one embedded in the state DB.
async fn registry_of(cfg: &Config) -> anyhow::Result<Registry> {
    Ok(Registry::new(
        cfg.schema_registry.as_ref(),
        open(&cfg.db).await?,
    ))
}

async fn open(db: &Path) -> anyhow::Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("opening the state DB {}", db.display()))
}

pub async fn schemas(cmd: SchemasCmd, cfg: &Config) -> anyhow::Result<i32> {
    let registry = registry_of(cfg).await?;
    match cmd {
        SchemasCmd::Register { dir, json } => {
            let files = match load_dir(&dir) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: {:#}", anyhow::Error::from(e));
                    return Ok(2);
                }
            };
            let mut code = 0;
            let mut out = Vec::new();
            for f in files {
                match registry.register(&f.subject, &f.text).await {
                    Ok((id, version)) => {
                        if !json {
                            println!(
                                "{:<24} version {:<3} id {:<4} {}",
                                f.subject,
                                version,
                                id,
                                f.path.display()
                            );
                        }
                        out.push(serde_json::json!({"file": f.path, "subject": f.subject, "id": id, "version": version}));
                    }
                    Err(e) => {
                        code = code.max(match e {
                            RegistryError::InvalidSchema(_) => 2,
                            _ => 1,
                        });
                        eprintln!("error: {}: {e}", f.path.display());
                        out.push(serde_json::json!({"file": f.path, "subject": f.subject, "error": e.to_string()}));
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("({})", registry.describe());
            }
            Ok(code)
        }
        SchemasCmd::Check {
            file,
            subject,
            json,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading schema file {}", file.display()))?;
            if let Err(e) = ParsedSchema::parse(&text) {
                eprintln!("error: {}: {e}", file.display());
                return Ok(2);
            }
            let report = registry.check(&subject, &text).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"subject": subject, "file": file, "is_compatible": report.is_compatible, "messages": report.messages})
                );
            } else if report.is_compatible {
                println!("{} is compatible with subject {subject}", file.display());
            } else {
                println!(
                    "{} is NOT compatible with subject {subject}:",
                    file.display()
                );
                for m in &report.messages {
                    println!("  - {m}");
                }
            }
            Ok(if report.is_compatible { 0 } else { 1 })
        }
    }
}

pub async fn registry(cmd: RegistryCmd, cfg: &Config) -> anyhow::Result<i32> {
    match cmd {
        RegistryCmd::Serve(args) => registry_serve(args, cfg).await,
    }
}

pub async fn registry_serve(args: RegistryServeArgs, cfg: &Config) -> anyhow::Result<i32> {
    let db = &cfg.db;
    let store = open(db).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding the registry to {}", args.addr))?;
    let addr = listener.local_addr()?;
    let token = cfg.api_token.clone();
    crate::web::warn_if_exposed("flowctl registry serve", addr, token.as_deref());
    eprintln!(
        "schema registry listening on http://{addr} (state DB {})",
        db.display()
    );
    let app = crate::web::guard_registry(
        registry_app(store.clone()),
        store,
        token,
        std::sync::Arc::new(crate::web::Hosts::for_listener(addr, &cfg.allowed_hosts)),
    );
    axum::serve(crate::web::Bounded::new(listener), app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(0)
}

fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            s.store(true, Ordering::Relaxed);
        }
    });
    stop
}

pub async fn produce(args: ProduceArgs, cfg: &Config) -> anyhow::Result<i32> {
    let pacing = match (args.count, args.rate, args.duration) {
        (Some(n), _, _) => Pacing::Count(n),
        (None, Some(per_sec), Some(duration)) => Pacing::Rate { per_sec, duration },
        _ => {
            eprintln!("error: give --count N, or --rate R with --duration D");
            return Ok(2);
        }
    };
    let version = match args.schema_version {
        SchemaVersionArg::V1 => SchemaVersion::V1,
        SchemaVersionArg::V2 => SchemaVersion::V2,
    };
    // Usage errors (a topic with no event family, v2 of a schema that has none) exit 2.
    if let Err(e) = schema_for(&args.topic, version) {
        eprintln!("error: {e}");
        return Ok(2);
    }
    let registry = registry_of(cfg).await?;
    let opts = ProduceOptions {
        topic: args.topic,
        version,
        seed: args.seed.unwrap_or_else(rand::random),
        bad_ratio: args.bad_ratio,
        late_ratio: args.late_ratio,
        duplicate_ratio: args.duplicate_ratio,
        pacing,
        partitions: args.partitions,
        base_time_ms: args.base_time.unwrap_or_else(Utc::now).timestamp_millis(),
        progress: !args.json,
        compression: "lz4".into(),
        linger_ms: 5,
        stop: Some(stop_on_ctrl_c()),
    };
    let summary = run_produce(opts, &registry, &cfg.kafka).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(if summary.failed > 0 { 1 } else { 0 })
}

pub async fn bench_produce(args: BenchProduceArgs, cfg: &Config) -> anyhow::Result<i32> {
    let registry = registry_of(cfg).await?;
    let opts = ProduceOptions {
        topic: args.topic,
        version: SchemaVersion::V1,
        seed: 1,
        bad_ratio: 0.0,
        late_ratio: 0.03,
        duplicate_ratio: 0.02,
        pacing: Pacing::Count(args.count),
        partitions: args.partitions,
        base_time_ms: Utc::now().timestamp_millis(),
        progress: false,
        compression: "lz4".into(),
        linger_ms: 20,
        stop: None,
    };
    let s = run_produce(opts, &registry, &cfg.kafka).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "bench produce: {} Avro-encoded {} events acknowledged in {:.2}s: {:.0} events/s ({:.1} MB/s on the wire before compression)",
            s.sent,
            s.topic,
            s.elapsed_secs,
            s.events_per_sec,
            s.bytes as f64 / 1e6 / s.elapsed_secs.max(1e-9)
        );
    }
    Ok(if s.failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("0.05").unwrap(), 0.05);
        assert!(parse_ratio("1.5").is_err());
    }
}
