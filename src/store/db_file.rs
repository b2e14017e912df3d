//! The state DB file a store opened, and whether its path still names that file.
//!
//! SQLite keeps its descriptors open: delete `state.db` (with `-wal` and `-shm`) under a running
//! process and every query still succeeds — into a file nobody can open again, gone at exit.
//! Replace it (a restore, a `mv`) and new connections open the stranger while old ones keep
//! the original. Neither is an error SQLite reports in WAL mode, so the store compares the
//! path's `(device, inode)` with the one it opened, before handing out a connection and when
//! asked (health checks, the serve watchdog).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What became of the file at the store's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileGone {
    #[error(
        "state DB {path} was deleted while this process was using it: nothing more is written; \
         restart flowctl to open a new one (what was written since the deletion is lost)"
    )]
    Deleted { path: PathBuf },
    #[error(
        "state DB {path} was replaced by another file while this process was using it \
         (inode {opened} at open, {found} now): nothing more is written; restart flowctl to use the new file"
    )]
    Replaced {
        path: PathBuf,
        opened: u64,
        found: u64,
    },
    #[error("state DB {path} cannot be checked: {detail}")]
    Unreadable { path: PathBuf, detail: String },
}

/// The identity of the DB file at open time.
#[derive(Debug)]
pub struct DbFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl DbFile {
    /// Records what `path` names now (the caller has just opened it).
    pub fn at(path: &Path) -> std::io::Result<DbFile> {
        let m = std::fs::metadata(path)?;
        Ok(DbFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// `Ok` while the path still names the file that was opened. One `stat`: cheap enough to run
    /// before every query.
    pub fn check(&self) -> Result<(), FileGone> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => Ok(()),
            Ok(m) => Err(FileGone::Replaced {
                path: self.path.clone(),
                opened: self.ino,
                found: m.ino(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileGone::Deleted {
                path: self.path.clone(),
            }),
            Err(e) => Err(FileGone::Unreadable {
                path: self.path.clone(),
                detail: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_and_replacement_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        std::fs::write(&p, "a").unwrap();
        let f = DbFile::at(&p).unwrap();
        assert_eq!(f.check(), Ok(()));
        // Rewriting in place keeps the inode: still the same file.
        std::fs::write(&p, "b").unwrap();
        assert_eq!(f.check(), Ok(()));
        let other = dir.path().join("other.db");
        std::fs::write(&other, "c").unwrap();
        std::fs::rename(&other, &p).unwrap();
        let e = f.check().unwrap_err();
        assert!(matches!(e, FileGone::Replaced { .. }), "{e}");
        std::fs::remove_file(&p).unwrap();
        let e = f.check().unwrap_err();
        assert_eq!(e, FileGone::Deleted { path: p.clone() });
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }
}
