//! The executor through the real binary and a real SQLite file: retries and backoff, trigger
//! rules, timeouts, cancel, idempotency keys, `retry RUN`, concurrency and max_active_runs.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Env, attempts, count_lines, run_id, stderr, task_state, ts};

fn pid_alive(pidfile: &Path) -> bool {
    let pid = std::fs::read_to_string(pidfile).unwrap();
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn retries_with_exponential_backoff_then_succeeds() {
    let env = Env::new();
    env.flow(
        "flaky",
        r#"name: flaky
tasks:
  - id: flaky
    kind: shell
    retries: {count: 3, delay: 300ms, backoff: 2, jitter: 0}
    params:
      command: 'echo run >> {work}/flaky.count; test "$(wc -l < {work}/flaky.count)" -ge 3'
"#,
    );
    let (code, v) = env.json(&["trigger", "flaky"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(count_lines(&env.work().join("flaky.count")), 3);
    let a = attempts(&v, "flaky");
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["state"], "up_for_retry");
    assert_eq!(a[1]["state"], "up_for_retry");
    assert_eq!(a[2]["state"], "success");
    let gap = |i: usize| (ts(&a[i + 1]["started_at"]) - ts(&a[i]["ended_at"])).num_milliseconds();
    assert!(gap(0) >= 300, "first retry after {}ms", gap(0));
    assert!(gap(1) >= 600, "second retry after {}ms", gap(1));
    assert!(
        gap(1) > gap(0),
        "backoff did not grow: {} then {}",
        gap(0),
        gap(1)
    );
    assert_eq!(v["run"]["state"], "success");
}

#[test]
fn retries_run_out_and_user_errors_are_not_retried() {
    let env = Env::new();
    env.flow(
        "fails",
        r#"name: fails
retries: {count: 2, delay: 50ms, jitter: 0}
tasks:
  - id: always
    kind: shell
    params:
      command: 'echo run >> {work}/always.count; echo "boom" >&2; exit 3'
  - id: misconfigured
    kind: shell
    params:
      command: 'true'
      working_dir: /definitely/not/here
"#,
    );
    let (code, v) = env.json(&["trigger", "fails"]);
    assert_eq!(code, 1);
    assert_eq!(v["run"]["state"], "failed");
    assert_eq!(count_lines(&env.work().join("always.count")), 3);
    let a = attempts(&v, "always");
    assert_eq!(a.len(), 3);
    assert_eq!(a[2]["state"], "failed");
    assert!(a[2]["error"].as_str().unwrap().contains("status 3"));
    let m = attempts(&v, "misconfigured");
    assert_eq!(m.len(), 1, "a user error was retried");
    assert!(
        m[0]["error"]
            .as_str()
            .unwrap()
            .contains("/definitely/not/here")
    );
    // stderr of the command is in the task log
    let logs = env.run(&["logs", &run_id(&v).to_string(), "always"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout)
            .matches("[stderr] boom")
            .count(),
        3
    );
}

#[test]
fn every_trigger_rule() {
    let env = Env::new();
    env.flow(
        "rules",
        r#"name: rules
tasks:
  - {id: ok, kind: noop}
  - id: bad
    kind: shell
    params: {command: "exit 1"}
  - {id: after_ok, kind: noop, depends_on: [ok]}
  - {id: after_bad, kind: noop, depends_on: [bad]}
  - {id: after_after_bad, kind: noop, depends_on: [after_bad]}
  - {id: cleanup, kind: noop, depends_on: [ok, bad], trigger_rule: all_done}
  - {id: alert, kind: noop, depends_on: [ok, bad], trigger_rule: one_failed}
  - {id: no_alert, kind: noop, depends_on: [ok], trigger_rule: one_failed}
  - {id: after_skip, kind: noop, depends_on: [no_alert]}
  - {id: tolerant, kind: noop, depends_on: [ok, no_alert], trigger_rule: none_failed}
  - {id: intolerant, kind: noop, depends_on: [bad], trigger_rule: none_failed}
"#,
    );
    let (code, v) = env.json(&["trigger", "rules"]);
    assert_eq!(code, 1);
    for (task, want) in [
        ("ok", "success"),
        ("bad", "failed"),
        ("after_ok", "success"),
        ("after_bad", "upstream_failed"),
        ("after_after_bad", "upstream_failed"),
        ("cleanup", "success"),
        ("alert", "success"),
        ("no_alert", "skipped"),
        ("after_skip", "skipped"),
        ("tolerant", "success"),
        ("intolerant", "upstream_failed"),
    ] {
        assert_eq!(task_state(&v, task), want, "task {task}");
    }
    assert_eq!(v["run"]["state"], "failed");
}

#[test]
fn timeout_cancels_the_attempt_and_kills_the_command() {
    let env = Env::new();
    env.flow(
        "slow",
        r#"name: slow
tasks:
  - id: slow
    kind: shell
    timeout: 500ms
    params:
      command: 'echo $$ > {work}/slow.pid; exec sleep 60'
  - {id: after, kind: noop, depends_on: [slow]}
"#,
    );
    let started = Instant::now();
    let (code, v) = env.json(&["trigger", "slow"]);
    assert_eq!(code, 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout did not stop the command"
    );
    let a = attempts(&v, "slow");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["state"], "failed");
    assert!(
        a[0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 500ms"),
        "{}",
        a[0]
    );
    assert_eq!(task_state(&v, "after"), "upstream_failed");
    wait_until("the timed-out command to die", || {
        !pid_alive(&env.work().join("slow.pid"))
    });
}

#[test]
fn cancel_stops_a_detached_run() {
    let env = Env::new();
    env.flow(
        "long",
        r#"name: long
tasks:
  - id: long
    kind: shell
    params:
      command: 'echo $$ > {work}/long.pid; exec sleep 60'
  - {id: next, kind: noop, depends_on: [long]}
"#,
    );
    let (code, v) = env.json(&["trigger", "long", "--detach"]);
    assert_eq!(code, 0);
    let id = run_id(&v).to_string();
    let pidfile = env.work().join("long.pid");
    wait_until("the task to start", || {
        pidfile.exists()
            && std::fs::read_to_string(&pidfile)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
    });
    let (code, c) = env.json(&["cancel", &id]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["state"], "cancelled");
    let show = env.json(&["runs", "show", &id]).1;
    assert_eq!(show["run"]["state"], "cancelled");
    assert_eq!(task_state(&show, "long"), "cancelled");
    assert_eq!(task_state(&show, "next"), "cancelled");
    wait_until("the cancelled command to die", || !pid_alive(&pidfile));
    // Cancelling again is a no-op that says so.
    let again = env.run(&["cancel", &id]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already finished"));
}

#[test]
fn idempotency_key_returns_the_existing_run() {
    let env = Env::new();
    env.flow(
        "once",
        "name: once\ntasks:\n  - id: a\n    kind: shell\n    params: {command: 'echo run >> {work}/once.count'}\n",
    );
    let first = env.json(&["trigger", "once", "--idempotency-key", "2026-11-23"]);
    let second = env.json(&["trigger", "once", "--idempotency-key", "2026-11-23"]);
    assert_eq!(first.0, 0);
    assert_eq!(second.0, 0);
    assert_eq!(run_id(&first.1), run_id(&second.1));
    // Concurrent triggers with one key also converge on one run.
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd(&["trigger", "once", "--idempotency-key", "parallel", "--json"])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let (_, runs) = env.json(&["runs", "list", "--flow", "once"]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    assert_eq!(count_lines(&env.work().join("once.count")), 2);
    let other = env.json(&["trigger", "once", "--idempotency-key", "another"]);
    assert_ne!(run_id(&other.1), run_id(&first.1));
}

#[test]
fn retry_reruns_only_what_failed_and_its_dependents() {
    let env = Env::new();
    env.flow(
        "partial",
        r#"name: partial
tasks:
  - id: a
    kind: shell
    params: {command: 'echo run >> {work}/a.count'}
  - id: b
    kind: shell
    depends_on: [a]
    params: {command: 'echo run >> {work}/b.count; test -f {work}/fixed'}
  - id: c
    kind: shell
    depends_on: [b]
    params: {command: 'echo run >> {work}/c.count'}
  - id: d
    kind: shell
    depends_on: [a]
    params: {command: 'echo run >> {work}/d.count'}
"#,
    );
    let (code, v) = env.json(&["trigger", "partial"]);
    assert_eq!(code, 1);
    assert_eq!(task_state(&v, "c"), "upstream_failed");
    let id = run_id(&v).to_string();
    std::fs::write(env.work().join("fixed"), "").unwrap();
    let (code, r) = env.json(&["retry", &id]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["run"]["state"], "success");
    assert_eq!(r["run"]["round"], 2);
    let count = |t: &str| count_lines(&env.work().join(format!("{t}.count")));
    assert_eq!(
        (count("a"), count("b"), count("c"), count("d")),
        (1, 2, 1, 1)
    );
    for t in ["a", "b", "c", "d"] {
        assert_eq!(task_state(&r, t), "success");
    }
    // Nothing left to retry: a usage error, and nothing runs.
    let again = env.run(&["retry", &id]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("nothing to retry"));
    assert_eq!(count("a"), 1);
}

#[test]
fn a_hundred_concurrent_runs_never_see_a_locked_database() {
    let env = Env::new();
    env.flow(
        "small",
        r#"name: small
max_active_runs: 100
tasks:
  - {id: a, kind: noop}
  - id: b
    kind: shell
    depends_on: [a]
    params: {command: 'echo hello from $FLOWCTL_RUN_ID'}
  - {id: c, kind: noop, depends_on: [b]}
"#,
    );
    // Create the DB first so all hundred start on a migrated store and race on runs only.
    assert!(env.run(&["runs", "list"]).status.success());
    let children: Vec<_> = (0..100)
        .map(|_| {
            env.cmd(&["trigger", "small"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.to_lowercase().contains("locked"), "{err}");
        assert_eq!(out.status.code(), Some(0), "{err}");
    }
    let (_, runs) = env.json(&[
        "runs", "list", "--flow", "small", "--state", "success", "--limit", "500",
    ]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 100);
}

#[test]
fn max_active_runs_is_honoured_across_processes() {
    let env = Env::new();
    env.flow(
        "single",
        "name: single\nmax_active_runs: 1\ntasks:\n  - {id: a, kind: noop, params: {sleep: 300ms}}\n",
    );
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd(&["trigger", "single"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let (_, runs) = env.json(&["runs", "list", "--flow", "single"]);
    let mut spans: Vec<_> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (ts(&r["started_at"]), ts(&r["ended_at"])))
        .collect();
    assert_eq!(spans.len(), 4);
    spans.sort();
    // Each timestamp is taken just before its statement commits, so two back-to-back runs may
    // differ by microseconds the "wrong" way; a real overlap would be the 300 ms task.
    let slack = chrono::Duration::milliseconds(10);
    for w in spans.windows(2) {
        assert!(
            w[1].0 + slack >= w[0].1,
            "runs overlapped: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
}
