//! Settings from the environment, read and validated once at start — the only place outside
//! the command line that reads an environment variable. Each part is the settings type of the
//! module that uses it (engine, tasks, kafka, lineage, web), built here and passed down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::contracts::registry::{RegistryAuth, RegistryEndpoint};
use crate::engine::EngineConfig;
use crate::kafka::{ClientProperties, DEFAULT_BOOTSTRAP, KafkaSettings, PropertiesError};
use crate::lineage::openlineage::OpenLineageSettings;
use crate::tasks::TaskSettings;
use crate::vocab::{format_duration, parse_duration};

/// Where things live and how every part behaves.
#[derive(Clone)]
pub struct Config {
    /// `FLOWCTL_HOME` (default `./.flowctl`): state DB, lake, logs.
    pub home: PathBuf,
    /// `FLOWCTL_DB` (default `$FLOWCTL_HOME/state.db`).
    pub db: PathBuf,
    /// `FLOWCTL_FLOWS_DIR` (default `./flows`).
    pub flows_dir: PathBuf,
    /// `FLOWCTL_EXPECTATIONS_DIR` (default: `expectations/` next to the flows directory).
    pub expectations_dir: PathBuf,
    /// `FLOWCTL_SCHEMAS_DIR` (default: `schemas/` next to the flows directory): the Avro
    /// contracts, which give the bronze tables' columns.
    pub schemas_dir: PathBuf,
    /// `FLOWCTL_KAFKA_BOOTSTRAP` (default: the client properties' `bootstrap.servers`, else
    /// `127.0.0.1:19092`, where `scripts/broker.sh` starts the development broker) and
    /// `FLOWCTL_KAFKA_CONFIG`, the client properties file (TLS, SASL, …).
    pub kafka: KafkaSettings,
    /// `FLOWCTL_SCHEMA_REGISTRY_URL`: an external Confluent-compatible registry; None for the
    /// one embedded in the state DB.
    pub schema_registry: Option<RegistryEndpoint>,
    /// `FLOWCTL_API_TOKEN`: when set, every mutating API call needs it.
    pub api_token: Option<Arc<str>>,
    /// `FLOWCTL_ALLOWED_HOSTS`: extra `Host` names a loopback server answers to (a reverse
    /// proxy's own name).
    pub allowed_hosts: Vec<String>,
    pub engine: EngineConfig,
}

