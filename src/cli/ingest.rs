//! `flowctl ingest`: Kafka → bronze outside a flow. Bounded by default (up to the high
//! watermarks seen at start); `--follow` keeps going, committing every interval, until Ctrl-C,
//! which commits what was read and exits cleanly.

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contracts::registry::Registry;
use crate::ingest::{self, IngestOptions, Reset};
use crate::tasks::ingest_bronze::DEFAULT_TOPICS;
use crate::vocab::parse_duration;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Comma-separated topics (default: orders,clickstream,payments).
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Keep consuming after the high watermark until interrupted.
    #[arg(long)]
    follow: bool,
    /// With --follow: how often to commit (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    commit_interval: std::time::Duration,
    /// Stop each topic after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Stop each topic after this long (e.g. 2m).
    #[arg(long, value_parser = parse_duration)]
    max_duration: Option<std::time::Duration>,
    /// Records per micro-batch (one Delta commit per table).
    #[arg(long, default_value_t = 100_000)]
    batch_records: usize,
    /// The dead-letter topic.
    #[arg(long, default_value = ingest::DEFAULT_DLQ_TOPIC)]
    dlq_topic: String,
    /// Records larger than this many bytes (key and value) go to the DLQ as RECORD_TOO_LARGE
    /// without being decoded.
    #[arg(long, default_value_t = ingest::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,
    /// The DLQ topic's largest record when the broker does not report its max.message.bytes
    /// (default: what it reports, else 1000000); larger dead letters are produced truncated.
    #[arg(long)]
    dlq_max_message_bytes: Option<usize>,
    /// Repair stored offsets that are outside the log: `earliest` re-reads from the log start,
    /// `latest` skips to its end. Valid offsets are never moved.
    #[arg(long)]
    reset_offsets: Option<Reset>,
    /// Machine-readable summary.
    #[arg(long)]
    json: bool,
}

pub async fn ingest(args: IngestArgs, cfg: &Config) -> anyhow::Result<u8> {
    let topics = if args.topics.is_empty() {
        DEFAULT_TOPICS.iter().map(|s| s.to_string()).collect()
    } else {
        args.topics
    };
    let registry = Registry::new(
        cfg.schema_registry.as_ref(),
        crate::store::Store::open(&cfg.db).await?,
    );
    let mut opts = IngestOptions::new(topics, cfg.kafka.clone(), cfg.home.clone());
    opts.expectations_dir = Some(cfg.expectations_dir.clone());
    opts.follow = args.follow;
    opts.commit_interval = args.commit_interval;
    opts.max_records = args.max_records;
    opts.max_duration = args.max_duration;
    opts.batch_records = args.batch_records.max(1);
    opts.dlq_topic = args.dlq_topic;
    opts.max_record_bytes = args.max_record_bytes;
    opts.dlq_max_message_bytes = args.dlq_max_message_bytes;
    opts.reset = args.reset_offsets;
    let cancel = CancellationToken::new();
    {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: committing what was read");
                c.cancel();
            }
        });
    }
    let progress = if args.json || args.follow {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} ingest [{bar:30}] {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    };
    let summary = ingest::ingest(&opts, &registry, cancel, &progress).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The dead-letter topic to replay (the ingest default is `bronze_dlq`).
    topic: String,
    /// First DLQ offset to replay (in every DLQ partition). Records an earlier replay already
    /// handled are skipped whatever this says.
    #[arg(long, default_value_t = 0)]
    from_offset: i64,
    /// Replay only the dead letters of this source topic.
    #[arg(long)]
    source: Option<String>,
    /// Dead letters larger than this many bytes still fail as RECORD_TOO_LARGE (raise it to
    /// replay what an ingest refused for its size).
    #[arg(long, default_value_t = ingest::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,
    #[arg(long)]
    json: bool,
}

pub async fn replay(args: ReplayArgs, cfg: &Config) -> anyhow::Result<u8> {
    let registry = Registry::new(
        cfg.schema_registry.as_ref(),
        crate::store::Store::open(&cfg.db).await?,
    );
    let mut opts = IngestOptions::new(Vec::new(), cfg.kafka.clone(), cfg.home.clone());
    opts.expectations_dir = Some(cfg.expectations_dir.clone());
    opts.max_record_bytes = args.max_record_bytes;
    crate::kafka::check_reachable(&opts.kafka).await?;
    let s = ingest::replay(
        &opts,
        &registry,
        &args.topic,
        args.from_offset,
        args.source.as_deref(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "replayed {} dead letters from {} ({} already replayed before, {} truncated ones \
             from {})",
            s.read,
            s.dlq_topic,
            s.already_replayed,
            s.from_audit,
            ingest::AUDIT_TABLE
        );
        for (topic, n) in &s.landed {
            println!("  {topic}: {n} now pass and landed in bronze");
        }
        for (topic, cats) in &s.still_failing {
            for (cat, n) in cats {
                println!("  {topic}: {n} still fail with {cat} (left in the DLQ)");
            }
        }
    }
    Ok(0)
}
