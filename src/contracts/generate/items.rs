//! The content of one item (an order, its payments, a click): a pure function of the seed and
//! the item number, with no faults, lateness or duplication (the [`super::Generator`] adds those).

use apache_avro::types::Value;

use super::SchemaVersion;
use super::mix::Mix;
use crate::contracts::domain::{
    channels, click_actions, currencies, devices, order_statuses, payment_methods,
};

const CUSTOMERS: u64 = 50_000;
const CAMPAIGNS: u64 = 24;
const SKUS: u64 = 2_000;
const PAGES: &[&str] = &[
    "/",
    "/search",
    "/category/shoes",
    "/category/outdoor",
    "/product",
    "/cart",
    "/checkout",
    "/account",
    "/help",
];

pub(super) fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

pub(super) fn field<'a>(rec: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    match rec {
        Value::Record(f) => f.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Order `n` of `seed`: content only, no faults.
pub fn order(seed: u64, n: u64, version: SchemaVersion, base_time_ms: i64) -> Value {
    let mut r = Mix::for_item(seed, 1, n);
    let customer = r.skewed(CUSTOMERS, 3.0);
    let campaign = if r.chance(0.35) {
        Value::Null
    } else {
        Value::String(format!("cmp-{:03}", r.skewed(CAMPAIGNS, 2.0)))
    };
    let n_items = 1 + r.skewed(5, 1.8);
    let mut amount = 0.0;
    let mut items = Vec::with_capacity(n_items as usize);
    for _ in 0..n_items {
        let sku = r.skewed(SKUS, 1.5);
        let price = round2(2.0 + (Mix::for_item(7, 2, sku).below(24_800) as f64) / 100.0);
        let qty = 1 + r.skewed(4, 2.5) as i32;
        amount += price * qty as f64;
        items.push(Value::Record(vec![
            ("sku".into(), Value::String(format!("SKU-{sku:05}"))),
            ("quantity".into(), Value::Int(qty)),
            ("unit_price".into(), Value::Double(price)),
        ]));
    }
    let currency = r.weighted(currencies(), &[50.0, 30.0, 12.0, 5.0, 3.0]);
    let status = r.weighted(order_statuses(), &[70.0, 15.0, 8.0, 4.0, 2.0, 1.0]);
    let event_time = base_time_ms - r.below(5_000) as i64;
    let mut fields = vec![
        (
            "order_id".into(),
            Value::String(format!("ord-{seed:x}-{n:09}")),
        ),
        (
            "customer_id".into(),
            Value::String(format!("cust-{customer:06}")),
        ),
        ("campaign_id".into(), campaign),
        ("items".into(), Value::Array(items)),
        ("amount".into(), Value::Double(round2(amount))),
        ("currency".into(), s(currency)),
        ("status".into(), s(status)),
        ("event_time".into(), Value::Long(event_time)),
    ];
    if version == SchemaVersion::V2 {
        fields.push((
            "channel".into(),
            s(r.weighted(channels(), &[55.0, 30.0, 10.0, 5.0])),
        ));
        let coupon = if r.chance(0.15) {
            Value::String(format!("SAVE{}", 5 * (1 + r.below(4))))
        } else {
            Value::Null
        };
        fields.push(("coupon_code".into(), coupon));
    }
    Value::Record(fields)
}

pub(super) fn payments_for(seed: u64, n: u64, base_time_ms: i64) -> Vec<Value> {
    let o = order(seed, n, SchemaVersion::V1, base_time_ms);
    let Value::Record(of) = o else { unreachable!() };
    let get = |k: &str| {
        of.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let mut r = Mix::for_item(seed, 3, n);
    let Value::Long(t0) = get("event_time") else {
        unreachable!()
    };
    let method = r.weighted(payment_methods(), &[60.0, 25.0, 10.0, 5.0]);
    let outcome = r.unit();
    let statuses: &[&str] = if outcome < 0.08 {
        &["FAILED", "CAPTURED"]
    } else if outcome < 0.12 {
        &["AUTHORIZED"]
    } else {
        &["CAPTURED"]
    };
    let order_id = match get("order_id") {
        Value::String(s) => s,
        _ => unreachable!(),
    };
    statuses
        .iter()
        .enumerate()
        .map(|(i, st)| {
            Value::Record(vec![
                (
                    "payment_id".into(),
                    Value::String(format!("pay-{}-{i}", &order_id[4..])),
                ),
                ("order_id".into(), Value::String(order_id.clone())),
                ("amount".into(), get("amount")),
                ("currency".into(), get("currency")),
                ("method".into(), s(method)),
                ("status".into(), s(st)),
                (
                    "event_time".into(),
                    Value::Long(t0 + 1_000 + r.below(600_000) as i64 + i as i64 * 60_000),
                ),
            ])
        })
        .collect()
}

pub(super) fn click(seed: u64, n: u64, base_time_ms: i64) -> Value {
    let mut r = Mix::for_item(seed, 4, n);
    let session = n / 8;
    let mut sr = Mix::for_item(seed, 5, session);
    let user = if sr.chance(0.3) {
        Value::Null
    } else {
        Value::String(format!("cust-{:06}", sr.skewed(CUSTOMERS, 3.0)))
    };
    let campaign = if sr.chance(0.6) {
        Value::Null
    } else {
        Value::String(format!("cmp-{:03}", sr.skewed(CAMPAIGNS, 2.0)))
    };
    let device = sr.weighted(devices(), &[45.0, 45.0, 10.0]);
    Value::Record(vec![
        (
            "event_id".into(),
            Value::String(format!("clk-{seed:x}-{n:010}")),
        ),
        (
            "session_id".into(),
            Value::String(format!("ses-{seed:x}-{session:08}")),
        ),
        ("user_id".into(), user),
        ("campaign_id".into(), campaign),
        (
            "page".into(),
            s(PAGES[r.skewed(PAGES.len() as u64, 1.7) as usize]),
        ),
        (
            "action".into(),
            s(r.weighted(click_actions(), &[50.0, 25.0, 12.0, 4.0, 6.0, 3.0])),
        ),
        ("device".into(), s(device)),
        (
            "event_time".into(),
            Value::Long(base_time_ms - r.below(5_000) as i64),
        ),
    ])
}
