//! What `serve` tells an operator without any ingest running: consumer lag per partition from
//! the broker's watermarks and bronze's committed positions, and a /healthz that says what is
//! wrong (state DB, scheduler, broker, last run per flow).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Env, stderr};
use crate::contracts::{broker, unique};
use crate::ingest::{env_with_schemas, ingest, produce};
use crate::server::{Server, get};

/// The summed `flowctl_consumer_lag` of `topic` on /metrics, once it appears.
fn lag_of(server: &Server, topic: &str, limit: Duration) -> Option<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let text = crate::server::text(&server.url("/metrics"));
        let needle = "flowctl_consumer_lag{partition=";
        let lags: Vec<i64> = text
            .lines()
            .filter(|l| l.starts_with(needle) && l.contains(&format!("topic=\"{topic}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if !lags.is_empty() {
            return Some(lags.iter().sum());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn serve_exports_lag_without_an_ingest_and_healthz_reports_the_broker_and_last_runs() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-lag");
    let first = produce(&env, &bootstrap, &topic, 300, 0.05, 4)["sent"]
        .as_u64()
        .unwrap();
    let out = ingest(&env, &bootstrap, &["--topics", &topic]);
    assert!(out.status.success(), "{}", stderr(&out));
    let more = produce(&env, &bootstrap, &topic, 70, 0.0, 5)["sent"]
        .as_u64()
        .unwrap();
    assert!(first > 0 && more == 70);
    env.flow("ok", "name: ok\ntasks:\n  - id: a\n    kind: noop\n");
    assert!(env.run(&["trigger", "ok"]).status.success());

    let server = Server::start(&env, &[("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)]);
    // Exactly what was produced after the ingest (bronze's position covers its dead letters too).
    assert_eq!(lag_of(&server, &topic, Duration::from_secs(10)), Some(70));
    let (code, h) = get(&server.url("/healthz?require=broker"));
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["broker"]["reachable"], true, "{h}");
    assert_eq!(h["state_db"]["ok"], true);
    assert_eq!(h["scheduler"]["running"], true, "{h}");
    assert!(
        h["scheduler"]["heartbeat_age_seconds"].as_f64().unwrap() < 10.0,
        "{h}"
    );
    assert_eq!(h["last_runs"]["ok"]["state"], "success", "{h}");
    assert_eq!(h["last_runs"]["ok"]["run_id"], 1);

    // The DLQ audit table's page charts its dead letters by day and category.
    let landed =
        crate::ingest::landed(&env.home(), &topic, &flowctl::ingest::bronze_table(&topic)).await;
    assert!(!landed.audit.is_empty());
    let page = crate::server::text(&server.url("/tables/bronze_dlq_audit"));
    assert!(page.contains("id=\"dlq-chart\""), "{page}");
    let charted: i64 = page
        .split("<rect data-bar=")
        .skip(1)
        .filter_map(|r| {
            let title = r.split("<title>").nth(1)?.split("</title>").next()?;
            title
                .split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum();
    assert_eq!(
        charted,
        landed.audit.len() as i64,
        "every dead letter is in the chart"
    );
    server.kill();
}

#[tokio::test]
async fn healthz_reports_an_unreachable_broker_and_fails_only_when_asked_to() {
    let env = Env::new();
    // Nothing listens there.
    let dead = format!("127.0.0.1:{}", crate::server::free_port());
    let server = Server::start(&env, &[("FLOWCTL_KAFKA_BOOTSTRAP", &dead)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let h: Value = loop {
        let (_, h) = get(&server.url("/healthz"));
        if h["broker"]["checked"] == true || Instant::now() >= deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(h["broker"]["reachable"], false, "{h}");
    assert_eq!(
        h["status"], "ok",
        "Kafka down is reported, not a failed liveness: {h}"
    );
    let (code, strict) = get(&server.url("/healthz?require=broker"));
    assert_eq!(code, 503, "{strict}");
    assert!(
        strict["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("broker unreachable"),
        "{strict}"
    );
    server.kill();
}

/// `name{labels} value` lines of /metrics for `name` with `label` in their labels.
fn metric(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn ingest_under_serve_records_each_events_latency_to_its_bronze_commit() {
    let bootstrap = broker();
    let env = env_with_schemas(&bootstrap);
    let topic = unique("orders-e2e");
    let sent = produce(&env, &bootstrap, &topic, 400, 0.0, 8)["sent"]
        .as_u64()
        .unwrap();
    env.flow(
        "ingest_e2e",
        &format!(
            "name: ingest_e2e\ntasks:\n  - id: ingest\n    kind: ingest_bronze\n    params:\n      \
             topics: [{topic}]\n"
        ),
    );
    let server = Server::start(&env, &[("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)]);
    let (code, created) =
        crate::server::post(&server.url("/api/flows/ingest_e2e/trigger"), None, None);
    assert!((200..300).contains(&code), "{created}");
    let done = crate::server::wait_run(&server, created["run_id"].as_i64().unwrap());
    assert_eq!(done["run"]["state"], "success", "{done}");
    let text = crate::server::text(&server.url("/metrics"));
    let table = flowctl::ingest::bronze_table(&topic);
    let label = format!("table=\"{table}\"");
    let count = metric(&text, "flowctl_end_to_end_latency_seconds_count", &label);
    let sum = metric(&text, "flowctl_end_to_end_latency_seconds_sum", &label);
    assert_eq!(
        count,
        Some(sent as f64),
        "one observation per event:\n{text}"
    );
    // Produced moments ago: seconds, not the hours a unit mix-up (ms vs µs) would show.
    let mean = sum.unwrap() / count.unwrap();
    assert!(mean > 0.0 && mean < 120.0, "mean latency {mean} s");
    server.kill();
}
