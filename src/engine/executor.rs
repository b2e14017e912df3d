//! The per-run loop: decide which tasks may start (trigger rules), persist the decision, start
//! them under the process-wide concurrency limit, record each outcome, retry with backoff.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::retry::{backoff, may_retry};
use super::rules::{Decision, decide, run_outcome};
use super::{Engine, EngineError};
use crate::flow::Flow;
use crate::lineage::openlineage::Emitter;
use crate::process::ProcessId;
use crate::store::{AttemptRow, Heartbeat, Move, RunRow, Store, TaskFinish};
use crate::tasks::{
    ProcessReport, QualityBuffer, Task, TaskContext, TaskError, TaskLog, TaskOutcome,
};
use crate::vocab::state::{RunState, TaskState};
use crate::vocab::{format_duration, panic_message};

/// How long a cancelled or timed-out attempt gets to wind down before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The latest state of every task of a run.
pub(super) fn latest_states(attempts: &[AttemptRow]) -> HashMap<String, TaskState> {
    let mut latest: HashMap<String, (i64, TaskState)> = HashMap::new();
    for a in attempts {
        let e = latest
            .entry(a.task_id.clone())
            .or_insert((a.attempt, a.state));
        if a.attempt >= e.0 {
            *e = (a.attempt, a.state);
        }
    }
    latest.into_iter().map(|(k, (_, s))| (k, s)).collect()
}

struct Slot {
    row: i64,
    state: TaskState,
    attempt: i64,
    /// Attempts started in the current round.
    tries: u32,
    due: Option<Instant>,
    launched: bool,
    log: TaskLog,
    quality: QualityBuffer,
    cancel: CancellationToken,
}

struct Done {
    task: usize,
    started: bool,
    result: Result<TaskOutcome, Failure>,
    elapsed: Duration,
}

enum Failure {
    Task(TaskError),
    TimedOut(Duration),
    Store(crate::store::StoreError),
}

