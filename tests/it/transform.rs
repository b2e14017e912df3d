//! Silver and gold through the real binary: bronze written from generated events, a flow of
//! transform_silver → gate → aggregate_gold → gate, and the results checked against figures
//! computed here, in plain Rust maps, straight from the generated events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

#[allow(unused_imports)]
use crate::common::stdout;
use apache_avro::types::Value;
use flowctl::contracts::domain::EventKind;
use flowctl::contracts::generate::{Event, GenConfig, Generator, SchemaVersion};
use flowctl::contracts::registry::{Embedded, Registry};
use flowctl::contracts::schema::builtin;
use flowctl::lake::{LakeTable, lake_root, staged};
use flowctl::store::Store;
use flowctl::support::synth::{BronzeWriter, reaches_bronze, reaches_silver};
use polars::prelude::*;

use crate::common::{Env, run_id, task_state, with_expectations};

/// 2025-11-20T12:00:00Z.
const T0: i64 = 1_763_640_000_000;
const DAY_MS: i64 = 86_400_000;

const FLOW: &str = r#"name: medallion
tasks:
  - id: silver
    kind: transform_silver
  - id: silver_gate
    kind: publish_staged
    depends_on: [silver]
    params:
      tables: [silver_orders, silver_order_items, silver_clickstream, silver_payments]
      min_rows: {min}
  - id: gold
    kind: aggregate_gold
    depends_on: [silver_gate]
  - id: gold_gate
    kind: publish_staged
    depends_on: [gold]
    params:
      tables: [gold_daily_revenue, gold_payment_success_rate, gold_campaign_engagement, gold_pipeline_health]
"#;

fn flow(env: &Env, min_rows: usize) {
    env.flow("medallion", &FLOW.replace("{min}", &min_rows.to_string()));
}

fn trigger(env: &Env) -> serde_json::Value {
    let (code, v) = env.json(&["trigger", "medallion"]);
    assert_eq!(code, 0, "{v}");
    v
}

/// The fields of a generated event, by name.
fn fields(e: &Event) -> HashMap<&str, &Value> {
    match &e.value {
        Value::Record(f) => f.iter().map(|(n, v)| (n.as_str(), v)).collect(),
        _ => panic!("not a record"),
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Union(_, b) => string(b),
        _ => None,
    }
}

fn long(v: &Value) -> i64 {
    match v {
        Value::Long(t) => *t,
        Value::Union(_, b) => long(b),
        other => panic!("not a long: {other:?}"),
    }
}

fn double(v: &Value) -> f64 {
    match v {
        Value::Double(d) => *d,
        Value::Union(_, b) => double(b),
        other => panic!("not a double: {other:?}"),
    }
}

fn set_event_time(e: &Event, t: i64) -> Event {
    let mut e = e.clone();
    if let Value::Record(f) = &mut e.value {
        for (n, v) in f.iter_mut() {
            if n == "event_time" {
                *v = Value::Long(t);
            }
        }
    }
    e
}

/// Registers the builtin schemas in the home's embedded registry; returns (orders v1, orders
/// v2, clickstream, payments) ids.
async fn register(home: &Path) -> [i32; 4] {
    std::fs::create_dir_all(home).unwrap();
    let reg = Registry::Embedded(Embedded::new(
        Store::open(&home.join("state.db")).await.unwrap(),
    ));
    let mut ids = [0i32; 4];
    for (i, (subject, text)) in [
        ("orders-value", builtin::ORDERS_V1),
        ("orders-value", builtin::ORDERS_V2),
        ("clickstream-value", builtin::CLICKSTREAM),
        ("payments-value", builtin::PAYMENTS),
    ]
    .into_iter()
    .enumerate()
    {
        ids[i] = reg.register(subject, text).await.unwrap().0 as i32;
    }
    ids
}

/// Bronze writers for the three topics, ingesting "now" = `now_ms`.
struct Bronze {
    ids: [i32; 4],
    orders: BronzeWriter,
    clicks: BronzeWriter,
    payments: BronzeWriter,
}

impl Bronze {
    async fn open(home: &Path, now_ms: i64) -> Bronze {
        let ids = register(home).await;
        let (v1, v2, c, p) = (ids[0], ids[1], ids[2], ids[3]);
        let orders = BronzeWriter::open(
            home,
            EventKind::Orders,
            &[(v1, builtin::ORDERS_V1), (v2, builtin::ORDERS_V2)],
            now_ms * 1000,
        )
        .await
        .unwrap();
        let clicks = BronzeWriter::open(
            home,
            EventKind::Clickstream,
            &[(c, builtin::CLICKSTREAM)],
            now_ms * 1000,
        )
        .await
        .unwrap();
        let payments = BronzeWriter::open(
            home,
            EventKind::Payments,
            &[(p, builtin::PAYMENTS)],
            now_ms * 1000,
        )
        .await
        .unwrap();
        Bronze {
            ids,
            orders,
            clicks,
            payments,
        }
    }
}

