//! Who executes a run: `host:pid:start-time`. The start time guards against PID reuse, so a
//! recycled PID never makes a dead owner look alive.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// This process's owner string.
pub fn current() -> String {
    let pid = std::process::id();
    format!("{}:{}:{}", hostname(), pid, start_time(pid).unwrap_or(0))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).replace(':', "_")
}

/// Process start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Another host: only the lease can tell.
    Unknown,
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
