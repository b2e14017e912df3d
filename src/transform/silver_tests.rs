//! Silver over small generated bronze data (the integration tests in tests/it/transform.rs
//! cover the flows through the binary).

use std::collections::{HashMap, HashSet};

use apache_avro::types::Value;

use super::*;
use crate::contracts::domain::EventKind;
use crate::contracts::generate::{Event, GenConfig, Generator, SchemaVersion};
use crate::contracts::schema::builtin;
use crate::lake::staged;
use crate::support::synth::{BronzeWriter, reaches_bronze, reaches_silver};
use crate::transform::schema;
use crate::wap::{Audit, audit};

const T0: i64 = 1_763_900_000_000;

fn key(e: &Event) -> Option<String> {
    match &e.value {
        Value::Record(f) => f.iter().find_map(|(n, v)| match v {
            Value::String(s) if n == "order_id" => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    }
}

async fn publish_all(home: &Path) {
    for t in ["silver_orders", "silver_order_items"] {
        if staged(home, t).unwrap().is_some() {
            let out = audit(home, t, &Audit::MinRows(0), true).await.unwrap();
            assert!(out.verdict.passed());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_dedup_quarantine_and_idempotence() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut cfg = GenConfig::new(EventKind::Orders, 5, T0);
    cfg.bad_ratio = 0.05;
    cfg.duplicate_ratio = 0.05;
    let v1: Vec<Event> = Generator::new(cfg.clone()).take(1500).collect();
    cfg.version = SchemaVersion::V2;
    cfg.seed = 6;
    let v2: Vec<Event> = Generator::new(cfg).take(1500).collect();
    let mut w = BronzeWriter::open(
        home,
        EventKind::Orders,
        &[(11, builtin::ORDERS_V1), (12, builtin::ORDERS_V2)],
        T0 * 1000,
    )
    .await
    .unwrap();
    let evs: Vec<(i32, &Event)> = v1
        .iter()
        .map(|e| (11, e))
        .chain(v2.iter().map(|e| (12, e)))
        .collect();
    w.append(&evs).await.unwrap();
    let run = SilverRun {
        run_id: Some(1),
        now_us: T0 * 1000,
        schema_versions: HashMap::from([(11, 1), (12, 2)]),
        rules: crate::transform::rules::SilverRules::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations"),
        )
        .unwrap(),
        backfill: None,
    };
    let r = transform_entity(home, Entity::Orders, &run).await.unwrap();
    let in_bronze: Vec<&Event> = evs
        .iter()
        .map(|(_, e)| *e)
        .filter(|e| reaches_bronze(e))
        .collect();
    let clean: HashSet<String> = in_bronze
        .iter()
        .filter(|e| reaches_silver(e))
        .filter_map(|e| key(e))
        .collect();
    let bad = in_bronze.iter().filter(|e| !reaches_silver(e)).count();
    assert!(bad > 50, "the fault mix reaches silver's rules: {bad}");
    assert_eq!(r.rows_in, in_bronze.len());
    assert_eq!(r.quarantined, bad);
    assert_eq!(r.rows_staged, clean.len());
    assert_eq!(r.duplicates_removed, in_bronze.len() - bad - clean.len());
    publish_all(home).await;
    let silver = schema::silver_orders().open(home).await.unwrap();
    let df = silver.scan().unwrap().collect().unwrap();
    assert_eq!(df.height(), clean.len());
    let v2_rows = df
        .column("schema_version")
        .unwrap()
        .i32()
        .unwrap()
        .iter()
        .filter(|v| *v == Some(2))
        .count();
    assert!(v2_rows > 1000 && v2_rows < 1500, "{v2_rows}");
    let items = schema::silver_order_items().open(home).await.unwrap();
    let item_rows: i64 = df
        .column("item_count")
        .unwrap()
        .i32()
        .unwrap()
        .iter()
        .flatten()
        .map(i64::from)
        .sum();
    assert_eq!(items.row_count().unwrap() as i64, item_rows);

    // Nothing new: nothing staged, no new version.
    let version = silver.version();
    let again = transform_entity(home, Entity::Orders, &run).await.unwrap();
    assert!(again.staged.is_empty());
    assert!(staged(home, "silver_orders").unwrap().is_none());

    // The same events again (a replayed topic, new offsets): silver does not change.
    w.append(&evs[..200]).await.unwrap();
    transform_entity(home, Entity::Orders, &run).await.unwrap();
    publish_all(home).await;
    let mut silver = silver;
    silver.refresh().await.unwrap();
    assert_eq!(silver.version(), version + 1);
    let after = silver.scan().unwrap().collect().unwrap();
    assert_eq!(after.height(), clean.len());
    let q = schema::silver_quarantine().open(home).await.unwrap();
    let replayed_bad = evs[..200]
        .iter()
        .filter(|(_, e)| reaches_bronze(e) && !reaches_silver(e))
        .count();
    // Quarantine is keyed by bronze offset: the replay's bad rows are new rows.
    assert_eq!(q.row_count().unwrap(), bad + replayed_bad);
    let business = |d: &DataFrame| {
        d.clone()
            .lazy()
            .drop(cols([
                "_kafka_offset",
                "_bronze_version",
                "_kafka_partition",
            ]))
            .sort(["order_id"], Default::default())
            .collect()
            .unwrap()
    };
    assert!(business(&df).equals_missing(&business(&after)));
}

/// Silver's rules are the expectation file's: a rule added to a copy of `silver_orders.yaml`
/// quarantines exactly the rows that break it, under its name, and silver keeps none of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_added_to_the_expectation_file_quarantines_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let exp = dir.path().join("expectations");
    std::fs::create_dir_all(&exp).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let orders = std::fs::read_to_string(repo.join("silver_orders.yaml")).unwrap();
    let orders = orders.replacen(
        "rules:\n",
        "rules:\n  - name: amount_at_most_300\n    category: VALUE_OUT_OF_RANGE\n    invalid: amount\n    valid_max: 300\n",
        1,
    );
    std::fs::write(exp.join("silver_orders.yaml"), orders).unwrap();
    std::fs::copy(repo.join("domains.yaml"), exp.join("domains.yaml")).unwrap();
    let mut cfg = GenConfig::new(EventKind::Orders, 9, T0);
    cfg.bad_ratio = 0.0;
    let evs: Vec<Event> = Generator::new(cfg).take(600).collect();
    let mut w = BronzeWriter::open(
        &home,
        EventKind::Orders,
        &[(11, builtin::ORDERS_V1)],
        T0 * 1000,
    )
    .await
    .unwrap();
    let refs: Vec<(i32, &Event)> = evs.iter().map(|e| (11, e)).collect();
    w.append(&refs).await.unwrap();
    let run = SilverRun {
        run_id: Some(1),
        now_us: T0 * 1000,
        schema_versions: HashMap::from([(11, 1)]),
        rules: crate::transform::rules::SilverRules::load(&exp).unwrap(),
        backfill: None,
    };
    let r = transform_entity(&home, Entity::Orders, &run).await.unwrap();
    let bronze = crate::lake::LakeTable::open(&crate::lake::lake_root(&home).join("bronze_orders"))
        .await
        .unwrap()
        .scan()
        .unwrap();
    let over = bronze
        .filter(
            col("amount")
                .round(2, RoundMode::HalfAwayFromZero)
                .gt(lit(300.0)),
        )
        .collect()
        .unwrap()
        .height();
    assert!(
        over > 50 && over < 550,
        "the generator's amounts straddle 300: {over}"
    );
    assert_eq!(r.quarantined, over);
    let q = schema::silver_quarantine()
        .open(&home)
        .await
        .unwrap()
        .scan()
        .unwrap()
        .collect()
        .unwrap();
    let rules: HashSet<&str> = q
        .column("failed_rules")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(rules, HashSet::from(["amount_at_most_300"]));
    // Without the file, silver refuses to run rather than let everything through.
    std::fs::remove_file(exp.join("silver_orders.yaml")).unwrap();
    let without = SilverRun {
        rules: crate::transform::rules::SilverRules::load(&exp).unwrap(),
        ..run.clone()
    };
    let err = transform_entity(&home, Entity::Orders, &without)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("silver_orders.yaml"), "{err}");

    publish_all(&home).await;
    let max = schema::silver_orders()
        .open(&home)
        .await
        .unwrap()
        .scan()
        .unwrap()
        .select([col("amount").max()])
        .collect()
        .unwrap();
    assert!(max.column("amount").unwrap().f64().unwrap().get(0).unwrap() <= 300.0);
}
