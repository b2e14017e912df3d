//! One public error for the lake module, saying which step failed and on which table.

/// What went wrong in the lake, with the table path or record position it concerns.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("table {table}: {step} failed: {source}")]
    Delta {
        table: String,
        step: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("table {table}: reading {file} failed: {detail}")]
    Read {
        table: String,
        file: String,
        detail: String,
    },
    #[error("table path {0} is not a valid local path for a Delta table")]
    BadPath(String),
    #[error("table {table}: schema does not convert to a Delta schema: {detail}")]
    Schema { table: String, detail: String },
    #[error("building the bronze batch failed: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("converting between arrow-rs and Polars failed: {0}")]
    Bridge(String),
    #[error("io on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("table {table}: Polars failed: {detail}")]
    Polars { table: String, detail: String },
    #[error(
        "table {table}: the staged commit was based on version {base} but the table is now at \
         version {current}; restage it"
    )]
    Moved {
        table: String,
        base: i64,
        current: i64,
    },
    #[error("staging file {path}: {detail}")]
    Staging { path: String, detail: String },
    #[error(
        "table {table}: another writer changed its schema, partitioning or protocol while this \
         one was appending; nothing of this commit was written, run again"
    )]
    Changed { table: String },
    #[error("table {table}: time travel: {detail}")]
    TimeTravel { table: String, detail: String },
}
