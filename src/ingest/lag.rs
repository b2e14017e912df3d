//! Consumer lag as `serve` exports it continuously: for every topic with a bronze table in the
//! lake, the broker's high watermark minus the next offset bronze will ingest (its committed
//! Delta `txn` position, or the DLQ audit table's when that is further). Read from the same
//! places ingest resumes from, so the gauge says what the next ingest would have to read,
//! whether or not one is running.

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::dlq::AUDIT_TABLE;
use super::error::IngestError;
use super::positions::app_id;
use super::topic::bronze_table;
use crate::kafka::{KafkaSettings, client_config, drop_later};
use crate::lake::LakeTable;

const META_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition's lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records in the log not yet in bronze or the DLQ.
    pub lag: i64,
}

/// Each partition's (low, high) watermarks of every topic that has a table in `lake`.
type Bounds = Vec<(String, Vec<(i32, i64, i64)>)>;

/// Lag of every partition of every topic that has a bronze table in `lake`. Fails only when the
/// broker does not answer (a table's unreadable log skips that table, with a warning).
pub async fn measure(kafka: &KafkaSettings, lake: &Path) -> Result<Vec<PartitionLag>, IngestError> {
    let bounds = watermarks(kafka, lake).await?;
    let mut out = Vec::new();
    // Absent until the first bad record.
    let audit = LakeTable::open(&lake.join(AUDIT_TABLE)).await.ok();
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
            let bad = match &audit {
                Some(a) => a
                    .txn_version(&app_id(AUDIT_TABLE, &topic, p))
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let next = bronze.max(bad).map_or(low, |last| (last + 1).max(low));
            out.push(PartitionLag {
                topic: topic.clone(),
                partition: p,
                lag: (high - next).max(0),
            });
        }
    }
    Ok(out)
}

async fn watermarks(kafka: &KafkaSettings, lake: &Path) -> Result<Bounds, IngestError> {
    let kafka = kafka.clone();
    let lake = lake.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let kafka_err = |step: &'static str, e: rdkafka::error::KafkaError| IngestError::Kafka {
            topic: "*".into(),
            step,
            detail: kafka.scrub(&e.to_string()),
        };
        let c: BaseConsumer = client_config(&kafka)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| kafka_err("client", e))?;
        let res = (|| {
            let md = c
                .fetch_metadata(None, META_TIMEOUT)
                .map_err(|e| kafka_err("metadata", e))?;
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
                    let (low, high) = c
                        .fetch_watermarks(t.name(), p.id(), META_TIMEOUT)
                        .map_err(|e| kafka_err("watermarks", e))?;
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
