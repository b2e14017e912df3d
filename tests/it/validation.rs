//! One test per validation error: exit code 2, the file, the line and what is wrong, nothing run.

use crate::common::{Env, stderr};

/// Validates `yaml` as flows/bad.yaml; returns stderr after checking the exit code.
fn invalid(yaml: &str) -> String {
    let env = Env::new();
    let file = env.flow("bad", yaml);
    let out = env.run(&["flows", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    // Triggering it runs nothing either.
    let trig = env.run(&["trigger", file.to_str().unwrap()]);
    assert_eq!(
        trig.status.code(),
        Some(2),
        "trigger stderr: {}",
        stderr(&trig)
    );
    let (_, runs) = env.json(&["runs", "list"]);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        0,
        "a run was created: {runs}"
    );
    stderr(&out)
}

fn assert_has(err: &str, needle: &str) {
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
}

#[test]
fn malformed_yaml_names_the_line() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n   bad indent: [\n");
    assert_has(&err, "bad.yaml:5:");
    assert_has(&err, "malformed YAML");
}

#[test]
fn unknown_field_is_rejected() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n    dependson: [b]\n");
    assert_has(&err, "bad.yaml:5:");
    assert_has(&err, "dependson");
}

#[test]
fn duplicate_task_ids() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n  - id: a\n    kind: noop\n");
    assert_has(
        &err,
        "bad.yaml:5: duplicate task id `a` (first defined at line 3)",
    );
}

#[test]
fn unknown_dependency() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n    depends_on: [nope]\n");
    assert_has(&err, "bad.yaml:5: unknown dependency `nope` in task `a`");
}

#[test]
fn cycle_is_named() {
    let err = invalid(
        "name: x\ntasks:\n  - id: a\n    kind: noop\n    depends_on: [c]\n  - id: b\n    kind: noop\n    depends_on: [a]\n  - id: c\n    kind: noop\n    depends_on: [b]\n",
    );
    assert_has(&err, "dependency cycle:");
    // Every member appears, and the cycle closes on itself.
    let line = err
        .lines()
        .find(|l| l.contains("dependency cycle"))
        .unwrap();
    let cycle = line.split("dependency cycle: ").nth(1).unwrap();
    let names: Vec<&str> = cycle.split(" -> ").collect();
    assert_eq!(names.len(), 4, "{cycle}");
    assert_eq!(names.first(), names.last());
    for t in ["a", "b", "c"] {
        assert!(names.contains(&t), "{cycle}");
    }
}

#[test]
fn unknown_task_kind() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: spark_submit\n");
    assert_has(
        &err,
        "bad.yaml:4: unknown task kind `spark_submit` in task `a` (known kinds:",
    );
    assert_has(&err, "shell");
}

#[test]
fn bad_duration() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n    timeout: 5 parsecs\n");
    assert_has(&err, "bad.yaml:5: timeout: bad duration `5 parsecs`");
    let err = invalid(
        "name: x\nretries:\n  count: 2\n  delay: soon\ntasks:\n  - id: a\n    kind: noop\n",
    );
    assert_has(&err, "bad.yaml:4: retries.delay: bad duration `soon`");
}

#[test]
fn bad_cron() {
    let err = invalid("name: x\nschedule: \"61 * * * *\"\ntasks:\n  - id: a\n    kind: noop\n");
    assert_has(&err, "bad.yaml:2: bad cron `61 * * * *`");
    let err = invalid("name: x\nschedule: \"* * *\"\ntasks:\n  - id: a\n    kind: noop\n");
    assert_has(&err, "expected 5 fields");
}

#[test]
fn unknown_trigger_rule() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n    trigger_rule: when_ready\n");
    assert_has(
        &err,
        "bad.yaml:5: unknown trigger rule `when_ready` (expected one of all_success, all_done, one_failed, none_failed)",
    );
}

#[test]
fn bad_task_params_point_at_the_param() {
    let err = invalid(
        "name: x\ntasks:\n  - id: a\n    kind: shell\n    params:\n      comand: echo hi\n",
    );
    assert_has(&err, "bad.yaml:6: task `a` (shell):");
    assert_has(&err, "comand");
}

#[test]
fn all_errors_are_reported_at_once() {
    let err = invalid(
        "name: x\nschedule: \"@sometimes\"\ntasks:\n  - id: a\n    kind: nope\n  - id: b\n    kind: noop\n    depends_on: [zz]\n    trigger_rule: maybe\n",
    );
    for needle in ["bad.yaml:2:", "bad.yaml:5:", "bad.yaml:8:", "bad.yaml:9:"] {
        assert_has(&err, needle);
    }
}

