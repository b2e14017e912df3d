//! The schema registry: flowctl's own Confluent-compatible server (SQLite-backed, the embedded
//! default) and a client for any server speaking the same REST API, including Confluent's.
//!
//! [`Registry`] is what the rest of flowctl uses: embedded when no external registry URL is
//! configured (no server process needed), HTTP otherwise. Both paths run the same rules.

mod client;
mod server;
mod service;

pub use client::{RegistryAuth, RegistryClient, RegistryEndpoint};
pub use server::{CONTENT_TYPE, registry_app, registry_router};
pub use service::Embedded;

use crate::contracts::wire::SchemaId;
use crate::store::{RegistryStoreError, StoreError};

/// Everything the registry can answer with besides success. Each variant carries Confluent's
/// HTTP status and `error_code`, so clients written for Confluent understand us.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    NotSoftDeletedFirst { subject: String, version: String },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectConfig(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .problems.join("; "))]
    Incompatible {
        subject: String,
        problems: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("Invalid compatibility level. {0}")]
    InvalidCompatibilityLevel(String),
    #[error("Unprocessable request: {0}")]
    BadRequest(String),
    #[error("Error in the backend data store: {0}")]
    Store(#[from] StoreError),
    /// A remote registry could not be reached or answered with something that is not the API.
    #[error("schema registry at {url}: {detail}")]
    Transport { url: String, detail: String },
    /// A remote registry answered with an error code we do not map to a variant.
    #[error("schema registry answered HTTP {status}, error_code {code}: {message}")]
    Remote {
        status: u16,
        code: i64,
        message: String,
    },
}

impl RegistryError {
    /// `(HTTP status, Confluent error_code)`.
    pub fn codes(&self) -> (u16, i64) {
        match self {
            Self::SubjectNotFound(_) => (404, 40401),
            Self::VersionNotFound { .. } => (404, 40402),
            Self::SchemaNotFound(_) => (404, 40403),
            Self::SubjectSoftDeleted(_) => (404, 40404),
            Self::NotSoftDeletedFirst { .. } => (404, 40405),
            Self::NoSubjectConfig(_) => (404, 40408),
            Self::Incompatible { .. } => (409, 409),
            Self::InvalidSchema(_) => (422, 42201),
            Self::InvalidVersion(_) => (422, 42202),
            Self::InvalidCompatibilityLevel(_) => (422, 42203),
            Self::BadRequest(_) => (422, 422),
            Self::Store(_) => (500, 50001),
            Self::Transport { .. } => (502, 50003),
            Self::Remote { status, code, .. } => (*status, *code),
        }
    }

    /// Rebuilds a typed error from a remote registry's error body.
    pub fn from_remote(status: u16, code: i64, message: String) -> RegistryError {
        match code {
            40401 => Self::SubjectNotFound(message),
            40403 => Self::SchemaNotFound(message),
            42201 => Self::InvalidSchema(message),
            _ => Self::Remote {
                status,
                code,
                message,
            },
        }
    }
}

impl From<RegistryStoreError> for RegistryError {
    fn from(e: RegistryStoreError) -> Self {
        match e {
            RegistryStoreError::SubjectNotFound(s) => Self::SubjectNotFound(s),
            RegistryStoreError::VersionNotFound { subject, version } => {
                Self::VersionNotFound { subject, version }
            }
            RegistryStoreError::SubjectSoftDeleted(s) => Self::SubjectSoftDeleted(s),
            RegistryStoreError::NotSoftDeletedFirst { subject, version } => {
                Self::NotSoftDeletedFirst { subject, version }
            }
            RegistryStoreError::Incompatible { subject, problems } => {
                Self::Incompatible { subject, problems }
            }
            RegistryStoreError::Store(s) => Self::Store(s),
        }
    }
}

/// The answer to "may this schema be registered?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatReport {
    pub is_compatible: bool,
    /// Why not, one line per problem (empty when compatible, and possibly when a remote
    /// registry does not give reasons).
    pub messages: Vec<String>,
}

/// A schema registry, embedded or remote.
#[derive(Debug, Clone)]
pub enum Registry {
    Embedded(Embedded),
    Http(RegistryClient),
}

