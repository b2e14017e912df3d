//! The ingest run, a pipeline of three stages: one consumer thread per topic reads records
//! into micro-batches; one loop prepares them in arrival order (decode, validate, hand bad
//! records to the DLQ producer: [`super::prepare`]); one commit task writes them, strictly in
//! the same order ([`super::commit`]: audit table, then bronze, one batch at a time, so the
//! shared audit table and DLQ have a single writer). While batch N's Parquet files are written
//! and committed, batch N+1 is decoded, and batch N+2 is read. Clean stop on cancel: what was
//! read is committed.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use super::commit::Committer;
use super::dlq::{
    AUDIT_PARTITION, AUDIT_TABLE, DlqProducer, SourcePos, audit_schema, dlq_app_id,
    dlq_message_limit, produced_after,
};
use super::error::IngestError;
use super::prepare::{PrepContext, TopicPrep};
use super::source::{End, Source, SourceMsg, SourcePlan, consumer, partitions, watermarks};
use super::topic::TopicState;
use super::validate::Rules;
use super::{IngestOptions, IngestSummary};
use crate::contracts::registry::Registry;
use crate::kafka::{check_reachable, drop_later, ensure_topic};
use crate::lake::{Appender, LakeTable, lake_root};
use crate::metrics;

/// Holds `$FLOWCTL_HOME/locks/ingest.lock` for the life of the run: two ingests of the same lake
/// would race on the audit table and the DLQ, so the second waits.
///
/// The file also tells whether its last holder ended: a holder writes `running` into it when it
/// takes the lock and `done` when it lets go, so finding `running` means the last ingest died
/// mid-run (kill -9, power loss) and may have left DLQ writes in the broker's hands.
pub(super) struct IngestLock {
    file: std::fs::File,
    previous_died: bool,
}

impl IngestLock {
    /// Whether the last holder died without letting go.
    pub(super) fn previous_run_died(&self) -> bool {
        self.previous_died
    }

    fn mark(&self, state: &str) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.set_len(0)?;
        self.file.write_all_at(state.as_bytes(), 0)
    }
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        if let Err(e) = self.mark(LOCK_DONE) {
            tracing::warn!(error = %e, "could not mark the ingest lock as released");
        }
    }
}

const LOCK_RUNNING: &str = "running\n";
const LOCK_DONE: &str = "done\n";

/// After an ingest died mid-run, how long the next one waits before reading the DLQ tail back:
/// produce requests the dead process had already sent may still be on their way into the log,
/// and one appended after the read-back would be produced a second time.
const DLQ_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

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
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| err(e.to_string()))?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                let previous = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
                let lock = IngestLock {
                    file,
                    previous_died: previous == LOCK_RUNNING,
                };
                lock.mark(LOCK_RUNNING).map_err(|e| err(e.to_string()))?;
                return Ok(lock);
            }
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

