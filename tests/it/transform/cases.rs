use super::*;
use flowctl::contracts::generate::order;

const INGEST_MS: i64 = T0 + 60_000;
const GATED: [&str; 7] = [
    "silver_orders",
    "silver_order_items",
    "silver_clickstream",
    "silver_payments",
    "gold_daily_revenue",
    "gold_payment_success_rate",
    "gold_campaign_engagement",
];

fn refs(events: &[Event]) -> Vec<&Event> {
    events.iter().collect()
}

fn with_id(events: &[Event], id: i32) -> Vec<(i32, &Event)> {
    events.iter().map(|e| (id, e)).collect()
}

/// A hand-made clean order event (content of order `n` of `seed`, event time `t`).
fn order_at(seed: u64, n: u64, t: i64) -> Event {
    let value = order(seed, n, SchemaVersion::V1, t);
    let key = match &value {
        Value::Record(f) => string(&f[0].1),
        _ => None,
    };
    Event {
        key,
        value,
        fault: None,
        late: false,
        duplicate: false,
    }
}

fn python_gold(table: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_gold.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(table)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "python deltalake reader failed; install: python3 -m pip install -r \
         tests/python/requirements.txt\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_gold_equals_an_independent_computation_with_v1_and_v2() {
    let env = Env::new();
    with_expectations(&env);
    let home = env.home();
    let mut b = Bronze::open(&home, INGEST_MS).await;
    let o1 = generate(EventKind::Orders, SchemaVersion::V1, 1, 1500);
    let o2 = generate(EventKind::Orders, SchemaVersion::V2, 2, 1500);
    let clicks = generate(EventKind::Clickstream, SchemaVersion::V1, 3, 3000);
    let pays = generate(EventKind::Payments, SchemaVersion::V1, 4, 2000);
    let mut both = with_id(&o1, b.ids[0]);
    both.extend(with_id(&o2, b.ids[1]));
    b.orders.append(&both).await.unwrap();
    b.clicks.append(&with_id(&clicks, b.ids[2])).await.unwrap();
    b.payments.append(&with_id(&pays, b.ids[3])).await.unwrap();
    flow(&env, 1);
    let v = trigger(&env);
    for t in ["silver", "silver_gate", "gold", "gold_gate"] {
        assert_eq!(task_state(&v, t), "success", "{v}");
    }

    // Silver orders: one row per clean key; v1 and v2 side by side.
    let all: Vec<&Event> = o1.iter().chain(&o2).collect();
    let expected = silver_view(&all, "order_id");
    let silver = read(&home, "silver_orders").await;
    assert_eq!(silver.height(), expected.len());
    let keys = strs(&silver, "order_id");
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate keys in silver");
    let v1_keys: BTreeSet<String> = silver_view(&refs(&o1), "order_id").into_keys().collect();
    let versions = i64s(&silver, "schema_version");
    let (channels, coupons) = (strs(&silver, "channel"), strs(&silver, "coupon_code"));
    let mut v2_coupons = 0;
    for i in 0..silver.height() {
        let k = keys[i].clone().unwrap();
        let want = if v1_keys.contains(&k) { 1 } else { 2 };
        assert_eq!(versions[i], want, "{k}");
        if want == 1 {
            assert_eq!(channels[i].as_deref(), Some("web"));
            assert_eq!(coupons[i], None);
        } else if coupons[i].is_some() {
            v2_coupons += 1;
        }
    }
    assert!(v2_coupons > 0, "v2 coupons survive");
    let items = read(&home, "silver_order_items").await;
    let item_count: i64 = i64s(&silver, "item_count").iter().sum();
    assert_eq!(items.height() as i64, item_count);

    // Gold, exactly.
    assert_eq!(gold_revenue(&home).await, expected_revenue(&expected));

    let mut want_pay: BTreeMap<(i32, String), (i64, i64)> = BTreeMap::new();
    for e in silver_view(&refs(&pays), "payment_id").values() {
        let f = fields(e);
        let a = want_pay
            .entry((day(long(f["event_time"])), string(f["method"]).unwrap()))
            .or_default();
        a.0 += 1;
        let s = string(f["status"]).unwrap();
        a.1 += i64::from(s == "AUTHORIZED" || s == "CAPTURED");
    }
    let df = read(&home, "gold_payment_success_rate").await;
    let (d, m) = (i64s(&df, "event_date"), strs(&df, "method"));
    let (att, suc, rate) = (
        i64s(&df, "attempts"),
        i64s(&df, "successes"),
        f64s(&df, "success_rate"),
    );
    let mut got_pay = BTreeMap::new();
    for i in 0..df.height() {
        assert_eq!(rate[i], suc[i] as f64 / att[i] as f64);
        got_pay.insert((d[i] as i32, m[i].clone().unwrap()), (att[i], suc[i]));
    }
    assert_eq!(got_pay, want_pay);

    let mut want_eng: BTreeMap<(i32, String), [i64; 4]> = BTreeMap::new();
    for e in silver_view(&refs(&clicks), "event_id").values() {
        let f = fields(e);
        let c = string(f["campaign_id"]).unwrap_or_else(|| "(none)".into());
        let a = want_eng.entry((day(long(f["event_time"])), c)).or_default();
        match string(f["action"]).unwrap().as_str() {
            "view" => a[0] += 1,
            "click" => a[1] += 1,
            "add_to_cart" => a[2] += 1,
            "purchase" => a[3] += 1,
            _ => {}
        }
    }
    let df = read(&home, "gold_campaign_engagement").await;
    let (d, c) = (i64s(&df, "event_date"), strs(&df, "campaign_id"));
    let cols: Vec<Vec<i64>> = ["views", "clicks", "add_to_cart", "purchases"]
        .iter()
        .map(|n| i64s(&df, n))
        .collect();
    let conv = f64s(&df, "conversion_rate");
    let mut got_eng = BTreeMap::new();
    for i in 0..df.height() {
        let row = [cols[0][i], cols[1][i], cols[2][i], cols[3][i]];
        let want = if row[0] > 0 {
            row[3] as f64 / row[0] as f64
        } else {
            0.0
        };
        assert_eq!(conv[i], want);
        got_eng.insert((d[i] as i32, c[i].clone().unwrap()), row);
    }
    assert_eq!(got_eng, want_eng);

    // Quarantine holds every refused row; pipeline health adds up.
    let bad = |evs: &[&Event]| {
        evs.iter()
            .filter(|e| reaches_bronze(e) && !reaches_silver(e))
            .count()
    };
    let refused = bad(&all) + bad(&refs(&clicks)) + bad(&refs(&pays));
    let q = read_plain(&home, "silver_quarantine").await;
    assert_eq!(q.height(), refused);
    let health = read_plain(&home, "gold_pipeline_health").await;
    assert_eq!(health.height(), 1);
    assert_eq!(i64s(&health, "quarantined_rows"), vec![refused as i64]);
    assert_eq!(i64s(&health, "run_id"), vec![run_id(&v)]);

    // Another engine reads gold, and the commit names the run.
    let py = python_gold(&lake_root(&home).join("gold_daily_revenue"));
    let orders: i64 = expected_revenue(&expected).values().map(|r| r.0).sum();
    assert_eq!(py["orders"], orders, "{py}");
    assert_eq!(py["user_metadata"], format!("run={}", run_id(&v)), "{py}");
}

