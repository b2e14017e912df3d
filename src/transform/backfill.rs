//! Backfill: rebuild silver for a range of event dates from all of bronze (`flowctl trigger
//! pipeline_full --param from=DATE --param to=DATE`).
//!
//! Correct dedup needs every version of a key, wherever its dates fall: all valid bronze rows are
//! deduplicated by business key (latest event_time, then highest offset), and only the winners
//! whose event_date is in the range are kept. Those dates' partitions are replaced (a date left
//! with no winner is emptied). The incremental position (`txn`) is left where it is, so the next
//! increment neither skips nor repeats anything; gold then recomputes exactly the dates whose
//! silver rows changed. Running the same backfill twice gives the same silver content.

use std::path::Path;

use polars::prelude::*;

use super::schema::silver_order_items;
use super::silver::{EntityReport, SRC, SilverRun, dates_of, judged, order_items};
use super::{Entity, TransformError, date_string, pl};
use crate::lake::{LakeTable, StageMode, StageSpec, df_to_batch, stage};

pub(super) async fn rebuild(
    home: &Path,
    entity: Entity,
    run: &SilverRun,
    (from, to): (i32, i32),
    bronze: &LakeTable,
    mut report: EntityReport,
) -> Result<EntityReport, TransformError> {
    let def = entity.silver();
    let silver = def.open(home).await?;
    // Silver's rules as the incremental run applies them (on normalised rows); the rows they
    // refuse were quarantined by the run that first saw them.
    let good = judged(entity, bronze.scan()?, bronze.version(), run, &[])?
        .filter(col("_failed").is_null())
        .with_column(lit(1i32).alias(SRC))
        .collect()
        .map_err(pl(def.name, "normalising bronze"))?;
    report.rows_in = good.height();
    let in_dates = || {
        let d = col("event_date").cast(DataType::Int32);
        d.clone().gt_eq(lit(from)).and(d.lt_eq(lit(to)))
    };
    let before = good.height();
    let winners = super::silver::dedup_latest(&good, entity.key(), def.name)?;
    report.duplicates_removed = before - winners.height();
    let in_range = winners
        .lazy()
        .filter(in_dates())
        .collect()
        .map_err(pl(def.name, "date range"))?;
    // The partitions to replace: the range's dates that have winners, and those silver holds now
    // (a date whose rows all moved elsewhere is emptied).
    let mut range = dates_of(&in_range, def.name)?;
    if !silver.files()?.is_empty() {
        let held = silver
            .scan()?
            .select([col("event_date")])
            .filter(in_dates())
            .unique(None, Default::default())
            .collect()
            .map_err(pl(def.name, "existing dates"))?;
        range.extend(dates_of(&held, def.name)?);
    }
    report.rows_staged = in_range.height();
    report.partitions = range.iter().map(|d| date_string(*d)).collect();
    let spec = StageSpec {
        mode: StageMode::ReplacePartitions,
        partitions: report.partitions.clone(),
        txns: Vec::new(),
        run_id: run.run_id,
    };
    let target = silver.arrow_schema()?;
    let columns = target.fields().iter().map(|f| f.name().as_str());
    let rows = in_range.select(columns).map_err(pl(def.name, "columns"))?;
    stage(
        home,
        def.name,
        &silver,
        [df_to_batch(&rows, Some(&target))?],
        spec.clone(),
    )
    .await?;
    report.staged.push(def.name.to_string());
    if entity == Entity::Orders {
        let items = order_items(home, &in_range, &range).await?;
        let items_def = silver_order_items();
        let items_table = items_def.open(home).await?;
        let batch = df_to_batch(&items, Some(&items_table.arrow_schema()?))?;
        stage(home, items_def.name, &items_table, [batch], spec).await?;
        report.staged.push(items_def.name.to_string());
    }
    Ok(report)
}
