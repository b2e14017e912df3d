//! Bronze → silver for one entity: the bronze files committed since the version last processed,
//! row rules (failures to quarantine), normalisation, dedup by business key across increments,
//! and a staged replace of every `event_date` partition the increment touches.
//!
//! Dedup across increments: the increment's keys are looked up in silver; the partitions that
//! hold them plus the increment's own dates are rebuilt from (existing rows ∪ increment), keeping
//! per key the latest `event_time`, then the highest Kafka offset, then the row already in silver
//! (so reprocessing the same increment changes nothing). A duplicate arriving a day later thus
//! collapses into one row, even when its event_date differs from the first copy's.
//!
//! v1 and v2 orders: bronze already reads every record with the latest reader schema (v1 rows get
//! `channel = "web"`, `coupon_code = null` from the Avro defaults). `schema_version` comes from the
//! writer schema of the row's `_schema_id` (2 when it declares `coupon_code`), resolved through
//! the registry by the task; for an id the registry does not know, a row with v2-only content
//! (a coupon, or a channel other than the v1 default) is 2, else 1.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use polars::prelude::*;

use super::quarantine::{QuarantineBatch, quarantine_rows};
use super::rules::{INGESTED_AT, SilverRules};
use super::schema::silver_order_items;
use super::{Entity, TransformError, date_string, pl, txn_app_id};
use crate::lake::{AppTxn, LakeTable, StageMode, StageSpec, df_to_batch, lake_root, stage};

/// Inputs of one silver run besides the tables.
#[derive(Debug, Clone, Default)]
pub struct SilverRun {
    pub run_id: Option<i64>,
    /// "Now" for quarantine timestamps, µs since the epoch (injected for tests).
    pub now_us: i64,
    /// Orders writer schema id → schema version (1|2), from the registry.
    pub schema_versions: HashMap<i32, i32>,
    /// The row rules of the silver tables (from `expectations/silver_<entity>.yaml`).
    pub rules: SilverRules,
    /// A backfill: rebuild the silver rows of these event dates (days since the epoch,
    /// inclusive) from all of bronze instead of processing the next increment.
    pub backfill: Option<(i32, i32)>,
}

/// What one entity's increment did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EntityReport {
    pub entity: &'static str,
    pub bronze_version: i64,
    /// The bronze version processed before (-1: never).
    pub from_version: i64,
    pub rows_in: usize,
    pub quarantined: usize,
    pub duplicates_removed: usize,
    /// Rows of the staged silver partitions.
    pub rows_staged: usize,
    /// Partitions (event dates) the staged commit replaces.
    pub partitions: Vec<String>,
    /// Tables with a staged commit waiting for their gate.
    pub staged: Vec<String>,
}

pub(super) const SRC: &str = "_src";
/// The bronze row number within an increment.
const ROW: &str = "_row";

fn trim(c: &str) -> Expr {
    col(c).str().strip_chars(lit(NULL)).alias(c)
}

/// Trimmed and upper-cased: `" usd "` is `USD`.
fn currency() -> Expr {
    col("currency")
        .str()
        .strip_chars(lit(NULL))
        .str()
        .to_uppercase()
}

fn round_cents(e: Expr) -> Expr {
    e.round(2, RoundMode::HalfAwayFromZero)
}

fn utc_us(c: &str) -> Expr {
    col(c)
        .cast(DataType::Datetime(
            TimeUnit::Microseconds,
            Some(TimeZone::UTC),
        ))
        .alias(c)
}

