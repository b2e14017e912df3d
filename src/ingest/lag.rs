//! Consumer lag as `serve` exports it continuously: for every topic with a bronze table in the
//! lake, the broker's high watermark minus the offset the next ingest starts from. The start is
//! planned exactly as ingest plans it ([`plan`] over bronze's committed Delta `txn` position),
//! so the gauge says what the next ingest would have to read, whether or not one is running.

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use super::error::IngestError;
use super::positions::{Stored, app_id, plan};
use super::source::{consumer, watermarks};
use super::topic::bronze_table;
use crate::kafka::{KafkaSettings, drop_later};
use crate::lake::LakeTable;

/// How long the topic listing may take before the broker counts as unreachable.
const META_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition's lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records in the log the next ingest would read.
    pub lag: i64,
}

/// Each partition's (low, high) watermarks of every topic that has a table in `lake`.
type Bounds = Vec<(String, Vec<(i32, i64, i64)>)>;

/// Lag of every partition of every topic that has a bronze table in `lake`. Fails only when the
/// broker does not answer (an unreadable table, or a position ingest would refuse, skips that
/// table or partition with a warning).
pub async fn measure(kafka: &KafkaSettings, lake: &Path) -> Result<Vec<PartitionLag>, IngestError> {
    let bounds = bounds(kafka, lake).await?;
    let mut out = Vec::new();
    for (topic, parts) in bounds {
        let table_name = bronze_table(&topic);
        let table = match LakeTable::open(&lake.join(&table_name)).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(table = %table_name, error = %e, "cannot read a bronze table for its lag");
                continue;
            }
        };
        for (p, low, high) in parts {
            let bronze = table
                .txn_version(&app_id(&table_name, &topic, p))
                .await
                .ok()
                .flatten();
            let stored = Stored {
                bronze,
                audit: None,
                low,
                high,
            };
            match plan(stored, None) {
                Ok(start) => out.push(PartitionLag {
                    topic: topic.clone(),
                    partition: p,
                    lag: (high - start.start).max(0),
                }),
                Err(e) => {
                    tracing::warn!(topic = %topic, partition = p, "bronze's position is {}", e.problem())
                }
            }
        }
    }
    Ok(out)
}

/// The watermarks of every partition of the broker's topics that have a bronze table.
async fn bounds(kafka: &KafkaSettings, lake: &Path) -> Result<Bounds, IngestError> {
    let kafka = kafka.clone();
    let lake = lake.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let c = consumer(&kafka, "flowctl-lag").map_err(|e| IngestError::Kafka {
            topic: "*".into(),
            step: "client",
            detail: kafka.scrub(&e.to_string()),
        })?;
        let res = (|| {
            let md = c
                .fetch_metadata(None, META_TIMEOUT)
                .map_err(|e| IngestError::Kafka {
                    topic: "*".into(),
                    step: "metadata",
                    detail: kafka.scrub(&e.to_string()),
                })?;
            let mut out = Vec::new();
            for t in md.topics() {
                if t.name().starts_with("__")
                    || t.error().is_some()
                    || !lake
                        .join(bronze_table(t.name()))
                        .join("_delta_log")
                        .is_dir()
                {
                    continue;
                }
                let mut parts = Vec::new();
                for p in t.partitions() {
                    let (low, high) = watermarks(&c, t.name(), p.id())?;
                    parts.push((p.id(), low, high));
                }
                out.push((t.name().to_string(), parts));
            }
            Ok(out)
        })();
        drop_later(c);
        res
    })
    .await
    .expect("the watermark probe panicked")
}
