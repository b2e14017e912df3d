//! The state store: SQLite through sqlx, the only module that writes SQL.
//!
//! One writer path: every write goes through a pool of exactly one connection, so writes inside
//! this process queue in memory instead of fighting for SQLite's lock; other processes are
//! handled by WAL mode, a long busy timeout and `BEGIN IMMEDIATE` for read-then-write
//! transactions (a deferred transaction that upgrades to a writer fails at once with
//! "database is locked" — Prefect #18934 — whatever the busy timeout says). Reads use a separate
//! pool and never block writers.
//!
//! The store also watches that its path still names the file it opened ([`DbFile`]): a DB
//! deleted or replaced under a running process makes every later query fail with
//! [`StoreError::FileGone`] or a closed pool, never write into an unlinked file.

mod db_file;
mod logs;
mod notifications;
mod quality;
mod registry;
mod runs;
mod schedules;
mod tasks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use db_file::FileGone;
pub use logs::LogRow;
pub use notifications::NotificationAttempt;
pub use registry::{Registered, RegistryStoreError, SubjectVersion, VersionSel};
pub use runs::Heartbeat;
pub use runs::{NewRun, RunFilter, RunRow, Submitted};
pub use schedules::{QualityByVersion, QualityRow, ScheduleRow};
pub use tasks::{AttemptRow, Move, TaskFinish, latest_states};

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
    #[error(transparent)]
    FileGone(#[from] FileGone),
}

/// Handle to the state DB; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    path: PathBuf,
    /// Set once the file exists (right after the writer's first connection created it).
    file: Arc<OnceLock<db_file::DbFile>>,
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
        let file: Arc<OnceLock<db_file::DbFile>> = Arc::default();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT * 2)
            .before_acquire(still_our_file(file.clone()))
            .connect_with(opts.clone())
            .await
            .map_err(open_err)?;
        let identity = db_file::DbFile::at(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = file.set(identity);
        // From now on a connection is only ever opened to the file that exists: reconnecting
        // after a deletion must fail, not create an empty DB without tables at the path.
        let opts = opts.create_if_missing(false);
        writer.set_connect_options(opts.clone());
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
            .before_acquire(still_our_file(file.clone()))
            .connect_with(opts.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Store {
            writer,
            reader,
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` while the store's path still names the file it opened. Once it does not (deleted,
    /// or replaced by another file), both pools are closed for good, so nothing — not even a
    /// query already waiting for a connection — writes into the lost file or reads from a
    /// stranger's; the process has to be restarted. Health checks and `serve`'s watchdog call
    /// this; every connection handed out is checked the same way.
    pub fn check_file(&self) -> Result<(), StoreError> {
        let Some(file) = self.file.get() else {
            return Ok(());
        };
        match file.check() {
            Ok(()) => Ok(()),
            Err(gone) => {
                if !matches!(gone, FileGone::Unreadable { .. }) && !self.writer.is_closed() {
                    tracing::error!(error = %gone, "closing the state store");
                    // `close` marks the pools closed at once; waiting for in-flight queries
                    // to hand their connections back is not needed.
                    drop(self.writer.close());
                    drop(self.reader.close());
                }
                Err(gone.into())
            }
        }
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The pools' `before_acquire` hook: an idle connection whose file is no longer at the path is
/// closed instead of handed out (a fresh connection then fails to open, see `Store::open`).
fn still_our_file(
    file: Arc<OnceLock<db_file::DbFile>>,
) -> impl for<'c> Fn(
    &'c mut sqlx::SqliteConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<bool, sqlx::Error>>
+ Send
+ Sync
+ 'static {
    move |_, _| {
        let ok = match file.get().map(|f| f.check()) {
            None | Some(Ok(())) | Some(Err(FileGone::Unreadable { .. })) => true,
            Some(Err(gone)) => {
                tracing::error!(error = %gone, "state store connection refused");
                false
            }
        };
        Box::pin(async move { Ok(ok) })
    }
}

/// An exclusive lock on a side file (std's `File::lock`, flock(2) on Linux), released when
/// the file is closed on drop.
struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        f.lock()?;
        Ok(FileLock { _file: f })
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