/// Bronze rows → silver columns, plus `items` for orders and the `carry` columns as they are.
pub(super) fn normalise(
    entity: Entity,
    lf: LazyFrame,
    bronze_version: i64,
    versions: &HashMap<i32, i32>,
    carry: &[&str],
) -> Result<LazyFrame, TransformError> {
    let mut lf = lf;
    if entity == Entity::Orders {
        // A bronze table that has only seen v1 orders has no v2 columns yet: they read as null,
        // as they do for the v1 rows of a table that has.
        let have = lf
            .collect_schema()
            .map_err(pl(&entity.bronze_table(), "schema"))?;
        let missing: Vec<Expr> = ["channel", "coupon_code"]
            .into_iter()
            .filter(|c| !have.contains(c))
            .map(|c| lit(NULL).cast(DataType::String).alias(c))
            .collect();
        if !missing.is_empty() {
            lf = lf.with_columns(missing);
        }
    }
    let lineage = [
        col("_kafka_partition"),
        col("_kafka_offset"),
        lit(bronze_version)
            .cast(DataType::Int64)
            .alias("_bronze_version"),
    ];
    let mut cols = match entity {
        Entity::Orders => {
            let guess = when(
                col("coupon_code")
                    .is_not_null()
                    .or(col("channel").neq(lit("web"))),
            )
            .then(lit(2i32))
            .otherwise(lit(1i32));
            // The registry's versions as one expression (a handful of ids): no join, so the
            // rows keep their order and `carry` columns stay aligned.
            let version = versions.iter().fold(guess, |otherwise, (id, v)| {
                when(col("_schema_id").eq(lit(*id)))
                    .then(lit(*v))
                    .otherwise(otherwise)
            });
            vec![
                trim("order_id"),
                trim("customer_id"),
                trim("campaign_id"),
                round_cents(col("amount")),
                currency(),
                trim("status"),
                col("channel")
                    .str()
                    .strip_chars(lit(NULL))
                    .fill_null(lit("web")),
                trim("coupon_code"),
                col("items")
                    .list()
                    .len()
                    .cast(DataType::Int32)
                    .alias("item_count"),
                utc_us("event_time"),
                col("event_date"),
                version.cast(DataType::Int32).alias("schema_version"),
                col("items"),
            ]
        }
        Entity::Clickstream => vec![
            trim("event_id"),
            trim("session_id"),
            trim("user_id"),
            trim("campaign_id"),
            trim("page"),
            trim("action"),
            trim("device"),
            utc_us("event_time"),
            col("event_date"),
        ],
        Entity::Payments => vec![
            trim("payment_id"),
            trim("order_id"),
            round_cents(col("amount")),
            currency(),
            trim("method"),
            trim("status"),
            utc_us("event_time"),
            col("event_date"),
        ],
    };
    cols.extend(lineage);
    cols.extend(carry.iter().map(|c| col(*c)));
    Ok(lf.select(cols))
}

/// [`normalise`]d rows with `_failed`: the silver rules each breaks (null: none), judged with
/// the run's rules on the normalised row.
pub(super) fn judged(
    entity: Entity,
    bronze_rows: LazyFrame,
    bronze_version: i64,
    run: &SilverRun,
    carry: &[&str],
) -> Result<LazyFrame, TransformError> {
    let mut carry = carry.to_vec();
    carry.push(INGESTED_AT);
    let mut normalised = normalise(
        entity,
        bronze_rows,
        bronze_version,
        &run.schema_versions,
        &carry,
    )?;
    let schema = normalised
        .collect_schema()
        .map_err(pl(entity.silver().name, "normalising"))?;
    let failed = run.rules.failed_expr(entity, &schema)?;
    Ok(normalised.with_column(failed.alias("_failed")))
}

pub(super) fn dates_of(df: &DataFrame, table: &str) -> Result<BTreeSet<i32>, TransformError> {
    let days = df
        .column("event_date")
        .and_then(|c| c.cast(&DataType::Int32))
        .map_err(pl(table, "event dates"))?;
    Ok(days
        .i32()
        .map_err(pl(table, "event dates"))?
        .iter()
        .flatten()
        .collect())
}

pub(super) fn date_lit(days: &BTreeSet<i32>) -> Expr {
    let s = Series::new("d".into(), days.iter().copied().collect::<Vec<i32>>());
    lit(s).implode(false)
}

