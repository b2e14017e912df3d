//! Crash recovery. Every process that opens the engine looks for runs whose owner is gone
//! (process dead, or on another host a lease expired — see `owner::is_orphaned`). Interrupted
//! attempts are marked by their task's retry policy — `up_for_retry` when retries remain,
//! `failed` otherwise — and the run is released (`queued`, no owner) so that `flowctl retry RUN`
//! or `flowctl serve` resumes it. Nothing is left `running` or `queued` behind a dead process
//! (Airflow #13542, #51569).

use chrono::Utc;

use super::owner::{is_local, is_orphaned};
use super::retry::may_retry;
use super::{Engine, EngineError};
use crate::process::{GroupKill, kill_orphan_group};
use crate::store::{AttemptRow, Move};
use crate::vocab::state::TaskState;

/// A run this process released from a dead owner.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub run_id: i64,
    pub flow: String,
    pub dead_owner: String,
    /// (task, new state) for each interrupted attempt.
    pub tasks: Vec<(String, TaskState)>,
}

pub(super) async fn recover(engine: &Engine) -> Result<Vec<Recovered>, EngineError> {
    let store = engine.store();
    let now = Utc::now();
    let mut out = Vec::new();
    for run in store.owned_unfinished_runs().await? {
        let Some(owner) = run.owner.clone() else {
            continue;
        };
        if owner == engine.owner() {
            continue;
        }
        let last_seen = run
            .heartbeat_at
            .or(run.started_at)
            .unwrap_or(run.created_at);
        if !is_orphaned(&owner, last_seen, now, engine.cfg.lease) {
            continue;
        }
        let full = store.get_run(run.id).await?;
        let flow = engine
            .snapshot_flow(run.id, &full.flow_path, &full.flow_yaml)
            .ok();
        let attempts = store.attempts(run.id).await?;
        if !kill_orphans(&owner, &attempts).await {
            tracing::error!(run = run.id, %owner, "a dead owner's task process survived SIGKILL; not releasing the run yet");
            continue;
        }
        let mut moves = Vec::new();
        let mut tasks = Vec::new();
        for a in &attempts {
            if !matches!(a.state, TaskState::Running | TaskState::Queued) {
                continue;
            }
            // Only a task's latest attempt can be the one interrupted.
            let is_latest = !attempts
                .iter()
                .any(|b| b.task_id == a.task_id && b.attempt > a.attempt);
            if !is_latest {
                continue;
            }
            let tries = attempts
                .iter()
                .filter(|b| {
                    b.task_id == a.task_id && b.round == run.round && b.started_at.is_some()
                })
                .count() as u32;
            let policy = flow
                .as_ref()
                .and_then(|f| f.task_index(&a.task_id).map(|i| f.tasks[i].retry))
                .unwrap_or_default();
            // An attempt that never started used no try; one that did is retried only by policy.
            let retry = a.state == TaskState::Queued || may_retry(&policy, tries);
            let to = if retry {
                TaskState::UpForRetry
            } else {
                TaskState::Failed
            };
            let last = a.heartbeat_at.or(a.started_at).or(a.queued_at);
            moves.push(Move {
                row_id: a.id,
                from: a.state,
                to,
                error: Some(format!(
                    "orphaned: owner {owner} died while the attempt was {} (last heartbeat {})",
                    a.state,
                    last.map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "never".into())
                )),
                next_try_at: retry.then_some(now),
            });
            tasks.push((a.task_id.clone(), to));
        }
        let note = format!(
            "recovered at {} from dead owner {owner}; resume with `flowctl retry {}`",
            now.to_rfc3339(),
            run.id
        );
        if store
            .release_orphan(run.id, &owner, &moves, &note, now)
            .await?
        {
            tracing::warn!(run = run.id, flow = %run.flow, %owner, "released run of a dead owner");
            out.push(Recovered {
                run_id: run.id,
                flow: run.flow.clone(),
                dead_owner: owner,
                tasks,
            });
        }
    }
    Ok(out)
}

/// Kills the still-running process groups of a dead owner's running attempts, so that no task
/// runs twice at once once its attempt is released. False when one survived SIGKILL. Processes
/// of an owner on another host cannot be seen from here: that host's watcher ends them.
async fn kill_orphans(owner: &str, attempts: &[AttemptRow]) -> bool {
    if !is_local(owner) {
        return true;
    }
    let mut all_gone = true;
    for a in attempts {
        let (TaskState::Running, Some(leader)) = (a.state, a.process) else {
            continue;
        };
        match kill_orphan_group(leader).await {
            GroupKill::Gone => {}
            GroupKill::Killed => tracing::warn!(
                run = a.run_id,
                task = %a.task_id,
                attempt = a.attempt,
                pid = leader.pid,
                "killed the orphaned process group of a dead owner's attempt"
            ),
            GroupKill::Survived => all_gone = false,
        }
    }
    all_gone
}
