//! kill -9 a `flowctl trigger` mid-run: the next process that opens the store finds the
//! orphaned attempt, marks it by policy, and `flowctl retry RUN` completes the run. Nothing lost,
//! nothing that succeeded runs again.

use std::time::{Duration, Instant};

use crate::common::{Env, attempts, count_lines, stderr, task_state};

/// `flowctl retry RUN` finishes the run: `slow` ran twice (the interrupted attempt and its
/// retry), `first` and `last` exactly once.
fn retry_completes_without_rerunning_first(env: &Env, id: i64) {
    let (code, r) = env.json(&["retry", &id.to_string()]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["run"]["state"], "success");
    let count = |t: &str| count_lines(&env.work().join(format!("{t}.count")));
    assert_eq!((count("first"), count("slow"), count("last")), (1, 2, 1));
}

/// Waits until a task's marker file appears (the task has started).
fn wait_for(marker: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            marker.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_trigger_mid_task(env: &Env, flow: &str) -> i64 {
    let mut child = env
        .cmd(&["trigger", flow])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.work().join("slow.started"));
    // SIGKILL: no cleanup, no last heartbeat.
    child.kill().unwrap();
    child.wait().unwrap();
    // The only run in a fresh state DB.
    1
}

const FLOW: &str = r#"name: crashy
tasks:
  - id: first
    kind: shell
    params: {command: 'echo run >> {work}/first.count'}
  - id: slow
    kind: shell
    depends_on: [first]
    retries: RETRIES
    params:
      command: >-
        echo run >> {work}/slow.count;
        if [ ! -f {work}/slow.started ]; then touch {work}/slow.started; exec sleep 5; fi
  - id: last
    kind: shell
    depends_on: [slow]
    params: {command: 'echo run >> {work}/last.count'}
"#;

