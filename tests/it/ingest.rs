//! Kafka → bronze against the real broker and real Delta tables: every produced event ends in
//! exactly one place (bronze or the DLQ) exactly once, through faults, kill -9 and a broker
//! restart; the tables read back the same with the Python `deltalake` package.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::contracts::client_config;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{Int32Type, Int64Type};
use flowctl::lake::LakeTable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::{Env, stderr, stdout};
use crate::contracts::{broker, unique};
use crate::lake::python_read;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An Env whose home has the repo's schemas registered (the embedded registry).
pub fn env_with_schemas(bootstrap: &str) -> Env {
    let env = Env::new();
    std::os::unix::fs::symlink(repo().join("schemas"), env.dir.path().join("schemas")).unwrap();
    std::os::unix::fs::symlink(
        repo().join("expectations"),
        env.dir.path().join("expectations"),
    )
    .unwrap();
    let out = env
        .cmd(&["schemas", "register"])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", bootstrap)
        .output()
        .unwrap();
    assert!(out.status.success(), "schemas register: {}", stderr(&out));
    env
}

/// `flowctl produce` through the real binary; returns its JSON summary.
pub fn produce(env: &Env, bootstrap: &str, topic: &str, count: u64, bad: f64, seed: u64) -> Value {
    let out = env
        .cmd(&[
            "produce",
            "--topic",
            topic,
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--bad-ratio",
            &bad.to_string(),
            "--json",
        ])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", bootstrap)
        .output()
        .unwrap();
    assert!(out.status.success(), "produce: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn ingest(env: &Env, bootstrap: &str, args: &[&str]) -> std::process::Output {
    let mut a = vec!["ingest"];
    a.extend_from_slice(args);
    env.cmd(&a)
        .env("FLOWCTL_KAFKA_BOOTSTRAP", bootstrap)
        .output()
        .unwrap()
}

/// The DLQ category each injected fault must land in.
fn category(fault: &str) -> &'static str {
    match fault {
        "undecodable" => "DESERIALIZATION_ERROR",
        "wrong_magic" => "WRONG_MAGIC_BYTE",
        "unknown_schema_id" => "UNKNOWN_SCHEMA",
        "null_key" => "MISSING_REQUIRED_FIELD",
        "non_positive_amount" => "VALUE_OUT_OF_RANGE",
        "unknown_currency" => "INVALID_CURRENCY",
        "bad_enum" => "INVALID_ENUM",
        "future_event_time" | "ancient_event_time" => "TIMESTAMP_OUT_OF_RANGE",
        other => panic!("unexpected fault {other}"),
    }
}

/// What the lake holds for one topic: bronze (partition, offset) pairs, audit pairs and
/// audit categories.
pub struct Landed {
    pub bronze: Vec<(i32, i64)>,
    pub audit: Vec<(i32, i64)>,
    pub categories: BTreeMap<String, u64>,
}

pub async fn landed(home: &Path, topic: &str, table: &str) -> Landed {
    let lake = home.join("lake");
    let mut bronze = Vec::new();
    if lake.join(table).exists() {
        let t = LakeTable::open_or_create(&lake.join(table), &empty_schema(), &[])
            .await
            .unwrap();
        for b in t.read_all().unwrap() {
            let p = b
                .column_by_name("_kafka_partition")
                .unwrap()
                .as_primitive::<Int32Type>();
            let o = b
                .column_by_name("_kafka_offset")
                .unwrap()
                .as_primitive::<Int64Type>();
            bronze.extend((0..b.num_rows()).map(|i| (p.value(i), o.value(i))));
        }
    }
    let mut audit = Vec::new();
    let mut categories = BTreeMap::new();
    let t = LakeTable::open_or_create(&lake.join("bronze_dlq_audit"), &empty_schema(), &[])
        .await
        .unwrap();
    for b in t.read_all().unwrap() {
        let src = b.column_by_name("source_topic").unwrap().as_string::<i32>();
        let p = b
            .column_by_name("source_partition")
            .unwrap()
            .as_primitive::<Int32Type>();
        let o = b
            .column_by_name("original_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        let c = b.column_by_name("error_type").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            if src.value(i) == topic {
                audit.push((p.value(i), o.value(i)));
                *categories.entry(c.value(i).to_string()).or_default() += 1;
            }
        }
    }
    Landed {
        bronze,
        audit,
        categories,
    }
}

