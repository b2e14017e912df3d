//! One task attempt, in a tokio task of its own: wait for a concurrency permit, record the
//! start, run under the timeout and the cancel token, turn a panic into an internal error, emit
//! the OpenLineage events, and hand the outcome back to the run's loop ([`super::executor`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::flow::Flow;
use crate::lineage::openlineage::Emitter;
use crate::process::ProcessId;
use crate::store::{RunRow, Store};
use crate::tasks::{
    ProcessReport, QualityBuffer, Task, TaskContext, TaskError, TaskLog, TaskOutcome,
};
use crate::vocab::panic_message;
use crate::vocab::state::TaskState;

/// How long a cancelled or timed-out attempt gets to wind down before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

pub(super) struct Slot {
    pub(super) row: i64,
    pub(super) state: TaskState,
    pub(super) attempt: i64,
    /// Attempts started in the current round.
    pub(super) tries: u32,
    pub(super) due: Option<Instant>,
    pub(super) launched: bool,
    pub(super) log: TaskLog,
    pub(super) quality: QualityBuffer,
    pub(super) cancel: CancellationToken,
}

pub(super) struct Done {
    pub(super) task: usize,
    pub(super) started: bool,
    pub(super) result: Result<TaskOutcome, Failure>,
    pub(super) elapsed: Duration,
}

pub(super) enum Failure {
    Task(TaskError),
    TimedOut(Duration),
    Store(crate::store::StoreError),
}

/// Starts one attempt in its own tokio task; the outcome comes back through `tx`.
pub(super) fn launch(
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
