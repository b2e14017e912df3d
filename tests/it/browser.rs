//! The UI in real headless Chromium, driven over WebDriver (chromedriver): trigger a flow from the
//! form, watch the run page refresh itself until the run finishes, find the DAG nodes in their
//! final states, and find the run in the history.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Env;
use crate::server::{Server, agent, free_port};

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(bin))
        .find(|p| p.is_file())
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

const ELEMENT_PREFIX: &str = "element-6066-11e4-";

impl Driver {
    fn start() -> Driver {
        let chromedriver = which("chromedriver").expect(
            "chromedriver is required (Debian package chromium-driver; scripts/test.sh installs it)",
        );
        let chromium = which("chromium")
            .expect("chromium is required (Debian package chromium; scripts/test.sh installs it)");
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent().get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut r = agent()
            .post(&format!("{base}/session"))
            .send_json(&caps)
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            child,
            base,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut r = match method {
            "GET" => agent().get(&url).call().unwrap(),
            "POST" => agent()
                .post(&url)
                .send_json(body.unwrap_or(json!({})))
                .unwrap(),
            _ => agent().delete(&url).call().unwrap(),
        };
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        // The W3C element reference: an object with a single well-known key.
        v.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with(ELEMENT_PREFIX)))
            .and_then(|(_, id)| id.as_str())
            .map(str::to_string)
    }

    fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.find(css)?;
        self.cmd("GET", &format!("/element/{el}/attribute/{name}"), None)
            .as_str()
            .map(str::to_string)
    }

    fn text(&self, css: &str) -> Option<String> {
        let el = self.find(css)?;
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .map(str::to_string)
    }

    fn click(&self, css: &str) {
        let el = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = agent()
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn trigger_from_the_ui_and_watch_the_run_finish() {
    let env = Env::new();
    env.flow(
        "browser_flow",
        r#"name: browser_flow
params: {greeting: hello}
tasks:
  - {id: first, kind: noop, params: {sleep: 1500ms}}
  - id: second
    kind: shell
    depends_on: [first]
    params: {command: 'echo "$FLOWCTL_PARAM_GREETING from the browser"'}
  - {id: third, kind: noop, depends_on: [second]}
  - id: never
    kind: noop
    depends_on: [second]
    trigger_rule: one_failed
"#,
    );
    let server = Server::start(&env, &[]);
    let d = Driver::start();
    d.goto(&server.url("/flows"));
    assert!(
        d.find("tr[data-flow='browser_flow']").is_some(),
        "flow row missing: {}",
        d.cmd("GET", "/source", None)
    );
    // Fill the declared param and submit the form.
    let input = d.find("input[name='param.greeting']").expect("param input");
    d.cmd("POST", &format!("/element/{input}/clear"), Some(json!({})));
    d.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": "bonjour"})),
    );
    d.click("button[data-trigger='browser_flow']");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.url().contains("/runs/") {
        assert!(
            Instant::now() < deadline,
            "no redirect to the run page: {}",
            d.url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = d.url();
    let id: i64 = url.rsplit('/').next().unwrap().parse().unwrap();
    // The page refreshes itself (no reload by us) until the run is finished.
    let mut seen_active = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = d.attr("#run-live", "data-state").unwrap_or_default();
        if state == "running" || state == "queued" {
            seen_active = true;
        }
        if state == "success" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run did not reach success in the page (last {state})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen_active, "never saw the run active before it finished");
    assert_eq!(
        d.url(),
        url,
        "the page navigated instead of refreshing in place"
    );
    for (task, want) in [
        ("first", "success"),
        ("second", "success"),
        ("third", "success"),
        ("never", "skipped"),
    ] {
        assert_eq!(
            d.attr(&format!("g.node[data-task='{task}']"), "data-state")
                .as_deref(),
            Some(want),
            "node {task}"
        );
    }
    // The log page shows the task's output with the form's parameter.
    d.goto(&server.url(&format!("/runs/{id}/logs/second")));
    assert!(
        d.text("#log")
            .unwrap_or_default()
            .contains("bonjour from the browser")
    );
    // And the history lists the run.
    d.goto(&server.url("/runs"));
    let row = d.text(&format!("tr[data-run='{id}']")).expect("run row");
    assert!(
        row.contains("browser_flow") && row.contains("success"),
        "{row}"
    );
}

/// Waits until `css` exists (pages navigate asynchronously after a click or a submit).
fn wait_find(d: &Driver, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = d.find(css) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {css} in: {}",
            d.cmd("GET", "/source", None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_table_page_previews_rows_at_the_version_picked_and_a_flow_page_charts_its_runs() {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    let env = Env::new();
    // Version 1 holds one row, version 2 three.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let path = flowctl::lake::lake_root(&env.home()).join("silver_places");
    let mut t = flowctl::lake::LakeTable::open_or_create(&path, &schema, &[])
        .await
        .unwrap();
    for (ids, cities) in [
        (vec![1], vec!["Lisbon"]),
        (vec![2, 3], vec!["Porto", "Faro"]),
    ] {
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(cities)) as ArrayRef,
            ],
        )
        .unwrap();
        t.append([b], None).await.unwrap();
    }
    env.flow(
        "charted",
        "name: charted\ntasks:\n  - {id: a, kind: noop, params: {sleep: 300ms}}\n",
    );
    for _ in 0..2 {
        assert!(env.run(&["trigger", "charted"]).status.success());
    }
    let server = Server::start(&env, &[]);
    let d = Driver::start();

    d.goto(&server.url("/tables"));
    d.click("tr[data-table='silver_places'] a");
    wait_find(&d, "#preview");
    assert_eq!(d.text("#preview-version").as_deref(), Some("2"));
    let rows = d.text("#preview tbody").unwrap();
    assert!(rows.contains("Lisbon") && rows.contains("Faro"), "{rows}");
    // Time travel: pick version 1 and show it.
    d.click("select[name='version'] option[value='1']");
    d.click("#version-picker button");
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.text("#preview-version").as_deref() != Some("1") {
        assert!(
            Instant::now() < deadline,
            "{}",
            d.cmd("GET", "/source", None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = d.text("#preview tbody").unwrap();
    assert!(rows.contains("Lisbon") && !rows.contains("Faro"), "{rows}");

    d.goto(&server.url("/flows"));
    d.click("tr[data-flow='charted'] a");
    wait_find(&d, "svg#durations");
    assert!(d.find("#durations rect[data-run='1']").is_some());
    assert!(d.find("#durations rect[data-run='2']").is_some());
    assert_eq!(
        d.attr("#durations rect[data-run='2']", "fill").as_deref(),
        Some("#2e9d5b"),
        "a successful run is green"
    );
    server.kill();
}
