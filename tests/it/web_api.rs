//! Every API endpoint against a real `flowctl serve`: outcomes, auth, bad input, /metrics.

use std::time::{Duration, Instant};

use crate::common::Env;
use crate::server::{Server, agent, get, post, wait_run};

const FLOWS: &[(&str, &str)] = &[
    (
        "ok",
        "name: ok\nparams: {who: world}\ntasks:\n  - id: a\n    kind: shell\n    params: {command: 'echo hi $FLOWCTL_PARAM_WHO'}\n  - {id: b, kind: noop, depends_on: [a]}\n",
    ),
    (
        "flaky",
        "name: flaky\ntasks:\n  - id: f\n    kind: shell\n    params: {command: 'test -f {work}/fixed'}\n  - {id: g, kind: noop, depends_on: [f]}\n",
    ),
    (
        "slow",
        "name: slow\ntasks:\n  - id: s\n    kind: shell\n    params: {command: 'touch {work}/slow.started; exec sleep 60'}\n",
    ),
];

fn setup() -> Env {
    let env = Env::new();
    for (name, yaml) in FLOWS {
        env.flow(name, yaml);
    }
    env
}

#[test]
fn flows_trigger_runs_logs_and_idempotency() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let (code, flows) = get(&s.url("/api/flows"));
    assert_eq!(code, 200);
    let names: Vec<&str> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["flaky", "ok", "slow"]);

    let (code, t) = post(
        &s.url("/api/flows/ok/trigger"),
        Some(r#"{"params":{"who":"api"},"idempotency_key":"k1"}"#),
        None,
    );
    assert_eq!(code, 201, "{t}");
    let id = t["run_id"].as_i64().unwrap();
    let (code, again) = post(
        &s.url("/api/flows/ok/trigger"),
        Some(r#"{"idempotency_key":"k1"}"#),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(again["run_id"], id);
    assert_eq!(again["created"], false);

    let detail = wait_run(&s, id);
    assert_eq!(detail["run"]["state"], "success");
    assert_eq!(detail["run"]["trigger_source"], "api");
    assert_eq!(detail["tasks"][0]["task"], "a");
    assert_eq!(detail["tasks"][1]["state"], "success");

    let (code, logs) = get(&s.url(&format!("/api/runs/{id}/logs?task=a")));
    assert_eq!(code, 200);
    assert_eq!(logs["lines"][0]["line"], "hi api");
    let after = logs["next_after"].as_i64().unwrap();
    let (_, rest) = get(&s.url(&format!("/api/runs/{id}/logs?task=a&after={after}")));
    assert!(rest["lines"].as_array().unwrap().is_empty());

    // An empty body is a trigger without params.
    let (code, plain) = post(&s.url("/api/flows/ok/trigger"), None, None);
    assert_eq!(code, 201, "{plain}");
    wait_run(&s, plain["run_id"].as_i64().unwrap());

    let (code, list) = get(&s.url("/api/runs?flow=ok&state=success&limit=1"));
    assert_eq!(code, 200);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    assert!(list["next_before"].is_i64());
    let (_, none) = get(&s.url("/api/runs?flow=flaky"));
    assert!(none["runs"].as_array().unwrap().is_empty());
}

#[test]
fn retry_and_cancel_through_the_api() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let (_, t) = post(&s.url("/api/flows/flaky/trigger"), Some("{}"), None);
    let id = t["run_id"].as_i64().unwrap();
    let d = wait_run(&s, id);
    assert_eq!(d["run"]["state"], "failed");
    assert_eq!(d["tasks"][1]["state"], "upstream_failed");
    std::fs::write(env.work().join("fixed"), "").unwrap();
    let (code, r) = post(&s.url(&format!("/api/runs/{id}/retry")), None, None);
    assert_eq!(code, 202, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, d) = get(&s.url(&format!("/api/runs/{id}")));
        if d["run"]["state"] == "success" {
            assert_eq!(d["run"]["round"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "retry did not complete: {d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, e) = post(&s.url(&format!("/api/runs/{id}/retry")), None, None);
    assert_eq!(code, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("nothing to retry"));

    let (_, t) = post(&s.url("/api/flows/slow/trigger"), None, None);
    let slow = t["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.work().join("slow.started").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, c) = post(&s.url(&format!("/api/runs/{slow}/cancel")), None, None);
    assert_eq!(code, 202, "{c}");
    let d = wait_run(&s, slow);
    assert_eq!(d["run"]["state"], "cancelled");
    assert_eq!(d["tasks"][0]["state"], "cancelled");
}

#[test]
fn bad_input_gets_a_json_4xx() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let cases: Vec<(u16, (u16, serde_json::Value), &str)> = vec![
        (
            404,
            post(&s.url("/api/flows/nope/trigger"), Some("{}"), None),
            "no flow named `nope`",
        ),
        (
            400,
            post(&s.url("/api/flows/ok/trigger"), Some("{not json"), None),
            "bad request body",
        ),
        (
            400,
            post(
                &s.url("/api/flows/ok/trigger"),
                Some(r#"{"params":{"whom":"x"}}"#),
                None,
            ),
            "no parameter `whom`",
        ),
        (
            400,
            post(
                &s.url("/api/flows/ok/trigger"),
                Some(r#"{"parameters":{}}"#),
                None,
            ),
            "unknown field `parameters`",
        ),
        (
            400,
            post(
                &s.url("/api/flows/ok/trigger"),
                Some(r#"{"params":{"who":3}}"#),
                None,
            ),
            "bad request body",
        ),
        (404, get(&s.url("/api/runs/424242")), "run 424242 not found"),
        (400, get(&s.url("/api/runs/abc")), "bad run id"),
        (
            400,
            get(&s.url("/api/runs?state=finished")),
            "unknown run state",
        ),
        (400, get(&s.url("/api/runs?limit=0")), "limit must be"),
        (400, get(&s.url("/api/runs?limit=ten")), "limit"),
        (
            400,
            post(&s.url("/api/flows/ok/pause"), None, None),
            "has no schedule",
        ),
        (404, get(&s.url("/api/nothing-here")), "no route"),
        (
            404,
            post(&s.url("/api/runs/424242/cancel"), None, None),
            "not found",
        ),
    ];
    for (want, (code, body), needle) in cases {
        assert_eq!(code, want, "{body}");
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {body}"));
        assert!(msg.contains(needle), "`{needle}` not in `{msg}`");
    }
    // Nothing was created by any of it.
    let (_, runs) = get(&s.url("/api/runs"));
    assert!(runs["runs"].as_array().unwrap().is_empty());
}

#[test]
fn api_token_guards_every_mutating_call_and_ui_forms_need_csrf() {
    let env = setup();
    let s = Server::start(&env, &[("FLOWCTL_API_TOKEN", "s3cret-token")]);
    for path in [
        "/api/flows/ok/trigger",
        "/api/runs/1/retry",
        "/api/runs/1/cancel",
        "/api/flows/ok/pause",
    ] {
        let (code, body) = post(&s.url(path), Some("{}"), None);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"));
        let (code, _) = post(&s.url(path), Some("{}"), Some("wrong"));
        assert_eq!(code, 401, "{path}");
    }
    let (code, t) = post(
        &s.url("/api/flows/ok/trigger"),
        Some("{}"),
        Some("s3cret-token"),
    );
    assert_eq!(code, 201, "{t}");
    wait_run(&s, t["run_id"].as_i64().unwrap());
    // Reads stay open.
    assert_eq!(get(&s.url("/api/runs")).0, 200);
    // A UI form post without the CSRF token is refused, and so is one without the session.
    let r = agent()
        .post(&s.url("/ui/flows/ok/trigger"))
        .send_form([("csrf", "x")])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = agent()
        .post(&s.url("/ui/flows/ok/trigger"))
        .header("Cookie", "flowctl_csrf=abcdefghijklmnopqrstuvwxyz012345")
        .send_form([("csrf", "abcdefghijklmnopqrstuvwxyz012345")])
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent()
        .post(&s.url("/ui/flows/ok/trigger"))
        .header(
            "Cookie",
            "flowctl_csrf=abcdefghijklmnopqrstuvwxyz012345; flowctl_token=s3cret-token",
        )
        .send_form([("csrf", "abcdefghijklmnopqrstuvwxyz012345")])
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let (_, runs) = get(&s.url("/api/runs?flow=ok"));
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    // The schema registry on the same port is guarded the same way, in its own error format.
    let schema = r#"{"schema": "{\"type\":\"string\"}"}"#;
    let (code, e) = post(&s.url("/subjects/x-value/versions"), Some(schema), None);
    assert_eq!(code, 401);
    assert_eq!(e["error_code"], 40101);
    let (code, _) = post(
        &s.url("/subjects/x-value/versions"),
        Some(schema),
        Some("s3cret-token"),
    );
    assert_eq!(code, 200);
    assert_eq!(get(&s.url("/subjects")).1, serde_json::json!(["x-value"]));
}

#[test]
fn tables_and_health() {
    let env = setup();
    let table = env
        .home()
        .join("lake")
        .join("bronze")
        .join("bronze_orders")
        .join("_delta_log");
    std::fs::create_dir_all(&table).unwrap();
    std::fs::write(
        table.join("00000000000000000000.json"),
        "{\"commitInfo\":{\"timestamp\":1700000000000,\"operation\":\"WRITE\"}}\n{\"add\":{\"path\":\"p.parquet\",\"stats\":\"{\\\"numRecords\\\":42}\"}}\n",
    )
    .unwrap();
    let s = Server::start(&env, &[]);
    let (code, t) = get(&s.url("/api/tables"));
    assert_eq!(code, 200);
    assert_eq!(t["tables"][0]["name"], "bronze_orders");
    assert_eq!(t["tables"][0]["row_count"], 42);
    let (code, h) = get(&s.url("/healthz"));
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")));
    let page = agent()
        .get(&s.url("/tables"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(page.contains("bronze_orders"));
}

#[test]
fn metrics_are_valid_prometheus_exposition() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let (_, t) = post(&s.url("/api/flows/ok/trigger"), None, None);
    wait_run(&s, t["run_id"].as_i64().unwrap());
    let text = agent()
        .get(&s.url("/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        text.contains("flowctl_flow_runs{flow=\"ok\",state=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flowctl_task_runs_total{flow=\"ok\",state=\"success\",task=\"a\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flowctl_task_duration_seconds_bucket"),
        "{text}"
    );
    let promtool = which("promtool")
        .expect("promtool is required (Debian package `prometheus`; scripts/test.sh installs it)");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(bin))
        .find(|p| p.is_file())
}

#[test]
fn the_schema_registry_is_served_on_the_same_port() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let schema = r#"{"schema": "{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"}"#;
    let (code, v) = post(&s.url("/subjects/t-value/versions"), Some(schema), None);
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (code, subjects) = get(&s.url("/subjects"));
    assert_eq!(code, 200);
    assert_eq!(subjects, serde_json::json!(["t-value"]));
    let (code, by_id) = get(&s.url(&format!("/schemas/ids/{id}")));
    assert_eq!(code, 200);
    assert!(by_id["schema"].as_str().unwrap().contains("\"name\":\"T\""));
    // The UI's own routes and fallback still answer as before.
    assert_eq!(get(&s.url("/api/nothing")).0, 404);
}

#[test]
fn the_standalone_registry_honours_the_api_token_too() {
    let env = setup();
    let port = crate::server::free_port();
    let mut child = env
        .cmd(&["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("FLOWCTL_API_TOKEN", "reg-token")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent()
        .get(&format!("{base}/subjects"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "registry did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let schema = r#"{"schema": "{\"type\":\"string\"}"}"#;
    let (code, e) = post(
        &format!("{base}/subjects/y-value/versions"),
        Some(schema),
        None,
    );
    assert_eq!((code, e["error_code"].as_i64()), (401, Some(40101)), "{e}");
    let (code, ok) = post(
        &format!("{base}/subjects/y-value/versions"),
        Some(schema),
        Some("reg-token"),
    );
    assert_eq!(code, 200, "{ok}");
    let _ = child.kill();
    let _ = child.wait();
}
