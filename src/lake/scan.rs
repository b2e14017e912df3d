//! Reading tables into Polars fast: the snapshot's file list comes from the Delta log, the files
//! are scanned lazily by Polars (parallel, projection and predicate pushdown), and the partition
//! values, which live in the log and not in the files, are added back as literal columns.
//!
//! This is what the transforms and the bench read with; [`LakeTable::read_all`] (arrow-rs,
//! one file at a time) stays for small reads and tests.
//!
//! Polars' parquet reader blocks in place on its own async runtime: call `collect` from a
//! multi-threaded tokio runtime (a worker or a `spawn_blocking` thread) or from no runtime at
//! all, never from a `current_thread` runtime, where it panics.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema};
use polars::prelude::{
    DataFrame, DataType, IntoLazy, LazyFrame, PlRefPath, ScanArgsParquet, UnionArgs, col, concat,
    lit,
};
use url::Url;

use super::error::LakeError;
use super::frame::batches_to_df;
use super::table::{LakeTable, delta_err};

/// One data file of a snapshot: its path relative to the table folder and its partition values
/// as the log stores them (strings; `None` is a null partition value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: String,
    pub partition_values: HashMap<String, Option<String>>,
}

fn polars_err(table: &Path, e: impl std::fmt::Display) -> LakeError {
    LakeError::Polars {
        table: table.display().to_string(),
        detail: e.to_string(),
    }
}

/// Files of the snapshot `table` currently holds.
fn snapshot_files(table: &DeltaTable, path: &Path) -> Result<Vec<DataFile>, LakeError> {
    let snap = table.snapshot().map_err(delta_err(path, "snapshot"))?;
    Ok(snap
        .log_data()
        .iter()
        .map(|f| DataFile {
            path: f.path().to_string(),
            partition_values: f.partition_values_map(),
        })
        .collect())
}

/// A partition value (as the log writes it) → a Polars literal of the column's type.
fn partition_literal(
    value: Option<&str>,
    dtype: &ArrowType,
    pl_type: &DataType,
) -> polars::prelude::Expr {
    let Some(v) = value else {
        return lit(polars::prelude::Null {}).cast(pl_type.clone());
    };
    match dtype {
        ArrowType::Date32 => {
            let days = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days())
                .unwrap_or(0) as i32;
            lit(days).cast(DataType::Date)
        }
        ArrowType::Int32 => lit(v.parse::<i32>().unwrap_or_default()),
        ArrowType::Int64 => lit(v.parse::<i64>().unwrap_or_default()),
        _ => lit(v.to_string()).cast(pl_type.clone()),
    }
}

impl LakeTable {
    /// Data files of the current version.
    pub fn files(&self) -> Result<Vec<DataFile>, LakeError> {
        if self.is_deferred() {
            return Ok(Vec::new());
        }
        snapshot_files(&self.table, &self.path)
    }

    /// Data files of `version` (time travel: the log replayed up to that version).
    pub async fn files_at(&self, version: i64) -> Result<Vec<DataFile>, LakeError> {
        if version == self.version() {
            return self.files();
        }
        let url = Url::from_directory_path(&self.path)
            .map_err(|()| LakeError::BadPath(self.path.display().to_string()))?;
        let mut old = DeltaTable::try_from_url(url)
            .await
            .map_err(delta_err(&self.path, "open"))?;
        old.load_version(version.max(0) as u64)
            .await
            .map_err(delta_err(&self.path, "load_version"))?;
        snapshot_files(&old, &self.path)
    }

    /// Files in the current version that `version` did not have: what was added since. For an
    /// append-only table (bronze) this is exactly the rows committed after `version`.
    pub async fn files_added_since(&self, version: i64) -> Result<Vec<DataFile>, LakeError> {
        if version < 0 {
            return self.files();
        }
        let before: std::collections::HashSet<String> = self
            .files_at(version)
            .await?
            .into_iter()
            .map(|f| f.path)
            .collect();
        Ok(self
            .files()?
            .into_iter()
            .filter(|f| !before.contains(&f.path))
            .collect())
    }

