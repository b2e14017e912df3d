//! The SLA watcher: a run still unfinished `sla:` after it was due (created) notifies
//! `sla_missed` once, while it is still late, not only when it finally ends. `serve` calls
//! [`Engine::check_slas`] on every tick; a run that ends late with nobody watching is caught
//! when it finishes (`Notifier::run_finished`).

use std::collections::HashMap;
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
    /// Notifies `sla_missed` for every unfinished run past its flow's SLA.
    pub async fn check_slas(&self) {
        let now = Utc::now();
        let runs = match self.store.unfinished_runs_created_before(now).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list runs for the SLA check");
                return;
            }
        };
        let live: std::collections::HashSet<i64> = runs.iter().map(|r| r.id).collect();
        for run in runs {
            let sla = {
                let mut cache = self.slas.runs.lock().unwrap_or_else(|p| p.into_inner());
                cache
                    .entry(run.id)
                    .or_insert_with(|| {
                        let flow = self
                            .snapshot_flow(run.id, &run.flow_path, &run.flow_yaml)
                            .ok()?;
                        let wants = flow
                            .notify
                            .iter()
                            .any(|r| r.on.contains(&crate::flow::NotifyEvent::SlaMissed));
                        Some((flow.sla?, flow.notify)).filter(|_| wants)
                    })
                    .clone()
            };
            let Some((sla, rules)) = sla else { continue };
            let late = (now - run.created_at).to_std().unwrap_or_default() > sla;
            if late {
                self.notifier.sla_missed(&run, &rules).await;
                // Claimed in the store: this process need not look at the run again.
                self.slas
                    .runs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(run.id, None);
            }
        }
        // Finished runs leave the cache.
        self.slas
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| live.contains(id));
    }
}