/// Opening an existing table ignores the schema given.
pub fn empty_schema() -> deltalake::arrow::datatypes::Schema {
    deltalake::arrow::datatypes::Schema::empty()
}

/// Every record of `topic`: (partition, offset) → must each appear exactly once in
/// bronze ∪ audit.
pub fn assert_exactly_once(l: &Landed, sent: u64) {
    let mut seen = HashSet::new();
    for pos in l.bronze.iter().chain(&l.audit) {
        assert!(seen.insert(*pos), "position {pos:?} landed twice");
    }
    assert_eq!(
        (l.bronze.len() + l.audit.len()) as u64,
        sent,
        "bronze {} + dlq {} must equal the {sent} events in Kafka",
        l.bronze.len(),
        l.audit.len()
    );
}

/// The DLQ topic's records for `source_topic`: (source partition, original offset, error_type).
fn dlq_records(bootstrap: &str, dlq: &str, source_topic: &str) -> Vec<(i32, i64, String)> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", unique("it-dlq"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (lo, hi) = c.fetch_watermarks(dlq, 0, Duration::from_secs(15)).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(dlq, 0, Offset::Offset(lo))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut read = lo;
    // A guard against a hung broker, not a performance assertion.
    let give_up = Instant::now() + Duration::from_secs(120);
    while read < hi && Instant::now() < give_up {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            read = m.offset() + 1;
            let h = m.headers().expect("DLQ records carry headers");
            let get = |k: &str| {
                h.iter()
                    .find(|x| x.key == k)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            for k in ["error_detail", "schema_id"] {
                assert!(h.iter().any(|x| x.key == k), "header {k} missing");
            }
            if get("source_topic") == source_topic {
                out.push((
                    get("source_partition").parse().unwrap(),
                    get("original_offset").parse().unwrap(),
                    get("error_type"),
                ));
            }
        }
    }
    assert_eq!(read, hi, "read the whole DLQ topic");
    out
}

