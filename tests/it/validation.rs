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
    assert_has(&err, "bad.yaml:3: retries.delay: bad duration `soon`");
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
