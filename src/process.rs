//! Operating-system processes flowctl starts or recognises: a process named so that a recycled
//! pid never passes for it, and the process groups of shell tasks, which must end with the
//! flowctl process that owns them.
//!
//! Two mechanisms, because either alone leaves a gap:
//! - **The guard**: the first shell task a flowctl process starts also starts one small `sh`
//!   watcher in a group of its own, reading a pipe whose only writer is this process. Every task
//!   group is announced on it (`+PGID`) and withdrawn when it ends (`-PGID`). When this process
//!   dies — `kill -9` included — the kernel closes the pipe and the watcher kills every group
//!   still announced (TERM, then KILL after a grace), so no task outlives its owner.
//! - **Recovery**: the attempt's process (pid + start time) is recorded with the attempt, and a
//!   process that recovers a dead owner's run kills a still-alive group ([`kill_orphan_group`])
//!   *before* the attempt may run again, so two attempts of one task never run at once even if
//!   the watcher was killed too, or had not finished yet.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A process named by pid and start time (clock ticks since boot, field 22 of
/// `/proc/PID/stat`): a pid reused by another process has another start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    /// The process with `pid` as it is now; None when there is none (or no procfs).
    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start| ProcessId { pid, start })
    }
}

/// Process start time in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses):
/// state, ppid, pgrp, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    Some(after_comm.split_whitespace().map(str::to_string).collect())
}

/// This machine's host name (`:` replaced, as owner strings use it as a separator).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).replace(':', "_")
}

/// Live (not zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z")
                    && f.get(2).is_some_and(|g| *g == pgid.to_string())
            })
        })
        .collect()
}

/// What [`kill_orphan_group`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKill {
    /// Nothing of the group was left (or its pid now names an unrelated process).
    Gone,
    /// The group was alive and has been killed.
    Killed,
    /// Some member survived SIGKILL for the whole wait (uninterruptible sleep, say).
    Survived,
}

/// How long a group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// Kills what is left of the process group a task attempt started (`leader` = the group
/// leader, as recorded when it started) and waits until it is gone.
///
/// A recycled pid is never hit: if a process with the leader's pid exists with another start
/// time, the old group is gone (the kernel does not hand out a pid still used as a process
/// group id) and nothing is signalled. If the leader is gone but members remain, the group id
/// is still theirs, so signalling it reaches exactly them.
pub async fn kill_orphan_group(leader: ProcessId) -> GroupKill {
    if start_time(leader.pid).is_some_and(|s| s != leader.start) {
        return GroupKill::Gone;
    }
    if group_members(leader.pid).is_empty() {
        return GroupKill::Gone;
    }
    signal_group(leader.pid, libc::SIGTERM);
    if wait_empty(leader.pid, KILL_GRACE).await {
        return GroupKill::Killed;
    }
    signal_group(leader.pid, libc::SIGKILL);
    if wait_empty(leader.pid, Duration::from_secs(5)).await {
        GroupKill::Killed
    } else {
        GroupKill::Survived
    }
}

/// Sends `signal` to every process of group `pgid`.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe { libc::kill(-(pgid as i32), signal) };
}

async fn wait_empty(pgid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The watcher: reads `+PGID` / `-PGID` lines; at end of input (its owner is gone) it kills
/// every group still listed, TERM first, KILL after the grace. Pure shell, no fork per line.
const GUARD_SCRIPT: &str = r#"groups=
while IFS= read -r line; do
  case $line in
    +*) groups="$groups ${line#+}" ;;
    -*) keep=; for g in $groups; do [ "$g" = "${line#-}" ] || keep="$keep $g"; done; groups=$keep ;;
  esac
done
[ -n "$groups" ] || exit 0
for g in $groups; do kill -s TERM -- "-$g" 2>/dev/null; done
sleep 3
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
"#;

/// The write end of the watcher's pipe; None when it could not be started (tasks still run,
/// recovery still kills their orphans).
fn guard() -> Option<&'static Mutex<ChildStdin>> {
    static GUARD: OnceLock<Option<Mutex<ChildStdin>>> = OnceLock::new();
    GUARD
        .get_or_init(|| {
            use std::os::unix::process::CommandExt;
            let spawned = Command::new("sh")
                .arg("-c")
                .arg(GUARD_SCRIPT)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own group: Ctrl-C in a terminal or a kill of a task group never reaches it.
                .process_group(0)
                .spawn();
            match spawned {
                // The child handle is dropped without waiting: the watcher lives until we die.
                Ok(mut child) => child.stdin.take().map(Mutex::new),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the shell-task watcher; orphaned tasks are killed only by recovery");
                    None
                }
            }
        })
        .as_ref()
}

fn announce(line: &str) {
    if let Some(pipe) = guard() {
        let mut pipe = pipe.lock().unwrap_or_else(|p| p.into_inner());
        // A dead watcher (EPIPE) changes nothing for the task itself.
        let _ = writeln!(pipe, "{line}");
    }
}

/// A task's process group, announced to the watcher while this value lives.
#[derive(Debug)]
pub struct WatchedGroup {
    pgid: u32,
}

impl WatchedGroup {
    /// Announces group `pgid` (a leader started with `process_group(0)`).
    pub fn watch(pgid: u32) -> WatchedGroup {
        announce(&format!("+{pgid}"));
        WatchedGroup { pgid }
    }
}

impl Drop for WatchedGroup {
    fn drop(&mut self) {
        announce(&format!("-{}", self.pgid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_an_identity_and_a_group() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert_eq!(start_time(me.pid), Some(me.start));
        // SAFETY: getpgrp has no preconditions.
        let pgrp = unsafe { libc::getpgrp() } as u32;
        assert!(group_members(pgrp).contains(&me.pid));
    }

    #[tokio::test]
    async fn an_orphan_group_is_killed_and_a_recycled_pid_is_spared() {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & sleep 30; wait")
            .process_group(0)
            .spawn()
            .unwrap();
        let leader = ProcessId::of(child.id()).unwrap();
        // Wait for the background member to exist.
        let t = std::time::Instant::now();
        while group_members(leader.pid).len() < 3 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(group_members(leader.pid).len(), 3);
        // Another start time: treated as a recycled pid, nothing is signalled.
        let stranger = ProcessId {
            pid: leader.pid,
            start: leader.start + 1,
        };
        assert_eq!(kill_orphan_group(stranger).await, GroupKill::Gone);
        assert_eq!(group_members(leader.pid).len(), 3);
        assert_eq!(kill_orphan_group(leader).await, GroupKill::Killed);
        assert!(group_members(leader.pid).is_empty());
        let _ = child.wait();
        assert_eq!(kill_orphan_group(leader).await, GroupKill::Gone);
    }
}