/// Keeps, per business key, the row with the latest `event_time`, then the highest Kafka
/// offset, then the one already in silver (`_src` 0 before 1); rows with a non-null `_failed`
/// (refused by the rules) are never kept. Only the narrow columns that decide are sorted, and
/// the winners are then kept in their original order: sorting the whole frame moved every
/// column (orders' nested `items` lists above all) twice, and was most of silver's time.
pub(super) fn dedup_latest(
    all: &DataFrame,
    key: &str,
    table: &str,
) -> Result<DataFrame, TransformError> {
    let refused = all.schema().contains("_failed");
    let mut narrow = vec![key, "event_time", "_kafka_offset", SRC];
    if refused {
        narrow.push("_failed");
    }
    let mut candidates = all
        .select(narrow)
        .and_then(|d| d.with_row_index("_i".into(), None))
        .map_err(pl(table, "dedup"))?
        .lazy();
    if refused {
        candidates = candidates.filter(col("_failed").is_null());
    }
    let winners = candidates
        .sort_by_exprs(
            [col("event_time"), col("_kafka_offset"), col(SRC)],
            SortMultipleOptions::default()
                .with_order_descending_multi([true, true, false])
                .with_nulls_last(true)
                .with_multithreaded(true),
        )
        .unique_stable(Some(cols([key])), UniqueKeepStrategy::First)
        .select([col("_i")])
        .collect()
        .map_err(pl(table, "dedup"))?;
    let idx = winners
        .column("_i")
        .and_then(|c| c.idx())
        .map_err(pl(table, "dedup"))?;
    // A mask, not a gather: filtering walks each chunk once, where a gather of nested lists
    // copies row by row (measured 10× slower on orders).
    let mut keep = vec![false; all.height()];
    for i in idx.into_no_null_iter() {
        keep[i as usize] = true;
    }
    all.filter(&BooleanChunked::from_slice("keep".into(), &keep))
        .map_err(pl(table, "dedup"))
}

/// Debug-level timings of a transform's steps (`FLOWCTL_LOG=flowctl=debug`).
pub(super) struct StepClock {
    table: &'static str,
    at: std::time::Instant,
}

impl StepClock {
    pub(super) fn new(table: &'static str) -> StepClock {
        StepClock {
            table,
            at: std::time::Instant::now(),
        }
    }

    pub(super) fn lap(&mut self, step: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            table = self.table,
            step,
            seconds = (now - self.at).as_secs_f64(),
            "transform step"
        );
        self.at = now;
    }
}

