//! The per-run loop: decide which tasks may start (trigger rules), persist the decision, start
//! them under the process-wide concurrency limit, record each outcome, retry with backoff.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::attempt::{Done, Failure, Slot, launch};
use super::retry::{backoff, may_retry};
use super::rules::{Decision, decide, run_outcome};
use super::{Engine, EngineError};
use crate::flow::Flow;
use crate::process::ProcessId;
use crate::store::{AttemptRow, Heartbeat, Move, RunRow, TaskFinish};
use crate::tasks::{QualityBuffer, TaskLog};
use crate::vocab::format_duration;
use crate::vocab::state::{RunState, TaskState};

pub(super) async fn drive(
    engine: &Engine,
    run: RunRow,
    flow: Flow,
) -> Result<RunState, EngineError> {
    let store = engine.store();
    let owner = engine.owner().to_string();
    // Every attempt's token is a child of this one, which fires however `drive` ends — a
    // panic included — so no attempt outlives the loop that would record it.
    let run_cancel = CancellationToken::new();
    let _cancel_on_exit = run_cancel.clone().drop_guard();
    let attempts = store.attempts(run.id).await?;
    let mut slots = load_slots(&run, &flow, &attempts, &run_cancel)?;
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
        if !cancelling {
            for i in decide_and_persist(engine, &run, &flow, &order, &mut slots).await? {
                let s = &mut slots[i];
                s.launched = true;
                s.tries += 1;
                s.log = TaskLog::default();
                s.quality = QualityBuffer::default();
                s.cancel = run_cancel.child_token();
                launch(engine, &run, &flow, i, s, tx.clone(), process_tx.clone());
            }
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
                        cancel_all(engine, &mut slots).await?;
                    }
                    _ => {}
                }
            }
        }
    }
    finish(engine, &run, &flow, &slots, cancelling).await
}

/// Each task's latest attempt, as the store has it, with the tries it used this round.
fn load_slots(
    run: &RunRow,
    flow: &Flow,
    attempts: &[AttemptRow],
    run_cancel: &CancellationToken,
) -> Result<Vec<Slot>, EngineError> {
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
    Ok(slots)
}

/// Moves every task whose turn has come — pending tasks by their trigger rule, retries that
/// are due — and records the moves before anything starts. Returns the tasks to launch.
async fn decide_and_persist(
    engine: &Engine,
    run: &RunRow,
    flow: &Flow,
    order: &[usize],
    slots: &mut [Slot],
) -> Result<Vec<usize>, EngineError> {
    let (store, owner) = (engine.store(), engine.owner());
    let now = Utc::now();
    let mut moves = Vec::new();
    let mut to_start = Vec::new();
    for &i in order {
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
                    .new_attempt(run.id, &flow.tasks[i].id, attempt, run.round, owner, now)
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
    store.move_attempts(&moves, owner, now).await?;
    Ok(to_start)
}

/// A cancel request: what has not started is cancelled now, what runs is told to stop.
async fn cancel_all(engine: &Engine, slots: &mut [Slot]) -> Result<(), EngineError> {
    let mut moves = Vec::new();
    for s in slots.iter_mut() {
        match s.state {
            TaskState::Pending | TaskState::UpForRetry => {
                moves.push(Move {
                    row_id: s.row,
                    from: s.state,
                    to: TaskState::Cancelled,
                    error: Some("run cancelled".into()),
                    next_try_at: None,
                });
                s.state = TaskState::Cancelled;
            }
            TaskState::Queued | TaskState::Running => s.cancel.cancel(),
            _ => {}
        }
    }
    engine
        .store()
        .move_attempts(&moves, engine.owner(), Utc::now())
        .await?;
    Ok(())
}

/// Records the run's outcome from its tasks' final states.
async fn finish(
    engine: &Engine,
    run: &RunRow,
    flow: &Flow,
    slots: &[Slot],
    cancelling: bool,
) -> Result<RunState, EngineError> {
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
    if !engine
        .store()
        .finish_run(
            run.id,
            engine.owner(),
            outcome,
            error.as_deref(),
            Utc::now(),
        )
        .await?
    {
        return Err(EngineError::LostOwnership(run.id));
    }
    Ok(outcome)
}

/// `wait` from now, or as far as the clock goes (never an overflow panic).
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(crate::vocab::MAX_DURATION))
        .unwrap_or(now)
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