async fn read_plain(home: &Path, table: &str) -> DataFrame {
    LakeTable::open(&lake_root(home).join(table))
        .await
        .unwrap()
        .read_df()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_late_data_and_later_duplicates_touch_only_their_dates() {
    let env = Env::new();
    with_expectations(&env);
    let home = env.home();
    let mut b = Bronze::open(&home, INGEST_MS).await;
    let first = generate(EventKind::Orders, SchemaVersion::V1, 7, 800);
    b.orders.append(&with_id(&first, b.ids[0])).await.unwrap();
    flow(&env, 1);
    trigger(&env);
    let d0 = day(T0);
    let date = |d: i32| {
        (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(d as i64))
            .format("%Y-%m-%d")
            .to_string()
    };
    let gold_before = files_by_date(&home, "gold_daily_revenue").await;
    let silver_before = files_by_date(&home, "silver_orders").await;
    assert!(gold_before.contains_key(&date(d0 - 2)), "{gold_before:?}");

    // A late order for two days ago: only that date is recomputed.
    let late = order_at(99, 0, T0 - 2 * DAY_MS);
    b.orders.append(&[(b.ids[0], &late)]).await.unwrap();
    trigger(&env);
    let gold_after = files_by_date(&home, "gold_daily_revenue").await;
    let silver_after = files_by_date(&home, "silver_orders").await;
    for d in [d0, d0 - 1] {
        assert_eq!(
            gold_after[&date(d)],
            gold_before[&date(d)],
            "gold {}",
            date(d)
        );
        assert_eq!(
            silver_after[&date(d)],
            silver_before[&date(d)],
            "silver {}",
            date(d)
        );
    }
    assert_ne!(gold_after[&date(d0 - 2)], gold_before[&date(d0 - 2)]);
    let mut all: Vec<&Event> = refs(&first);
    all.push(&late);
    assert_eq!(
        gold_revenue(&home).await,
        expected_revenue(&silver_view(&all, "order_id"))
    );

    // A day later: an exact re-send of today's order, and an order of yesterday re-sent with
    // a newer event time (today). Both collapse; yesterday loses the moved order.
    let view = silver_view(&all, "order_id");
    let pick = |d: i32| -> &Event {
        view.values()
            .find(|e| day(long(fields(e)["event_time"])) == d)
            .copied()
            .unwrap()
    };
    let resent = pick(d0).clone();
    let moved = set_event_time(pick(d0 - 1), T0 - 1_000);
    b.orders.ingested_at_us = (INGEST_MS + DAY_MS) * 1000;
    b.orders
        .append(&[(b.ids[0], &resent), (b.ids[0], &moved)])
        .await
        .unwrap();
    trigger(&env);
    all.push(&resent);
    all.push(&moved);
    let expected = silver_view(&all, "order_id");
    let silver = read(&home, "silver_orders").await;
    assert_eq!(silver.height(), expected.len());
    let keys = strs(&silver, "order_id");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), keys.len());
    assert_eq!(gold_revenue(&home).await, expected_revenue(&expected));
    let gold_last = files_by_date(&home, "gold_daily_revenue").await;
    assert_eq!(
        gold_last[&date(d0 - 2)],
        gold_after[&date(d0 - 2)],
        "untouched date"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_reruns_are_idempotent_and_unpublished_stages_change_nothing() {
    let env = Env::new();
    with_expectations(&env);
    let home = env.home();
    let mut b = Bronze::open(&home, INGEST_MS).await;
    let first = generate(EventKind::Orders, SchemaVersion::V2, 11, 600);
    b.orders.append(&with_id(&first, b.ids[1])).await.unwrap();
    let pays = generate(EventKind::Payments, SchemaVersion::V1, 11, 600);
    b.payments.append(&with_id(&pays, b.ids[3])).await.unwrap();
    flow(&env, 1);
    trigger(&env);
    let mut versions = Vec::new();
    let mut contents = Vec::new();
    for t in [
        "silver_orders",
        "silver_order_items",
        "silver_payments",
        "gold_daily_revenue",
        "gold_payment_success_rate",
    ] {
        versions.push(version(&home, t).await);
        contents.push(read(&home, t).await);
    }
    trigger(&env);
    for (i, t) in [
        "silver_orders",
        "silver_order_items",
        "silver_payments",
        "gold_daily_revenue",
        "gold_payment_success_rate",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(version(&home, t).await, versions[i], "{t} moved on a rerun");
        assert!(
            read(&home, t).await.equals_missing(&contents[i]),
            "{t} changed"
        );
        assert!(staged(&home, t).unwrap().is_none());
    }

    // Stage without publishing: readers still see the published version.
    let more = generate(EventKind::Orders, SchemaVersion::V2, 12, 300);
    b.orders.append(&with_id(&more, b.ids[1])).await.unwrap();
    env.flow(
        "silver_only",
        "name: silver_only\ntasks:\n  - id: silver\n    kind: transform_silver\n",
    );
    let (code, v) = env.json(&["trigger", "silver_only"]);
    assert_eq!(code, 0, "{v}");
    let pending = staged(&home, "silver_orders").unwrap().expect("staged");
    assert_eq!(pending.base_version, versions[0]);
    assert_eq!(version(&home, "silver_orders").await, versions[0]);
    assert!(
        read(&home, "silver_orders")
            .await
            .equals_missing(&contents[0])
    );
    // The whole flow restages from the same base and publishes.
    trigger(&env);
    assert_eq!(version(&home, "silver_orders").await, versions[0] + 1);
    let mut all = refs(&first);
    all.extend(refs(&more));
    assert_eq!(
        read(&home, "silver_orders").await.height(),
        silver_view(&all, "order_id").len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_a_failing_gate_blocks_and_downstream_versions_do_not_move() {
    let env = Env::new();
    with_expectations(&env);
    let home = env.home();
    let mut b = Bronze::open(&home, INGEST_MS).await;
    let first = generate(EventKind::Orders, SchemaVersion::V1, 21, 400);
    b.orders.append(&with_id(&first, b.ids[0])).await.unwrap();
    flow(&env, 1);
    trigger(&env);
    let before: Vec<i64> = futures::future::join_all(
        ["silver_orders", "gold_daily_revenue"].map(|t| version(&home, t)),
    )
    .await;
    let more = generate(EventKind::Orders, SchemaVersion::V1, 22, 400);
    b.orders.append(&with_id(&more, b.ids[0])).await.unwrap();
    flow(&env, 1_000_000);
    let (code, v) = env.json(&["trigger", "medallion"]);
    assert_ne!(code, 0, "{v}");
    assert_eq!(task_state(&v, "silver"), "success");
    assert_eq!(task_state(&v, "silver_gate"), "failed");
    assert_eq!(task_state(&v, "gold"), "upstream_failed");
    assert_eq!(version(&home, "silver_orders").await, before[0]);
    assert_eq!(version(&home, "gold_daily_revenue").await, before[1]);
    for t in GATED {
        assert!(staged(&home, t).unwrap().is_none(), "{t} left staged");
    }
    // Fixed gate: the same increment goes through.
    flow(&env, 1);
    trigger(&env);
    assert_eq!(version(&home, "silver_orders").await, before[0] + 1);
    let mut all = refs(&first);
    all.extend(refs(&more));
    assert_eq!(
        gold_revenue(&home).await,
        expected_revenue(&silver_view(&all, "order_id"))
    );
}
