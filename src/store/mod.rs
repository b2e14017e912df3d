//! The state store: SQLite through sqlx, the only module that writes SQL.
//!
//! One writer path: every write goes through a pool of exactly one connection, so writes inside
//! this process queue in memory instead of fighting for SQLite's lock; other processes are
//! handled by WAL mode, a long busy timeout and `BEGIN IMMEDIATE` for read-then-write
//! transactions (a deferred transaction that upgrades to a writer fails at once with
//! "database is locked" — Prefect #18934 — whatever the busy timeout says). Reads use a separate
//! pool and never block writers.

mod logs;
mod quality;
mod registry;
mod runs;
mod schedules;
mod tasks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use logs::LogRow;
pub use registry::{Registered, RegistryStoreError, SubjectVersion, VersionSel};
pub use runs::Heartbeat;
pub use runs::{NewRun, RunFilter, RunRow, Submitted};
pub use schedules::{QualityRow, ScheduleRow};
pub use tasks::{AttemptRow, Move, TaskFinish};

/// Everything that can go wrong talking to the state DB.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("state store {path}: applying migrations: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("state store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("run {0} not found")]
    RunNotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("corrupt value in the state store: {0}")]
    Corrupt(String),
}

/// Handle to the state DB; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    path: PathBuf,
}

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

impl Store {
    /// Opens (creating if needed) the DB at `path` and applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT * 2)
            .connect_with(opts.clone())
            .await
            .map_err(open_err)?;
        // Migrations run under an exclusive file lock: a hundred processes starting at once on a
        // fresh DB must not race to create the same tables.
        {
            let _guard =
                FileLock::acquire(&path.with_extension("migrate.lock")).map_err(|source| {
                    StoreError::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            sqlx::migrate!("./migrations")
                .run(&writer)
                .await
                .map_err(|source| StoreError::Migrate {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(BUSY_TIMEOUT * 2)
            .connect_with(opts.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Store {
            writer,
            reader,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// `flock(2)` on a side file, released on drop.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Timestamps are stored as fixed-width RFC 3339 text (µs, `Z`), so they compare as strings.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{s}`: {e}")))
}

pub(crate) fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(parse_ts).transpose()
}
