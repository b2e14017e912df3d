//! Silver's row-level rules: which bronze rows may enter silver. Rows that fail any rule go to
//! `silver_quarantine` with every rule they failed.
//!
//! The rules are Polars expressions behind one function ([`rules_for`]) so that the quality
//! module's expectation files (`quality::TableExpectations::row_failures`) can replace them
//! without touching the transform: the transform only consumes [`failed_rules_expr`].

use polars::prelude::*;

use crate::contracts::domain::{
    CHANNELS, CLICK_ACTIONS, CURRENCIES, DEVICES, EPOCH_2000_MS, ORDER_STATUSES, PAYMENT_METHODS,
    PAYMENT_STATUSES,
};

use super::Entity;

/// How far past its ingestion an event_time may lie before it counts as "in the future":
/// producer clocks drift, a day-ahead timestamp is a bug.
const FUTURE_SLACK_US: i64 = 3_600_000_000;

/// One named rule: a row passes when `passes` is true (null counts as a failure).
pub struct RowRule {
    pub name: &'static str,
    pub passes: Expr,
}

fn in_list(column: &str, values: &[&str]) -> Expr {
    let s = Series::new("values".into(), values);
    col(column)
        .str()
        .strip_chars(lit(NULL))
        .is_in(lit(s).implode(false), false)
}

fn not_blank(column: &str) -> Expr {
    col(column)
        .str()
        .strip_chars(lit(NULL))
        .str()
        .len_chars()
        .gt(lit(0))
}

fn rule(name: &'static str, passes: Expr) -> RowRule {
    RowRule { name, passes }
}

fn event_time_rules() -> Vec<RowRule> {
    let t = col("event_time").cast(DataType::Int64);
    let ingested = col("_ingested_at").cast(DataType::Int64);
    vec![
        rule("event_time_not_null", col("event_time").is_not_null()),
        rule(
            "event_time_after_2000",
            t.clone().gt_eq(lit(EPOCH_2000_MS * 1000)),
        ),
        rule(
            "event_time_not_in_future",
            t.lt_eq(ingested + lit(FUTURE_SLACK_US)),
        ),
    ]
}

/// The rules for one entity's bronze rows.
pub fn rules_for(entity: Entity) -> Vec<RowRule> {
    let mut rules = match entity {
        Entity::Orders => vec![
            rule("order_id_present", not_blank("order_id")),
            rule("customer_id_present", not_blank("customer_id")),
            rule("amount_positive", col("amount").gt(lit(0.0))),
            rule("currency_valid", in_list("currency", CURRENCIES)),
            rule("status_valid", in_list("status", ORDER_STATUSES)),
            rule(
                "channel_valid",
                col("channel").is_null().or(in_list("channel", CHANNELS)),
            ),
        ],
        Entity::Clickstream => vec![
            rule("event_id_present", not_blank("event_id")),
            rule("session_id_present", not_blank("session_id")),
            rule("action_valid", in_list("action", CLICK_ACTIONS)),
            rule("device_valid", in_list("device", DEVICES)),
        ],
        Entity::Payments => vec![
            rule("payment_id_present", not_blank("payment_id")),
            rule("order_id_present", not_blank("order_id")),
            rule("amount_positive", col("amount").gt(lit(0.0))),
            rule("currency_valid", in_list("currency", CURRENCIES)),
            rule("method_valid", in_list("method", PAYMENT_METHODS)),
            rule("status_valid", in_list("status", PAYMENT_STATUSES)),
        ],
    };
    rules.extend(event_time_rules());
    rules
}

/// A string column: the comma-separated names of the rules the row failed, null when it
/// passed them all.
pub fn failed_rules_expr(rules: &[RowRule]) -> Expr {
    let parts: Vec<Expr> = rules
        .iter()
        .map(|r| {
            when(r.passes.clone().fill_null(lit(false)))
                .then(lit(NULL).cast(DataType::String))
                .otherwise(lit(r.name))
        })
        .collect();
    let joined = concat_str(parts, ",", true);
    when(joined.clone().str().len_chars().gt(lit(0)))
        .then(joined)
        .otherwise(lit(NULL).cast(DataType::String))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failed_rule_is_named_and_good_rows_get_null() {
        let now = 1_763_900_000_000_000i64;
        let df = df!(
            "payment_id" => ["p1", " ", "p3"],
            "order_id" => ["o1", "o2", "o3"],
            "amount" => [10.0, -1.0, 5.0],
            "currency" => ["EUR", "BTC", " usd "],
            "method" => ["card", "card", "paypal"],
            "status" => ["CAPTURED", "CAPTURED", "FAILED"],
            "event_time" => [now, now + 86_400_000_000, now],
            "_ingested_at" => [now, now, now],
        )
        .unwrap();
        let out = df
            .lazy()
            .with_column(col("event_time").cast(DataType::Datetime(TimeUnit::Microseconds, None)))
            .select([failed_rules_expr(&rules_for(Entity::Payments)).alias("f")])
            .collect()
            .unwrap();
        let f: Vec<Option<&str>> = out.column("f").unwrap().str().unwrap().iter().collect();
        assert_eq!(f[0], None);
        assert_eq!(
            f[1],
            Some("payment_id_present,amount_positive,currency_valid,event_time_not_in_future")
        );
        // Lower case with blanks is not valid: silver upper-cases currencies only once valid.
        assert_eq!(f[2], Some("currency_valid"));
    }
}
