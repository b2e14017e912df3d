//! Schema registry SQL: subjects, versions, content-addressed schema ids, soft/hard deletes and
//! compatibility config. Compatibility *rules* live in `contracts::compat`; registration takes
//! them as a closure so that the check and the insert happen in one write transaction and two
//! concurrent registrations cannot both pass against a stale latest version.

use chrono::Utc;
use sqlx::Row;

use super::{Store, StoreError, ts};

/// One version of a subject as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i64,
    pub id: i64,
    pub schema_type: String,
    pub schema: String,
    pub deleted: bool,
}

/// Which version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    Latest,
    Number(i64),
}

/// Registry outcomes that are not plain database failures; the REST layer maps each to a
/// Confluent error code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryStoreError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    NotSoftDeletedFirst { subject: String, version: String },
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .problems.join("; "))]
    Incompatible {
        subject: String,
        problems: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RegistryStoreError {
    fn from(e: sqlx::Error) -> Self {
        RegistryStoreError::Store(StoreError::Query(e))
    }
}

/// The result of registering a schema under a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: i64,
    pub version: i64,
    /// True when the subject already had this schema: nothing was written.
    pub existed: bool,
}

fn row_to_version(r: &sqlx::sqlite::SqliteRow) -> Result<SubjectVersion, sqlx::Error> {
    Ok(SubjectVersion {
        subject: r.try_get("subject")?,
        version: r.try_get("version")?,
        id: r.try_get("schema_id")?,
        schema_type: r.try_get("schema_type")?,
        schema: r.try_get("schema")?,
        deleted: r.try_get::<i64, _>("deleted")? != 0,
    })
}

const VERSION_COLS: &str =
    "SELECT v.subject, v.version, v.schema_id, v.deleted, s.schema_type, s.schema
     FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id";

