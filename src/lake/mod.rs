//! The lake: Delta tables on local disk under `$FLOWCTL_HOME/lake/`, written and read with
//! arrow-rs `RecordBatch`es, and the bronze decoder that turns Confluent-framed Avro Kafka
//! records into those batches.
//!
//! Exactly-once building block: every append can carry a Delta `txn` action (app id, version) in
//! the *same* commit as its rows, so after a crash the writer reads the version back
//! ([`LakeTable::txn_version`]) and skips or seeks past what is already committed. Nothing else in
//! flowctl needs to know how Delta or Parquet work: it goes through this module.

mod append;
mod appender;
mod deferred;
mod error;
mod frame;
mod inspect;
pub mod maintain;
mod read;
mod scan;
mod stage;
mod table;
mod zorder;

pub use append::{PartsWriter, bronze_writer_properties, split_by_date};
pub use appender::Appender;
pub use error::LakeError;
pub use frame::{batches_to_df, conform, df_to_batch};
pub use inspect::{CommitDetail, FileInfo, TableStats, commit_run_id, list_tables};
pub use scan::DataFile;
pub use stage::{StageMode, StageSpec, StagedCommit, stage, staged, staging_dir};
pub use table::{AppTxn, Commit, LakeTable, lake_root, table_dir, valid_table_name};

/// Test data shared by the lake's unit tests: `id`, `name`, `event_date` partitioned tables.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    pub fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("event_date", DataType::Date32, true),
        ]))
    }

    /// Rows `ids`, named `n<id>`, spread over `days` event dates from day 20_000.
    pub fn batch(ids: std::ops::Range<i64>, days: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| format!("n{i}")),
                )),
                Arc::new(Date32Array::from_iter_values(
                    ids.map(|i| 20_000 + (i % days) as i32),
                )),
            ],
        )
        .unwrap()
    }
}