/// Never prints the API token.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("home", &self.home)
            .field("db", &self.db)
            .field("flows_dir", &self.flows_dir)
            .field("expectations_dir", &self.expectations_dir)
            .field("schemas_dir", &self.schemas_dir)
            .field("kafka", &self.kafka)
            .field("schema_registry", &self.schema_registry)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("engine", &self.engine)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {var}={value:?}: {reason}")]
    Var {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    KafkaProperties(#[from] PropertiesError),
}

/// A variable's value, unless unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A positive duration from `var` (a zero heartbeat would be a busy loop, and tokio refuses a
/// zero interval outright).
fn env_duration(var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match std::env::var(var) {
        Ok(v) => match parse_duration(&v) {
            Ok(d) if d.is_zero() => Err(ConfigError::Var {
                var,
                value: v,
                reason: "must be longer than zero".into(),
            }),
            Ok(d) => Ok(d),
            Err(reason) => Err(ConfigError::Var {
                var,
                value: v,
                reason,
            }),
        },
        Err(_) => Ok(default),
    }
}

/// More task attempts at once than any machine runs; the bound keeps the semaphore in range.
const MAX_CONCURRENCY: usize = 100_000;

/// `name/` beside the flows directory: flows, expectations and schemas live at the
/// repository root, so a checkout works from wherever `FLOWCTL_FLOWS_DIR` points.
fn beside(flows_dir: &Path, name: &str) -> PathBuf {
    flows_dir
        .parent()
        .map(|p| p.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `FLOWCTL_KAFKA_BOOTSTRAP` and the client properties of `FLOWCTL_KAFKA_CONFIG`. A
/// `bootstrap.servers` in the file is the bootstrap when the variable is unset; both set and
/// different is an error (which one was meant?).
fn kafka_settings() -> Result<KafkaSettings, ConfigError> {
    let properties = match std::env::var_os("FLOWCTL_KAFKA_CONFIG").filter(|v| !v.is_empty()) {
        Some(path) => ClientProperties::load(Path::new(&path))?,
        None => ClientProperties::default(),
    };
    let from_file = properties.get("bootstrap.servers").map(str::to_string);
    let bootstrap = match (var("FLOWCTL_KAFKA_BOOTSTRAP"), from_file) {
        (Some(env), Some(file)) if env.trim() != file.trim() => {
            return Err(ConfigError::Var {
                var: "FLOWCTL_KAFKA_BOOTSTRAP",
                value: env,
                reason: format!(
                    "differs from bootstrap.servers={file} in FLOWCTL_KAFKA_CONFIG; set one of them"
                ),
            });
        }
        (Some(env), _) => env,
        (None, Some(file)) => file,
        (None, None) => DEFAULT_BOOTSTRAP.to_string(),
    };
    Ok(KafkaSettings::new(bootstrap.trim()).with_properties(properties))
}

/// `FLOWCTL_SCHEMA_REGISTRY_URL` with `FLOWCTL_SCHEMA_REGISTRY_AUTH` (which alone is an
/// error: there is nothing to log in to).
fn schema_registry() -> Result<Option<RegistryEndpoint>, ConfigError> {
    let auth = match var("FLOWCTL_SCHEMA_REGISTRY_AUTH") {
        Some(v) => Some(RegistryAuth::parse(&v).map_err(|reason| ConfigError::Var {
            var: "FLOWCTL_SCHEMA_REGISTRY_AUTH",
            value: "***".into(),
            reason,
        })?),
        None => None,
    };
    match var("FLOWCTL_SCHEMA_REGISTRY_URL") {
        Some(url) => Ok(Some(RegistryEndpoint {
            url: url.trim().to_string(),
            auth,
        })),
        None if auth.is_some() => Err(ConfigError::Var {
            var: "FLOWCTL_SCHEMA_REGISTRY_AUTH",
            value: "***".into(),
            reason: "is set but FLOWCTL_SCHEMA_REGISTRY_URL is not (the embedded registry needs no login)".into(),
        }),
        None => Ok(None),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let home = std::env::var_os("FLOWCTL_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".flowctl"));
        let db = std::env::var_os("FLOWCTL_DB")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("state.db"));
        let flows_dir = std::env::var_os("FLOWCTL_FLOWS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("flows"));
        let expectations_dir = std::env::var_os("FLOWCTL_EXPECTATIONS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| beside(&flows_dir, "expectations"));
        let schemas_dir = std::env::var_os("FLOWCTL_SCHEMAS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| beside(&flows_dir, "schemas"));
        let defaults = EngineConfig::default();
        let concurrency = match std::env::var("FLOWCTL_CONCURRENCY") {
            Ok(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
                .ok_or(ConfigError::Var {
                    var: "FLOWCTL_CONCURRENCY",
                    value: v,
                    reason: format!("expected a whole number from 1 to {MAX_CONCURRENCY}"),
                })?,
            Err(_) => defaults.concurrency,
        };
        let heartbeat = env_duration("FLOWCTL_HEARTBEAT", defaults.heartbeat)?;
        let lease = env_duration("FLOWCTL_LEASE", defaults.lease)?;
        if lease < heartbeat * 2 {
            return Err(ConfigError::Var {
                var: "FLOWCTL_LEASE",
                value: format_duration(lease),
                reason: format!(
                    "must be at least twice FLOWCTL_HEARTBEAT ({}), or live owners would look dead",
                    format_duration(heartbeat)
                ),
            });
        }
        let schema_registry = schema_registry()?;
        let openlineage = {
            let (file, url) = (
                var("FLOWCTL_OPENLINEAGE_FILE"),
                var("FLOWCTL_OPENLINEAGE_URL"),
            );
            (file.is_some() || url.is_some()).then(|| OpenLineageSettings {
                namespace: var("FLOWCTL_OPENLINEAGE_NAMESPACE").unwrap_or_else(|| "flowctl".into()),
                file: file.map(PathBuf::from),
                url,
            })
        };
        let engine = EngineConfig {
            home: home.clone(),
            concurrency,
            heartbeat,
            lease,
            poll: defaults.poll,
            schema_registry: schema_registry.clone(),
            openlineage,
            public_url: var("FLOWCTL_PUBLIC_URL").unwrap_or_else(|| {
                let addr = var("FLOWCTL_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
                format!("http://{}", addr.trim())
            }),
        };
        Ok(Config {
            home,
            db,
            flows_dir,
            expectations_dir,
            schemas_dir,
            kafka: kafka_settings()?,
            schema_registry,
            api_token: var("FLOWCTL_API_TOKEN").map(Arc::from),
            allowed_hosts: var("FLOWCTL_ALLOWED_HOSTS")
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            engine,
        })
    }

    /// What task kinds are built and run with.
    pub fn task_settings(&self) -> TaskSettings {
        TaskSettings {
            expectations_dir: self.expectations_dir.clone(),
            kafka: self.kafka.clone(),
        }
    }
}
