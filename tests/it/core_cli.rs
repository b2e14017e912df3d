//! The CLI's listings, JSON output, params, logs and exit codes.

use crate::common::{Env, run_id, stderr, stdout};

const FLOW: &str = r#"name: hello
description: says hello
schedule: "*/5 * * * *"
params:
  who: world
tasks:
  - id: greet
    kind: shell
    params:
      command: 'echo "hello $FLOWCTL_PARAM_WHO"; echo "to stderr" >&2'
  - {id: done, kind: noop, depends_on: [greet]}
"#;

#[test]
fn flows_list_and_show() {
    let env = Env::new();
    env.flow("hello", FLOW);
    let (code, v) = env.json(&["flows", "list"]);
    assert_eq!(code, 0);
    assert_eq!(v["flows"][0]["name"], "hello");
    assert_eq!(v["flows"][0]["schedule"], "*/5 * * * *");
    let (code, v) = env.json(&["flows", "show", "hello"]);
    assert_eq!(code, 0);
    assert_eq!(v["order"], serde_json::json!(["greet", "done"]));
    let text = stdout(&env.run(&["flows", "show", "hello"]));
    assert!(text.contains("1  greet"), "{text}");
    let missing = env.run(&["flows", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no flow named `nope`"));
}

#[test]
fn trigger_with_params_logs_and_listings() {
    let env = Env::new();
    env.flow("hello", FLOW);
    let out = env.run(&["trigger", "hello", "--param", "who=flowctl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("run 1 of hello created"), "{text}");
    assert!(text.contains("greet") && text.contains("success"), "{text}");

    let logs = stdout(&env.run(&["logs", "1", "greet"]));
    assert!(logs.contains("[stdout] hello flowctl"), "{logs}");
    assert!(logs.contains("[stderr] to stderr"), "{logs}");

    let (_, v) = env.json(&["trigger", "hello"]);
    assert_eq!(v["run"]["params"]["who"], "world");
    assert_eq!(run_id(&v), 2);

    let (_, list) = env.json(&["runs", "list", "--limit", "1"]);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    assert_eq!(list["runs"][0]["id"], 2);
    let (_, page2) = env.json(&["runs", "list", "--before", "2"]);
    assert_eq!(page2["runs"][0]["id"], 1);
    let (_, none) = env.json(&["runs", "list", "--state", "failed"]);
    assert!(none["runs"].as_array().unwrap().is_empty());

    let bad_state = env.run(&["runs", "list", "--state", "done"]);
    assert_eq!(bad_state.status.code(), Some(2));
    let bad_param = env.run(&["trigger", "hello", "--param", "whom=x"]);
    assert_eq!(bad_param.status.code(), Some(2));
    assert!(stderr(&bad_param).contains("no parameter `whom` (declared: who)"));
    let no_run = env.run(&["runs", "show", "99"]);
    assert_eq!(no_run.status.code(), Some(2));
    assert!(stderr(&no_run).contains("run 99 not found"));
}