impl Registry {
    /// The registry at `endpoint` (`FLOWCTL_SCHEMA_REGISTRY_URL`, `_AUTH`), else the one
    /// embedded in `store`.
    pub fn new(endpoint: Option<&RegistryEndpoint>, store: crate::store::Store) -> Registry {
        match endpoint {
            Some(e) => Registry::Http(RegistryClient::new(e)),
            None => Registry::Embedded(Embedded::new(store)),
        }
    }

    /// Human description for summaries.
    pub fn describe(&self) -> String {
        match self {
            Registry::Embedded(e) => format!("embedded registry in {}", e.store().path().display()),
            Registry::Http(c) => format!("registry at {}", c.url()),
        }
    }

    /// Registers `schema` under `subject`; returns `(id, version)` (version may be unknown, 0,
    /// for remote registries that only return the id).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<(i64, i64), RegistryError> {
        match self {
            Registry::Embedded(e) => {
                let r = e.register(subject, None, schema).await?;
                Ok((r.id, r.version))
            }
            Registry::Http(c) => c.register(subject, schema).await,
        }
    }

    /// Checks `schema` against the subject's versions under the subject's level.
    pub async fn check(&self, subject: &str, schema: &str) -> Result<CompatReport, RegistryError> {
        match self {
            Registry::Embedded(e) => e.check_latest(subject, None, schema).await,
            Registry::Http(c) => c.check(subject, schema).await,
        }
    }

    /// The latest live version of `subject` as `(id, schema)`; `None` when the subject does not
    /// exist (nothing registered for that topic yet).
    pub async fn latest(&self, subject: &str) -> Result<Option<(i64, String)>, RegistryError> {
        let found = match self {
            Registry::Embedded(e) => e
                .store()
                .registry_version(subject, crate::store::VersionSel::Latest, false)
                .await
                .map_err(RegistryError::Store)?
                .map(|v| (v.id, v.schema)),
            Registry::Http(c) => match c.latest(subject).await {
                Ok(l) => Some(l),
                Err(RegistryError::SubjectNotFound(_) | RegistryError::VersionNotFound { .. }) => {
                    None
                }
                Err(e) => return Err(e),
            },
        };
        Ok(found)
    }

    /// The schema text for a global id.
    pub async fn schema_by_id(&self, id: i64) -> Result<String, RegistryError> {
        match self {
            Registry::Embedded(e) => e.schema_by_id(id).await,
            Registry::Http(c) => c.schema_by_id(id).await,
        }
    }
}

/// Writer schemas by id for consumers: fetched from the registry on first sight, kept for the
/// life of the cache (a schema id never changes meaning). Unknown ids are remembered too, so a
/// stream of records with a bogus id costs one registry call, not one per record.
#[derive(Debug)]
pub struct SchemaCache {
    registry: Registry,
    known: std::collections::HashMap<SchemaId, crate::contracts::schema::ParsedSchema>,
    unknown: std::collections::HashSet<SchemaId>,
}

impl SchemaCache {
    pub fn new(registry: Registry) -> SchemaCache {
        SchemaCache {
            registry,
            known: Default::default(),
            unknown: Default::default(),
        }
    }

    /// Makes sure `id` is resolved; `Ok(false)` when the registry does not know it.
    pub async fn resolve(&mut self, id: SchemaId) -> Result<bool, RegistryError> {
        if self.known.contains_key(&id) {
            return Ok(true);
        }
        if self.unknown.contains(&id) {
            return Ok(false);
        }
        match self.registry.schema_by_id(i64::from(id)).await {
            Ok(text) => {
                let parsed = crate::contracts::schema::ParsedSchema::parse(&text)
                    .map_err(|e| RegistryError::InvalidSchema(format!("schema id {id}: {e}")))?;
                self.known.insert(id, parsed);
                Ok(true)
            }
            Err(RegistryError::SchemaNotFound(_)) => {
                self.unknown.insert(id);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The schemas resolved so far, as [`crate::support::inspect::inspect`] takes them.
    pub fn known(
        &self,
    ) -> &std::collections::HashMap<SchemaId, crate::contracts::schema::ParsedSchema> {
        &self.known
    }
}
