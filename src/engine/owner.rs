//! Who executes a run: `host:pid:start-time`. The start time guards against PID reuse, so a
//! recycled PID never makes a dead owner look alive.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::process::{hostname, start_time};

/// This process's owner string.
pub fn current() -> String {
    let pid = std::process::id();
    format!("{}:{}:{}", hostname(), pid, start_time(pid).unwrap_or(0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Another host: only the lease can tell.
    Unknown,
}

/// The host part of an owner string.
pub fn host_of(owner: &str) -> Option<&str> {
    let mut parts = owner.rsplitn(3, ':');
    parts.nth(2)
}

/// Whether `owner` names a process on this machine (whose processes we can see and signal).
pub fn is_local(owner: &str) -> bool {
    host_of(owner).is_some_and(|h| h == hostname())
}

pub fn liveness(owner: &str) -> Liveness {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return Liveness::Unknown;
    };
    if host != hostname() {
        return Liveness::Unknown;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return Liveness::Unknown;
    };
    match start_time(pid) {
        Some(s) if s == start => Liveness::Alive,
        Some(_) => Liveness::Dead, // the PID now belongs to another process
        None if std::path::Path::new("/proc/self/stat").exists() => Liveness::Dead,
        // No procfs: fall back to kill(pid, 0).
        // SAFETY: signal 0 only checks for existence.
        None => {
            if unsafe { libc::kill(pid as i32, 0) } == 0 {
                Liveness::Alive
            } else {
                Liveness::Dead
            }
        }
    }
}

/// An owner is gone when its process is gone, or, on another host, when its lease expired.
/// `last_seen` is the last heartbeat, falling back to the start or creation time, so an owner
/// that died before its first heartbeat is still found (Airflow PR #66773). A live local process
/// is never declared dead, however late its heartbeat (Airflow #13747).
pub fn is_orphaned(
    owner: &str,
    last_seen: DateTime<Utc>,
    now: DateTime<Utc>,
    lease: Duration,
) -> bool {
    match liveness(owner) {
        Liveness::Alive => false,
        Liveness::Dead => true,
        Liveness::Unknown => {
            now.signed_duration_since(last_seen)
                .to_std()
                .unwrap_or_default()
                > lease
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_gone_one_is_dead() {
        let me = current();
        assert_eq!(liveness(&me), Liveness::Alive);
        let host = hostname();
        // PID 1 exists but with another start time than we pretend: reuse, so dead.
        assert_eq!(liveness(&format!("{host}:1:999999999999")), Liveness::Dead);
        assert_eq!(liveness(&format!("{host}:4000000:1")), Liveness::Dead);
        assert_eq!(liveness("elsewhere:12:34"), Liveness::Unknown);
    }

    #[test]
    fn remote_owners_expire_by_lease() {
        let now = Utc::now();
        let lease = Duration::from_secs(30);
        assert!(!is_orphaned(
            "elsewhere:1:2",
            now - chrono::Duration::seconds(10),
            now,
            lease
        ));
        assert!(is_orphaned(
            "elsewhere:1:2",
            now - chrono::Duration::seconds(31),
            now,
            lease
        ));
        assert!(!is_orphaned(
            &current(),
            now - chrono::Duration::days(1),
            now,
            lease
        ));
    }
}
