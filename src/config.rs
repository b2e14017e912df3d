//! Settings from the environment, validated once at start.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::EngineConfig;
use crate::vocab::parse_duration;

/// Where things live and how the engine behaves.
#[derive(Debug, Clone)]
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
    pub engine: EngineConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {var}={value:?}: {reason}")]
pub struct ConfigError {
    var: &'static str,
    value: String,
    reason: String,
}

/// A positive duration from `var` (a zero heartbeat would be a busy loop, and tokio refuses a
/// zero interval outright).
fn env_duration(var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match std::env::var(var) {
        Ok(v) => match parse_duration(&v) {
            Ok(d) if d.is_zero() => Err(ConfigError {
                var,
                value: v,
                reason: "must be longer than zero".into(),
            }),
            Ok(d) => Ok(d),
            Err(reason) => Err(ConfigError {
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

fn flows_dir_from_env() -> PathBuf {
    std::env::var_os("FLOWCTL_FLOWS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("flows"))
}

/// `FLOWCTL_EXPECTATIONS_DIR`, else `expectations/` beside the flows directory: both live at
/// the repository root, so a checkout works from wherever `FLOWCTL_FLOWS_DIR` points. A
/// function rather than only a `Config` field because task kinds resolve it when a flow file
/// is validated, where no `Config` is at hand.
pub fn expectations_dir_from_env() -> PathBuf {
    if let Some(d) = std::env::var_os("FLOWCTL_EXPECTATIONS_DIR") {
        return PathBuf::from(d);
    }
    flows_dir_from_env()
        .parent()
        .map(|p| p.join("expectations"))
        .unwrap_or_else(|| PathBuf::from("expectations"))
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let home = std::env::var_os("FLOWCTL_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".flowctl"));
        let db = std::env::var_os("FLOWCTL_DB")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("state.db"));
        let flows_dir = flows_dir_from_env();
        let expectations_dir = expectations_dir_from_env();
        let schemas_dir = std::env::var_os("FLOWCTL_SCHEMAS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                flows_dir
                    .parent()
                    .map(|p| p.join("schemas"))
                    .unwrap_or_else(|| PathBuf::from("schemas"))
            });
        let defaults = EngineConfig::default();
        let concurrency = match std::env::var("FLOWCTL_CONCURRENCY") {
            Ok(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
                .ok_or(ConfigError {
                    var: "FLOWCTL_CONCURRENCY",
                    value: v,
                    reason: format!("expected a whole number from 1 to {MAX_CONCURRENCY}"),
                })?,
            Err(_) => defaults.concurrency,
        };
        let heartbeat = env_duration("FLOWCTL_HEARTBEAT", defaults.heartbeat)?;
        let lease = env_duration("FLOWCTL_LEASE", defaults.lease)?;
        if lease < heartbeat * 2 {
            return Err(ConfigError {
                var: "FLOWCTL_LEASE",
                value: crate::vocab::format_duration(lease),
                reason: format!(
                    "must be at least twice FLOWCTL_HEARTBEAT ({}), or live owners would look dead",
                    crate::vocab::format_duration(heartbeat)
                ),
            });
        }
        let engine = EngineConfig {
            home: home.clone(),
            concurrency,
            heartbeat,
            lease,
            poll: defaults.poll,
        };
        Ok(Config {
            home,
            db,
            flows_dir,
            expectations_dir,
            schemas_dir,
            engine,
        })
    }
}