#[tokio::test]
async fn fault_mix_lands_exactly_once_by_category_and_python_reads_it() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-mix");
    let dlq = unique("dlq-mix");
    let summary = produce(&env, &bootstrap, &topic, 6000, 0.2, 11);
    let sent = summary["sent"].as_u64().unwrap();
    let out = ingest(
        &env,
        &bootstrap,
        &["--topics", &topic, "--dlq-topic", &dlq, "--json"],
    );
    assert!(out.status.success(), "ingest: {}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["topics"][0]["records"].as_u64(), Some(sent));

    let table = flowctl::ingest::bronze_table(&topic);
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, sent);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (fault, n) in summary["injected"].as_object().unwrap() {
        if fault != "schema_violation" {
            *want.entry(category(fault).into()).or_default() += n.as_u64().unwrap();
        }
    }
    assert!(
        want.len() >= 7,
        "the mix covers at least seven categories: {want:?}"
    );
    assert_eq!(
        l.categories, want,
        "DLQ categories match the injected faults"
    );

    // The DLQ topic holds the same records, once each, with the same categories.
    let topic_dlq = dlq_records(&bootstrap, &dlq, &topic);
    let mut dlq_pos: Vec<(i32, i64)> = topic_dlq.iter().map(|(p, o, _)| (*p, *o)).collect();
    dlq_pos.sort_unstable();
    let mut audit = l.audit.clone();
    audit.sort_unstable();
    assert_eq!(
        dlq_pos, audit,
        "DLQ topic and audit table hold the same records"
    );

    // Another engine reads the same counts and positions.
    let parts: Vec<String> = (0..3)
        .map(|p| flowctl::ingest::app_id(&table, &topic, p))
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let py = python_read(&env.home().join("lake").join(&table), &refs);
    assert_eq!(py["rows"].as_u64(), Some(l.bronze.len() as u64));
    assert_eq!(
        py["distinct_partition_offsets"].as_u64(),
        Some(l.bronze.len() as u64)
    );
    assert_eq!(py["partition_columns"], serde_json::json!(["event_date"]));
    let max_offsets: u64 = parts
        .iter()
        .map(|a| py["txns"][a].as_i64().expect("a txn per partition") as u64 + 1)
        .sum();
    assert_eq!(
        max_offsets, sent,
        "txn versions are the last offsets of each partition"
    );

    // A second ingest finds nothing new and writes nothing.
    let again = ingest(
        &env,
        &bootstrap,
        &["--topics", &topic, "--dlq-topic", &dlq, "--json"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let s: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(s["topics"][0]["records"].as_u64(), Some(0));
    let l2 = landed(&env.home(), &topic, &table).await;
    assert_eq!(
        (l2.bronze.len(), l2.audit.len()),
        (l.bronze.len(), l.audit.len())
    );
}

/// Sends raw records (no Avro, no registry): what a misbehaving producer does.
pub fn produce_raw(bootstrap: &str, topic: &str, records: &[(Option<Vec<u8>>, Vec<u8>)]) {
    let p: BaseProducer = client_config(bootstrap).create().unwrap();
    for (k, v) in records {
        let mut r = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic).payload(v);
        if let Some(k) = k {
            r = r.key(k);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

#[tokio::test]
async fn a_topic_of_garbage_ends_entirely_in_the_dlq() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-garbage");
    let dlq = unique("dlq-garbage");
    let mut records = Vec::new();
    for i in 0..500u32 {
        let v = match i % 4 {
            0 => Vec::new(),                                  // empty
            1 => format!("not avro at all {i}").into_bytes(), // wrong magic
            2 => vec![0, 0, 0, 0],                            // too short
            _ => vec![0, 0x7f, 0xff, 0xff, 0x01, 1, 2, 3],    // unknown schema id
        };
        records.push((Some(i.to_be_bytes().to_vec()), v));
    }
    produce_raw(&bootstrap, &topic, &records);
    let out = ingest(&env, &bootstrap, &["--topics", &topic, "--dlq-topic", &dlq]);
    assert!(out.status.success(), "ingest: {}", stderr(&out));
    let table = flowctl::ingest::bronze_table(&topic);
    let l = landed(&env.home(), &topic, &table).await;
    assert_eq!(l.bronze.len(), 0);
    assert_exactly_once(&l, 500);
    assert_eq!(l.categories["UNKNOWN_SCHEMA"], 125);
    assert_eq!(l.categories["WRONG_MAGIC_BYTE"], 125);
    assert_eq!(l.categories["DESERIALIZATION_ERROR"], 250);
    // The bronze table still moved its position: a rerun reads nothing again.
    let again = ingest(
        &env,
        &bootstrap,
        &["--topics", &topic, "--dlq-topic", &dlq, "--json"],
    );
    let s: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        s["topics"][0]["records"].as_u64(),
        Some(0),
        "{}",
        stderr(&again)
    );
}

/// Waits until `table` has at least `version`, or panics after `limit`.
fn wait_for_version(table: &Path, version: u64, limit: Duration) {
    let file = table.join(format!("_delta_log/{version:020}.json"));
    let until = Instant::now() + limit;
    while !file.exists() {
        assert!(Instant::now() < until, "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn kill_nine_twice_then_rerun_loses_and_duplicates_nothing() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-kill");
    let dlq = unique("dlq-kill");
    // Enough batches that a run outlasts the random kill moment below.
    let summary = produce(&env, &bootstrap, &topic, 150_000, 0.1, 5);
    let sent = summary["sent"].as_u64().unwrap();
    let table = flowctl::ingest::bronze_table(&topic);
    let table_path = env.home().join("lake").join(&table);
    let args = [
        "ingest",
        "--topics",
        &topic,
        "--dlq-topic",
        &dlq,
        "--batch-records",
        "1500",
    ];
    let spawn = || {
        env.cmd(&args)
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // First kill: right after the first data commit (version 0 creates the table).
    let mut child = spawn();
    wait_for_version(&table_path, 1, Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Second kill: at a random moment of the next run.
    let delay = 200 + (std::process::id() as u64 * 7919 + sent) % 1200;
    let mut child = spawn();
    std::thread::sleep(Duration::from_millis(delay));
    child.kill().unwrap();
    child.wait().unwrap();
    let mid = landed(&env.home(), &topic, &table).await;
    assert!(
        ((mid.bronze.len() + mid.audit.len()) as u64) < sent,
        "the kills happened before the end (else the test proves nothing)"
    );
    let out = ingest(&env, &bootstrap, &args[1..]);
    assert!(out.status.success(), "rerun: {}", stderr(&out));
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, sent);
    // The DLQ topic too holds each bad record once.
    let dlq_recs = dlq_records(&bootstrap, &dlq, &topic);
    let uniq: HashSet<(i32, i64)> = dlq_recs.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(
        uniq.len(),
        dlq_recs.len(),
        "no DLQ record was produced twice"
    );
    assert_eq!(uniq.len(), l.audit.len());
}

/// Deletes and recreates `topic` with one partition.
fn recreate(bootstrap: &str, topic: &str) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys,time\nfrom confluent_kafka.admin import AdminClient, NewTopic\n\
             a=AdminClient({'bootstrap.servers':sys.argv[1]})\n\
             a.delete_topics([sys.argv[2]])[sys.argv[2]].result()\ntime.sleep(0.5)\n\
             a.create_topics([NewTopic(sys.argv[2],1,1)])[sys.argv[2]].result()",
        )
        .arg(bootstrap)
        .arg(topic)
        .status()
        .unwrap();
    assert!(status.success(), "recreating {topic}");
}

#[tokio::test]
async fn a_recreated_topic_fails_loudly_until_an_explicit_reset() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-recreated");
    let dlq = unique("dlq-recreated");
    flowctl::kafka::ensure_topic(
        &flowctl::kafka::KafkaSettings::new(bootstrap.as_str()),
        &topic,
        1,
    )
    .await
    .unwrap();
    let first = produce(&env, &bootstrap, &topic, 300, 0.0, 3)["sent"]
        .as_u64()
        .unwrap();
    let out = ingest(&env, &bootstrap, &["--topics", &topic, "--dlq-topic", &dlq]);
    assert!(out.status.success(), "{}", stderr(&out));
    recreate(&bootstrap, &topic);
    let second = produce(&env, &bootstrap, &topic, 40, 0.0, 4)["sent"]
        .as_u64()
        .unwrap();
    let out = ingest(&env, &bootstrap, &["--topics", &topic, "--dlq-topic", &dlq]);
    assert_eq!(out.status.code(), Some(1), "stdout {}", stdout(&out));
    let err = stderr(&out);
    for needle in [
        topic.as_str(),
        "partition 0",
        &format!("next offset {first}"),
        "log end 40",
        "--reset-offsets",
    ] {
        assert!(err.contains(needle), "error names {needle:?}: {err}");
    }
    let table = flowctl::ingest::bronze_table(&topic);
    assert_eq!(
        landed(&env.home(), &topic, &table).await.bronze.len() as u64,
        first
    );
    let out = ingest(
        &env,
        &bootstrap,
        &[
            "--topics",
            &topic,
            "--dlq-topic",
            &dlq,
            "--reset-offsets",
            "earliest",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let l = landed(&env.home(), &topic, &table).await;
    assert_eq!(l.bronze.len() as u64, first + second);
}

#[tokio::test]
async fn v2_columns_are_added_to_a_v1_table_and_older_rows_read_null() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-v1v2");
    let dlq = unique("dlq-v1v2");
    let produce_version = |version: &str, seed: &str| {
        let out = env
            .cmd(&[
                "produce",
                "--topic",
                &topic,
                "--count",
                "200",
                "--seed",
                seed,
                "--schema-version",
                version,
                "--bad-ratio",
                "0",
            ])
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let ingest_ok = || {
        let out = ingest(&env, &bootstrap, &["--topics", &topic, "--dlq-topic", &dlq]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    // The table is born with the v1 reader schema (the latest the subject has then).
    produce_version("v1", "1");
    ingest_ok();
    let path = env
        .home()
        .join("lake")
        .join(flowctl::ingest::bronze_table(&topic));
    let t = LakeTable::open_or_create(&path, &empty_schema(), &[])
        .await
        .unwrap();
    assert!(
        t.arrow_schema()
            .unwrap()
            .field_with_name("channel")
            .is_err()
    );
    // v2 arrives: its columns are added, v1 rows already there read null.
    produce_version("v2", "2");
    ingest_ok();
    let t = LakeTable::open_or_create(&path, &empty_schema(), &[])
        .await
        .unwrap();
    let mut by_schema: BTreeMap<i32, (usize, usize)> = BTreeMap::new();
    for b in t.read_all().unwrap() {
        let ids = b
            .column_by_name("_schema_id")
            .unwrap()
            .as_primitive::<Int32Type>();
        let channel = b.column_by_name("channel").unwrap();
        for i in 0..b.num_rows() {
            let e = by_schema.entry(ids.value(i)).or_default();
            e.0 += 1;
            e.1 += usize::from(!channel.is_null(i));
        }
    }
    let counts: Vec<(usize, usize)> = by_schema.values().copied().collect();
    assert_eq!(
        counts,
        vec![(200, 0), (200, 200)],
        "v1 rows: channel null; v2 rows: set"
    );
}

/// A broker of the test's own: topics no other test writes to; with sqlite storage its data
/// survives a restart.
pub struct PrivateBroker {
    home: tempfile::TempDir,
    pub bootstrap: String,
    storage: &'static str,
    /// More `scripts/broker.sh` settings (the secured mode's BROKER_TLS_*, BROKER_SCRAM_USERS).
    env: Vec<(String, String)>,
}

impl PrivateBroker {
    pub fn start(storage: &'static str) -> PrivateBroker {
        PrivateBroker::start_with(storage, &[])
    }

    pub fn start_with(storage: &'static str, env: &[(&str, &str)]) -> PrivateBroker {
        let b = PrivateBroker {
            home: tempfile::tempdir().unwrap(),
            bootstrap: format!("127.0.0.1:{}", crate::server::free_port()),
            storage,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        b.script("start");
        b
    }

    /// The broker's log and data directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn script(&self, action: &str) {
        let out = Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg(action)
            .env("FLOWCTL_HOME", self.home.path())
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &self.bootstrap)
            .env("BROKER_STORAGE", self.storage)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "broker.sh {action}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.script("stop");
    }
}

#[tokio::test]
async fn a_broker_restart_mid_ingest_is_retried_and_completes_exactly_once() {
    let broker = PrivateBroker::start("sqlite");
    let bootstrap = broker.bootstrap.clone();
    let env = env_with_schemas(&bootstrap);
    let topic = "orders-restart";
    // Enough batches that the pipelined ingest is still producing to the DLQ (and reading) when
    // the broker goes down a moment after its first commit.
    let sent = produce(&env, &bootstrap, topic, 100_000, 0.05, 9)["sent"]
        .as_u64()
        .unwrap();
    env.flow(
        "ingest_only",
        "name: ingest_only\nretries:\n  count: 6\n  delay: 1s\n  backoff: 1\ntasks:\n  \
         - id: ingest\n    kind: ingest_bronze\n    params:\n      topics: [orders-restart]\n      \
         batch_records: 200\n      idle_timeout: 4s\n      dlq_timeout: 2s\n",
    );
    let child = env
        .cmd(&["trigger", "ingest_only", "--json"])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = flowctl::ingest::bronze_table(topic);
    let table_path = env.home().join("lake").join(&table);
    wait_for_version(&table_path, 2, Duration::from_secs(120));
    // Down for longer than the idle and DLQ timeouts: whether the outage hits the consumer (idle)
    // or a DLQ send (every batch has bad records), the attempt fails and is retried.
    broker.script("stop");
    // Counted while the broker is down: once it is back, the retried attempt may finish the
    // topic before a later count (a CI run saw that and called the restart "not mid-ingest").
    let before = landed(&env.home(), topic, &table).await;
    std::thread::sleep(Duration::from_secs(6));
    broker.script("start");
    assert!(
        ((before.bronze.len() + before.audit.len()) as u64) < sent,
        "the restart happened mid-ingest (else the test proves nothing)"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the run completes after the restart: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = crate::common::run_id(&run).to_string();
    let (_, run) = env.json(&["runs", "show", &id]);
    assert_eq!(crate::common::task_state(&run, "ingest"), "success");
    let attempts = crate::common::attempts(&run, "ingest");
    assert!(
        attempts.len() >= 2,
        "the outage failed an attempt: {attempts:?}"
    );
    let l = landed(&env.home(), topic, &table).await;
    assert_exactly_once(&l, sent);
}

#[tokio::test]
async fn follow_keeps_ingesting_and_ctrl_c_commits_and_exits_cleanly() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-follow");
    let dlq = unique("dlq-follow");
    flowctl::kafka::ensure_topic(
        &flowctl::kafka::KafkaSettings::new(bootstrap.as_str()),
        &topic,
        2,
    )
    .await
    .unwrap();
    let first = produce(&env, &bootstrap, &topic, 500, 0.1, 1)["sent"]
        .as_u64()
        .unwrap();
    let child = env
        .cmd(&[
            "ingest",
            "--topics",
            &topic,
            "--dlq-topic",
            &dlq,
            "--follow",
            "--commit-interval",
            "300ms",
            "--json",
        ])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = flowctl::ingest::bronze_table(&topic);
    // Events produced while it runs are picked up too.
    std::thread::sleep(Duration::from_millis(500));
    let second = produce(&env, &bootstrap, &topic, 700, 0.1, 2)["sent"]
        .as_u64()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let l = landed(&env.home(), &topic, &table).await;
        if (l.bronze.len() + l.audit.len()) as u64 >= first + second {
            break;
        }
        assert!(Instant::now() < until, "follow never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "Ctrl-C exits 0: {}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        s["topics"][0]["end"]
            .as_str()
            .unwrap()
            .contains("stopped on request")
    );
    let l = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&l, first + second);
}

#[tokio::test]
async fn replaying_the_dlq_after_a_fix_lands_each_event_once() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    // This test edits its expectations: a copy instead of the repo's files.
    let exp = env.dir.path().join("expectations");
    std::fs::remove_file(&exp).unwrap();
    std::fs::create_dir(&exp).unwrap();
    for f in std::fs::read_dir(repo().join("expectations")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, exp.join(f.file_name().unwrap())).unwrap();
    }
    let topic = unique("orders-replay");
    let dlq = unique("dlq-replay");
    let sent = produce(&env, &bootstrap, &topic, 3000, 0.2, 21)["sent"]
        .as_u64()
        .unwrap();
    let out = ingest(&env, &bootstrap, &["--topics", &topic, "--dlq-topic", &dlq]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = flowctl::ingest::bronze_table(&topic);
    let before = landed(&env.home(), &topic, &table).await;
    assert_exactly_once(&before, sent);
    let fixable = before.categories["INVALID_CURRENCY"];
    assert!(fixable > 0);

    // The fix: the business accepts any currency now.
    let rules = exp.join("bronze_orders.yaml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let rule = "  - name: currency_known\n    category: INVALID_CURRENCY\n    invalid: currency\n    valid_values: {domain: currencies}\n";
    assert!(text.contains(rule), "the rule to relax is in the file");
    std::fs::write(&rules, text.replace(rule, "")).unwrap();

    let replay = |expect_landed: u64| {
        let out = env
            .cmd(&["replay", &dlq, "--from-offset", "0", "--json"])
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
            .output()
            .unwrap();
        assert!(out.status.success(), "replay: {}", stderr(&out));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["read"].as_u64(), Some(before.audit.len() as u64), "{s}");
        assert_eq!(
            s["landed"][&topic].as_u64().unwrap_or(0),
            expect_landed,
            "{s}"
        );
        s
    };
    let first = replay(fixable);
    let still: u64 = first["still_failing"][&topic]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        still + fixable,
        before.audit.len() as u64,
        "the rest still fails"
    );
    let after = landed(&env.home(), &topic, &table).await;
    assert_eq!(
        after.bronze.len() as u64,
        before.bronze.len() as u64 + fixable
    );
    let uniq: HashSet<(i32, i64)> = after.bronze.iter().copied().collect();
    assert_eq!(
        uniq.len(),
        after.bronze.len(),
        "no position twice in bronze"
    );

    // Replaying again lands nothing: the replay position is committed with the rows.
    let second = replay(0);
    assert_eq!(
        second["already_replayed"].as_u64(),
        Some(before.audit.len() as u64)
    );
    let again = landed(&env.home(), &topic, &table).await;
    assert_eq!(again.bronze.len(), after.bronze.len());
}

