//! Data contracts, end to end: the registry's REST API (status codes, bodies, malformed input),
//! produce → real broker → consume with exact fault counts, and interop with the official Python
//! confluent-kafka client. Broker tests use `FLOWCTL_KAFKA_BOOTSTRAP` and start nisshi through
//! `scripts/broker.sh start` (idempotent) when nothing is running.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flowctl::contracts::broker::{bootstrap, client_config};
use flowctl::contracts::domain::{EventKind, Fault};
use flowctl::contracts::generate::SchemaVersion;
use flowctl::contracts::inspect::inspect;
use flowctl::contracts::produce::{Pacing, ProduceOptions, ProduceSummary, produce};
use flowctl::contracts::registry::{Registry, RegistryClient, registry_router};
use flowctl::contracts::schema::{ParsedSchema, builtin};
use flowctl::store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

const T0: i64 = 1_763_900_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the broker once per test process; `broker.sh start` itself is idempotent and
/// serialised with flock, so parallel test processes are safe too.
fn broker() -> String {
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

fn unique(prefix: &str) -> String {
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
    tokio::spawn(async move { axum::serve(l, registry_router(store)).await.unwrap() });
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

#[tokio::test]
async fn registry_api_status_codes_and_bodies() {
    let (_d, a) = api().await;
    assert_eq!(a.get("/subjects").await, (200, json!([])));
    let (s, b) = a
        .post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V1}),
        )
        .await;
    assert_eq!((s, b["id"].as_i64()), (200, Some(1)));
    // Same schema again, whitespace aside: same id, no new version.
    let compact =
        serde_json::to_string(&serde_json::from_str::<Value>(builtin::ORDERS_V1).unwrap()).unwrap();
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": compact, "schemaType": "AVRO"})
        )
        .await,
        (200, json!({"id": 1}))
    );
    // Same schema under another subject: same global id (content-addressed).
    assert_eq!(
        a.post(
            "/subjects/orders-copy-value/versions",
            json!({"schema": builtin::ORDERS_V1})
        )
        .await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await,
        (200, json!({"id": 2}))
    );
    assert_eq!(
        a.get("/subjects").await,
        (200, json!(["orders-copy-value", "orders-value"]))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await,
        (200, json!([1, 2]))
    );

    let (s, v) = a.get("/subjects/orders-value/versions/latest").await;
    assert_eq!(
        (s, &v["subject"], &v["version"], &v["id"]),
        (200, &json!("orders-value"), &json!(2), &json!(2))
    );
    assert_eq!(
        ParsedSchema::parse(v["schema"].as_str().unwrap())
            .unwrap()
            .normalized,
        ParsedSchema::parse(builtin::ORDERS_V2).unwrap().normalized
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions/1").await.1["id"],
        json!(1)
    );
    let (s, raw) = a.get("/subjects/orders-value/versions/1/schema").await;
    assert_eq!((s, &raw["name"]), (200, &json!("Order")));
    let (s, by_id) = a.get("/schemas/ids/2").await;
    assert_eq!(s, 200);
    assert_eq!(by_id["schema"], v["schema"]);
    assert_eq!(
        a.get("/schemas/ids/1/versions").await.1,
        json!([{"subject": "orders-copy-value", "version": 1}, {"subject": "orders-value", "version": 1}])
    );

    // Lookup.
    let (s, l) = a
        .post(
            "/subjects/orders-value",
            json!({"schema": builtin::ORDERS_V1}),
        )
        .await;
    assert_eq!((s, &l["version"], &l["id"]), (200, &json!(1), &json!(1)));
    let (s, e) = a
        .post(
            "/subjects/orders-value",
            json!({"schema": builtin::PAYMENTS}),
        )
        .await;
    assert_eq!((s, code(&e)), (404, 40403));

    // Not found, invalid version.
    let (s, e) = a.get("/subjects/nope/versions").await;
    assert_eq!((s, code(&e)), (404, 40401));
    assert!(e["message"].as_str().unwrap().contains("nope"));
    let (s, e) = a.get("/subjects/orders-value/versions/9").await;
    assert_eq!((s, code(&e)), (404, 40402));
    let (s, e) = a.get("/subjects/orders-value/versions/abc").await;
    assert_eq!((s, code(&e)), (422, 42202));
    let (s, e) = a.get("/schemas/ids/999").await;
    assert_eq!((s, code(&e)), (404, 40403));

    // Compatibility: the incompatible variant is refused with 409 and explained with verbose.
    let (s, c) = a
        .post(
            "/compatibility/subjects/orders-value/versions/latest",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    assert_eq!((s, c), (200, json!({"is_compatible": false})));
    let (_, c) = a
        .post(
            "/compatibility/subjects/orders-value/versions/1?verbose=true",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    let msgs = c["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{c}");
    assert!(
        msgs.iter()
            .any(|m| m.as_str().unwrap().contains("$.warehouse_id"))
    );
    assert_eq!(
        a.post(
            "/compatibility/subjects/orders-value/versions/2",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await,
        (200, json!({"is_compatible": true}))
    );
    let (s, e) = a
        .post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, 409));
    assert!(
        e["message"].as_str().unwrap().contains("incompatible"),
        "{e}"
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
}

#[tokio::test]
async fn registry_rejects_malformed_requests_and_stores_nothing() {
    let (_d, a) = api().await;
    for (body, want) in [
        ("{not json", 422),
        (r#"{"schemaa": "x"}"#, 422),
        (r#"{"schema": 42}"#, 422),
    ] {
        let (s, e) = a.raw_post("/subjects/t-value/versions", body).await;
        assert_eq!((s, code(&e)), (422, want), "{body}");
    }
    for schema in [
        r#"{"type":"record","name":"A","fields":[{"name":"x","type":"no_such_type"}]}"#,
        r#"{"type":"record","fields":[]}"#,
        "not json at all",
        r#"{"type":"enum","name":"E","symbols":"A"}"#,
    ] {
        let (s, e) = a
            .post("/subjects/t-value/versions", json!({"schema": schema}))
            .await;
        assert_eq!((s, code(&e)), (422, 42201), "{schema}: {e}");
    }
    let (s, e) = a
        .post(
            "/subjects/t-value/versions",
            json!({"schema": builtin::PAYMENTS, "schemaType": "PROTOBUF"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, 42201));
    let (s, e) = a
        .post(
            "/compatibility/subjects/t-value/versions/latest",
            json!({"schema": "{"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, 42201));
    // Nothing was stored: no subject, and the first valid schema gets id 1.
    assert_eq!(a.get("/subjects?deleted=true").await, (200, json!([])));
    assert_eq!(
        a.post(
            "/subjects/t-value/versions",
            json!({"schema": builtin::PAYMENTS})
        )
        .await,
        (200, json!({"id": 1}))
    );
}

#[tokio::test]
async fn registry_config_levels_and_deletes() {
    let (_d, a) = api().await;
    assert_eq!(
        a.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    let (s, e) = a.put("/config", json!({"compatibility": "SIDEWAYS"})).await;
    assert_eq!((s, code(&e)), (422, 42203));
    let (s, e) = a.get("/config/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40408));
    assert_eq!(
        a.get("/config/orders-value?defaultToGlobal=true").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );

    a.post(
        "/subjects/orders-value/versions",
        json!({"schema": builtin::ORDERS_V1}),
    )
    .await;
    // FORWARD: v2 adds fields with defaults — old readers skip them: allowed.
    assert_eq!(
        a.put("/config/orders-value", json!({"compatibility": "FORWARD"}))
            .await,
        (200, json!({"compatibility": "FORWARD"}))
    );
    assert_eq!(
        a.get("/config/orders-value").await.1,
        json!({"compatibilityLevel": "FORWARD"})
    );
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await
        .0,
        200
    );
    // NONE lets the incompatible variant in.
    a.put("/config/orders-value", json!({"compatibility": "NONE"}))
        .await;
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE})
        )
        .await,
        (200, json!({"id": 3}))
    );
    // Global level is separate from the subject's.
    assert_eq!(
        a.put("/config", json!({"compatibility": "FULL_TRANSITIVE"}))
            .await
            .0,
        200
    );
    assert_eq!(
        a.get("/config").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        a.delete("/config/orders-value").await,
        (200, json!({"compatibilityLevel": "NONE"}))
    );

    // Deletes: hard delete needs a soft delete first; soft-deleted versions are hidden.
    let (s, e) = a
        .delete("/subjects/orders-value/versions/3?permanent=true")
        .await;
    assert_eq!((s, code(&e)), (404, 40405));
    assert_eq!(
        a.delete("/subjects/orders-value/versions/3").await,
        (200, json!(3))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions?deleted=true")
            .await
            .1,
        json!([1, 2, 3])
    );
    assert_eq!(
        a.delete("/subjects/orders-value/versions/3?permanent=true")
            .await,
        (200, json!(3))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions?deleted=true")
            .await
            .1,
        json!([1, 2])
    );
    // The schema id stays resolvable: messages already in Kafka must still decode.
    assert_eq!(a.get("/schemas/ids/3").await.0, 200);
    assert_eq!(
        a.delete("/subjects/orders-value").await,
        (200, json!([1, 2]))
    );
    assert_eq!(a.get("/subjects").await.1, json!([]));
    let (s, e) = a.delete("/subjects/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40404));
    assert_eq!(
        a.delete("/subjects/orders-value?permanent=true").await,
        (200, json!([1, 2]))
    );
    let (s, e) = a.delete("/subjects/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40401));
    // Version numbers restart only after a hard delete of every version.
    a.post(
        "/subjects/orders-value/versions",
        json!({"schema": builtin::ORDERS_V1}),
    )
    .await;
    assert_eq!(a.get("/subjects/orders-value/versions").await.1, json!([1]));
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

async fn schemas_by_id(reg: &Registry, ids: &[u32]) -> HashMap<u32, ParsedSchema> {
    let mut m = HashMap::new();
    for id in ids {
        let text = reg.schema_by_id(*id as i64).await.unwrap();
        m.insert(*id, ParsedSchema::parse(&text).unwrap());
    }
    m
}

/// Classifies every consumed record as clean or by fault, as downstream ingest does.
fn classify(
    kind: EventKind,
    msgs: &[(Option<Vec<u8>>, Vec<u8>)],
    known: &HashMap<u32, ParsedSchema>,
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

#[tokio::test]
async fn produce_consume_round_trip_counts_every_fault_category() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    for (kind, topic) in [
        (EventKind::Orders, unique("orders-rt")),
        (EventKind::Payments, unique("payments-rt")),
        (EventKind::Clickstream, unique("clickstream-rt")),
    ] {
        let s = produce(options(&topic, 6_000, 0.1, SchemaVersion::V1), &reg, &bs)
            .await
            .unwrap();
        assert_eq!(s.generated, 6_000);
        assert_eq!(s.failed, 0, "{:?}", s.first_delivery_error);
        assert_eq!(s.sent + s.rejected, 6_000);
        assert!(s.rejected > 0 && s.late > 0 && s.duplicates > 0, "{s:?}");
        let want = expected_counts(&s);
        assert_eq!(
            want.len(),
            Fault::applicable(kind).len(),
            "every applicable category injected: {want:?}"
        );
        let msgs = consume_all(&bs, &topic);
        assert_eq!(msgs.len() as u64, s.sent);
        let known = schemas_by_id(&reg, &[s.schema_id]).await;
        assert_eq!(classify(kind, &msgs, &known), want, "{topic}");
        // Clean records are keyed by their business key.
        for (k, v) in &msgs {
            if let Ok(d) = inspect(kind, k.as_deref(), v, &known, T0) {
                let apache_avro::types::Value::Record(f) = d.value else {
                    panic!()
                };
                assert_eq!(
                    f[0].1,
                    apache_avro::types::Value::String(
                        String::from_utf8(k.clone().unwrap()).unwrap()
                    )
                );
            }
        }
    }
}

#[tokio::test]
async fn produce_is_reproducible_and_evolves_to_v2() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    let topic = unique("orders-evolve");
    let s1 = produce(options(&topic, 500, 0.0, SchemaVersion::V1), &reg, &bs)
        .await
        .unwrap();
    let s2 = produce(options(&topic, 500, 0.0, SchemaVersion::V2), &reg, &bs)
        .await
        .unwrap();
    assert_ne!(s1.schema_id, s2.schema_id);
    assert_eq!((s1.sent, s2.sent), (500, 500));
    let msgs = consume_all(&bs, &topic);
    let known = schemas_by_id(&reg, &[s1.schema_id, s2.schema_id]).await;
    assert_eq!(
        classify(EventKind::Orders, &msgs, &known),
        BTreeMap::from([("clean".to_string(), 1_000)])
    );
    // Same seed → the v1 and v2 runs carry the same orders (v2 adds fields): 500 keys, each twice.
    let mut keys: HashMap<Vec<u8>, u32> = HashMap::new();
    for (k, _) in &msgs {
        *keys.entry(k.clone().unwrap()).or_default() += 1;
    }
    assert!(
        keys.values().all(|n| n % 2 == 0),
        "each key appears in both runs"
    );
    // A v2 reader resolves v1 data, filling the defaults.
    let v1 = ParsedSchema::parse(builtin::ORDERS_V1).unwrap();
    let v2 = ParsedSchema::parse(builtin::ORDERS_V2).unwrap();
    let (_, v1_msg) = msgs
        .iter()
        .find(|(_, v)| v[1..5] == s1.schema_id.to_be_bytes())
        .unwrap();
    #[allow(deprecated)]
    let read = apache_avro::from_avro_datum(&v1.avro, &mut &v1_msg[5..], Some(&v2.avro)).unwrap();
    let apache_avro::types::Value::Record(f) = read else {
        panic!()
    };
    assert_eq!(
        f.iter().find(|(n, _)| n == "channel").unwrap().1,
        apache_avro::types::Value::String("web".into())
    );
}

#[tokio::test]
async fn confluent_kafka_python_client_interoperates() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let url = serve(store).await;
    // flowctl's HTTP client registers and produces through the served registry.
    let reg = Registry::Http(RegistryClient::new(&url));
    let topic = unique("orders-interop");
    let s = produce(options(&topic, 2_000, 0.0, SchemaVersion::V1), &reg, &bs)
        .await
        .unwrap();
    assert_eq!(s.sent, 2_000);
    let report = reg
        .check(&format!("{topic}-value"), builtin::ORDERS_INCOMPATIBLE)
        .await
        .unwrap();
    assert!(
        !report.is_compatible && report.messages.len() == 2,
        "{report:?}"
    );
    let py_topic = unique("payments-py");
    flowctl::contracts::broker::ensure_topic(&bs, &py_topic, 2)
        .await
        .unwrap();
    let out = tokio::process::Command::new("python3")
        .arg(repo().join("tests/python/test_confluent_interop.py"))
        .env("REGISTRY_URL", &url)
        .env("BOOTSTRAP", &bs)
        .env("TOPIC", &topic)
        .env("EXPECTED", s.sent.to_string())
        .env("PY_TOPIC", &py_topic)
        .env("SCHEMAS_DIR", repo().join("schemas"))
        .output()
        .await
        .expect("running python3");
    assert!(
        out.status.success(),
        "python confluent-kafka interop failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    // The Python producer's schema was registered through our API.
    let subjects = match &reg {
        Registry::Http(c) => c.subjects().await.unwrap(),
        _ => unreachable!(),
    };
    assert!(
        subjects.contains(&format!("{py_topic}-value")),
        "{subjects:?}"
    );
}

#[test]
fn cli_schemas_register_and_check_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowctl"))
            .args(args)
            .current_dir(repo())
            .env("FLOWCTL_HOME", home.path())
            .env_remove("FLOWCTL_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap()
    };
    let out = run(&["schemas", "register", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg: Value = serde_json::from_slice(&out.stdout).unwrap();
    let subjects: Vec<(&str, i64)> = reg
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["subject"].as_str().unwrap(),
                r["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        subjects,
        [
            ("clickstream-value", 1),
            ("orders-value", 1),
            ("orders-value", 2),
            ("payments-value", 1)
        ]
    );
    let check = |file: &str| {
        run(&["schemas", "check", file, "--subject", "orders-value"])
            .status
            .code()
    };
    assert_eq!(check("schemas/orders-v2.avsc"), Some(0));
    assert_eq!(check("schemas/orders-incompatible.avsc"), Some(1));
    assert_eq!(check("Cargo.toml"), Some(2));
    assert_eq!(
        run(&["produce", "--topic", "orders"]).status.code(),
        Some(2),
        "needs --count or --rate"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `scripts/broker.sh` on its own port and state dir: start is idempotent, status tells the
/// truth, and with `BROKER_STORAGE=sqlite` the data survives a stop/start.
#[tokio::test]
async fn broker_script_restarts_with_sqlite_storage() {
    let home = tempfile::tempdir().unwrap();
    let bs = format!("127.0.0.1:{}", free_port());
    let script = |cmd: &str| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg(cmd)
            .current_dir(home.path())
            .env("FLOWCTL_HOME", home.path())
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bs)
            .env("BROKER_STORAGE", "sqlite")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    assert_eq!(script("status").0, Some(1), "nothing runs yet");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("already") || out.contains("running"),
        "second start reuses the broker: {out}"
    );
    assert_eq!(script("status").0, Some(0));

    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    let topic = unique("payments-restart");
    let s = produce(options(&topic, 300, 0.0, SchemaVersion::V1), &reg, &bs)
        .await
        .unwrap();
    assert_eq!(s.sent, 300);

    let (code, out) = script("stop");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(script("status").0, Some(1), "stopped");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    let bs2 = bs.clone();
    let topic2 = topic.clone();
    let msgs = tokio::task::spawn_blocking(move || consume_all(&bs2, &topic2))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 300, "data survived the restart");
    assert_eq!(script("stop").0, Some(0));
}