/// `n` events around T0: no spacing, so every clean event time is at most T0 and the late ones
/// fall up to two days earlier (three event dates).
fn generate(kind: EventKind, version: SchemaVersion, seed: u64, n: usize) -> Vec<Event> {
    let mut cfg = GenConfig::new(kind, seed, T0);
    cfg.version = version;
    cfg.bad_ratio = 0.04;
    cfg.duplicate_ratio = 0.05;
    cfg.late_ratio = 0.05;
    Generator::new(cfg).take(n).collect()
}

/// Events that pass silver's rules, one per business key (duplicates are exact copies; with
/// several versions of a key, the latest event_time wins, then the later one in the stream).
fn silver_view<'a>(events: &[&'a Event], key: &str) -> BTreeMap<String, &'a Event> {
    let mut out: BTreeMap<String, &Event> = BTreeMap::new();
    for e in events.iter().filter(|e| reaches_silver(e)) {
        let f = fields(e);
        let k = string(f[key]).unwrap();
        let t = long(f["event_time"]);
        match out.get(&k) {
            Some(old) if long(fields(old)["event_time"]) > t => {}
            _ => {
                out.insert(k, e);
            }
        }
    }
    out
}

fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn day(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

type RevenueRow = (i64, f64, f64, i64);

/// gold_daily_revenue, independently: (day, campaign, currency) → (orders, revenue, avg, customers).
fn expected_revenue(
    orders: &BTreeMap<String, &Event>,
) -> BTreeMap<(i32, String, String), RevenueRow> {
    // (orders, cents, customers) per (day, campaign, currency)
    type Acc = (i64, i64, BTreeSet<String>);
    let mut acc: BTreeMap<(i32, String, String), Acc> = BTreeMap::new();
    for e in orders.values() {
        let f = fields(e);
        let status = string(f["status"]).unwrap();
        if status == "CANCELLED" || status == "REFUNDED" {
            continue;
        }
        let k = (
            day(long(f["event_time"])),
            string(f["campaign_id"]).unwrap_or_else(|| "(none)".into()),
            // Silver trims and upper-cases currencies (`usd` passes as `USD`).
            string(f["currency"]).unwrap().trim().to_uppercase(),
        );
        let a = acc.entry(k).or_default();
        a.0 += 1;
        a.1 += cents(double(f["amount"]));
        a.2.insert(string(f["customer_id"]).unwrap());
    }
    acc.into_iter()
        .map(|(k, (n, c, cust))| {
            let revenue = c as f64 / 100.0;
            (
                k,
                (n, revenue, round2(revenue / n as f64), cust.len() as i64),
            )
        })
        .collect()
}

async fn read(home: &Path, table: &str) -> DataFrame {
    let t = LakeTable::open(&lake_root(home).join(table)).await.unwrap();
    t.read_df()
        .unwrap()
        .lazy()
        .with_column(col("event_date").cast(DataType::Int32))
        .collect()
        .unwrap()
}

async fn version(home: &Path, table: &str) -> i64 {
    LakeTable::open(&lake_root(home).join(table))
        .await
        .unwrap()
        .version()
}

/// Data file paths per event_date partition.
async fn files_by_date(home: &Path, table: &str) -> BTreeMap<String, BTreeSet<String>> {
    let t = LakeTable::open(&lake_root(home).join(table)).await.unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in t.files().unwrap() {
        let d = f.partition_values["event_date"].clone().unwrap();
        out.entry(d).or_default().insert(f.path);
    }
    out
}

fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.map(String::from))
        .collect()
}

fn i64s(df: &DataFrame, c: &str) -> Vec<i64> {
    df.column(c)
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

fn f64s(df: &DataFrame, c: &str) -> Vec<f64> {
    df.column(c)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

async fn gold_revenue(home: &Path) -> BTreeMap<(i32, String, String), RevenueRow> {
    let df = read(home, "gold_daily_revenue").await;
    let (d, c, cur) = (
        i64s(&df, "event_date"),
        strs(&df, "campaign_id"),
        strs(&df, "currency"),
    );
    let (n, rev, avg, cust) = (
        i64s(&df, "orders"),
        f64s(&df, "revenue"),
        f64s(&df, "avg_order_value"),
        i64s(&df, "distinct_customers"),
    );
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let k = (d[i] as i32, c[i].clone().unwrap(), cur[i].clone().unwrap());
        assert!(
            out.insert(k, (n[i], rev[i], avg[i], cust[i])).is_none(),
            "duplicate gold row"
        );
    }
    out
}

mod cases;
