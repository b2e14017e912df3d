//! The business layer of validation: the bronze table's row rules from `expectations/`
//! (amount > 0, currency in a set, enums, event_time in range, keys present), evaluated on the
//! decoded rows as Polars expressions. The structural layer (decodable, known schema id,
//! resolvable schema) is the decoder's.
//!
//! A topic's rules come from `expectations/bronze_<topic>.yaml`, else from the file of the
//! event kind its name contains (`orders-bench` → `bronze_orders.yaml`), so test and bench
//! topics get the production rules.

use chrono::{DateTime, Utc};
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::arrow::record_batch::RecordBatch;

use super::error::IngestError;
use super::topic::bronze_table;
use crate::contracts::domain::EventKind;
use crate::lake::batches_to_df;
use crate::quality::{self, CompiledRules, QualityError, TableExpectations};
use polars::prelude::{DataType, IntoColumn, Series};

pub use crate::quality::RowFailure as RuleFailure;

/// The row rules of one bronze table (none when the table has no expectation file).
#[derive(Debug, Default)]
pub struct Rules {
    table: Option<TableExpectations>,
}

impl Rules {
    /// No business rules: every decodable row passes.
    pub fn none() -> Rules {
        Rules { table: None }
    }

    /// The rules for `topic`'s bronze table from `dir`. A malformed expectation file is an
    /// error (ingest must not run with half its rules); no file at all means no rules.
    pub fn for_table(dir: Option<&std::path::Path>, topic: &str) -> Result<Rules, IngestError> {
        let Some(dir) = dir.filter(|d| d.is_dir()) else {
            tracing::warn!(topic, "no expectations directory: business rules are off");
            return Ok(Rules::none());
        };
        let set = quality::load_dir(dir).map_err(|e| IngestError::Expectations(e.to_string()))?;
        let by_kind = EventKind::for_topic(topic).map(|k| {
            bronze_table(match k {
                EventKind::Orders => "orders",
                EventKind::Clickstream => "clickstream",
                EventKind::Payments => "payments",
            })
        });
        let table = set
            .table(&bronze_table(topic))
            .or_else(|| by_kind.and_then(|t| set.table(&t)))
            .cloned();
        if table.is_none() {
            tracing::warn!(topic, dir = %dir.display(), "no bronze expectation file: business rules are off");
        }
        Ok(Rules { table })
    }

    /// Warns, with file and line, about rules and checks naming a column the bronze rows
    /// (`schema`, the decoder's) do not have. Not an error here: the registered contract may be
    /// older than the rules (v1 orders have no `channel`, and rows read it as null); a column no
    /// contract has is refused by `flowctl checks validate`. The warning keeps a typo from
    /// hiding behind the type error such a rule then meets on a column of nulls.
    pub fn warn_unknown_columns(&self, schema: &ArrowSchema) {
        let Some(t) = &self.table else {
            return;
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        for e in t.unknown_columns(&columns) {
            tracing::warn!("{e}; rows read it as null");
        }
    }

    /// Whether there are any rules at all.
    pub fn any(&self) -> bool {
        self.table.as_ref().is_some_and(|t| t.rule_count() > 0)
    }

    /// The rules compiled for rows of `schema` (the decoder's), so the decoder can judge each
    /// row as it decodes it; `None` when some rule needs the Polars evaluator.
    pub fn compile(&self, schema: &ArrowSchema) -> Option<CompiledRules> {
        let t = self.table.as_ref()?;
        let compiled = CompiledRules::compile(t, schema);
        if compiled.is_none() {
            tracing::info!(
                table = t.name(),
                "some row rules need Polars: judged after decoding"
            );
        }
        compiled
    }

    /// Per row of `batch`, the first rule it breaks (file order).
    pub fn failures(
        &self,
        batch: &RecordBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<RuleFailure>>, IngestError> {
        let Some(t) = &self.table else {
            return Ok(vec![None; batch.num_rows()]);
        };
        // Only the columns the rules read cross into Polars (not the nested items).
        let wanted = t.rule_columns();
        let indices: Vec<usize> = wanted
            .iter()
            .filter_map(|c| batch.schema().index_of(c).ok())
            .collect();
        let projected = batch
            .project(&indices)
            .map_err(crate::lake::LakeError::from)?;
        let mut df = batches_to_df(&projected.schema(), std::slice::from_ref(&projected))?;
        // A rule on a column the writer schema lacks (v1 orders have no `channel`) sees nulls:
        // a `missing` rule then fails every row, an `invalid` rule passes them.
        for _ in 0..64 {
            match t.row_failures(&df, now) {
                Err(QualityError::MissingColumn { column, .. })
                    if !df.schema().contains(&column) =>
                {
                    let nulls =
                        Series::full_null(column.as_str().into(), df.height(), &DataType::String);
                    df.with_column(nulls.into_column())
                        .map_err(|e| IngestError::Expectations(e.to_string()))?;
                }
                other => return other.map_err(|e| IngestError::Expectations(e.to_string())),
            }
        }
        Err(IngestError::Expectations(format!(
            "{}: too many missing columns",
            t.name()
        )))
    }
}
