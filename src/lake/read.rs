//! Reading a table back as `RecordBatch`es: the snapshot's files, each read with the Parquet
//! reader, with the partition values (stored in the log, not in the files) added back as
//! columns. For tests and `tables show`; not a query engine.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, StringArray, new_null_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::LakeError;
use super::scan::DataFile;
use super::table::LakeTable;

impl LakeTable {
    /// Every row of the current version, in the table's schema (partition columns included).
    pub fn read_all(&self) -> Result<Vec<RecordBatch>, LakeError> {
        self.read_files(&self.files()?)
    }

    /// Every row of `files` (paths relative to the table folder), in the table's schema with the
    /// partition columns filled in from each file's partition values. Compaction reads the
    /// files it rewrites through this.
    pub fn read_files(&self, files: &[DataFile]) -> Result<Vec<RecordBatch>, LakeError> {
        let schema = self.arrow_schema()?;
        let table_name = self.path.display().to_string();
        let mut out = Vec::new();
        for file in files {
            let rel = file.path.clone();
            let full = self.path.join(&rel);
            let read_err = |detail: String| LakeError::Read {
                table: table_name.clone(),
                file: rel.clone(),
                detail,
            };
            let f = std::fs::File::open(&full).map_err(|e| read_err(e.to_string()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|b| b.build())
                .map_err(|e| read_err(e.to_string()))?;
            let parts = &file.partition_values;
            for batch in reader {
                let batch = batch.map_err(|e| read_err(e.to_string()))?;
                let rows = batch.num_rows();
                let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
                for field in schema.fields() {
                    if let Some(col) = batch.column_by_name(field.name()) {
                        columns.push(if col.data_type() == field.data_type() {
                            col.clone()
                        } else {
                            cast(col, field.data_type())?
                        });
                        continue;
                    }
                    // A partition column: one value for the whole file.
                    let col = match parts.get(field.name()) {
                        Some(Some(v)) => {
                            let strings: ArrayRef =
                                Arc::new(StringArray::from(vec![v.as_str(); rows]));
                            if field.data_type() == &DataType::Utf8 {
                                strings
                            } else {
                                cast(&strings, field.data_type())?
                            }
                        }
                        _ => new_null_array(field.data_type(), rows),
                    };
                    columns.push(col);
                }
                out.push(RecordBatch::try_new(schema.clone(), columns)?);
            }
        }
        Ok(out)
    }

    /// The number of rows in the current version: from the log's per-file statistics when every
    /// file has them (ours always do), else by reading the files.
    pub fn row_count(&self) -> Result<usize, LakeError> {
        if self.is_deferred() {
            return Ok(0);
        }
        let snap = self.table.snapshot().map_err(|source| LakeError::Delta {
            table: self.path.display().to_string(),
            step: "snapshot",
            source: Box::new(source),
        })?;
        let counts: Option<usize> = snap.log_data().iter().map(|f| f.num_records()).sum();
        match counts {
            Some(n) => Ok(n),
            None => Ok(self.read_all()?.iter().map(|b| b.num_rows()).sum()),
        }
    }
}
