//! `ingest_bronze`: Kafka → bronze for a bounded batch (up to the high watermarks seen at start),
//! exactly once. A rerun after any crash resumes from the offsets committed in the Delta log.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;

use super::{ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskSettings, parse_params};
use crate::ingest::{self, IngestOptions, Reset};
use crate::lineage::openlineage::Dataset;
use crate::vocab::parse_duration;

/// `params:` of an ingest_bronze task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestConfig {
    /// Topics to ingest; default orders, clickstream, payments.
    #[serde(default)]
    topics: Option<Vec<String>>,
    /// The dead-letter topic; default `bronze_dlq`.
    dlq_topic: Option<String>,
    /// Stop each topic after this many records.
    max_records: Option<u64>,
    /// Stop each topic after this long (e.g. `5m`).
    max_duration: Option<String>,
    /// Records per micro-batch (one commit).
    batch_records: Option<usize>,
    /// How long a partition may stay silent before its target (e.g. `30s`).
    idle_timeout: Option<String>,
    /// How long a DLQ send may wait for the broker before the attempt fails (e.g. `60s`).
    dlq_timeout: Option<String>,
    /// `earliest` | `latest`: explicit repair of out-of-range stored offsets.
    reset_offsets: Option<String>,
    /// Records larger than this many bytes go to the DLQ undecoded (RECORD_TOO_LARGE).
    max_record_bytes: Option<usize>,
    /// The DLQ topic's largest record when the broker does not report it.
    dlq_max_message_bytes: Option<usize>,
}

#[derive(Debug)]
pub struct IngestBronzeTask {
    topics: Vec<String>,
    dlq_topic: Option<String>,
    max_records: Option<u64>,
    max_duration: Option<Duration>,
    batch_records: Option<usize>,
    idle_timeout: Option<Duration>,
    dlq_timeout: Option<Duration>,
    reset: Option<Reset>,
    max_record_bytes: Option<usize>,
    dlq_max_message_bytes: Option<usize>,
}

/// The topics `pipeline_full` ingests when a task names none.
pub const DEFAULT_TOPICS: [&str; 3] = ["orders", "clickstream", "payments"];

fn duration(
    node: Option<&Node>,
    key: &str,
    v: Option<&str>,
) -> Result<Option<Duration>, ParamError> {
    v.map(|s| {
        parse_duration(s).map_err(|e| ParamError {
            message: format!("params.{key}: {e}"),
            line: node.and_then(|n| n.span().start()).map(|m| m.line()),
        })
    })
    .transpose()
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    let cfg: IngestConfig = parse_params(params)?;
    let topics = cfg
        .topics
        .unwrap_or_else(|| DEFAULT_TOPICS.iter().map(|s| s.to_string()).collect());
    if topics.is_empty() || topics.iter().any(|t| t.trim().is_empty()) {
        return Err(ParamError {
            message: "params.topics must name at least one non-empty topic".into(),
            line: params.and_then(|n| n.span().start()).map(|m| m.line()),
        });
    }
    let reset = cfg
        .reset_offsets
        .as_deref()
        .map(str::parse::<Reset>)
        .transpose()
        .map_err(|message| ParamError {
            message: format!("params.reset_offsets: {message}"),
            line: params.and_then(|n| n.span().start()).map(|m| m.line()),
        })?;
    Ok(Arc::new(IngestBronzeTask {
        topics,
        dlq_topic: cfg.dlq_topic,
        max_records: cfg.max_records,
        max_duration: duration(params, "max_duration", cfg.max_duration.as_deref())?,
        batch_records: cfg.batch_records.filter(|n| *n > 0),
        idle_timeout: duration(params, "idle_timeout", cfg.idle_timeout.as_deref())?,
        dlq_timeout: duration(params, "dlq_timeout", cfg.dlq_timeout.as_deref())?,
        reset,
        max_record_bytes: cfg.max_record_bytes.filter(|n| *n > 0),
        dlq_max_message_bytes: cfg.dlq_max_message_bytes.filter(|n| *n > 0),
    }))
}

#[async_trait]
impl Task for IngestBronzeTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let mut opts = IngestOptions::new(
            self.topics.clone(),
            ctx.settings.kafka.clone(),
            ctx.home.clone(),
        );
        opts.expectations_dir = Some(ctx.settings.expectations_dir.clone());
        opts.run_id = Some(ctx.run_id);
        opts.reset = self.reset;
        opts.max_records = self.max_records;
        opts.max_duration = self.max_duration;
        if let Some(t) = &self.dlq_topic {
            opts.dlq_topic = t.clone();
        }
        if let Some(n) = self.batch_records {
            opts.batch_records = n;
        }
        if let Some(d) = self.idle_timeout {
            opts.idle_timeout = d;
        }
        if let Some(d) = self.dlq_timeout {
            opts.dlq_timeout = d;
        }
        if let Some(n) = self.max_record_bytes {
            opts.max_record_bytes = n;
        }
        opts.dlq_max_message_bytes = self.dlq_max_message_bytes;
        ctx.log.info(format!(
            "ingesting {} from {} into bronze (DLQ topic {})",
            opts.topics.join(", "),
            opts.kafka.bootstrap,
            opts.dlq_topic
        ));
        let progress = indicatif::ProgressBar::hidden();
        let result = ingest::ingest(&opts, &ctx.registry, ctx.cancel.clone(), &progress).await;
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::cancelled());
        }
        let summary = result.map_err(|e| match e {
            e if e.is_retryable() => TaskError::external_err(e),
            e => TaskError::user_err(e),
        })?;
        for line in summary.render().lines() {
            ctx.log.info(line);
        }
        let mut outcome = TaskOutcome::default()
            .with_metric("records", summary.records())
            .with_metric("bronze_rows", summary.bronze_rows())
            .with_metric("dlq_rows", summary.dlq_rows())
            .with_metric("seconds", summary.seconds);
        let lake = crate::lake::lake_root(&ctx.home);
        outcome = outcome.with_output(Dataset::table(&lake, crate::ingest::AUDIT_TABLE));
        for t in &summary.topics {
            outcome = outcome
                .with_input(Dataset::kafka(&opts.kafka.bootstrap, &t.topic))
                .with_output(Dataset::table(&lake, &t.table));
            outcome = outcome.with_metric(&format!("{}_version", t.table), t.bronze_version);
            let ranges: serde_json::Map<String, serde_json::Value> = t
                .ranges
                .iter()
                .map(|(p, (a, b))| (p.to_string(), serde_json::json!([a, b])))
                .collect();
            outcome = outcome.with_metric(&format!("{}_offsets", t.topic), ranges);
        }
        Ok(outcome)
    }
}