/// Keeps freed memory in the process for the next micro-batch instead of handing it back to
/// the kernel. Every batch allocates the same buffers again (raw records, decoded columns,
/// Parquet pages); with glibc's defaults most of them were unmapped or trimmed when freed and
/// faulted in (and zeroed) again for the next batch, a tenth of the ingest's CPU. The memory
/// kept is bounded by what the largest batches in flight need. Process-wide, so it also holds
/// for whatever else the process runs afterwards; set once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn retain_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // glibc's upper limit for the mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): anything
        // smaller comes from the heap and is reused.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        };
        if !ok {
            tracing::debug!("mallopt refused the ingest's allocator settings");
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn retain_freed_memory() {}

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
    retain_freed_memory();
    check_reachable(&opts.kafka).await?;
    // First thing: an idempotent producer needs about half a second to get its producer id, and
    // the first audit commit waits for the first DLQ delivery. Its record limit comes from the
    // DLQ topic's config (one round trip).
    let dlq_limit =
        dlq_message_limit(&opts.kafka, &opts.dlq_topic, opts.dlq_max_message_bytes).await;
    let dlq = DlqProducer::new(&opts.kafka, &opts.dlq_topic, opts.dlq_timeout, dlq_limit)?;
    let lock = lock(&opts.home).await?;
    let lake = lake_root(&opts.home);
    // Tables are created by their first commit (or, when a successful run has none, at its
    // end): a run that fails before committing leaves no empty table behind.
    let mut audit =
        LakeTable::open_or_defer(&lake.join(AUDIT_TABLE), &audit_schema(), &[AUDIT_PARTITION])
            .await?;

    // The DLQ is set up while the topics are planned (both wait on the broker, the DLQ
    // longest when its topic is new).
    let (dlq_setup, topics) = tokio::join!(
        dlq_setup(opts, dlq, lock.previous_run_died()),
        plan_topics(opts, registry, &mut audit)
    );
    let Planned {
        mut rx,
        mut preps,
        sinks,
        sources,
        total,
    } = topics?;
    let DlqSetup {
        dlq,
        last: dlq_last,
        skip: dlq_skip,
    } = dlq_setup?;
    if !opts.follow {
        progress.set_length(total);
    }
    tracing::debug!(
        setup_s = started.elapsed().as_secs_f64(),
        "ingest planned; consuming"
    );

    // The commit stage runs on a thread of its own (Parquet encoding is CPU work that must not
    // hold an async worker), driving its I/O on this runtime.
    let (batches, committed) = tokio::sync::mpsc::channel(1);
    let committer = Committer {
        audit: Appender::new(audit),
        sinks,
        dlq: dlq.clone(),
        dlq_last,
        run_id: opts.run_id,
        follow: opts.follow,
        progress: progress.clone(),
    };
    let runtime = tokio::runtime::Handle::current();
    let mut commit_stage =
        tokio::task::spawn_blocking(move || runtime.block_on(committer.run(committed)));

    let ctx = PrepContext {
        registry,
        dlq: &dlq,
        dlq_skip: &dlq_skip,
        run_id: opts.run_id,
    };
    let Prepared {
        ends,
        failure,
        early,
    } = prepare_loop(
        opts,
        &cancel,
        &mut rx,
        &mut preps,
        &sources,
        &ctx,
        &batches,
        &mut commit_stage,
    )
    .await;
    // Whatever ended the loop: stop reading, let the commit stage finish what it was given.
    for s in &sources {
        s.stop();
    }
    drop(batches);
    let committed = match early {
        Some(r) => r,
        None => commit_stage.await.expect("commit stage panicked"),
    };
    progress.finish_and_clear();
    let result = match (committed, failure) {
        (Err(e), _) | (Ok(_), Some(e)) => Err(e),
        (Ok(committer), None) => committer.finish().await,
    };
    let summaries = match result {
        Ok(s) => s,
        Err(e) => {
            // Batches prepared but never committed may have DLQ records in flight: let them
            // land before returning, so a retry reads them back on start (and skips them).
            let d = dlq.clone();
            let timeout = opts.dlq_timeout;
            let _ = tokio::task::spawn_blocking(move || d.flush(timeout)).await;
            return Err(e);
        }
    };
    Ok(IngestSummary {
        topics: summaries
            .into_iter()
            .zip(ends)
            .map(|(mut s, end)| {
                s.end = end;
                s
            })
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the prepare loop ended with.
struct Prepared {
    /// How each topic's source ended.
    ends: Vec<Option<String>>,
    /// The first failure of a source or of preparing a batch.
    failure: Option<IngestError>,
    /// The commit stage's result, when it ended before the prepare loop.
    early: Option<Result<Committer, IngestError>>,
}

/// The prepare stage: decodes and judges each batch the sources hand over and passes it to the
/// commit stage, until every source has ended, something fails, or `cancel` stops the sources.
#[allow(clippy::too_many_arguments)]
async fn prepare_loop(
    opts: &IngestOptions,
    cancel: &CancellationToken,
    rx: &mut tokio::sync::mpsc::Receiver<(usize, SourceMsg)>,
    preps: &mut [TopicPrep],
    sources: &[Source],
    ctx: &PrepContext<'_>,
    batches: &tokio::sync::mpsc::Sender<super::prepare::Prepared>,
    commit_stage: &mut tokio::task::JoinHandle<Result<Committer, IngestError>>,
) -> Prepared {
    let mut ends: Vec<Option<String>> = vec![None; preps.len()];
    let mut stopping = false;
    let mut failure: Option<IngestError> = None;
    // The commit stage's result, when it ended before the prepare loop.
    let mut early: Option<Result<Committer, IngestError>> = None;
    // Time this stage waited for records and for the commit stage (debug log: which stage
    // holds the pipeline back).
    let (mut wait_in, mut wait_out, mut t_wait) = (0f64, 0f64, Instant::now());
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some((i, SourceMsg::Batch(raw))) => {
                    wait_in += t_wait.elapsed().as_secs_f64();
                    let prepared = match preps[i].prepare(&raw, ctx).await {
                        Ok(p) => p,
                        Err(e) => {
                            failure.get_or_insert(e);
                            break;
                        }
                    };
                    sources[i].recycle(raw);
                    let t_send = Instant::now();
                    if batches.send(prepared).await.is_err() {
                        // The commit stage failed; its error is collected below.
                        break;
                    }
                    wait_out += t_send.elapsed().as_secs_f64();
                    t_wait = Instant::now();
                }
                Some((i, SourceMsg::End(end))) => {
                    ends[i] = Some(describe(&end));
                    match end {
                        End::Stalled { partition, at, target } => {
                            failure.get_or_insert(IngestError::Stalled {
                                topic: preps[i].topic.clone(),
                                partition,
                                at,
                                target,
                                idle_secs: opts.idle_timeout.as_secs(),
                            });
                        }
                        End::Failed(detail) => {
                            failure.get_or_insert(IngestError::Kafka {
                                topic: preps[i].topic.clone(),
                                step: "consume",
                                detail,
                            });
                        }
                        _ => {}
                    }
                }
            },
            done = &mut *commit_stage, if early.is_none() => {
                // Only a failure ends the commit stage while batches may still come.
                early = Some(done.expect("commit stage panicked"));
                break;
            }
            _ = cancel.cancelled(), if !stopping => {
                stopping = true;
                for s in sources {
                    s.stop();
                }
            }
        }
    }
    tracing::debug!(
        waiting_for_records_s = wait_in,
        waiting_for_commits_s = wait_out,
        "prepare stage done"
    );
    Prepared {
        ends,
        failure,
        early,
    }
}

