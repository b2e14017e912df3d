//! The registry's behaviour over the state store: parse, normalize, apply the compatibility level,
//! record. The REST server is a thin layer over this, and `produce`/`schemas register` call it
//! directly when no external registry is configured.

use super::{CompatReport, RegistryError};
use crate::contracts::compat::Compatibility;
use crate::contracts::schema::{Model, ParsedSchema};
use crate::store::{Registered, Store, SubjectVersion, VersionSel};

/// flowctl's own registry on the state DB.
#[derive(Debug, Clone)]
pub struct Embedded {
    store: Store,
}

fn parse(schema_type: Option<&str>, text: &str) -> Result<ParsedSchema, RegistryError> {
    ParsedSchema::parse_typed(schema_type, text)
        .map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

/// Models of stored versions; a stored schema that no longer parses is a corrupt store.
fn models(versions: &[SubjectVersion]) -> Result<Vec<(i64, Model)>, RegistryError> {
    versions
        .iter()
        .map(|v| {
            ParsedSchema::parse(&v.schema)
                .map(|p| (v.version, p.model))
                .map_err(|e| {
                    RegistryError::Store(crate::store::StoreError::Corrupt(format!(
                        "subject {} version {}: {e}",
                        v.subject, v.version
                    )))
                })
        })
        .collect()
}

pub fn validate_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.chars().any(|c| c.is_control()) {
        return Err(RegistryError::BadRequest(format!(
            "subject must be non-empty printable text, found {subject:?}"
        )));
    }
    Ok(())
}

impl Embedded {
    pub fn new(store: Store) -> Embedded {
        Embedded { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The level that applies to `subject`: its own, else the global one, else BACKWARD.
    pub async fn level(&self, subject: &str) -> Result<Compatibility, RegistryError> {
        let own = self.store.registry_config(Some(subject)).await?;
        let level = match own {
            Some(l) => Some(l),
            None => self.store.registry_config(None).await?,
        };
        Ok(level
            .and_then(|l| l.parse().ok())
            .unwrap_or(Compatibility::DEFAULT))
    }

    pub async fn register(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<Registered, RegistryError> {
        validate_subject(subject)?;
        let parsed = parse(schema_type, text)?;
        let level = self.level(subject).await?;
        let mut corrupt = None;
        let res = self
            .store
            .registry_register(subject, "AVRO", &parsed.normalized, |live| {
                match models(live) {
                    Ok(ms) => {
                        let refs: Vec<(i64, &Model)> = ms.iter().map(|(v, m)| (*v, m)).collect();
                        level.check(&parsed.model, &refs)
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        corrupt = Some(e);
                        vec![msg]
                    }
                }
            })
            .await;
        if let Some(e) = corrupt {
            return Err(e);
        }
        Ok(res?)
    }

    /// Compatibility of `text` with one version, or with the subject under its level when
    /// `sel` is `Latest` (transitive levels then look at every live version).
    pub async fn check(
        &self,
        subject: &str,
        sel: VersionSel,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<CompatReport, RegistryError> {
        let parsed = parse(schema_type, text)?;
        let level = self.level(subject).await?;
        let live = self.store.registry_versions(subject, false).await?;
        let against: Vec<SubjectVersion> = match sel {
            VersionSel::Latest => live,
            VersionSel::Number(n) => {
                if live.is_empty() {
                    return Err(RegistryError::SubjectNotFound(subject.to_string()));
                }
                let v = live.into_iter().find(|v| v.version == n).ok_or_else(|| {
                    RegistryError::VersionNotFound {
                        subject: subject.to_string(),
                        version: n.to_string(),
                    }
                })?;
                vec![v]
            }
        };
        let ms = models(&against)?;
        let refs: Vec<(i64, &Model)> = ms.iter().map(|(v, m)| (*v, m)).collect();
        let messages = level.check(&parsed.model, &refs);
        Ok(CompatReport {
            is_compatible: messages.is_empty(),
            messages,
        })
    }

    pub async fn check_latest(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        text: &str,
    ) -> Result<CompatReport, RegistryError> {
        self.check(subject, VersionSel::Latest, schema_type, text)
            .await
    }

    /// Finds the live version of `subject` holding `text`.
    pub async fn lookup(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        text: &str,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let parsed = parse(schema_type, text)?;
        let versions = self
            .store
            .registry_versions(subject, include_deleted)
            .await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        versions
            .into_iter()
            .find(|v| v.schema == parsed.normalized)
            .ok_or_else(|| RegistryError::SchemaNotFound("not found".into()))
    }

    pub async fn schema_by_id(&self, id: i64) -> Result<String, RegistryError> {
        self.store
            .registry_schema_by_id(id)
            .await?
            .map(|(_, s)| s)
            .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))
    }
}
