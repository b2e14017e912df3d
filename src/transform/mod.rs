//! Silver and gold: Polars jobs over the lake's Delta tables.
//!
//! Both layers are incremental and idempotent by construction: silver records the last bronze
//! version it processed as a Delta `txn` action in the same commit as its rows, gold records the
//! silver versions it aggregated; both replace whole `event_date` partitions (never append), so
//! running the same input twice produces the same tables. Every output is *staged*
//! ([`crate::lake::stage`]) and becomes visible only when its gate publishes it.

mod backfill;
pub mod gold;
mod quarantine;
pub mod rules;
pub mod schema;
pub mod silver;

use polars::prelude::PolarsError;

use crate::lake::LakeError;

/// The three event families silver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Orders,
    Clickstream,
    Payments,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Orders, Entity::Clickstream, Entity::Payments];

    pub fn name(self) -> &'static str {
        match self {
            Entity::Orders => "orders",
            Entity::Clickstream => "clickstream",
            Entity::Payments => "payments",
        }
    }

    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == s)
    }

    /// The business key: dedup collapses rows with the same key.
    pub fn key(self) -> &'static str {
        match self {
            Entity::Orders => "order_id",
            Entity::Clickstream => "event_id",
            Entity::Payments => "payment_id",
        }
    }

    pub fn bronze_table(self) -> String {
        format!("bronze_{}", self.name())
    }

    pub fn silver(self) -> schema::TableDef {
        match self {
            Entity::Orders => schema::silver_orders(),
            Entity::Clickstream => schema::silver_clickstream(),
            Entity::Payments => schema::silver_payments(),
        }
    }
}

/// The app id under which `target` records the version of `source` it has processed.
pub fn txn_app_id(target: &str, source: &str) -> String {
    format!("{target}<-{source}")
}

/// Why a transform failed: which table and which step.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{table}: {step}: {source}")]
    Polars {
        table: String,
        step: &'static str,
        #[source]
        source: PolarsError,
    },
    #[error("bronze table {0} does not exist yet: nothing to transform")]
    NoBronze(String),
    /// Silver's row rules could not be loaded or built from the expectation files.
    #[error("silver row rules: {0}")]
    Rules(String),
}

pub(crate) fn pl(
    table: &str,
    step: &'static str,
) -> impl FnOnce(PolarsError) -> TransformError + use<> {
    let table = table.to_string();
    move |source| TransformError::Polars {
        table,
        step,
        source,
    }
}

/// `days` since the epoch → the partition value Delta writes for a Date32 column.
/// A day outside chrono's calendar (about ±262,000 years) keeps its number rather than panic.
pub fn date_string(days: i32) -> String {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .expect("epoch")
        .checked_add_signed(chrono::Duration::days(days as i64))
        .map_or_else(
            || format!("day {days}"),
            |d| d.format("%Y-%m-%d").to_string(),
        )
}
