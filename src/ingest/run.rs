//! The ingest run: one consumer thread per topic, one loop that handles their micro-batches in
//! arrival order (so the shared audit table and DLQ have a single writer), clean stop on cancel.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use super::dlq::{
    AUDIT_PARTITION, AUDIT_TABLE, DlqProducer, audit_schema, dlq_app_id, produced_after,
};
use super::error::IngestError;
use super::source::{End, Source, SourceMsg, SourcePlan, consumer, partitions, watermarks};
use super::topic::{BatchContext, TopicState};
use super::validate::Rules;
use super::{IngestOptions, IngestSummary};
use crate::contracts::broker::{check_reachable, ensure_topic};
use crate::contracts::registry::Registry;
use crate::lake::{LakeTable, lake_root};
use crate::metrics;

/// Holds `$FLOWCTL_HOME/locks/ingest.lock` for the life of the run: two ingests of the same lake
/// would race on the audit table and the DLQ, so the second waits.
pub(super) struct IngestLock(#[allow(dead_code)] std::fs::File);

pub(super) async fn lock(home: &std::path::Path) -> Result<IngestLock, IngestError> {
    let dir = home.join("locks");
    let path = dir.join("ingest.lock");
    let err = |detail: String| IngestError::Lock {
        path: path.display().to_string(),
        detail,
    };
    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| err(e.to_string()))?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(IngestLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !told {
                    tracing::info!(path = %path.display(), "another ingest holds the lake; waiting");
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e.to_string())),
        }
    }
}

/// Runs blocking librdkafka calls off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking kafka call panicked")
}

fn describe(end: &End) -> String {
    match end {
        End::CaughtUp => "caught up with the high watermarks seen at start".into(),
        End::Limit => "stopped at max_records / max_duration".into(),
        End::Stopped => "stopped on request; everything read is committed".into(),
        End::Stalled {
            partition,
            at,
            target,
        } => {
            format!("partition {partition} stalled at {at} of {target}")
        }
        End::Failed(e) => format!("consumer failed: {e}"),
    }
}

