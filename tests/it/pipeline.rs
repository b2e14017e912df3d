//! The README's quick-start flow, end to end, as shipped in flows/ and expectations/: events
//! produced to a broker of its own (so the topics hold exactly this run's events), ingested
//! exactly once, gated, transformed to silver and gold, every check recorded.

use std::path::Path;

use deltalake::arrow::datatypes::Schema;
use flowctl::lake::LakeTable;

use crate::common::{Env, stderr, stdout, task_state};
use crate::ingest::PrivateBroker;

async fn rows(home: &Path, table: &str) -> usize {
    LakeTable::open_or_create(&home.join("lake").join(table), &Schema::empty(), &[])
        .await
        .unwrap()
        .row_count()
        .unwrap()
}

#[tokio::test]
async fn pipeline_full_runs_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let broker = PrivateBroker::start("memory");
    let env = Env::new();
    let out = env
        .cmd(&[
            "trigger",
            "pipeline_full",
            "--param",
            "events=2000",
            "--param",
            "seed=11",
            "--json",
        ])
        .env("FLOWCTL_FLOWS_DIR", root.join("flows"))
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &broker.bootstrap)
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["state"], "success");
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "success", "{t}");
    }
    let id = v["run"]["id"].to_string();
    let logs = env.run(&["logs", &id, "produce_orders"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("generated       2000"), "{text}");

    // Every event sent is in bronze or the DLQ (5% faults by default, minus the schema
    // violations the producer rejects before Kafka).
    let home = env.home();
    let (_, show) = env.json(&["runs", "show", &id]);
    assert_eq!(task_state(&show, "gold_gate"), "success");
    let bronze = rows(&home, "bronze_orders").await
        + rows(&home, "bronze_clickstream").await
        + rows(&home, "bronze_payments").await;
    let dlq = rows(&home, "bronze_dlq_audit").await;
    assert!(bronze > 5000 && dlq > 100, "bronze {bronze}, dlq {dlq}");
    assert!(
        bronze + dlq <= 6000 && bronze + dlq > 5900,
        "bronze {bronze} + dlq {dlq}"
    );
    for t in [
        "silver_orders",
        "silver_order_items",
        "silver_clickstream",
        "silver_payments",
        "gold_daily_revenue",
        "gold_payment_success_rate",
        "gold_campaign_engagement",
        "gold_pipeline_health",
    ] {
        assert!(rows(&home, t).await > 0, "{t} has rows");
    }
    // Gold's lineage walks back through silver and bronze to this run's Kafka offsets.
    let lineage = env.run(&["lineage", "gold_daily_revenue"]);
    assert_eq!(lineage.status.code(), Some(0), "{}", stderr(&lineage));
    let text = stdout(&lineage);
    for needle in [
        "gold_daily_revenue v",
        "silver_orders v",
        "bronze_orders v",
        "orders[0]",
    ] {
        assert!(text.contains(needle), "lineage names {needle}: {text}");
    }
    assert!(
        text.contains(&format!("run {id}")),
        "written by this run: {text}"
    );
    // Every gate's results are recorded and shown.
    let checks = env.run(&["checks", &id]);
    assert_eq!(checks.status.code(), Some(0), "{}", stderr(&checks));
    let text = stdout(&checks);
    for t in ["bronze_orders", "silver_orders", "gold_daily_revenue"] {
        assert!(text.contains(t), "checks of {t} shown: {text}");
    }
}
