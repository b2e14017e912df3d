//! Silver's row rules: the `rules:` of `expectations/silver_<entity>.yaml`, the same files the
//! silver gates check. A row that breaks any of them goes to `silver_quarantine` with the name
//! of every rule it broke, so "what silver refuses" is edited in one place, next to the checks.
//!
//! The rules are written against silver's columns (`item_count`, `schema_version`, upper-case
//! currency...), so they are evaluated on the *normalised* rows: a row is judged by what it
//! would look like in silver, and `" eur "` is a valid currency once trimmed and upper-cased.
//! Quarantine still records the original bronze row.
//!
//! `now` in a time bound (`valid_max: now + 1h`) is the row's own `_ingested_at`: whether an
//! event was "in the future" is decided by when it arrived, so a rerun or a backfill months
//! later judges every row exactly as the first run did.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use super::{Entity, TransformError};
use crate::quality::{self, Now, TableExpectations};

/// The bronze column that stands for `now` in silver's rules.
pub const INGESTED_AT: &str = "_ingested_at";

/// The row rules of each silver entity table, loaded once per run.
#[derive(Debug, Clone, Default)]
pub struct SilverRules {
    by_entity: HashMap<Entity, TableExpectations>,
    /// Where they were loaded from (for messages).
    dir: Option<std::path::PathBuf>,
}

impl SilverRules {
    /// Loads `silver_orders`, `silver_clickstream` and `silver_payments` from `dir`. A
    /// malformed file anywhere in `dir` is an error (its `file:line: reason` lines); a silver
    /// file that does not exist is only an error for the entity that needs it
    /// ([`Self::failed_expr`]), so a run of one entity does not need the others' files.
    pub fn load(dir: &Path) -> Result<SilverRules, TransformError> {
        if !dir.is_dir() {
            return Err(TransformError::Rules(format!(
                "no expectations directory at {}: silver's row rules come from \
                 silver_<entity>.yaml there (set FLOWCTL_EXPECTATIONS_DIR)",
                dir.display()
            )));
        }
        let set = quality::load_dir(dir).map_err(|e| TransformError::Rules(e.to_string()))?;
        let by_entity = Entity::ALL
            .into_iter()
            .filter_map(|e| set.table(e.silver().name).map(|t| (e, t.clone())))
            .collect();
        Ok(SilverRules {
            by_entity,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// The rules of one entity's silver table.
    pub fn table(&self, entity: Entity) -> Result<&TableExpectations, TransformError> {
        self.by_entity.get(&entity).ok_or_else(|| {
            let name = entity.silver().name;
            TransformError::Rules(match &self.dir {
                Some(d) => format!(
                    "no expectations for {name} in {}: silver's row rules come from {name}.yaml",
                    d.display()
                ),
                None => format!("no row rules loaded for {name}"),
            })
        })
    }

    /// A string expression over normalised rows of `entity` (with `schema`, which has
    /// [`INGESTED_AT`]): the comma-separated names of the rules the row breaks, in file order;
    /// null when it passes them all.
    pub fn failed_expr(&self, entity: Entity, schema: &Schema) -> Result<Expr, TransformError> {
        let table = self.table(entity)?;
        let rules = table
            .rule_exprs(schema, Now::Column(INGESTED_AT.into()))
            .map_err(|e| TransformError::Rules(e.to_string()))?;
        if rules.is_empty() {
            return Ok(lit(NULL).cast(DataType::String));
        }
        let names: Vec<Expr> = rules
            .into_iter()
            .map(|(name, fails)| {
                when(fails)
                    .then(lit(name))
                    .otherwise(lit(NULL).cast(DataType::String))
            })
            .collect();
        let joined = concat_str(names, ",", true);
        Ok(when(joined.clone().str().len_chars().gt(lit(0)))
            .then(joined)
            .otherwise(lit(NULL).cast(DataType::String)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_rules() -> SilverRules {
        SilverRules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations")).unwrap()
    }

    #[test]
    fn every_broken_rule_of_the_file_is_named_and_good_rows_get_null() {
        let t = 1_763_900_000_000_000i64;
        let df = df!(
            "payment_id" => ["pay-1a-000000001-1", "", "pay-2b-000000002-1"],
            "order_id" => ["ord-1a-000000001", "ord-1a-000000002", "nope"],
            "amount" => [10.0, -1.0, 5.0],
            "currency" => ["EUR", "BTC", "USD"],
            "method" => ["card", "card", "paypal"],
            "status" => ["CAPTURED", "CAPTURED", "FAILED"],
            // A day after it was ingested: in the future, whenever silver runs.
            "event_time" => [t, t + 86_400_000_000, t],
            "_ingested_at" => [t, t, t],
        )
        .unwrap()
        .lazy()
        .with_columns(["event_time", "_ingested_at"].map(|c| {
            col(c).cast(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC),
            ))
        }))
        .collect()
        .unwrap();
        let rules = repo_rules();
        let e = rules.failed_expr(Entity::Payments, df.schema()).unwrap();
        let out = df.lazy().select([e.alias("f")]).collect().unwrap();
        let f: Vec<Option<&str>> = out.column("f").unwrap().str().unwrap().iter().collect();
        assert_eq!(f[0], None);
        assert_eq!(
            f[1],
            Some(
                "payment_id_present,payment_id_format,amount_positive,currency_known,\
                 event_time_in_range"
            )
        );
        assert_eq!(f[2], Some("order_id_format"));
    }

    #[test]
    fn a_missing_directory_or_file_is_a_clear_error() {
        let e = SilverRules::load(Path::new("/nonexistent/expectations")).unwrap_err();
        assert!(e.to_string().contains("no expectations directory"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let rules = SilverRules::load(dir.path()).unwrap();
        let e = rules.table(Entity::Orders).unwrap_err();
        assert!(e.to_string().contains("silver_orders.yaml"), "{e}");
    }
}
