//! Reading the tables checks run on from the lake (`$FLOWCTL_HOME/lake/<table>`): the current
//! version as a Polars frame, and the reference tables of `values_in` checks as [`Frames`].
//! Shared by the `quality_check` task and write-audit-publish steps that gate a staged frame.

use std::path::Path;

use polars::prelude::DataFrame;

use super::{Frames, QualityError, TableExpectations};
use crate::lake::{LakeTable, lake_root, table_dir};

/// The current version of `table` and its rows; None when the table does not exist yet (no
/// Delta log), which callers report as a failed check rather than an error.
pub async fn read_lake_table(
    home: &Path,
    table: &str,
) -> Result<Option<(i64, DataFrame)>, QualityError> {
    let Some(path) = table_dir(&lake_root(home), table) else {
        return Err(QualityError::Source {
            table: table.to_string(),
            detail: "not a table name".into(),
        });
    };
    if !path.join("_delta_log").is_dir() {
        return Ok(None);
    }
    let source = |e: &dyn std::fmt::Display| QualityError::Source {
        table: table.to_string(),
        detail: e.to_string(),
    };
    let t = LakeTable::open(&path).await.map_err(|e| source(&e))?;
    let version = t.version();
    // Parquet decoding is CPU work: keep it off the async threads.
    let df = tokio::task::spawn_blocking(move || t.read_df())
        .await
        .map_err(|e| source(&e))?
        .map_err(|e| source(&e))?;
    Ok(Some((version, df)))
}

/// The tables `exp`'s `values_in` checks refer to, as they are now. A table that does not
/// exist is left out, so its checks come back with outcome `error`.
pub async fn reference_frames(
    home: &Path,
    exp: &TableExpectations,
) -> Result<Frames, QualityError> {
    let mut frames = Frames::default();
    for table in exp.referenced_tables() {
        if let Some((_, df)) = read_lake_table(home, &table).await? {
            frames.0.insert(table, df);
        }
    }
    Ok(frames)
}