pub(super) async fn drive(
    engine: &Engine,
    run: RunRow,
    flow: Flow,
) -> Result<RunState, EngineError> {
    let store = engine.store();
    let owner = engine.owner().to_string();
    let attempts = store.attempts(run.id).await?;
    // Every attempt's token is a child of this one, which fires however `drive` ends — a
    // panic included — so no attempt outlives the loop that would record it.
    let run_cancel = CancellationToken::new();
    let _cancel_on_exit = run_cancel.clone().drop_guard();
    let mut slots: Vec<Slot> = Vec::with_capacity(flow.tasks.len());
    for t in &flow.tasks {
        let mine: Vec<&AttemptRow> = attempts.iter().filter(|a| a.task_id == t.id).collect();
        let latest = mine.iter().max_by_key(|a| a.attempt).ok_or_else(|| {
            EngineError::Conflict(format!("run {} has no attempt for task `{}`", run.id, t.id))
        })?;
        let tries = mine
            .iter()
            .filter(|a| a.round == run.round && a.started_at.is_some())
            .count() as u32;
        let due = latest.next_try_at.map(|at| {
            after(
                at.signed_duration_since(Utc::now())
                    .to_std()
                    .unwrap_or_default(),
            )
        });
        slots.push(Slot {
            row: latest.id,
            state: latest.state,
            attempt: latest.attempt,
            tries,
            due,
            launched: false,
            log: TaskLog::default(),
            quality: QualityBuffer::default(),
            cancel: run_cancel.child_token(),
        });
    }
    let order = flow.dag.topological_order();
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let (process_tx, mut process_rx) = mpsc::unbounded_channel::<(i64, ProcessId)>();
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + engine.cfg.heartbeat,
        engine.cfg.heartbeat,
    );
    let mut cancelling = false;

    loop {
        // 1. Decide, persist, then act.
        let now = Utc::now();
        let mut moves = Vec::new();
        let mut to_start = Vec::new();
        for &i in &order {
            if cancelling {
                break;
            }
            match slots[i].state {
                TaskState::Pending => {
                    let ups: Vec<TaskState> =
                        flow.dag.deps(i).iter().map(|&d| slots[d].state).collect();
                    let to = match decide(flow.tasks[i].trigger_rule, &ups) {
                        Decision::Wait => continue,
                        Decision::Run => TaskState::Queued,
                        Decision::UpstreamFailed => TaskState::UpstreamFailed,
                        Decision::Skip => TaskState::Skipped,
                    };
                    let error = (to == TaskState::UpstreamFailed).then(|| {
                        let failed: Vec<&str> = flow
                            .dag
                            .deps(i)
                            .iter()
                            .filter(|&&d| slots[d].state.is_failure())
                            .map(|&d| flow.tasks[d].id.as_str())
                            .collect();
                        format!("upstream failed: {}", failed.join(", "))
                    });
                    moves.push(Move {
                        row_id: slots[i].row,
                        from: TaskState::Pending,
                        to,
                        error,
                        next_try_at: None,
                    });
                    slots[i].state = to;
                    if to == TaskState::Queued {
                        to_start.push(i);
                    }
                }
                TaskState::Queued if !slots[i].launched => to_start.push(i),
                TaskState::UpForRetry if slots[i].due.is_none_or(|d| d <= Instant::now()) => {
                    let attempt = slots[i].attempt + 1;
                    let row = store
                        .new_attempt(run.id, &flow.tasks[i].id, attempt, run.round, &owner, now)
                        .await?;
                    let s = &mut slots[i];
                    s.row = row;
                    s.attempt = attempt;
                    s.state = TaskState::Queued;
                    s.due = None;
                    to_start.push(i);
                }
                _ => {}
            }
        }
        store.move_attempts(&moves, &owner, now).await?;
        for i in to_start {
            let s = &mut slots[i];
            s.launched = true;
            s.tries += 1;
            s.log = TaskLog::default();
            s.quality = QualityBuffer::default();
            s.cancel = run_cancel.child_token();
            launch(engine, &run, &flow, i, s, tx.clone(), process_tx.clone());
        }

        // 2. Finished?
        if slots.iter().all(|s| s.state.is_terminal()) {
            break;
        }

        // 3. Wait for an outcome, a retry coming due, or the heartbeat.
        let next_due = slots
            .iter()
            .filter(|s| s.state == TaskState::UpForRetry)
            .filter_map(|s| s.due)
            .min();
        let sleep: Pin<Box<dyn Future<Output = ()> + Send>> = match next_due {
            Some(d) if !cancelling => Box::pin(tokio::time::sleep_until(d.into())),
            _ => Box::pin(std::future::pending()),
        };
        tokio::select! {
            Some(done) = rx.recv() => {
                record(engine, &run, &flow, &mut slots, done, cancelling).await?;
                // Drain whatever else finished meanwhile before deciding again.
                while let Ok(done) = rx.try_recv() {
                    record(engine, &run, &flow, &mut slots, done, cancelling).await?;
                }
            }
            Some((row, process)) = process_rx.recv() => {
                store.set_attempt_process(row, process).await?;
            }
            _ = sleep => {}
            _ = heartbeat.tick() => {
                flush_logs(engine, &run, &flow, &slots).await?;
                match store.heartbeat(run.id, &owner, Utc::now()).await? {
                    Heartbeat::Lost => {
                        for s in &slots { s.cancel.cancel(); }
                        return Err(EngineError::LostOwnership(run.id));
                    }
                    Heartbeat::Owned { cancel_requested: true } if !cancelling => {
                        cancelling = true;
                        let mut moves = Vec::new();
                        for s in slots.iter_mut() {
                            match s.state {
                                TaskState::Pending | TaskState::UpForRetry => {
                                    moves.push(Move { row_id: s.row, from: s.state, to: TaskState::Cancelled, error: Some("run cancelled".into()), next_try_at: None });
                                    s.state = TaskState::Cancelled;
                                }
                                TaskState::Queued | TaskState::Running => s.cancel.cancel(),
                                _ => {}
                            }
                        }
                        store.move_attempts(&moves, &owner, Utc::now()).await?;
                    }
                    _ => {}
                }
            }
        }
    }

    let states: Vec<TaskState> = slots.iter().map(|s| s.state).collect();
    let outcome = run_outcome(&states, cancelling);
    let error = match outcome {
        RunState::Failed => {
            let failed: Vec<&str> = flow
                .tasks
                .iter()
                .zip(&states)
                .filter(|(_, s)| **s == TaskState::Failed)
                .map(|(t, _)| t.id.as_str())
                .collect();
            Some(format!("failed task(s): {}", failed.join(", ")))
        }
        RunState::Cancelled => Some("cancelled on request".to_string()),
        _ => None,
    };
    if !store
        .finish_run(run.id, &owner, outcome, error.as_deref(), Utc::now())
        .await?
    {
        return Err(EngineError::LostOwnership(run.id));
    }
    Ok(outcome)
}