    /// A lazy scan of `files` in the table's schema (columns in schema order, partition columns
    /// filled in from the log). No files: an empty frame with the right columns.
    pub fn scan_files(&self, files: &[DataFile]) -> Result<LazyFrame, LakeError> {
        let schema = self.arrow_schema()?;
        let parts = self.partition_columns()?;
        scan_files(&self.path, &schema, &parts, files)
    }

    /// A lazy scan of the current version.
    pub fn scan(&self) -> Result<LazyFrame, LakeError> {
        self.scan_files(&self.files()?)
    }

    /// The table as it was at `version`, as one DataFrame.
    pub async fn read_df_at(&self, version: i64) -> Result<DataFrame, LakeError> {
        let files = self.files_at(version).await?;
        self.scan_files(&files)?
            .collect()
            .map_err(|e| polars_err(&self.path, e))
    }
}

/// See [`LakeTable::scan_files`]; free so staging can scan a table folder with a file list
/// that no snapshot has yet.
pub(super) fn scan_files(
    root: &Path,
    schema: &ArrowSchema,
    partition_columns: &[String],
    files: &[DataFile],
) -> Result<LazyFrame, LakeError> {
    let empty = batches_to_df(schema, &[])?;
    if files.is_empty() {
        return Ok(empty.lazy());
    }
    let pl_schema = empty.schema().clone();
    // One scan per distinct partition tuple: Polars reads the group's files in parallel and
    // the literal columns cost nothing per row until materialised.
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<PlRefPath>> = BTreeMap::new();
    for f in files {
        let key: Vec<Option<String>> = partition_columns
            .iter()
            .map(|c| f.partition_values.get(c).cloned().flatten())
            .collect();
        let full = root.join(&f.path);
        groups
            .entry(key)
            .or_default()
            .push(PlRefPath::new(full.to_string_lossy().as_ref()));
    }
    let order: Vec<_> = schema.fields().iter().map(|f| col(f.name())).collect();
    let mut frames = Vec::with_capacity(groups.len());
    for (values, paths) in groups {
        let args = ScanArgsParquet {
            allow_missing_columns: true,
            ..Default::default()
        };
        let mut lf = LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map_err(|e| polars_err(root, e))?;
        let lits: Vec<_> = partition_columns
            .iter()
            .zip(values.iter())
            .filter_map(|(c, v)| {
                let field = schema.field_with_name(c).ok()?;
                let pl_type = pl_schema.get(c.as_str())?;
                Some(partition_literal(v.as_deref(), field.data_type(), pl_type).alias(c.as_str()))
            })
            .collect();
        if !lits.is_empty() {
            lf = lf.with_columns(lits);
        }
        frames.push(lf.select(order.clone()));
    }
    if frames.len() == 1 {
        return Ok(frames.pop().expect("one frame"));
    }
    concat(
        frames,
        UnionArgs {
            rechunk: false,
            ..Default::default()
        },
    )
    .map_err(|e| polars_err(root, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::{batch, schema};
    use crate::lake::lake_root;

    #[tokio::test(flavor = "multi_thread")]
    async fn scan_matches_read_and_time_travel_sees_old_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = lake_root(dir.path()).join("t");
        let mut t = LakeTable::open_or_create(&path, &schema(), &["event_date"])
            .await
            .unwrap();
        t.append([batch(0..30, 3)], None).await.unwrap();
        t.append([batch(30..40, 3)], None).await.unwrap();
        let df = t.scan().unwrap().collect().unwrap();
        assert_eq!(df.height(), 40);
        assert_eq!(df.get_column_names(), ["id", "name", "event_date"]);
        let slow = t.read_df().unwrap();
        let sort = |d: DataFrame| d.lazy().sort(["id"], Default::default()).collect().unwrap();
        assert!(sort(df).equals_missing(&sort(slow)));
        let v1 = t.read_df_at(1).await.unwrap();
        assert_eq!(v1.height(), 30);
        assert_eq!(t.read_df_at(0).await.unwrap().height(), 0);
        let added = t.files_added_since(1).await.unwrap();
        let rows = t.scan_files(&added).unwrap().collect().unwrap();
        assert_eq!(rows.height(), 10);
    }
}
