//! Silver → gold aggregates, by event time.
//!
//! Each aggregate records the version of its silver source it was computed from (a `txn` action,
//! e.g. `gold_daily_revenue<-silver_orders`). The next run looks at the silver files added or
//! removed since that version: their `event_date`s are the only dates whose figures can have
//! changed, so only those partitions are recomputed (from the whole silver partition) and
//! replaced. Late events therefore touch exactly the dates they belong to, and a run with no
//! silver change stages nothing and creates no version.
//!
//! Money is summed in floating point and rounded to cents (half away from zero); an average is
//! computed from the rounded revenue, then rounded. Rates are plain ratios.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use polars::prelude::*;

use super::schema::{self, TableDef};
use super::{Entity, TransformError, pl, txn_app_id};
use crate::lake::{AppTxn, LakeTable, StageMode, StageSpec, df_to_batch, lake_root, stage, staged};

/// Inputs of one gold run besides the tables.
#[derive(Debug, Clone, Default)]
pub struct GoldRun {
    pub run_id: Option<i64>,
    /// "Now", µs since the epoch (freshness lag, computed_at).
    pub now_us: i64,
}

/// What one aggregate did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AggregateReport {
    pub table: &'static str,
    pub source_version: i64,
    pub from_version: i64,
    /// Partitions recomputed (empty: nothing changed upstream, nothing staged).
    pub partitions: Vec<String>,
    pub rows_staged: usize,
}

/// What a gold run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GoldReport {
    pub aggregates: Vec<AggregateReport>,
    /// Tables with a staged commit waiting for their gate.
    pub staged: Vec<String>,
}

fn round_cents(e: Expr) -> Expr {
    e.round(2, RoundMode::HalfAwayFromZero)
}

fn strings(values: &[&str]) -> Expr {
    lit(Series::new("v".into(), values)).implode(false)
}

fn campaign() -> Expr {
    col("campaign_id")
        .fill_null(lit("(none)"))
        .alias("campaign_id")
}

/// gold_daily_revenue from silver_orders rows.
pub fn daily_revenue(orders: LazyFrame) -> LazyFrame {
    orders
        .filter(
            col("status")
                .is_in(strings(&["CANCELLED", "REFUNDED"]), false)
                .not(),
        )
        .with_column(campaign())
        .group_by([col("event_date"), col("campaign_id"), col("currency")])
        .agg([
            len().cast(DataType::Int64).alias("orders"),
            col("amount").sum().alias("revenue"),
            col("customer_id")
                .n_unique()
                .cast(DataType::Int64)
                .alias("distinct_customers"),
        ])
        .with_column(round_cents(col("revenue")).alias("revenue"))
        .with_column(
            round_cents(col("revenue") / col("orders").cast(DataType::Float64))
                .alias("avg_order_value"),
        )
}

/// gold_payment_success_rate from silver_payments rows.
pub fn payment_success_rate(payments: LazyFrame) -> LazyFrame {
    payments
        .group_by([col("event_date"), col("method")])
        .agg([
            len().cast(DataType::Int64).alias("attempts"),
            col("status")
                .is_in(strings(&["AUTHORIZED", "CAPTURED"]), false)
                .cast(DataType::Int64)
                .sum()
                .alias("successes"),
        ])
        .with_column(
            (col("successes").cast(DataType::Float64) / col("attempts").cast(DataType::Float64))
                .alias("success_rate"),
        )
}

/// gold_campaign_engagement from silver_clickstream rows.
pub fn campaign_engagement(clicks: LazyFrame) -> LazyFrame {
    let count = |action: &str, name: &str| {
        col("action")
            .eq(lit(action))
            .cast(DataType::Int64)
            .sum()
            .alias(name)
    };
    clicks
        .with_column(campaign())
        .group_by([col("event_date"), col("campaign_id")])
        .agg([
            count("view", "views"),
            count("click", "clicks"),
            count("add_to_cart", "add_to_cart"),
            count("purchase", "purchases"),
        ])
        .with_column(
            when(col("views").gt(lit(0i64)))
                .then(
                    col("purchases").cast(DataType::Float64) / col("views").cast(DataType::Float64),
                )
                .otherwise(lit(0.0))
                .alias("conversion_rate"),
        )
}

type Aggregate = fn(LazyFrame) -> LazyFrame;

fn aggregates() -> [(TableDef, Entity, Aggregate); 3] {
    [
        (schema::gold_daily_revenue(), Entity::Orders, daily_revenue),
        (
            schema::gold_payment_success_rate(),
            Entity::Payments,
            payment_success_rate,
        ),
        (
            schema::gold_campaign_engagement(),
            Entity::Clickstream,
            campaign_engagement,
        ),
    ]
}

fn date_of(f: &crate::lake::DataFile) -> Option<String> {
    f.partition_values.get("event_date").cloned().flatten()
}