/// Issue 18: a bronze rule on a column the contract does not have made ingest fail with a
/// misleading type message alone. It now also names the file, the line and the columns there
/// are (`checks validate` refuses the file outright).
#[tokio::test]
async fn a_rule_on_an_unknown_column_is_refused_with_its_line() {
    let bootstrap = broker();
    let env = Env::new();
    std::os::unix::fs::symlink(repo().join("schemas"), env.dir.path().join("schemas")).unwrap();
    crate::common::with_expectations(&env);
    let rules = env.dir.path().join("expectations/bronze_orders.yaml");
    let text = std::fs::read_to_string(&rules).unwrap().replace(
        "rules:\n",
        "rules:\n  - name: bogus\n    category: VALUE_OUT_OF_RANGE\n    invalid: no_such_column_xyz\n    valid_min: 0\n",
    );
    std::fs::write(&rules, text).unwrap();
    let out = env
        .cmd(&["schemas", "register"])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let topic = unique("orders-badrule");
    produce(&env, &bootstrap, &topic, 20, 0.0, 3);
    let out = ingest(&env, &bootstrap, &["--topics", &topic]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bronze_orders.yaml:")
            && err.contains(
                "rule `bogus` names column `no_such_column_xyz`, which bronze_orders does not have"
            ),
        "{err}"
    );
    let table = flowctl::ingest::bronze_table(&topic);
    assert!(!env.home().join("lake").join(table).exists());
}
