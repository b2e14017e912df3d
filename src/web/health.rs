//! What `/healthz` reports: the state DB (checked per request), the scheduler heartbeat, the
//! broker as the lag watcher last saw it, and the last run of each flow.
//!
//! Status: 503 when flowctl itself cannot work (the state DB is gone or failing, or the
//! scheduler has not beaten for [`STALE_AFTER`]); the broker is reported, and makes the answer
//! 503 only with `?require=broker`: Kafka being down must not make a load balancer restart the
//! UI that shows why, but a readiness probe may ask for it.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A scheduler heartbeat older than this is a wedged or dead scheduler.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// What the background watchers of `serve` last saw.
#[derive(Default)]
pub struct Health {
    broker: Mutex<Option<BrokerSeen>>,
}

#[derive(Debug, Clone)]
pub struct BrokerSeen {
    pub reachable: bool,
    pub at: DateTime<Utc>,
    pub detail: Option<String>,
}

impl Health {
    pub fn broker_seen(&self, seen: BrokerSeen) {
        *self.broker.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
    }

    pub fn broker(&self) -> Option<BrokerSeen> {
        self.broker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