/// Event dates whose silver rows changed between `from` and the current version.
async fn touched_dates(source: &LakeTable, from: i64) -> Result<BTreeSet<String>, TransformError> {
    let now = source.files()?;
    if from < 0 {
        return Ok(now.iter().filter_map(date_of).collect());
    }
    let then = source.files_at(from).await?;
    let now_paths: BTreeSet<&str> = now.iter().map(|f| f.path.as_str()).collect();
    let then_paths: BTreeSet<&str> = then.iter().map(|f| f.path.as_str()).collect();
    let added = now.iter().filter(|f| !then_paths.contains(f.path.as_str()));
    let removed = then.iter().filter(|f| !now_paths.contains(f.path.as_str()));
    Ok(added.chain(removed).filter_map(date_of).collect())
}

fn days_of(dates: &BTreeSet<String>) -> Vec<i32> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    dates
        .iter()
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| (d - epoch).num_days() as i32)
        .collect()
}

async fn open_if_exists(home: &Path, name: &str) -> Result<Option<LakeTable>, TransformError> {
    let path = lake_root(home).join(name);
    if !path.join("_delta_log").exists() {
        return Ok(None);
    }
    Ok(Some(LakeTable::open(&path).await?))
}

/// Recomputes every aggregate whose silver source changed, stages them, and stages this run's
/// `gold_pipeline_health` row.
pub async fn aggregate_gold(home: &Path, run: &GoldRun) -> Result<GoldReport, TransformError> {
    let mut report = GoldReport::default();
    for (def, entity, compute) in aggregates() {
        let source_name = entity.silver().name;
        let Some(source) = open_if_exists(home, source_name).await? else {
            continue;
        };
        let gold = def.open(home).await?;
        let app_id = txn_app_id(def.name, source_name);
        let from = gold.txn_version(&app_id).await?.unwrap_or(-1);
        let mut agg = AggregateReport {
            table: def.name,
            source_version: source.version(),
            from_version: from,
            ..Default::default()
        };
        if from >= source.version() {
            report.aggregates.push(agg);
            continue;
        }
        let dates = touched_dates(&source, from).await?;
        let days = Series::new("d".into(), days_of(&dates));
        let rows = compute(
            source.scan()?.filter(
                col("event_date")
                    .cast(DataType::Int32)
                    .is_in(lit(days).implode(false), false),
            ),
        )
        .collect()
        .map_err(pl(def.name, "aggregating"))?;
        agg.partitions = dates.into_iter().collect();
        agg.rows_staged = rows.height();
        let spec = StageSpec {
            mode: StageMode::ReplacePartitions,
            partitions: agg.partitions.clone(),
            txns: vec![AppTxn {
                app_id,
                version: source.version(),
            }],
            run_id: run.run_id,
        };
        let batch = df_to_batch(&rows, Some(&gold.arrow_schema()?))?;
        stage(home, def.name, &gold, [batch], spec).await?;
        report.staged.push(def.name.to_string());
        report.aggregates.push(agg);
    }
    if run.run_id.is_some() {
        pipeline_health(home, run).await?;
        report.staged.push("gold_pipeline_health".into());
    }
    Ok(report)
}

async fn rows_of(home: &Path, name: &str) -> Result<i64, TransformError> {
    Ok(match open_if_exists(home, name).await? {
        Some(t) => t.row_count()? as i64,
        None => 0,
    })
}

/// Rows a table will hold once its pending commit (if any) is published.
async fn rows_after_publish(home: &Path, name: &str) -> Result<i64, TransformError> {
    match staged(home, name)? {
        Some(s) => Ok(s.candidate_df().await?.height() as i64),
        None => rows_of(home, name).await,
    }
}

