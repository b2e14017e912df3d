//! The silver and gold table schemas, exactly as `docs/tables.md` lists them, and the helpers
//! that open (or create) those tables under the lake.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::lake::{LakeError, LakeTable, lake_root};

fn f(name: &str, dt: DataType) -> Field {
    Field::new(name, dt, true)
}

fn ts(name: &str) -> Field {
    f(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )
}

fn utf8(name: &str) -> Field {
    f(name, DataType::Utf8)
}

/// One table of the contract: name, schema, partition columns.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub partition_by: &'static [&'static str],
}

impl TableDef {
    /// Opens the table under `home`'s lake, creating it empty when it does not exist.
    pub async fn open(&self, home: &Path) -> Result<LakeTable, LakeError> {
        LakeTable::open_or_create(
            &lake_root(home).join(self.name),
            &self.schema,
            self.partition_by,
        )
        .await
    }
}

const BY_DATE: &[&str] = &["event_date"];

fn def(name: &'static str, fields: Vec<Field>, partition_by: &'static [&'static str]) -> TableDef {
    TableDef {
        name,
        schema: Arc::new(Schema::new(fields)),
        partition_by,
    }
}

fn lineage() -> [Field; 3] {
    [
        f("_kafka_partition", DataType::Int32),
        f("_kafka_offset", DataType::Int64),
        f("_bronze_version", DataType::Int64),
    ]
}

pub fn silver_orders() -> TableDef {
    let mut fields = vec![
        utf8("order_id"),
        utf8("customer_id"),
        utf8("campaign_id"),
        f("amount", DataType::Float64),
        utf8("currency"),
        utf8("status"),
        utf8("channel"),
        utf8("coupon_code"),
        f("item_count", DataType::Int32),
        ts("event_time"),
        f("event_date", DataType::Date32),
        f("schema_version", DataType::Int32),
    ];
    fields.extend(lineage());
    def("silver_orders", fields, BY_DATE)
}

pub fn silver_order_items() -> TableDef {
    let fields = vec![
        utf8("order_id"),
        f("line_no", DataType::Int32),
        utf8("sku"),
        f("quantity", DataType::Int32),
        f("unit_price", DataType::Float64),
        f("line_amount", DataType::Float64),
        utf8("currency"),
        ts("event_time"),
        f("event_date", DataType::Date32),
    ];
    def("silver_order_items", fields, BY_DATE)
}

pub fn silver_clickstream() -> TableDef {
    let mut fields = vec![
        utf8("event_id"),
        utf8("session_id"),
        utf8("user_id"),
        utf8("campaign_id"),
        utf8("page"),
        utf8("action"),
        utf8("device"),
        ts("event_time"),
        f("event_date", DataType::Date32),
    ];
    fields.extend(lineage());
    def("silver_clickstream", fields, BY_DATE)
}

pub fn silver_payments() -> TableDef {
    let mut fields = vec![
        utf8("payment_id"),
        utf8("order_id"),
        f("amount", DataType::Float64),
        utf8("currency"),
        utf8("method"),
        utf8("status"),
        ts("event_time"),
        f("event_date", DataType::Date32),
    ];
    fields.extend(lineage());
    def("silver_payments", fields, BY_DATE)
}

pub fn silver_quarantine() -> TableDef {
    let fields = vec![
        utf8("target_table"),
        utf8("business_key"),
        utf8("failed_rules"),
        utf8("source_table"),
        f("source_version", DataType::Int64),
        f("_kafka_partition", DataType::Int32),
        f("_kafka_offset", DataType::Int64),
        utf8("row_json"),
        ts("quarantined_at"),
        f("run_id", DataType::Int64),
        f("quarantine_date", DataType::Date32),
    ];
    def("silver_quarantine", fields, &["quarantine_date"])
}

pub fn gold_daily_revenue() -> TableDef {
    let fields = vec![
        f("event_date", DataType::Date32),
        utf8("campaign_id"),
        utf8("currency"),
        f("orders", DataType::Int64),
        f("revenue", DataType::Float64),
        f("avg_order_value", DataType::Float64),
        f("distinct_customers", DataType::Int64),
    ];
    def("gold_daily_revenue", fields, BY_DATE)
}

pub fn gold_payment_success_rate() -> TableDef {
    let fields = vec![
        f("event_date", DataType::Date32),
        utf8("method"),
        f("attempts", DataType::Int64),
        f("successes", DataType::Int64),
        f("success_rate", DataType::Float64),
    ];
    def("gold_payment_success_rate", fields, BY_DATE)
}

pub fn gold_campaign_engagement() -> TableDef {
    let fields = vec![
        f("event_date", DataType::Date32),
        utf8("campaign_id"),
        f("views", DataType::Int64),
        f("clicks", DataType::Int64),
        f("add_to_cart", DataType::Int64),
        f("purchases", DataType::Int64),
        f("conversion_rate", DataType::Float64),
    ];
    def("gold_campaign_engagement", fields, BY_DATE)
}

pub fn gold_pipeline_health() -> TableDef {
    let fields = vec![
        f("run_id", DataType::Int64),
        ts("computed_at"),
        f("bronze_rows", DataType::Int64),
        f("silver_rows", DataType::Int64),
        f("gold_rows", DataType::Int64),
        f("dlq_rows", DataType::Int64),
        utf8("dlq_by_category"),
        f("quarantined_rows", DataType::Int64),
        f("duplicates_removed", DataType::Int64),
        f("freshness_lag_seconds", DataType::Float64),
    ];
    def("gold_pipeline_health", fields, &[])
}

/// Every silver and gold table this module defines.
pub fn all() -> Vec<TableDef> {
    vec![
        silver_orders(),
        silver_order_items(),
        silver_clickstream(),
        silver_payments(),
        silver_quarantine(),
        gold_daily_revenue(),
        gold_payment_success_rate(),
        gold_campaign_engagement(),
        gold_pipeline_health(),
    ]
}
