//! The business layer of validation: the bronze table's row rules from `expectations/`
//! (amount > 0, currency in a set, enums, event_time in range, keys present), evaluated on the
//! decoded rows. The structural layer (decodable, known schema id) is the decoder's.

use chrono::{DateTime, Utc};
use deltalake::arrow::record_batch::RecordBatch;

use super::error::IngestError;

/// A row that broke a business rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    pub rule: String,
    /// The DLQ `error_type`.
    pub category: String,
    pub detail: String,
}

/// The row rules of one bronze table (none when the table has no expectation file).
#[derive(Debug, Default)]
pub struct Rules {}

impl Rules {
    /// No business rules: every decodable row passes.
    pub fn none() -> Rules {
        Rules {}
    }

    /// The rules for `topic`'s bronze table from `dir` (none yet: wired to `expectations/` by
    /// the quality module).
    pub fn for_table(_dir: Option<&std::path::Path>, _topic: &str) -> Result<Rules, IngestError> {
        Ok(Rules::none())
    }

    /// Per row of `batch`, the first rule it breaks.
    pub fn failures(
        &self,
        batch: &RecordBatch,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Option<RuleFailure>>, IngestError> {
        Ok(vec![None; batch.num_rows()])
    }
}