#[test]
fn kill_dash_nine_then_recover_and_retry_with_retries_left() {
    let env = Env::new();
    env.flow(
        "crashy",
        &FLOW.replace("RETRIES", "{count: 1, delay: 10ms}"),
    );
    let id = kill_trigger_mid_task(&env, "crashy");

    // Any command that opens the store recovers the run.
    let out = env.run(&["runs", "show", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("recovered run {id}")),
        "{}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["state"], "queued");
    assert!(v["run"]["owner"].is_null());
    assert_eq!(task_state(&v, "first"), "success");
    // It had a retry left, so the interrupted attempt is up for retry.
    assert_eq!(task_state(&v, "slow"), "up_for_retry");
    assert!(
        attempts(&v, "slow")[0]["error"]
            .as_str()
            .unwrap()
            .contains("orphaned")
    );
    assert_eq!(task_state(&v, "last"), "pending");

    // A second opener finds nothing more to recover.
    let again = env.run(&["runs", "list"]);
    assert!(!stderr(&again).contains("recovered"), "{}", stderr(&again));

    retry_completes_without_rerunning_first(&env, id);
}

#[test]
fn kill_dash_nine_without_retries_fails_the_attempt_and_retry_completes() {
    let env = Env::new();
    env.flow("crashy", &FLOW.replace("RETRIES", "0"));
    let id = kill_trigger_mid_task(&env, "crashy");
    let (_, v) = env.json(&["runs", "show", &id.to_string()]);
    assert_eq!(task_state(&v, "slow"), "failed");
    retry_completes_without_rerunning_first(&env, id);
}

#[test]
fn a_live_owner_is_never_recovered() {
    let env = Env::new();
    env.flow(
        "live",
        "name: live\ntasks:\n  - id: a\n    kind: shell\n    params: {command: 'touch {work}/a.started; sleep 2'}\n",
    );
    let mut child = env
        .cmd(&["trigger", "live"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.work().join("a.started"));
    // Even with a tiny lease, a live local owner keeps its run.
    let out = env
        .cmd(&["runs", "list", "--json"])
        .env("FLOWCTL_HEARTBEAT", "1ms")
        .env("FLOWCTL_LEASE", "2ms")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("recovered"), "{}", stderr(&out));
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_waiting_trigger_takes_over_when_the_owner_dies() {
    let env = Env::new();
    env.flow(
        "crashy",
        &FLOW.replace("RETRIES", "{count: 1, delay: 10ms}"),
    );
    let mut owner = env
        .cmd(&["trigger", "crashy", "--idempotency-key", "nightly"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.work().join("slow.started"));
    // A second trigger with the same key attaches to the running run instead of starting one.
    let waiter = env
        .cmd(&[
            "trigger",
            "crashy",
            "--idempotency-key",
            "nightly",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["state"], "success");
    assert_eq!(v["run"]["id"], 1);
    let count = |t: &str| count_lines(&env.work().join(format!("{t}.count")));
    assert_eq!((count("first"), count("slow"), count("last")), (1, 2, 1));
    let (_, runs) = env.json(&["runs", "list"]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
}

/// Task `b` of issue 18's reproduction: attempt 1 sleeps in a background child (its pid in
/// `b.1.pid`) and would log `end 1` after 30 s; every attempt logs `overlap` if it starts while
/// attempt 1's sleep is still alive (a zombie waiting for its reaper does not count).
const ORPHAN_FLOW: &str = r#"name: orphan
tasks:
  - {id: a, kind: noop}
  - id: b
    kind: shell
    depends_on: [a]
    retries: {count: 1, delay: 10ms}
    params:
      command: |
        echo "start $FLOWCTL_ATTEMPT" >> {work}/b.log
        s=; [ -f {work}/b.1.pid ] && s=$(cut -d')' -f2 "/proc/$(cat {work}/b.1.pid)/stat" 2>/dev/null | cut -c2)
        if [ -n "$s" ] && [ "$s" != Z ]; then echo overlap >> {work}/b.log; fi
        if [ "$FLOWCTL_ATTEMPT" = 1 ]; then sleep 30 & echo $! > {work}/b.1.pid; wait; fi
        echo "end $FLOWCTL_ATTEMPT" >> {work}/b.log
  - {id: c, kind: noop, depends_on: [b]}
"#;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn wait_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The shell-task watcher a flowctl process starts: its child whose command line holds the
/// watcher script.
fn watcher_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && String::from_utf8_lossy(&cmdline).contains("groups=")).then_some(pid)
    })
}

fn start_orphan_flow(env: &Env) -> (std::process::Child, u32) {
    env.flow("orphan", ORPHAN_FLOW);
    let child = env
        .cmd(&["trigger", "orphan"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = env.work().join("b.1.pid");
    wait_for(&pidfile);
    // The attempt's process is recorded as soon as it starts; give the write a moment.
    std::thread::sleep(Duration::from_millis(300));
    let sleep_pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(sleep_pid));
    (child, sleep_pid)
}

/// Issue 18: a shell task's processes used to outlive a `kill -9` of their owner (re-parented
/// to init). The watcher ends them even when nobody ever recovers the run.
#[test]
fn a_killed_owner_takes_its_shell_tasks_with_it() {
    let env = Env::new();
    let (mut child, sleep_pid) = start_orphan_flow(&env);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_dead(sleep_pid, Duration::from_secs(10)),
        "the orphaned `sleep 30` of task b is still running"
    );
}

/// Issue 18: after `kill -9` and `flowctl retry`, attempt 1 of b (orphaned) ran beside attempt 2
/// (`b start 1, b start 2, b end 1, b end 2`). Even with the watcher gone too, recovery kills
/// the recorded group before attempt 2 starts.
#[test]
fn recovery_kills_an_orphaned_attempt_before_its_retry_starts() {
    let env = Env::new();
    let (mut child, sleep_pid) = start_orphan_flow(&env);
    let watcher = watcher_of(child.id()).expect("the trigger started a shell-task watcher");
    // SAFETY: SIGKILL to a process of this test's own making.
    unsafe { libc::kill(watcher as i32, libc::SIGKILL) };
    assert!(wait_dead(watcher, Duration::from_secs(5)));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(sleep_pid), "without the watcher the orphan lives on");

    let (code, r) = env.json(&["retry", "1"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["run"]["state"], "success");
    assert!(!alive(sleep_pid), "recovery killed the orphan");
    let log = std::fs::read_to_string(env.work().join("b.log")).unwrap();
    assert_eq!(log, "start 1\nstart 2\nend 2\n", "attempts of b overlapped");
    let b = attempts(&r, "b");
    assert_eq!(b.len(), 2, "{r}");
    assert_eq!(b[1]["state"], "success");
}