impl Store {
    /// Registers `schema` (already normalized) under `subject`. If a live version of the subject
    /// has the same schema, returns it unchanged. Otherwise `check` sees the live versions
    /// (oldest first) and returns the compatibility problems; none means the new version is
    /// written.
    pub async fn registry_register<F>(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
        check: F,
    ) -> Result<Registered, RegistryStoreError>
    where
        F: FnOnce(&[SubjectVersion]) -> Vec<String>,
    {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "SELECT v.subject, v.version, v.schema_id, v.deleted, s.schema_type, s.schema
             FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id
             WHERE v.subject = ? AND v.deleted = 0 ORDER BY v.version",
        )
        .bind(subject)
        .fetch_all(&mut *tx)
        .await?;
        let live = rows
            .iter()
            .map(row_to_version)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(same) = live
            .iter()
            .find(|v| v.schema == schema && v.schema_type == schema_type)
        {
            return Ok(Registered {
                id: same.id,
                version: same.version,
                existed: true,
            });
        }
        let problems = check(&live);
        if !problems.is_empty() {
            return Err(RegistryStoreError::Incompatible {
                subject: subject.to_string(),
                problems,
            });
        }
        let now = ts(Utc::now());
        // Look up before inserting: a conflicting INSERT would still burn an AUTOINCREMENT id,
        // and ids should stay dense like Confluent's.
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM registry_schemas WHERE schema_type = ? AND schema = ?",
        )
        .bind(schema_type)
        .bind(schema)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO registry_schemas (schema_type, schema, created_at) VALUES (?, ?, ?)
                 RETURNING id",
            )
            .bind(schema_type)
            .bind(schema)
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?,
        };
        // Numbers of soft-deleted versions are not reused, like Confluent.
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM registry_versions WHERE subject = ?",
        )
        .bind(subject)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO registry_versions (subject, version, schema_id, deleted, created_at)
             VALUES (?, ?, ?, 0, ?)",
        )
        .bind(subject)
        .bind(version)
        .bind(id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Registered {
            id,
            version,
            existed: false,
        })
    }

    /// Subjects with at least one live version (or any version when `include_deleted`).
    pub async fn registry_subjects(
        &self,
        include_deleted: bool,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT subject FROM registry_versions WHERE deleted = 0 OR ? ORDER BY subject",
        )
        .bind(include_deleted)
        .fetch_all(&self.reader)
        .await?)
    }

    /// All versions of a subject, oldest first; live ones only unless `include_deleted`.
    pub async fn registry_versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<SubjectVersion>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{VERSION_COLS} WHERE v.subject = ? AND (v.deleted = 0 OR ?) ORDER BY v.version"
        ));
        let rows = sqlx::query(sql)
            .bind(subject)
            .bind(include_deleted)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(row_to_version).collect::<Result<_, _>>()?)
    }

    /// One version of a subject; `None` when the subject or version does not exist.
    pub async fn registry_version(
        &self,
        subject: &str,
        sel: VersionSel,
        include_deleted: bool,
    ) -> Result<Option<SubjectVersion>, StoreError> {
        let all = self.registry_versions(subject, include_deleted).await?;
        Ok(match sel {
            VersionSel::Latest => all.into_iter().last(),
            VersionSel::Number(n) => all.into_iter().find(|v| v.version == n),
        })
    }

    /// The schema with a global id: `(schema_type, schema)`.
    pub async fn registry_schema_by_id(
        &self,
        id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT schema_type, schema FROM registry_schemas WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("schema_type")?, r.try_get("schema")?)),
            None => None,
        })
    }

    /// Subject-version pairs that use a schema id (live only).
    pub async fn registry_id_versions(&self, id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, version FROM registry_versions WHERE schema_id = ? AND deleted = 0
             ORDER BY subject, version",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("subject")?, r.try_get("version")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Deletes every version of a subject. Soft delete hides them; `permanent` removes rows and
    /// requires a prior soft delete, as in Confluent. Returns the version numbers deleted.
    pub async fn registry_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i64>, RegistryStoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, deleted FROM registry_versions WHERE subject = ? ORDER BY version",
        )
        .bind(subject)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Err(RegistryStoreError::SubjectNotFound(subject.to_string()));
        }
        let live: Vec<i64> = rows.iter().filter(|r| r.1 == 0).map(|r| r.0).collect();
        let versions = if permanent {
            if !live.is_empty() {
                return Err(RegistryStoreError::NotSoftDeletedFirst {
                    subject: subject.to_string(),
                    version: live[0].to_string(),
                });
            }
            sqlx::query("DELETE FROM registry_versions WHERE subject = ?")
                .bind(subject)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM registry_config WHERE subject = ?")
                .bind(subject)
                .execute(&mut *tx)
                .await?;
            rows.iter().map(|r| r.0).collect()
        } else {
            if live.is_empty() {
                return Err(RegistryStoreError::SubjectSoftDeleted(subject.to_string()));
            }
            sqlx::query("UPDATE registry_versions SET deleted = 1 WHERE subject = ?")
                .bind(subject)
                .execute(&mut *tx)
                .await?;
            live
        };
        tx.commit().await?;
        Ok(versions)
    }

    /// Deletes one version (soft, or `permanent` after a soft delete).
    pub async fn registry_delete_version(
        &self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<i64, RegistryStoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, deleted FROM registry_versions WHERE subject = ? ORDER BY version",
        )
        .bind(subject)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Err(RegistryStoreError::SubjectNotFound(subject.to_string()));
        }
        let not_found = || RegistryStoreError::VersionNotFound {
            subject: subject.to_string(),
            version: match sel {
                VersionSel::Latest => "latest".into(),
                VersionSel::Number(n) => n.to_string(),
            },
        };
        let row = match sel {
            // `latest` means the latest live version, for soft and hard delete alike.
            VersionSel::Latest if permanent => rows.iter().rev().find(|r| r.1 == 1).copied(),
            VersionSel::Latest => rows.iter().rev().find(|r| r.1 == 0).copied(),
            VersionSel::Number(n) => rows.iter().find(|r| r.0 == n).copied(),
        }
        .ok_or_else(not_found)?;
        if permanent {
            if row.1 == 0 {
                return Err(RegistryStoreError::NotSoftDeletedFirst {
                    subject: subject.to_string(),
                    version: row.0.to_string(),
                });
            }
            sqlx::query("DELETE FROM registry_versions WHERE subject = ? AND version = ?")
                .bind(subject)
                .bind(row.0)
                .execute(&mut *tx)
                .await?;
        } else {
            if row.1 == 1 {
                return Err(not_found());
            }
            sqlx::query(
                "UPDATE registry_versions SET deleted = 1 WHERE subject = ? AND version = ?",
            )
            .bind(subject)
            .bind(row.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row.0)
    }

    /// The compatibility level set for `subject` (`None`: the global level), if any was set.
    pub async fn registry_config(
        &self,
        subject: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT compatibility FROM registry_config WHERE subject = ?")
                .bind(subject.unwrap_or(""))
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Sets the compatibility level for `subject` (`None`: global). The caller validates it.
    pub async fn registry_set_config(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO registry_config (subject, compatibility) VALUES (?, ?)
             ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
        )
        .bind(subject.unwrap_or(""))
        .bind(level)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Removes a subject's own level; returns what it was.
    pub async fn registry_delete_config(
        &self,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "DELETE FROM registry_config WHERE subject = ? RETURNING compatibility",
        )
        .bind(subject)
        .fetch_optional(&self.writer)
        .await?)
    }
}