/// Stages `gold_pipeline_health` with this run's row (replacing a row an earlier attempt of the
/// same run left). Every figure is a total over the tables as this run leaves them:
/// `duplicates_removed` = bronze rows − quarantined rows − silver rows, since each bronze row is
/// either refused, kept, or collapsed into a newer copy of its key.
async fn pipeline_health(home: &Path, run: &GoldRun) -> Result<(), TransformError> {
    let def = schema::gold_pipeline_health();
    let mut bronze_rows = 0;
    let mut silver_rows = 0;
    let mut newest_us: Option<i64> = None;
    for e in Entity::ALL {
        bronze_rows += rows_of(home, &e.bronze_table()).await?;
        if let Some(t) = open_if_exists(home, e.silver().name).await? {
            silver_rows += t.row_count()? as i64;
            let max = t
                .scan()?
                .select([col("event_time").cast(DataType::Int64).max()])
                .collect()
                .map_err(pl(e.silver().name, "freshness"))?;
            if let Ok(AnyValue::Int64(v)) = max.column("event_time").and_then(|c| c.get(0)) {
                newest_us = Some(newest_us.map_or(v, |n: i64| n.max(v)));
            }
        }
    }
    let mut gold_rows = 0;
    for (d, _, _) in aggregates() {
        gold_rows += rows_after_publish(home, d.name).await?;
    }
    let quarantined = rows_of(home, "silver_quarantine").await?;
    let mut dlq_rows = 0;
    let mut by_category: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(dlq) = open_if_exists(home, "bronze_dlq_audit").await? {
        let counts = dlq
            .scan()?
            .group_by([col("error_type")])
            .agg([len().cast(DataType::Int64).alias("n")])
            .collect()
            .map_err(pl("bronze_dlq_audit", "counting"))?;
        let types = counts
            .column("error_type")
            .map_err(pl("bronze_dlq_audit", "counting"))?;
        let ns = counts
            .column("n")
            .map_err(pl("bronze_dlq_audit", "counting"))?;
        for i in 0..counts.height() {
            let t = types
                .get(i)
                .map(|v| v.str_value().to_string())
                .unwrap_or_default();
            let n = ns.get(i).ok().and_then(|v| v.extract::<i64>()).unwrap_or(0);
            dlq_rows += n;
            by_category.insert(t, n);
        }
    }
    // Producers' clocks may run a little ahead (bronze accepts event times up to now + 1h): a
    // newest event "in the future" means silver is fully fresh, not negatively late.
    let lag = newest_us.map(|n| ((run.now_us - n) as f64 / 1e6).max(0.0));
    let row = df!(
        "run_id" => [run.run_id],
        "computed_at" => [run.now_us],
        "bronze_rows" => [bronze_rows],
        "silver_rows" => [silver_rows],
        "gold_rows" => [gold_rows],
        "dlq_rows" => [dlq_rows],
        "dlq_by_category" => [serde_json::to_string(&by_category).unwrap_or_default()],
        "quarantined_rows" => [quarantined],
        "duplicates_removed" => [(bronze_rows - quarantined - silver_rows).max(0)],
        "freshness_lag_seconds" => [lag],
    )
    .map_err(pl(def.name, "health row"))?
    .lazy()
    .with_column(col("computed_at").cast(DataType::Datetime(
        TimeUnit::Microseconds,
        Some(TimeZone::UTC),
    )));
    let table = def.open(home).await?;
    let mut parts = vec![row];
    if !table.files()?.is_empty() {
        parts.insert(
            0,
            table
                .scan()?
                .filter(col("run_id").neq(lit(run.run_id.unwrap_or(-1)))),
        );
    }
    let all = concat(parts, UnionArgs::default())
        .and_then(|lf| lf.collect())
        .map_err(pl(def.name, "health rows"))?;
    let batch = df_to_batch(&all, Some(&table.arrow_schema()?))?;
    let spec = StageSpec {
        run_id: run.run_id,
        ..StageSpec::new(StageMode::Overwrite)
    };
    stage(home, def.name, &table, [batch], spec).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> LazyFrame {
        df!(
            "event_date" => [1i32, 1, 1, 1, 2],
            "campaign_id" => [Some("c1"), None, Some("c1"), Some("c1"), None],
            "currency" => ["EUR", "EUR", "EUR", "EUR", "USD"],
            "amount" => [10.10, 5.0, 0.2, 99.0, 1.25],
            "customer_id" => ["a", "b", "a", "c", "d"],
            "status" => ["PAID", "CREATED", "SHIPPED", "CANCELLED", "PAID"],
        )
        .unwrap()
        .lazy()
    }

    #[test]
    fn revenue_skips_cancelled_and_rounds_after_summing() {
        let df = daily_revenue(orders())
            .sort(["event_date", "campaign_id"], Default::default())
            .collect()
            .unwrap();
        assert_eq!(df.height(), 3);
        let camp: Vec<_> = df
            .column("campaign_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(camp, [Some("(none)"), Some("c1"), Some("(none)")]);
        let n: Vec<_> = df
            .column("orders")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(n, [1, 2, 1]);
        let rev: Vec<_> = df
            .column("revenue")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(rev, [5.0, 10.3, 1.25]);
        let avg: Vec<_> = df
            .column("avg_order_value")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(avg, [5.0, 5.15, 1.25]);
        let cust: Vec<_> = df
            .column("distinct_customers")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(cust, [1, 1, 1]);
    }

    #[test]
    fn rates_count_successes_and_guard_zero_views() {
        let pays = df!(
            "event_date" => [1i32, 1, 1],
            "method" => ["card", "card", "card"],
            "status" => ["FAILED", "CAPTURED", "AUTHORIZED"],
        )
        .unwrap();
        let df = payment_success_rate(pays.lazy()).collect().unwrap();
        let rate = df.column("success_rate").unwrap().f64().unwrap().get(0);
        assert_eq!(rate, Some(2.0 / 3.0));
        let clicks = df!(
            "event_date" => [1i32, 1, 1],
            "campaign_id" => [None::<&str>, None, Some("c")],
            "action" => ["purchase", "click", "view"],
        )
        .unwrap();
        let df = campaign_engagement(clicks.lazy())
            .sort(["campaign_id"], Default::default())
            .collect()
            .unwrap();
        let conv: Vec<_> = df
            .column("conversion_rate")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        // "(none)" has a purchase but no view: 0, not infinity.
        assert_eq!(conv, [0.0, 0.0]);
    }
}