/// Ingests `opts.topics` into bronze until each reaches the high watermark seen at start (or a
/// limit), or — with `follow` — until `cancel` fires. Commits what it has read before returning.
pub async fn ingest(
    opts: &IngestOptions,
    registry: &Registry,
    cancel: CancellationToken,
    progress: &ProgressBar,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    check_reachable(&opts.bootstrap).await?;
    let _lock = lock(&opts.home).await?;
    let lake = lake_root(&opts.home);
    let mut audit =
        LakeTable::open_or_create(&lake.join(AUDIT_TABLE), &audit_schema(), &[AUDIT_PARTITION])
            .await?;

    // The DLQ: what was produced after the last audit commit must not be produced again.
    ensure_topic(&opts.bootstrap, &opts.dlq_topic, 1).await?;
    let dlq = DlqProducer::new(&opts.bootstrap, &opts.dlq_topic, opts.dlq_timeout)?;
    let (bootstrap, group, dlq_topic) = (
        opts.bootstrap.clone(),
        opts.group.clone(),
        opts.dlq_topic.clone(),
    );
    let dlq_parts = {
        let (b, g, t) = (bootstrap.clone(), group.clone(), dlq_topic.clone());
        blocking(move || {
            let c = consumer(&b, &g).map_err(|e| kafka_err(&t, e))?;
            partitions(&c, &t)
        })
        .await?
    };
    let mut dlq_last = BTreeMap::new();
    for &p in &dlq_parts {
        if let Some(v) = audit.txn_version(&dlq_app_id(&dlq_topic, p)).await? {
            dlq_last.insert(p, v);
        }
    }
    let dlq_skip = {
        let (b, g, t, parts, rec) = (
            bootstrap.clone(),
            group.clone(),
            dlq_topic.clone(),
            dlq_parts.clone(),
            dlq_last.clone(),
        );
        blocking(move || {
            let c = consumer(&b, &g).map_err(|e| kafka_err(&t, e))?;
            produced_after(&c, &t, &parts, &rec)
        })
        .await?
    };
    if !dlq_skip.is_empty() {
        tracing::info!(
            records = dlq_skip.len(),
            "DLQ records from an interrupted batch will not be produced again"
        );
    }

    // Plan every topic, then start its consumer.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let mut states = Vec::new();
    let mut sources = Vec::new();
    let mut total = 0u64;
    for (index, topic) in opts.topics.iter().enumerate() {
        let rules = Rules::for_table(opts.expectations_dir.as_deref(), topic)?;
        let mut state = TopicState::open(topic, registry, &opts.home, rules).await?;
        let (c, bounds) = {
            let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
            blocking(move || {
                let c = consumer(&b, &g).map_err(|e| kafka_err(&t, e))?;
                let mut bounds = BTreeMap::new();
                for p in partitions(&c, &t)? {
                    bounds.insert(p, watermarks(&c, &t, p)?);
                }
                Ok((c, bounds))
            })
            .await?
        };
        state
            .plan(&bounds, &mut audit, opts.reset, opts.run_id)
            .await?;
        let mut parts = BTreeMap::new();
        for (p, plan) in &state.plans {
            let high = bounds[p].1;
            let target = (!opts.follow).then_some(high);
            total += (high - plan.start).max(0) as u64;
            metrics::get()
                .consumer_lag
                .with_label_values(&[topic.as_str(), &p.to_string()])
                .set(high - plan.start);
            parts.insert(*p, (plan.start, target));
        }
        let plan = SourcePlan {
            topic: topic.clone(),
            partitions: parts,
            batch_records: opts.batch_records,
            batch_interval: if opts.follow {
                opts.commit_interval
            } else {
                std::time::Duration::from_secs(2)
            },
            idle_timeout: opts.idle_timeout,
            max_records: opts.max_records,
            max_duration: opts.max_duration,
        };
        sources.push(Source::start(c, plan, index, tx.clone())?);
        states.push(state);
    }
    drop(tx);
    if !opts.follow {
        progress.set_length(total);
    }

    let mut ctx = BatchContext {
        registry,
        audit: &mut audit,
        dlq: &dlq,
        dlq_skip: &dlq_skip,
        dlq_last: &mut dlq_last,
        run_id: opts.run_id,
    };
    let mut stopping = false;
    let mut failure: Option<IngestError> = None;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some((i, SourceMsg::Batch(batch))) => {
                    let n = batch.records.len() as u64;
                    let next = states[i].handle(batch, &mut ctx).await?;
                    sources[i].commit_group(&next);
                    for (p, o) in &next {
                        let start_high = states[i].highs.get(p).copied().unwrap_or(*o);
                        let high = if opts.follow {
                            sources[i].high_watermark(*p).unwrap_or(start_high)
                        } else {
                            start_high
                        };
                        metrics::get()
                            .consumer_lag
                            .with_label_values(&[states[i].topic.as_str(), &p.to_string()])
                            .set((high - o).max(0));
                    }
                    progress.inc(n);
                }
                Some((i, SourceMsg::End(end))) => {
                    let s = &mut states[i];
                    s.summary.end = Some(describe(&end));
                    match end {
                        End::Stalled { partition, at, target } => {
                            failure.get_or_insert(IngestError::Stalled {
                                topic: s.topic.clone(),
                                partition,
                                at,
                                target,
                                idle_secs: opts.idle_timeout.as_secs(),
                            });
                        }
                        End::Failed(detail) => {
                            failure.get_or_insert(IngestError::Kafka {
                                topic: s.topic.clone(),
                                step: "consume",
                                detail,
                            });
                        }
                        _ => {}
                    }
                }
            },
            _ = cancel.cancelled(), if !stopping => {
                stopping = true;
                for s in &sources {
                    s.stop();
                }
            }
        }
    }
    progress.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(IngestSummary {
        topics: states.into_iter().map(|s| s.summary).collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn kafka_err(topic: &str, e: rdkafka::error::KafkaError) -> IngestError {
    IngestError::Kafka {
        topic: topic.to_string(),
        step: "client",
        detail: e.to_string(),
    }
}
