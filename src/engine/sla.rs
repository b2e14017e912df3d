//! The SLA watcher: a run still unfinished `sla:` after it was due (created) notifies
//! `sla_missed` once, while it is still late, not only when it finally ends. `serve` calls
//! [`Engine::check_slas`] on every tick; a run that ends late with nobody watching is caught
//! when it finishes (`Notifier::run_finished`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use super::Engine;
use crate::flow::NotifyRule;

/// A run's SLA and its rules; None when it has no SLA (or its miss was already claimed).
type Watched = Option<(Duration, Vec<NotifyRule>)>;

/// What the watcher needs of a run's flow snapshot, parsed once per run.
#[derive(Default)]
pub struct SlaCache {
    runs: Mutex<HashMap<i64, Watched>>,
}

impl Engine {
    /// Notifies `sla_missed` for every unfinished run past its flow's SLA (counted in the store
    /// whether or not a rule listens).
    pub async fn check_slas(&self) {
        let now = Utc::now();
        let runs = match self.store.unfinished_runs().await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list runs for the SLA check");
                return;
            }
        };
        let live: HashSet<i64> = runs.iter().map(|r| r.id).collect();
        for run in runs {
            let cached = self.slas.get(run.id);
            let watched = match cached {
                Some(w) => w,
                None => {
                    let w = self.watched(run.id).await;
                    self.slas.set(run.id, w.clone());
                    w
                }
            };
            let Some((sla, rules)) = watched else {
                continue;
            };
            if (now - run.created_at).to_std().unwrap_or_default() > sla {
                self.notifier.sla_missed(&run, &rules).await;
                // Claimed in the store: this process need not look at the run again.
                self.slas.set(run.id, None);
            }
        }
        self.slas.keep(&live);
    }

    /// A run's SLA and rules, from its flow snapshot (read once per run).
    async fn watched(&self, run_id: i64) -> Watched {
        let run = self.store.get_run(run_id).await.ok()?;
        let flow = self
            .snapshot_flow(run.id, &run.flow_path, &run.flow_yaml)
            .ok()?;
        Some((flow.sla?, flow.notify))
    }
}

impl SlaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Watched>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, run: i64) -> Option<Watched> {
        self.lock().get(&run).cloned()
    }

    fn set(&self, run: i64, w: Watched) {
        self.lock().insert(run, w);
    }

    /// Finished runs leave the cache.
    fn keep(&self, live: &HashSet<i64>) {
        self.lock().retain(|id, _| live.contains(id));
    }
}