/// Runs one entity's increment and stages its silver table(s). Quarantined rows are published
/// right away (see [`super::quarantine`]). Nothing is staged when bronze has nothing new.
pub async fn transform_entity(
    home: &Path,
    entity: Entity,
    run: &SilverRun,
) -> Result<EntityReport, TransformError> {
    let bronze_name = entity.bronze_table();
    let bronze_path = lake_root(home).join(&bronze_name);
    if !bronze_path.join("_delta_log").exists() {
        return Err(TransformError::NoBronze(bronze_name));
    }
    let bronze = LakeTable::open(&bronze_path).await?;
    let def = entity.silver();
    let silver = def.open(home).await?;
    let app_id = txn_app_id(def.name, &bronze_name);
    let mut from = silver.txn_version(&app_id).await?.unwrap_or(-1);
    if entity == Entity::Orders {
        // Orders feed two tables, published by the gate one after the other: if the items
        // lag behind (their publish failed), redo the increment from there. Re-running it on
        // silver_orders changes nothing (dedup keeps the rows already there).
        let items_def = silver_order_items();
        let items = items_def.open(home).await?;
        let items_from = items
            .txn_version(&txn_app_id(items_def.name, &bronze_name))
            .await?
            .unwrap_or(-1);
        from = from.min(items_from);
    }
    let mut report = EntityReport {
        entity: entity.name(),
        bronze_version: bronze.version(),
        from_version: from,
        ..Default::default()
    };
    if let Some(range) = run.backfill {
        return super::backfill::rebuild(home, entity, run, range, &bronze, report).await;
    }
    if from >= bronze.version() {
        return Ok(report);
    }
    let files = bronze.files_added_since(from).await?;
    if files.is_empty() {
        // Only empty commits since: nothing to stage (and nothing worth a txn version).
        return Ok(report);
    }
    let mut clock = StepClock::new(def.name);
    // Bronze rows as they are (quarantine records them), numbered so the rows the rules refuse
    // after normalisation can be found again.
    let inc = bronze
        .scan_files(&files)?
        .with_row_index(ROW, None)
        .collect()
        .map_err(pl(&bronze_name, "reading the increment"))?;
    report.rows_in = inc.height();
    clock.lap("read");
    // Every row is normalised and judged by silver's rules; the dedup below passes over the
    // refused ones. Filtering them out here would copy every good row (orders' nested items
    // above all) once more, for the sake of a few rows.
    let good = judged(entity, inc.clone().lazy(), bronze.version(), run, &[ROW])?
        .with_column(lit(1i32).alias(SRC))
        .collect()
        .map_err(pl(def.name, "normalising"))?;
    let passed = || good.clone().lazy().filter(col("_failed").is_null());
    let refused = good
        .clone()
        .lazy()
        .filter(col("_failed").is_not_null())
        .select([col(ROW), col("_failed")])
        .collect()
        .map_err(pl(def.name, "rules"))?;
    let bad_rows = refused.height();
    clock.lap("normalise + rules");
    // The quarantine table exists from the first silver run on, empty when nothing was refused:
    // its gate checks it, and "no table" must mean "silver never ran", not "all rows were good".
    super::schema::silver_quarantine().open(home).await?;
    if bad_rows > 0 {
        report.quarantined = quarantine_refused(
            home,
            entity,
            run,
            &bronze_name,
            bronze.version(),
            &inc,
            &refused,
        )
        .await?;
    }
    drop(inc);
    clock.lap("quarantine");

    // Which partitions change: the increment's dates plus wherever its keys already live.
    let key = entity.key();
    let good_dates = passed()
        .select([col("event_date")])
        .unique(None, Default::default())
        .collect()
        .map_err(pl(def.name, "event dates"))?;
    let mut affected = dates_of(&good_dates, def.name)?;
    let (merged, before) = merge_with_silver(
        &silver,
        &good,
        key,
        &mut affected,
        report.rows_in > bad_rows,
        def.name,
    )?;
    let before = before - bad_rows;
    report.duplicates_removed = before - merged.height();
    clock.lap("merge + dedup");
    report.rows_staged = merged.height();
    report.partitions = affected.iter().map(|d| date_string(*d)).collect();
    let txn = AppTxn {
        app_id,
        version: bronze.version(),
    };
    let spec = StageSpec {
        mode: StageMode::ReplacePartitions,
        partitions: report.partitions.clone(),
        txns: vec![txn],
        run_id: run.run_id,
    };
    let target = silver.arrow_schema()?;
    // Only the table's columns cross the bridge (not `items` or the merge marker).
    let columns = target.fields().iter().map(|f| f.name().as_str());
    let table_rows = merged.select(columns).map_err(pl(def.name, "columns"))?;
    let batch = df_to_batch(&table_rows, Some(&target))?;
    stage(home, def.name, &silver, [batch], spec.clone()).await?;
    clock.lap("stage silver");
    report.staged.push(def.name.to_string());

    if entity == Entity::Orders {
        let items = order_items(home, &merged, &affected).await?;
        clock.lap("explode items");
        let items_def = silver_order_items();
        let items_table = items_def.open(home).await?;
        let spec = StageSpec {
            txns: vec![AppTxn {
                app_id: txn_app_id(items_def.name, &bronze_name),
                version: bronze.version(),
            }],
            ..spec
        };
        let batch = df_to_batch(&items, Some(&items_table.arrow_schema()?))?;
        stage(home, items_def.name, &items_table, [batch], spec).await?;
        clock.lap("stage items");
        report.staged.push(items_def.name.to_string());
    }
    Ok(report)
}

/// Writes the rows silver's rules refused (`refused`: their row numbers and failed rules) to
/// the quarantine, with the bronze row as it came in.
async fn quarantine_refused(
    home: &Path,
    entity: Entity,
    run: &SilverRun,
    bronze_name: &str,
    bronze_version: i64,
    inc: &DataFrame,
    refused: &DataFrame,
) -> Result<usize, TransformError> {
    let name = entity.silver().name;
    let idx = refused
        .column(ROW)
        .and_then(|c| c.idx())
        .map_err(pl(name, "rules"))?;
    let mut rows = inc
        .take(idx)
        .and_then(|d| d.drop(ROW))
        .map_err(pl(bronze_name, "refused rows"))?;
    rows.with_column(
        refused
            .column("_failed")
            .map_err(pl(name, "rules"))?
            .clone(),
    )
    .map_err(pl(name, "rules"))?;
    quarantine_rows(
        home,
        QuarantineBatch {
            entity,
            source_table: bronze_name,
            source_version: bronze_version,
            rows,
            run_id: run.run_id,
            now_us: run.now_us,
        },
    )
    .await
}

