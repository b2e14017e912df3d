//! Data contracts, end to end: the registry's REST API (status codes, bodies, malformed input),
//! produce → real broker → consume with exact fault counts, and interop with the official Python
//! confluent-kafka client. Broker tests use `FLOWCTL_KAFKA_BOOTSTRAP` and start nisshi through
//! `scripts/broker.sh start` (idempotent) when nothing is running.

mod cli;
mod interop;
mod registry_api;
mod round_trip;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flowctl::kafka::KafkaSettings;

/// The broker the tests use (`FLOWCTL_KAFKA_BOOTSTRAP`, else the development default).
pub fn bootstrap() -> String {
    std::env::var("FLOWCTL_KAFKA_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| flowctl::kafka::DEFAULT_BOOTSTRAP.to_string())
}

/// A librdkafka config for `bootstrap`, built the way flowctl builds its own.
pub fn client_config(bootstrap: &str) -> rdkafka::ClientConfig {
    flowctl::kafka::client_config(&KafkaSettings::new(bootstrap))
}
use flowctl::contracts::domain::{EventKind, Fault};
use flowctl::contracts::generate::SchemaVersion;
use flowctl::contracts::produce::{Pacing, ProduceOptions, ProduceSummary, produce};
use flowctl::contracts::registry::{Registry, RegistryClient, SchemaCache, registry_app};
use flowctl::contracts::schema::{ParsedSchema, builtin};
use flowctl::store::Store;
use flowctl::support::inspect::inspect;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

const T0: i64 = 1_763_900_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the broker once per test process; `broker.sh start` itself is idempotent and
/// serialised with flock, so parallel test processes are safe too.
pub fn broker() -> String {
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo().join("scripts/broker.sh"))
                .arg("start")
                .current_dir(repo())
                .output()
                .expect("running scripts/broker.sh");
            assert!(
                out.status.success(),
                "scripts/broker.sh start failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            bootstrap()
        })
        .clone()
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).await.unwrap();
    (dir, store)
}

/// Serves the registry on an ephemeral port; returns its base URL.
async fn serve(store: Store) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, registry_app(store)).await.unwrap() });
    format!("http://{addr}")
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "application/vnd.schemaregistry.v1+json", "{path}");
        (status, resp.json().await.unwrap())
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body.to_string()))
            .await
    }
    async fn raw_post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body.to_string()))
            .await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body.to_string()))
            .await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

async fn api() -> (tempfile::TempDir, Api) {
    let (dir, store) = temp_store().await;
    let base = serve(store).await;
    (
        dir,
        Api {
            base,
            http: reqwest::Client::new(),
        },
    )
}

fn code(v: &Value) -> i64 {
    v["error_code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error_code in {v}"))
}

/// Reads every message of `topic` from the beginning: `(key, payload)`.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("it-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut expected = 0;
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, *p, Duration::from_secs(15))
            .unwrap();
        expected += (hi - lo) as usize;
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(expected);
    // A guard against a hung broker, not a performance assertion.
    let give_up = Instant::now() + Duration::from_secs(180);
    while out.len() < expected && Instant::now() < give_up {
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    assert_eq!(out.len(), expected, "consumed vs watermarks of {topic}");
    out
}

fn options(topic: &str, count: u64, bad_ratio: f64, version: SchemaVersion) -> ProduceOptions {
    ProduceOptions {
        topic: topic.to_string(),
        version,
        seed: 20_251_123,
        bad_ratio,
        late_ratio: 0.03,
        duplicate_ratio: 0.02,
        pacing: Pacing::Count(count),
        partitions: 3,
        base_time_ms: T0,
        progress: false,
        compression: "lz4".into(),
        linger_ms: 5,
        stop: None,
    }
}

/// Resolves every schema id seen in `msgs` through a [`SchemaCache`], as ingest would.
async fn schemas_for(
    reg: &Registry,
    msgs: &[(Option<Vec<u8>>, Vec<u8>)],
) -> HashMap<i32, ParsedSchema> {
    let mut cache = SchemaCache::new(reg.clone());
    for (_, v) in msgs {
        if let Ok((id, _)) = flowctl::contracts::wire::split(v) {
            cache.resolve(id).await.unwrap();
        }
    }
    cache.known().clone()
}

/// Classifies every consumed record as clean or by fault, as downstream ingest does.
fn classify(
    kind: EventKind,
    msgs: &[(Option<Vec<u8>>, Vec<u8>)],
    known: &HashMap<i32, ParsedSchema>,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (k, v) in msgs {
        let cat = match inspect(kind, k.as_deref(), v, known, T0) {
            Ok(_) => "clean".to_string(),
            Err(r) => r.fault.name().to_string(),
        };
        *counts.entry(cat).or_insert(0u64) += 1;
    }
    counts
}

fn expected_counts(s: &ProduceSummary) -> BTreeMap<String, u64> {
    let mut want: BTreeMap<String, u64> = s.injected.clone();
    let schema_violations = want.remove(Fault::SchemaViolation.name()).unwrap_or(0);
    assert_eq!(
        schema_violations, s.rejected,
        "every schema violation is rejected before Kafka"
    );
    let faulty: u64 = want.values().sum();
    want.insert("clean".into(), s.sent - faulty);
    want
}
