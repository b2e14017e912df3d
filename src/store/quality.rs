//! Quality check results: written when a task attempt ends, read by `flowctl checks`, the API
//! and the UI.

use super::{Store, StoreError, ts};
use crate::vocab::quality::QualityRecord;

impl Store {
    /// Stores the results one attempt of `task_id` recorded, in one transaction.
    pub async fn insert_quality_results(
        &self,
        run_id: i64,
        task_id: &str,
        rows: &[QualityRecord],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO quality_results (run_id, task_id, table_name, version, check_name, \
                 observed, threshold, severity, outcome, checked_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(run_id)
            .bind(task_id)
            .bind(&r.table)
            .bind(r.version)
            .bind(&r.check)
            .bind(&r.observed)
            .bind(&r.threshold)
            .bind(&r.severity)
            .bind(&r.outcome)
            .bind(ts(r.checked_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