/// The increment's rows (`good`, refused ones included and marked) unioned with the silver
/// rows of every partition the increment touches — its own dates, and wherever its keys
/// already live (added to `affected`) — then deduplicated by `key`. Returns the winners and
/// the row count before the dedup.
fn merge_with_silver(
    silver: &LakeTable,
    good: &DataFrame,
    key: &str,
    affected: &mut BTreeSet<i32>,
    any_passed: bool,
    name: &str,
) -> Result<(DataFrame, usize), TransformError> {
    let passed = || good.clone().lazy().filter(col("_failed").is_null());
    let mut union = vec![good.clone().lazy()];
    if !silver.files()?.is_empty() && any_passed {
        let keys = passed().select([col(key)]).unique(None, Default::default());
        let hits = silver
            .scan()?
            .select([col(key), col("event_date")])
            .semi_join(keys, col(key), col(key))
            .collect()
            .map_err(pl(name, "finding existing keys"))?;
        affected.extend(dates_of(&hits, name)?);
        let existing = silver
            .scan()?
            .filter(
                col("event_date")
                    .cast(DataType::Int32)
                    .is_in(date_lit(affected), false),
            )
            .with_column(lit(0i32).alias(SRC));
        union.push(existing);
    }
    let all = concat(
        union,
        UnionArgs {
            diagonal: true,
            rechunk: false,
            ..Default::default()
        },
    )
    .map_err(pl(name, "merging"))?
    .collect()
    .map_err(pl(name, "merging"))?;
    let before = all.height();
    Ok((dedup_latest(&all, key, name)?, before))
}

/// The order-items rows of the rebuilt partitions: winners that came from the increment are
/// exploded from their `items`; winners already in silver keep their existing item rows.
pub(super) async fn order_items(
    home: &Path,
    merged: &DataFrame,
    affected: &BTreeSet<i32>,
) -> Result<DataFrame, TransformError> {
    let name = "silver_order_items";
    let fresh = merged
        .clone()
        .lazy()
        .filter(col(SRC).eq(lit(1i32)))
        .select([
            col("order_id"),
            col("items"),
            col("currency"),
            col("event_time"),
            col("event_date"),
        ])
        .with_row_index("_r", None)
        .explode(
            cols(["items"]),
            ExplodeOptions {
                empty_as_null: false,
                keep_nulls: false,
            },
        )
        .collect()
        .map_err(pl(name, "explode"))?;
    // Exploded rows of one order are contiguous: number them 1.. in a single pass.
    let r = fresh.column("_r").map_err(pl(name, "line numbers"))?;
    let r = r.idx().map_err(pl(name, "line numbers"))?;
    let mut line_no = Vec::with_capacity(r.len());
    let mut prev = None;
    let mut n = 0i32;
    for v in r.into_no_null_iter() {
        n = if prev == Some(v) { n + 1 } else { 1 };
        prev = Some(v);
        line_no.push(n);
    }
    let fresh = fresh
        .lazy()
        .with_column(lit(Series::new("line_no".into(), line_no)).alias("line_no"))
        .select([
            col("order_id"),
            col("line_no"),
            col("items")
                .struct_()
                .field_by_name("sku")
                .str()
                .strip_chars(lit(NULL))
                .alias("sku"),
            col("items")
                .struct_()
                .field_by_name("quantity")
                .cast(DataType::Int32)
                .alias("quantity"),
            round_cents(col("items").struct_().field_by_name("unit_price")).alias("unit_price"),
            round_cents(
                col("items")
                    .struct_()
                    .field_by_name("quantity")
                    .cast(DataType::Float64)
                    * col("items").struct_().field_by_name("unit_price"),
            )
            .alias("line_amount"),
            col("currency"),
            col("event_time"),
            col("event_date"),
        ]);
    let mut parts = vec![fresh];
    let table = silver_order_items().open(home).await?;
    if !table.files()?.is_empty() {
        let kept_orders = merged
            .clone()
            .lazy()
            .filter(col(SRC).eq(lit(0i32)))
            .select([col("order_id")]);
        parts.push(
            table
                .scan()?
                .filter(
                    col("event_date")
                        .cast(DataType::Int32)
                        .is_in(date_lit(affected), false),
                )
                .semi_join(kept_orders, col("order_id"), col("order_id")),
        );
    }
    concat(parts, UnionArgs::default())
        .and_then(|lf| lf.collect())
        .map_err(pl(name, "items"))
}

#[cfg(test)]
#[path = "silver_tests.rs"]
mod tests;
