//! OpenLineage run events: START when a task attempt starts, COMPLETE / FAIL / ABORT when it
//! ends, with the datasets it read and wrote, so Marquez or any OpenLineage consumer sees
//! flowctl's jobs next to everyone else's.
//!
//! Off unless configured: `FLOWCTL_OPENLINEAGE_URL` (events are POSTed there as JSON, e.g.
//! Marquez's `http://host:5000/api/v1/lineage`) and/or `FLOWCTL_OPENLINEAGE_FILE` (one JSON
//! event per line, appended). `FLOWCTL_OPENLINEAGE_NAMESPACE` names the job namespace (default
//! `flowctl`). Emitting never fails a task: a lost event is logged, the work goes on.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

const PRODUCER: &str = "https://github.com/flowctl/flowctl";
const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const ERROR_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const PARENT_FACET_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet";

/// A dataset as OpenLineage names it: a namespace (the system) and a name within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

impl Dataset {
    /// A Kafka topic on `bootstrap` (OpenLineage's naming: `kafka://host:port`, topic).
    pub fn kafka(bootstrap: &str, topic: &str) -> Dataset {
        let first = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
        Dataset {
            namespace: format!("kafka://{first}"),
            name: topic.to_string(),
        }
    }

    /// A Delta table under the lake at `lake` (naming: `file`, absolute path).
    pub fn table(lake: &std::path::Path, table: &str) -> Dataset {
        let path = std::path::absolute(lake.join(table)).unwrap_or_else(|_| lake.join(table));
        Dataset {
            namespace: "file".to_string(),
            name: path.display().to_string(),
        }
    }
}

/// The run state an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// What one event is about: a task attempt of a flow run.
#[derive(Debug, Clone)]
pub struct AttemptRef<'a> {
    /// The attempt's OpenLineage run id (a UUID kept from START to the end event).
    pub run_uuid: &'a str,
    pub flow: &'a str,
    pub task: &'a str,
    pub flow_run_id: i64,
    pub attempt: u32,
}

/// A deterministic UUID (v4 layout) for a flow run: the parent of its task attempts.
pub fn flow_run_uuid(namespace: &str, flow: &str, run_id: i64) -> String {
    uuid_from(&format!("{namespace}/{flow}/{run_id}"))
}

/// A UUID for one task attempt.
pub fn attempt_uuid(namespace: &str, flow: &str, run_id: i64, task: &str, attempt: u32) -> String {
    uuid_from(&format!("{namespace}/{flow}/{run_id}/{task}/{attempt}"))
}

/// 128 bits from two FNV-1a passes, laid out as a version-4, variant-1 UUID string.
fn uuid_from(key: &str) -> String {
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Builds one RunEvent document.
pub fn run_event(
    namespace: &str,
    kind: EventType,
    at: DateTime<Utc>,
    attempt: &AttemptRef<'_>,
    inputs: &[Dataset],
    outputs: &[Dataset],
    error: Option<&str>,
) -> Value {
    let mut facets = serde_json::Map::new();
    facets.insert(
        "parent".into(),
        json!({
            "_producer": PRODUCER,
            "_schemaURL": PARENT_FACET_SCHEMA,
            "run": {"runId": flow_run_uuid(namespace, attempt.flow, attempt.flow_run_id)},
            "job": {"namespace": namespace, "name": attempt.flow},
        }),
    );
    if let Some(message) = error {
        facets.insert(
            "errorMessage".into(),
            json!({
                "_producer": PRODUCER,
                "_schemaURL": ERROR_FACET_SCHEMA,
                "message": message,
                "programmingLanguage": "rust",
            }),
        );
    }
    json!({
        "eventType": kind.as_str(),
        "eventTime": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": attempt.run_uuid, "facets": facets},
        "job": {"namespace": namespace, "name": format!("{}.{}", attempt.flow, attempt.task)},
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// Where OpenLineage events go (`FLOWCTL_OPENLINEAGE_FILE`, `_URL`, `_NAMESPACE`, read at the
/// edge): at least one of `file` and `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLineageSettings {
    pub namespace: String,
    /// JSON lines appended to this file.
    pub file: Option<PathBuf>,
    /// Each event POSTed here (e.g. Marquez's `/api/v1/lineage`).
    pub url: Option<String>,
}

/// Sends events where the settings say.
#[derive(Debug)]
pub struct Emitter {
    pub namespace: String,
    file: Option<PathBuf>,
    url: Option<String>,
    http: reqwest::Client,
}

impl Emitter {
    pub fn new(settings: &OpenLineageSettings) -> Emitter {
        Emitter {
            namespace: settings.namespace.clone(),
            file: settings.file.clone(),
            url: settings.url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Sends `event` to every configured target; failures are logged, never returned.
    pub async fn emit(&self, event: &Value) {
        if let Some(path) = &self.file {
            let line = format!("{event}\n");
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = res {
                tracing::warn!(path = %path.display(), error = %e, "OpenLineage event not written");
            }
        }
        if let Some(url) = &self.url {
            match self.http.post(url).json(event).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(url, status = %r.status(), "OpenLineage endpoint refused an event")
                }
                Err(e) => tracing::warn!(url, error = %e, "OpenLineage event not sent"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_required_fields() {
        let id = attempt_uuid("flowctl", "pipeline_full", 7, "ingest_bronze", 1);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(
            id,
            attempt_uuid("flowctl", "pipeline_full", 7, "ingest_bronze", 2)
        );
        let a = AttemptRef {
            run_uuid: &id,
            flow: "pipeline_full",
            task: "ingest_bronze",
            flow_run_id: 7,
            attempt: 1,
        };
        let ev = run_event(
            "flowctl",
            EventType::Fail,
            Utc::now(),
            &a,
            &[Dataset::kafka("127.0.0.1:19092", "orders")],
            &[],
            Some("boom"),
        );
        assert_eq!(ev["eventType"], "FAIL");
        assert_eq!(ev["job"]["name"], "pipeline_full.ingest_bronze");
        assert_eq!(ev["inputs"][0]["namespace"], "kafka://127.0.0.1:19092");
        assert_eq!(ev["run"]["facets"]["errorMessage"]["message"], "boom");
        assert!(ev["eventTime"].as_str().unwrap().ends_with('Z'));
    }
}