/// The topics planned and their consumers started.
struct Planned {
    rx: tokio::sync::mpsc::Receiver<(usize, SourceMsg)>,
    preps: Vec<TopicPrep>,
    sinks: Vec<super::commit::TopicSink>,
    sources: Vec<Source>,
    /// Records to read in all (the progress bar's length).
    total: u64,
}

/// Plans every topic — its rules, its bronze table, the positions to read from and to — and
/// starts its consumer thread.
async fn plan_topics(
    opts: &IngestOptions,
    registry: &Registry,
    audit: &mut LakeTable,
) -> Result<Planned, IngestError> {
    let (kafka, group) = (opts.kafka.clone(), opts.group.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut preps = Vec::new();
    let mut sinks = Vec::new();
    let mut sources = Vec::new();
    let mut total = 0u64;
    for (index, topic) in opts.topics.iter().enumerate() {
        let rules = Rules::for_table(opts.expectations_dir.as_deref(), topic)?;
        let mut state =
            TopicState::open(topic, registry, &opts.home, rules, opts.max_record_bytes).await?;
        let (c, bounds) = {
            let (b, g, t) = (kafka.clone(), group.clone(), topic.clone());
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
        state.plan(&bounds, audit, opts.reset, opts.run_id).await?;
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
            batch_bytes: opts.batch_bytes,
            batch_interval: if opts.follow {
                opts.commit_interval
            } else {
                std::time::Duration::from_secs(2)
            },
            idle_timeout: opts.idle_timeout,
            max_records: opts.max_records,
            max_duration: opts.max_duration,
        };
        let source = Source::start(c, plan, index, tx.clone())?;
        let (prep, sink) = state.split(index, source.group())?;
        preps.push(prep);
        sinks.push(sink);
        sources.push(source);
    }
    Ok(Planned {
        rx,
        preps,
        sinks,
        sources,
        total,
    })
}

/// The DLQ side of an ingest, ready to use.
struct DlqSetup {
    dlq: DlqProducer,
    /// Last DLQ offset per partition that an audit commit accounts for.
    last: BTreeMap<i32, i64>,
    /// Source positions of DLQ records produced after those offsets, by a batch that never
    /// reached its audit commit: not to be produced again.
    skip: HashSet<SourcePos>,
}

/// Creates the DLQ topic if needed, starts the producer and reads back what an interrupted
/// run produced after its last audit commit. Reads the audit table (none yet: nothing
/// recorded) through a handle of its own, so it can run while the topics are planned.
async fn dlq_setup(
    opts: &IngestOptions,
    dlq: DlqProducer,
    previous_died: bool,
) -> Result<DlqSetup, IngestError> {
    const NEW_DLQ_PARTITIONS: i32 = 1;
    let created = ensure_topic(&opts.kafka, &opts.dlq_topic, NEW_DLQ_PARTITIONS).await?;
    dlq.warm_up();
    let audit = LakeTable::open_or_defer(
        &lake_root(&opts.home).join(AUDIT_TABLE),
        &audit_schema(),
        &[AUDIT_PARTITION],
    )
    .await?;
    // A topic this run created is empty: nothing to read back (and its metadata can take a
    // moment to reach every client).
    let (consumer, parts) = if created {
        (None, (0..NEW_DLQ_PARTITIONS).collect())
    } else {
        let (b, g, t) = (
            opts.kafka.clone(),
            opts.group.clone(),
            opts.dlq_topic.clone(),
        );
        blocking(move || {
            let c = consumer(&b, &g).map_err(|e| kafka_err(&t, e))?;
            let parts = partitions(&c, &t)?;
            Ok((Some(c), parts))
        })
        .await?
    };
    let mut last = BTreeMap::new();
    for &p in &parts {
        if let Some(v) = audit.txn_version(&dlq_app_id(&opts.dlq_topic, p)).await? {
            last.insert(p, v);
        }
    }
    let skip = match consumer {
        None => HashSet::new(),
        Some(c) => {
            if previous_died {
                tracing::info!(
                    wait = ?DLQ_SETTLE,
                    "the last ingest died mid-run: letting its DLQ writes land before reading them back"
                );
                tokio::time::sleep(DLQ_SETTLE).await;
            }
            let (t, recorded) = (opts.dlq_topic.clone(), last.clone());
            blocking(move || {
                let skip = produced_after(&c, &t, &parts, &recorded);
                drop_later(c);
                skip
            })
            .await?
        }
    };
    if !skip.is_empty() {
        tracing::info!(
            records = skip.len(),
            "DLQ records from an interrupted batch will not be produced again"
        );
    }
    Ok(DlqSetup { dlq, last, skip })
}

fn kafka_err(topic: &str, e: rdkafka::error::KafkaError) -> IngestError {
    IngestError::Kafka {
        topic: topic.to_string(),
        step: "client",
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lock_tells_whether_its_last_holder_died() {
        let home = tempfile::tempdir().unwrap();
        let first = lock(home.path()).await.unwrap();
        assert!(!first.previous_run_died(), "a new lake");
        drop(first);
        let second = lock(home.path()).await.unwrap();
        assert!(!second.previous_run_died(), "the last holder let go");
        drop(second);
        // What a holder killed mid-run leaves behind (its drop never ran).
        let path = home.path().join("locks/ingest.lock");
        std::fs::write(&path, LOCK_RUNNING).unwrap();
        let third = lock(home.path()).await.unwrap();
        assert!(third.previous_run_died());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), LOCK_RUNNING);
        drop(third);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), LOCK_DONE);
    }
}