/// Starts one attempt in its own tokio task; the outcome comes back through `tx`.
fn launch(
    engine: &Engine,
    run: &RunRow,
    flow: &Flow,
    i: usize,
    slot: &Slot,
    tx: mpsc::UnboundedSender<Done>,
    process_tx: mpsc::UnboundedSender<(i64, ProcessId)>,
) {
    let spec = &flow.tasks[i];
    let ctx = TaskContext {
        run_id: run.id,
        flow: flow.name.clone(),
        task_id: spec.id.clone(),
        attempt: slot.attempt as u32,
        params: run.params.clone(),
        home: engine.cfg.home.clone(),
        log: slot.log.clone(),
        quality: slot.quality.clone(),
        cancel: slot.cancel.clone(),
        registry: engine.schemas().clone(),
        process: ProcessReport::new(slot.row, process_tx),
        settings: engine.registry().settings().clone(),
    };
    let attempt = Attempt {
        task: spec.task.clone(),
        ctx,
        timeout: spec.timeout,
        permits: engine.permits.clone(),
        store: engine.store().clone(),
        owner: engine.owner().to_string(),
        row: slot.row,
        lineage: engine.lineage().cloned(),
    };
    tokio::spawn(async move {
        let started_at = Instant::now();
        // A panicking task is a failed attempt (internal error), not a run waiting forever for
        // an outcome that never comes.
        let done = AssertUnwindSafe(attempt.run(i))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Done {
                task: i,
                started: true,
                result: Err(Failure::Task(TaskError::internal(format!(
                    "the task panicked: {}",
                    panic_message(&*panic)
                )))),
                elapsed: started_at.elapsed(),
            });
        let _ = tx.send(done);
    });
}

/// One attempt, moved into its own tokio task.
struct Attempt {
    task: Arc<dyn Task>,
    ctx: TaskContext,
    timeout: Option<Duration>,
    permits: Arc<Semaphore>,
    store: Store,
    owner: String,
    /// The attempt's `task_runs` row.
    row: i64,
    lineage: Option<Arc<Emitter>>,
}

impl Attempt {
    /// Waits for a permit, records the start, runs the task under its timeout and cancel token.
    async fn run(self, i: usize) -> Done {
        let Attempt {
            task,
            ctx,
            timeout,
            permits,
            store,
            owner,
            row,
            lineage,
        } = self;
        let started_at = Instant::now();
        let permit = tokio::select! {
            p = permits.acquire_owned() => p.ok(),
            _ = ctx.cancel.cancelled() => None,
        };
        let Some(_permit) = permit else {
            return Done {
                task: i,
                started: false,
                result: Err(Failure::Task(TaskError::cancelled())),
                elapsed: started_at.elapsed(),
            };
        };
        if let Err(e) = store.start_attempt(row, &owner, Utc::now()).await {
            return Done {
                task: i,
                started: false,
                result: Err(Failure::Store(e)),
                elapsed: started_at.elapsed(),
            };
        }
        lineage_event(lineage.as_deref(), &ctx, None).await;
        let begin = Instant::now();
        let fut = AssertUnwindSafe(task.run(&ctx)).catch_unwind();
        tokio::pin!(fut);
        let ran = |r: Result<Result<TaskOutcome, TaskError>, Box<dyn std::any::Any + Send>>| match r
        {
            Ok(r) => r.map_err(Failure::Task),
            Err(panic) => Err(Failure::Task(TaskError::internal(format!(
                "the task panicked: {}",
                panic_message(&*panic)
            )))),
        };
        let limit = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = &mut fut => ran(r),
            _ = limit => {
                ctx.cancel.cancel();
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut fut).await;
                Err(Failure::TimedOut(timeout.unwrap_or_default()))
            }
            _ = ctx.cancel.cancelled() => {
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut fut).await;
                Err(Failure::Task(TaskError::cancelled()))
            }
        };
        lineage_event(lineage.as_deref(), &ctx, Some(&result)).await;
        Done {
            task: i,
            started: true,
            result,
            elapsed: begin.elapsed(),
        }
    }
}

/// `wait` from now, or as far as the clock goes (never an overflow panic).
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(crate::vocab::MAX_DURATION))
        .unwrap_or(now)
}

