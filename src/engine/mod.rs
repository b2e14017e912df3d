//! The engine decides what runs when; the store records every decision before it is acted on.
//!
//! `Engine` is shared by the CLI (`trigger`, `retry`, `cancel`) and by `flowctl serve`. One
//! process may drive many runs at once; a semaphore bounds how many task attempts run together.

mod attempt;
mod executor;
pub mod owner;
mod recovery;
pub mod retry;
pub mod rules;
pub mod scheduler;
mod sla;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::Semaphore;

use crate::vocab::state::{RunState, TaskState};
pub use recovery::Recovered;

use crate::contracts::registry::{Registry, RegistryEndpoint};
use crate::flow::{Flow, parse_flow};
use crate::lineage::openlineage::{Emitter, OpenLineageSettings};
use crate::notify::Notifier;
use crate::store::{NewRun, RunRow, Store, StoreError, Submitted};
use crate::tasks::TaskRegistry;
use crate::vocab::{SourceErrors, panic_message};

/// Engine tuning and the services attempts use, read at the edge (see `config`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `FLOWCTL_HOME`, handed to tasks.
    pub home: PathBuf,
    /// Task attempts running at once in this process.
    pub concurrency: usize,
    /// How often an owner renews its lease, flushes logs and looks for cancel requests.
    pub heartbeat: Duration,
    /// How long a remote owner may stay silent before its runs are recovered.
    pub lease: Duration,
    /// How often a waiting process re-checks a run it does not own.
    pub poll: Duration,
    /// An external schema registry; None for the one embedded in the state DB.
    pub schema_registry: Option<RegistryEndpoint>,
    /// Where attempts' OpenLineage events go; None when OpenLineage is off.
    pub openlineage: Option<OpenLineageSettings>,
    /// Where the web UI is (`FLOWCTL_PUBLIC_URL`), for the run links notifications carry.
    pub public_url: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            home: PathBuf::from(".flowctl"),
            concurrency: 16,
            heartbeat: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(100),
            schema_registry: None,
            openlineage: None,
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the flow definition stored with run {run} no longer validates:\n{errors}")]
    Snapshot { run: i64, errors: SourceErrors },
    #[error("{0}")]
    Params(String),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "run {0} was recovered by another process while this one executed it (lease expired); stopped"
    )]
    LostOwnership(i64),
}

/// Executes runs and answers retry/cancel/recovery requests.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    registry: TaskRegistry,
    /// The schema registry every attempt uses (built once, not per attempt).
    schemas: Registry,
    lineage: Option<Arc<Emitter>>,
    cfg: Arc<EngineConfig>,
    owner: Arc<str>,
    permits: Arc<Semaphore>,
    notifier: Notifier,
    slas: Arc<sla::SlaCache>,
}

