//! Cron scheduling for `flowctl serve`: tokio-cron-scheduler provides the ticks, the store is the
//! source of truth. Each fire is claimed by compare-and-set on the flow's `last_fire_at` (and the
//! run carries the idempotency key `schedule:<fire time>`), so a restart — or a second `serve` —
//! never double-fires. On start, windows missed while nothing was serving are caught up: once
//! (`catchup: false`, the latest missed window) or each of them up to a cap (`catchup: true`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

use super::{Engine, EngineError};
use crate::flow::Flow;
use crate::store::StoreError;

/// At most this many missed windows are replayed per flow with `catchup: true`.
pub const CATCHUP_CAP: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("scheduler: {0}")]
    Cron(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// Fires scheduled flows; dropping it does not stop the jobs, `shutdown` does.
pub struct Scheduler {
    inner: Arc<Inner>,
    jobs: JobScheduler,
}

struct Inner {
    engine: Engine,
    flows: BTreeMap<String, Flow>,
    /// One catch-up at a time per flow: fires must be claimed oldest first.
    locks: BTreeMap<String, tokio::sync::Mutex<()>>,
}

impl Scheduler {
    /// Registers every flow that has a schedule, catches up missed windows, starts the ticks.
    pub async fn start(engine: Engine, flows: Vec<Flow>) -> Result<Scheduler, SchedulerError> {
        let flows: BTreeMap<String, Flow> = flows
            .into_iter()
            .filter(|f| f.schedule.is_some())
            .map(|f| (f.name.clone(), f))
            .collect();
        let locks = flows
            .keys()
            .map(|k| (k.clone(), tokio::sync::Mutex::new(())))
            .collect();
        let inner = Arc::new(Inner {
            engine,
            flows,
            locks,
        });
        let jobs = JobScheduler::new().await?;
        for flow in inner.flows.values() {
            let schedule = flow.schedule.as_ref().expect("filtered above");
            inner
                .engine
                .store()
                .upsert_schedule(&flow.name, schedule.expr(), Utc::now())
                .await?;
            inner.catch_up(flow, Utc::now()).await?;
            let me = inner.clone();
            let name = flow.name.clone();
            jobs.add(Job::new_async(schedule.with_seconds(), move |_, _| {
                let me = me.clone();
                let name = name.clone();
                Box::pin(async move {
                    if let Err(e) = me.tick(&name).await {
                        tracing::error!(flow = %name, error = %e, "scheduled fire failed");
                    }
                })
            })?)
            .await?;
        }
        jobs.start().await?;
        Ok(Scheduler { inner, jobs })
    }

    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.inner.flows.values()
    }

    /// Unpausing moves the baseline to now: windows missed while paused are skipped on purpose.
    pub async fn set_paused(
        engine: &Engine,
        flow: &Flow,
        paused: bool,
    ) -> Result<bool, SchedulerError> {
        let store = engine.store();
        let Some(schedule) = &flow.schedule else {
            return Ok(false);
        };
        let now = Utc::now();
        store
            .upsert_schedule(&flow.name, schedule.expr(), now)
            .await?;
        if !paused {
            store
                .set_schedule_baseline(
                    &flow.name,
                    schedule.latest_at_or_before(now),
                    schedule.next_after(now),
                    now,
                )
                .await?;
        }
        Ok(store.set_paused(&flow.name, paused, now).await?)
    }

    pub async fn shutdown(mut self) {
        let _ = self.jobs.shutdown().await;
    }
}

impl Inner {
    /// Fires every window in `(last_fire_at, until]` that is due: all of them (up to the cap)
    /// with `catchup: true`, the latest one otherwise. A regular tick is the same operation with
    /// one window due, so a window between start-up and the first tick cannot fall through.
    async fn catch_up(&self, flow: &Flow, until: DateTime<Utc>) -> Result<(), SchedulerError> {
        let _guard = self
            .locks
            .get(&flow.name)
            .expect("lock per flow")
            .lock()
            .await;
        let store = self.engine.store();
        let schedule = flow.schedule.as_ref().expect("scheduled flow");
        let now = Utc::now();
        let Some(row) = store.schedule(&flow.name).await? else {
            return Ok(());
        };
        match row.last_fire_at {
            // First time this flow is scheduled here: start from now, replay nothing.
            None => {
                store
                    .set_schedule_baseline(
                        &flow.name,
                        schedule.latest_at_or_before(now),
                        schedule.next_after(now),
                        now,
                    )
                    .await?;
            }
            Some(_) if row.paused => {}
            Some(last) => {
                let cap = if flow.catchup { CATCHUP_CAP } else { 1 };
                for at in schedule.missed(last, until, cap) {
                    self.fire(flow, at).await?;
                }
            }
        }
        Ok(())
    }

    async fn tick(&self, name: &str) -> Result<(), SchedulerError> {
        let Some(flow) = self.flows.get(name) else {
            return Ok(());
        };
        // Ticks arrive a little after their second, never before it.
        self.catch_up(flow, Utc::now() + chrono::Duration::milliseconds(100))
            .await
    }

    async fn fire(&self, flow: &Flow, at: DateTime<Utc>) -> Result<(), SchedulerError> {
        let store = self.engine.store();
        let schedule = flow.schedule.as_ref().expect("scheduled flow");
        if !store
            .claim_fire(&flow.name, at, schedule.next_after(at), Utc::now())
            .await?
        {
            return Ok(()); // already fired (by us before a restart, or another serve) or paused
        }
        let key = format!("schedule:{}", at.to_rfc3339());
        let run = self
            .engine
            .submit(flow, &BTreeMap::new(), "schedule", Some(&key))
            .await?
            .run_id();
        crate::metrics::get()
            .schedule_fires
            .with_label_values(&[&flow.name])
            .inc();
        tracing::info!(flow = %flow.name, run, at = %at, "fired");
        self.engine.adopt(run);
        Ok(())
    }
}

/// How often `serve` looks for runs to adopt (recovered or detached-and-abandoned).
pub const ADOPT_EVERY: Duration = Duration::from_secs(2);