/// Emits the attempt's OpenLineage event when OpenLineage is configured: START (`result` None),
/// then COMPLETE with the datasets the task reports, FAIL with the error, or ABORT on cancel.
async fn lineage_event(
    lineage: Option<&Emitter>,
    ctx: &TaskContext,
    result: Option<&Result<TaskOutcome, Failure>>,
) {
    use crate::lineage::openlineage::{AttemptRef, EventType, attempt_uuid, run_event};
    let Some(em) = lineage else {
        return;
    };
    let uuid = attempt_uuid(
        &em.namespace,
        &ctx.flow,
        ctx.run_id,
        &ctx.task_id,
        ctx.attempt,
    );
    let attempt = AttemptRef {
        run_uuid: &uuid,
        flow: &ctx.flow,
        task: &ctx.task_id,
        flow_run_id: ctx.run_id,
        attempt: ctx.attempt,
    };
    let (kind, inputs, outputs, error) = match result {
        None => (EventType::Start, &[][..], &[][..], None),
        Some(Ok(o)) => (EventType::Complete, &o.inputs[..], &o.outputs[..], None),
        Some(Err(Failure::Task(e))) if e.is_cancelled() => (
            EventType::Abort,
            &[][..],
            &[][..],
            Some("cancelled".to_string()),
        ),
        Some(Err(Failure::Task(e))) => (EventType::Fail, &[][..], &[][..], Some(e.to_string())),
        Some(Err(Failure::TimedOut(d))) => (
            EventType::Fail,
            &[][..],
            &[][..],
            Some(format!(
                "timed out after {}",
                crate::vocab::format_duration(*d)
            )),
        ),
        Some(Err(Failure::Store(e))) => (EventType::Fail, &[][..], &[][..], Some(e.to_string())),
    };
    let event = run_event(
        &em.namespace,
        kind,
        Utc::now(),
        &attempt,
        inputs,
        outputs,
        error.as_deref(),
    );
    em.emit(&event).await;
}

/// Persists one attempt's outcome and decides on a retry.
async fn record(
    engine: &Engine,
    run: &RunRow,
    flow: &Flow,
    slots: &mut [Slot],
    done: Done,
    cancelling: bool,
) -> Result<(), EngineError> {
    let store = engine.store();
    let spec = &flow.tasks[done.task];
    let now = Utc::now();
    {
        let s = &slots[done.task];
        store
            .append_logs(run.id, &spec.id, s.attempt, &s.log.drain())
            .await?;
        // Results of a failed attempt are stored too: a failed gate's results matter most.
        let results = s.quality.drain();
        store
            .insert_quality_results(run.id, &spec.id, &results)
            .await?;
        let m = crate::metrics::get();
        for r in &results {
            m.quality_checks
                .with_label_values(&[&r.table, &r.check, &r.outcome])
                .inc();
        }
    }
    let s = &mut slots[done.task];
    s.launched = false;
    if !done.started {
        let (to, error) = match done.result {
            Err(Failure::Store(e)) => return Err(e.into()),
            _ => (
                TaskState::Cancelled,
                Some("cancelled before it started".to_string()),
            ),
        };
        store
            .move_attempts(
                &[Move {
                    row_id: s.row,
                    from: TaskState::Queued,
                    to,
                    error,
                    next_try_at: None,
                }],
                engine.owner(),
                now,
            )
            .await?;
        s.state = to;
        return Ok(());
    }
    let mut metrics = serde_json::Map::new();
    metrics.insert(
        "duration_ms".into(),
        (done.elapsed.as_millis() as u64).into(),
    );
    let (state, error, retryable) = match done.result {
        Ok(outcome) => {
            metrics.extend(outcome.metrics);
            (TaskState::Success, None, false)
        }
        Err(Failure::Task(e)) if e.is_cancelled() => {
            (TaskState::Cancelled, Some("cancelled".to_string()), false)
        }
        Err(Failure::TimedOut(t)) => (
            TaskState::Failed,
            Some(format!("timed out after {}", format_duration(t))),
            true,
        ),
        Err(Failure::Task(e)) => {
            let retryable = e.is_retryable();
            (TaskState::Failed, Some(e.to_string()), retryable)
        }
        Err(Failure::Store(e)) => return Err(e.into()),
    };
    let (state, next_try_at) = if state == TaskState::Failed
        && retryable
        && !cancelling
        && may_retry(&spec.retry, s.tries)
    {
        let wait = backoff(&spec.retry, s.tries, rand::random::<f64>());
        s.due = Some(after(wait));
        (
            TaskState::UpForRetry,
            Some(now + chrono::Duration::from_std(wait).unwrap_or_default()),
        )
    } else {
        (state, None)
    };
    store
        .finish_attempt(
            s.row,
            &TaskFinish {
                state,
                error,
                metrics,
                next_try_at,
            },
            now,
        )
        .await?;
    s.state = state;
    let m = crate::metrics::get();
    m.task_runs
        .with_label_values(&[&flow.name, &spec.id, state.as_str()])
        .inc();
    m.task_duration
        .with_label_values(&[&flow.name, &spec.id])
        .observe(done.elapsed.as_secs_f64());
    Ok(())
}

async fn flush_logs(
    engine: &Engine,
    run: &RunRow,
    flow: &Flow,
    slots: &[Slot],
) -> Result<(), EngineError> {
    for (i, s) in slots.iter().enumerate() {
        if s.launched {
            engine
                .store()
                .append_logs(run.id, &flow.tasks[i].id, s.attempt, &s.log.drain())
                .await?;
        }
    }
    Ok(())
}