impl Engine {
    pub fn new(store: Store, registry: TaskRegistry, cfg: EngineConfig) -> Engine {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        let schemas = Registry::new(cfg.schema_registry.as_ref(), store.clone());
        let lineage = cfg.openlineage.as_ref().map(|o| Arc::new(Emitter::new(o)));
        let notifier = Notifier::new(store.clone(), &cfg.public_url);
        Engine {
            notifier,
            slas: Arc::default(),
            store,
            registry,
            schemas,
            lineage,
            cfg: Arc::new(cfg),
            owner: owner::current().into(),
            permits,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> &TaskRegistry {
        &self.registry
    }

    /// The schema registry attempts read contracts from.
    pub fn schemas(&self) -> &Registry {
        &self.schemas
    }

    /// The OpenLineage emitter, when OpenLineage is on.
    pub fn lineage(&self) -> Option<&Arc<Emitter>> {
        self.lineage.as_ref()
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Records a new queued run (or finds the one with the same idempotency key).
    pub async fn submit(
        &self,
        flow: &Flow,
        params: &BTreeMap<String, String>,
        source: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, EngineError> {
        let params = flow.resolve_params(params).map_err(EngineError::Params)?;
        let task_ids: Vec<String> = flow.tasks.iter().map(|t| t.id.clone()).collect();
        let path = flow.path.display().to_string();
        Ok(self
            .store
            .create_run(
                &NewRun {
                    flow: &flow.name,
                    flow_path: &path,
                    flow_yaml: &flow.yaml,
                    params: &params,
                    source,
                    idempotency_key,
                    task_ids: &task_ids,
                },
                Utc::now(),
            )
            .await?)
    }

    /// Executes a run to its end and returns its final state. If another live process owns it,
    /// waits for that process to finish it instead.
    pub async fn execute(&self, run_id: i64) -> Result<RunState, EngineError> {
        let run = self.store.get_run(run_id).await?;
        if run.state.is_terminal() {
            return Ok(run.state);
        }
        if !self
            .store
            .claim_run(run_id, &self.owner, Utc::now())
            .await?
        {
            return self.wait(run_id).await;
        }
        let flow = self.snapshot_flow(run_id, &run.flow_path, &run.flow_yaml)?;
        // Wait for a slot under max_active_runs, renewing our lease meanwhile.
        if run.state == RunState::Queued {
            loop {
                if self
                    .store
                    .start_run(run_id, &self.owner, flow.max_active_runs, Utc::now())
                    .await?
                {
                    break;
                }
                match self
                    .store
                    .heartbeat(run_id, &self.owner, Utc::now())
                    .await?
                {
                    crate::store::Heartbeat::Lost => {
                        return Err(EngineError::LostOwnership(run_id));
                    }
                    crate::store::Heartbeat::Owned {
                        cancel_requested: true,
                    } => {
                        let now = Utc::now();
                        self.store
                            .finish_run(
                                run_id,
                                &self.owner,
                                RunState::Cancelled,
                                Some("cancelled while queued"),
                                now,
                            )
                            .await?;
                        self.store
                            .close_open_attempts(run_id, TaskState::Cancelled, None, now)
                            .await?;
                        return Ok(RunState::Cancelled);
                    }
                    _ => {}
                }
                tokio::time::sleep(self.cfg.poll).await;
            }
        }
        let run = self.store.get_run(run_id).await?;
        let (sla, notify) = (flow.sla, flow.notify.clone());
        let state = self.drive_guarded(run, flow).await?;
        // After the state is recorded, in the background: a notification never holds a run.
        self.notifier.run_finished(run_id, sla, &notify).await;
        Ok(state)
    }

    /// The notifications this engine sends (`flowctl trigger` drains them before exiting).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    async fn drive_guarded(&self, run: RunRow, flow: Flow) -> Result<RunState, EngineError> {
        let run_id = run.id;
        // A bug in the executor must not leave the run `running` under a live owner, where
        // nothing would ever recover, retry or cancel it: the run fails, with the reason.
        let driven = AssertUnwindSafe(executor::drive(self, run, flow))
            .catch_unwind()
            .await;
        match driven {
            Ok(result) => result,
            Err(panic) => {
                let msg = format!(
                    "internal error: the executor panicked: {}",
                    panic_message(&*panic)
                );
                tracing::error!(run = run_id, "{msg}");
                let now = Utc::now();
                self.store
                    .close_open_attempts(run_id, TaskState::Failed, Some(&msg), now)
                    .await?;
                self.store
                    .finish_run(run_id, &self.owner, RunState::Failed, Some(&msg), now)
                    .await?;
                Ok(RunState::Failed)
            }
        }
    }

    /// Claims a run that no live process executes and executes it in the background (used by
    /// `serve` for scheduled, recovered and abandoned runs). Does nothing if another process
    /// owns it.
    pub fn adopt(&self, run_id: i64) {
        let e = self.clone();
        tokio::spawn(async move {
            match e.store.claim_run(run_id, &e.owner, Utc::now()).await {
                Ok(true) => {
                    if let Err(err) = e.execute(run_id).await {
                        tracing::error!(run = run_id, error = %err, "run failed to execute");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::error!(run = run_id, error = %err, "cannot claim run"),
            }
        });
    }

    /// Polls a run owned by someone else until it is finished.
    /// If the owner dies meanwhile, recovery releases the run and this process takes it over.
    pub async fn wait(&self, run_id: i64) -> Result<RunState, EngineError> {
        let mut last_recovery = tokio::time::Instant::now();
        loop {
            let run = self.store.get_run(run_id).await?;
            if run.state.is_terminal() {
                return Ok(run.state);
            }
            if run.owner.is_none() && run.state == RunState::Queued {
                return Box::pin(self.execute(run_id)).await;
            }
            if last_recovery.elapsed() >= self.cfg.heartbeat * 2 {
                self.recover().await?;
                last_recovery = tokio::time::Instant::now();
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Re-runs a failed or cancelled run: only tasks that did not succeed, and everything
    /// downstream of them. A run left queued by recovery is simply resumed.
    pub async fn retry(&self, run_id: i64) -> Result<RunState, EngineError> {
        let run = self.store.get_run(run_id).await?;
        match run.state {
            RunState::Success => {
                return Err(EngineError::Conflict(format!(
                    "run {run_id} succeeded; there is nothing to retry"
                )));
            }
            RunState::Queued | RunState::Running => {
                if let Some(owner) = run.owner.as_deref() {
                    return Err(EngineError::Conflict(format!(
                        "run {run_id} is still {} (executed by {owner}); cancel it first or wait",
                        run.state
                    )));
                }
                // Released by crash recovery: resume it as a new round like a failed run.
            }
            RunState::Failed | RunState::Cancelled => {}
        }
        let flow = self.snapshot_flow(run_id, &run.flow_path, &run.flow_yaml)?;
        let latest = crate::store::latest_states(&self.store.attempts(run_id).await?);
        let failed = flow
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| latest.get(&t.id).is_none_or(|s| s.needs_rerun()))
            .map(|(i, _)| i);
        let closure = flow.dag.downstream_closure(failed);
        let rerun: Vec<String> = flow
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| closure[*i] && latest.get(&t.id) != Some(&TaskState::Pending))
            .map(|(_, t)| t.id.clone())
            .collect();
        self.store
            .prepare_retry(run_id, &self.owner, &rerun, Utc::now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => EngineError::Conflict(m),
                e => e.into(),
            })?;
        self.execute(run_id).await
    }

    /// Cancels a run: directly if nobody executes it, otherwise by asking its owner, then waits
    /// up to `wait_for` for the owner to stop it.
    pub async fn cancel(&self, run_id: i64, wait_for: Duration) -> Result<RunState, EngineError> {
        let run = self.store.request_cancel(run_id).await?;
        if run.state.is_terminal() {
            return Ok(run.state);
        }
        if run.owner.is_none() && self.store.cancel_unowned(run_id, Utc::now()).await? {
            return Ok(RunState::Cancelled);
        }
        let deadline = tokio::time::Instant::now() + wait_for;
        loop {
            let run = self.store.get_run(run_id).await?;
            if run.state.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(run.state);
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Finds runs whose owner died and releases them (see `recovery`).
    pub async fn recover(&self) -> Result<Vec<Recovered>, EngineError> {
        recovery::recover(self).await
    }

    fn snapshot_flow(&self, run_id: i64, path: &str, yaml: &str) -> Result<Flow, EngineError> {
        parse_flow(std::path::Path::new(path), yaml, &self.registry).map_err(|errors| {
            EngineError::Snapshot {
                run: run_id,
                errors,
            }
        })
    }
}
