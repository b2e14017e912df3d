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

/// Sorted rows of `table` for one event date, as text (content comparison).
async fn day_rows(home: &Path, table: &str, day: &str) -> Vec<String> {
    let t = LakeTable::open_or_create(&home.join("lake").join(table), &Schema::empty(), &[])
        .await
        .unwrap();
    let df = t.read_df().unwrap();
    let dates = df
        .column("event_date")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    let mut out = Vec::new();
    for i in 0..df.height() {
        if dates.get(i).unwrap().str_value() == day {
            out.push(format!("{:?}", df.get_row(i).unwrap().0));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_backfill_rebuilds_a_lost_day_of_silver_and_gold_from_bronze() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let broker = PrivateBroker::start("memory");
    let env = Env::new();
    let trigger = |params: &[&str]| {
        let mut args = vec!["trigger", "pipeline_full", "--json"];
        for p in params {
            args.extend(["--param", p]);
        }
        env.cmd(&args)
            .env("FLOWCTL_FLOWS_DIR", root.join("flows"))
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &broker.bootstrap)
            .current_dir(root)
            .output()
            .unwrap()
    };
    let out = trigger(&["events=1500", "seed=5"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let home = env.home();
    // The busiest day.
    let orders = LakeTable::open_or_create(&home.join("lake/silver_orders"), &Schema::empty(), &[])
        .await
        .unwrap()
        .read_df()
        .unwrap();
    let dates = orders
        .column("event_date")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    let mut per_day: std::collections::BTreeMap<String, usize> = Default::default();
    for i in 0..dates.len() {
        *per_day
            .entry(dates.get(i).unwrap().str_value().to_string())
            .or_default() += 1;
    }
    let day = per_day.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
    let silver_before = day_rows(&home, "silver_orders", &day).await;
    let gold_before = day_rows(&home, "gold_daily_revenue", &day).await;
    assert!(silver_before.len() > 10 && !gold_before.is_empty());

    // A bad deploy wipes that day from silver (published like any write).
    let lake_home = home.clone();
    let t = LakeTable::open_or_create(&home.join("lake/silver_orders"), &Schema::empty(), &[])
        .await
        .unwrap();
    let empty = deltalake::arrow::record_batch::RecordBatch::new_empty(t.arrow_schema().unwrap());
    let mut spec = flowctl::lake::StageSpec::new(flowctl::lake::StageMode::ReplacePartitions);
    spec.partitions = vec![day.clone()];
    let staged = flowctl::lake::stage(&lake_home, "silver_orders", &t, [empty], spec)
        .await
        .unwrap();
    staged.publish(&lake_home).await.unwrap();
    assert!(day_rows(&home, "silver_orders", &day).await.is_empty());

    // The backfill rebuilds it from bronze; gold follows. Twice: same content.
    for _ in 0..2 {
        let from = format!("from={day}");
        let to = format!("to={day}");
        let out = trigger(&[&from, &to]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(day_rows(&home, "silver_orders", &day).await, silver_before);
        assert_eq!(
            day_rows(&home, "gold_daily_revenue", &day).await,
            gold_before
        );
    }
}
