//! A real `flowctl serve` on a free loopback port, stopped (SIGKILL) on drop.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Env;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Where the server's stderr goes.
    pub stderr: std::path::PathBuf,
}

impl Server {
    pub fn start(env: &Env, extra_env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = env.cmd(&["serve", "--addr", &format!("127.0.0.1:{port}")]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let stderr = env.dir.path().join(format!("serve-{port}.stderr"));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let s = Server {
            child,
            base,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = ureq::get(&format!("{}/healthz", s.base)).call()
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the listener.
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// What the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the server like a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns 4xx/5xx as responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, JSON body)
/// The body of a GET that must succeed, as text (pages, /metrics).
pub fn text(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap()
}

pub fn get(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

pub fn post(url: &str, body: Option<&str>, bearer: Option<&str>) -> (u16, Value) {
    let mut req = agent().post(url);
    if let Some(t) = bearer {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = match body {
        Some(b) => req
            .header("Content-Type", "application/json")
            .send(b)
            .unwrap(),
        None => req.send_empty().unwrap(),
    };
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

/// Polls `GET /api/runs/{id}` until the run is finished; returns the detail.
pub fn wait_run(server: &Server, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get(&server.url(&format!("/api/runs/{id}")));
        if matches!(
            v["run"]["state"].as_str(),
            Some("success" | "failed" | "cancelled")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