#[test]
fn shipped_flows_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = Env::new();
    let out = env
        .cmd(&["flows", "validate"])
        .env("FLOWCTL_FLOWS_DIR", root.join("flows"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pipeline_full"), "{text}");
    assert!(text.contains("pipeline_quality_checks"), "{text}");
}

/// Issue 18: durations that once panicked `flows validate` (exit 101) or overflowed a clock at
/// run time are validation errors with their line.
#[test]
fn huge_durations_are_errors_not_panics() {
    let err = invalid(
        "name: x\ntasks:\n  - id: a\n    kind: noop\n    timeout: 9999999999999999999999d\n",
    );
    assert_has(
        &err,
        "bad.yaml:5: timeout: duration `9999999999999999999999d` is longer than the maximum, 365d",
    );
    let err =
        invalid("name: x\ntimeout: 18446744073709551615s1s\ntasks:\n  - id: a\n    kind: noop\n");
    assert_has(
        &err,
        "bad.yaml:2: timeout: duration `18446744073709551615s1s` is longer than the maximum",
    );
    let err = invalid(
        "name: x\ntasks:\n  - id: a\n    kind: shell\n    params: {command: 'false'}\n    \
         retries: {count: 3, delay: 213503982334601d, max_delay: 213503982334601d}\n",
    );
    assert_has(
        &err,
        "bad.yaml:6: retries.delay: duration `213503982334601d` is longer",
    );
    assert_has(
        &err,
        "bad.yaml:6: retries.max_delay: duration `213503982334601d` is longer",
    );
}

#[test]
fn a_zero_timeout_is_refused() {
    let err = invalid("name: x\ntasks:\n  - id: a\n    kind: noop\n    timeout: 0s\n");
    assert_has(
        &err,
        "bad.yaml:5: timeout must be longer than zero, found `0s`",
    );
}

/// Issue 18 (low): wrong types used to stop validation at the first one, without a line.
#[test]
fn wrong_types_are_all_reported_with_lines() {
    let err = invalid(
        "name: [1, 2]\ntasks:\n  - id: a\n    kind: noop\n    depends_on: a\n    retries: {count: -1}\n  - id: b\n    kind: noop\n    retries: many\n    description: {x: 1}\n",
    );
    assert_has(&err, "bad.yaml:1: `name` must be a single value");
    assert_has(
        &err,
        "bad.yaml:5: `depends_on` of task `a` must be a list, e.g. [a, b]",
    );
    assert_has(
        &err,
        "bad.yaml:6: retries.count must be a whole number from 0 to 1000, found `-1`",
    );
    assert_has(
        &err,
        "bad.yaml:9: retries (a count) must be a whole number from 0 to 1000, found `many`",
    );
    assert_has(
        &err,
        "bad.yaml:10: a task's `description` must be a single value",
    );
    assert!(!err.contains("invalid digit"), "{err}");
}

#[test]
fn every_duplicate_key_is_reported() {
    let err = invalid(
        "name: x\ntasks:\n  - id: a\n    kind: noop\n    kind: shell\n  - id: b\n    kind: noop\n    timeout: 1s\n    timeout: 2s\nname: y\n",
    );
    assert_has(&err, "bad.yaml:5: duplicate key `kind` (first at line 4)");
    assert_has(
        &err,
        "bad.yaml:9: duplicate key `timeout` (first at line 8)",
    );
    assert_has(&err, "bad.yaml:10: duplicate key `name` (first at line 1)");
}

#[test]
fn parameter_names_must_be_distinct_identifiers() {
    let err = invalid(
        "name: x\nparams:\n  \"\": a\n  \"X=Y\": b\n  p: c\n  P: d\n  ok: [1]\ntasks:\n  - id: a\n    kind: noop\n",
    );
    assert_has(
        &err,
        "bad.yaml:3: parameter name `` must start with a letter",
    );
    assert_has(
        &err,
        "bad.yaml:4: parameter name `X=Y` must start with a letter",
    );
    assert_has(
        &err,
        "bad.yaml:6: parameter `P` collides with the one at line 5: both become FLOWCTL_PARAM_P",
    );
    assert_has(
        &err,
        "bad.yaml:7: the default of parameter `ok` must be a single value",
    );
}

/// Issue 18: one bad flow file in the directory used to panic `flows list`, the trigger of any
/// other flow and serve's pages. The good flows stay usable and the bad one is reported.
#[test]
fn one_bad_file_never_takes_down_the_other_flows() {
    let env = Env::new();
    env.flow(
        "bad",
        "name: bad\ntasks:\n  - id: a\n    kind: noop\n    timeout: 9999999999999999999999d\n",
    );
    env.flow("good", "name: good\ntasks:\n  - id: a\n    kind: noop\n");
    let out = env.run(&["flows", "list"]);
    let (text, err) = (crate::common::stdout(&out), stderr(&out));
    assert!(text.contains("good"), "{text}\n{err}");
    assert!(err.contains("bad.yaml:5: timeout"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    let out = env.run(&["trigger", "good"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_repeated_param_flag_is_refused() {
    let env = Env::new();
    env.flow(
        "p",
        "name: p\nparams: {p: \"\"}\ntasks:\n  - id: a\n    kind: noop\n",
    );
    let out = env.run(&["trigger", "p", "--param", "p=1", "--param", "p=2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(&stderr(&out), "--param p is given twice");
    let out = env.run(&["trigger", "p", "--param", "=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let (_, runs) = env.json(&["runs", "list"]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
}

/// Issue 18 (every duration): `FLOWCTL_HEARTBEAT=0s` panicked every run's executor
/// ("`period` must be non-zero"); settings are refused at start with what is wrong.
#[test]
fn engine_settings_that_would_break_a_clock_are_refused() {
    let env = Env::new();
    env.flow("q", "name: q\ntasks:\n  - {id: a, kind: noop}\n");
    for (var, value, needle) in [
        ("FLOWCTL_HEARTBEAT", "0s", "must be longer than zero"),
        ("FLOWCTL_LEASE", "999999d", "longer than the maximum"),
        ("FLOWCTL_LEASE", "100ms", "at least twice FLOWCTL_HEARTBEAT"),
        (
            "FLOWCTL_CONCURRENCY",
            "99999999999999999999",
            "from 1 to 100000",
        ),
    ] {
        let out = env.cmd(&["trigger", "q"]).env(var, value).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(needle),
            "{var}={value}: {}",
            stderr(&out)
        );
    }
    let (_, runs) = env.json(&["runs", "list"]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
}
