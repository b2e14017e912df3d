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
