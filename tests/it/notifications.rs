//! Flow notifications through the real binary: a real local HTTP server as the webhook (it
//! records every POST and answers the statuses it is told to), a shell command, the attempts
//! recorded in the state store, and `serve`'s SLA watcher.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowctl::store::{NotificationAttempt, Store};
use serde_json::Value;

use crate::common::{Env, stderr, stdout};

/// A webhook receiver on 127.0.0.1: answers the i-th request with `statuses[i]` (200 once they
/// run out) and keeps every JSON body it got.
pub struct Hook {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    pub fn start(path: &str, statuses: &[u16]) -> Hook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", l.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (seen, statuses) = (bodies.clone(), statuses.to_vec());
        std::thread::spawn(move || {
            for (i, conn) in l.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                let status = statuses.get(i).copied().unwrap_or(200);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        Hook { url, bodies }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `n` requests.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        while self.bodies().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.bodies()
    }
}

pub async fn attempts(env: &Env, run: i64) -> Vec<NotificationAttempt> {
    let store = Store::open(&env.home().join("state.db")).await.unwrap();
    let a = store.notification_attempts(run).await.unwrap();
    store.close().await;
    a
}

#[tokio::test]
async fn a_failed_run_posts_its_webhook_and_runs_its_command_once() {
    let env = Env::new();
    let hook = Hook::start("/services/T0/B0/s3cretPathToken", &[]);
    let out_file = env.dir.path().join("notified.json");
    env.flow(
        "notified",
        &format!(
            "name: notified\nnotify:\n  - on: [failed, gate_failed]\n    webhook: {}\n  \
             - on: [failed]\n    command: cat > {}\ntasks:\n  - id: fine\n    kind: noop\n  \
             - id: boom\n    kind: shell\n    depends_on: [fine]\n    params: {{command: 'exit 3'}}\n",
            hook.url,
            out_file.display()
        ),
    );
    let out = env.run(&["trigger", "notified"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // `trigger` waited for its deliveries: they are done when it exits.
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let b = &bodies[0];
    assert_eq!(b["event"], "failed");
    assert_eq!(b["flow"], "notified");
    assert_eq!(b["run_id"], 1);
    assert_eq!(b["state"], "failed");
    assert_eq!(b["failed_tasks"], serde_json::json!(["boom"]));
    assert!(b["url"].as_str().unwrap().ends_with("/runs/1"), "{b}");
    let text = b["text"].as_str().unwrap();
    assert!(
        text.contains("notified run 1 failed") && text.contains("boom"),
        "{text}"
    );
    let from_command: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(from_command["event"], "failed");
    assert_eq!(from_command["run_id"], 1);

    let recorded = attempts(&env, 1).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .all(|a| a.ok && a.attempt == 1 && a.event == "failed")
    );
    let targets: Vec<&str> = recorded.iter().map(|a| a.target.as_str()).collect();
    assert!(targets.contains(&"command"), "{targets:?}");
    // The webhook's path is its secret: never recorded or shown.
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with("webhook http://127.0.0.1:")),
        "{targets:?}"
    );
    assert!(!format!("{recorded:?}").contains("s3cretPathToken"));
    assert!(!stderr(&out).contains("s3cretPathToken"));

    // A retried run that fails again notifies again (a new round), once.
    let out = env.run(&["retry", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(hook.bodies().len(), 2);
    assert_eq!(hook.bodies()[1]["round"], 2);
}

#[tokio::test]
async fn a_success_notifies_only_when_asked() {
    let env = Env::new();
    let quiet = Hook::start("/quiet", &[]);
    let loud = Hook::start("/loud", &[]);
    env.flow(
        "ok",
        &format!(
            "name: ok\nnotify:\n  - on: [failed, sla_missed, gate_failed]\n    webhook: {}\n  \
             - on: [success]\n    webhook: {}\ntasks:\n  - id: a\n    kind: noop\n",
            quiet.url, loud.url
        ),
    );
    let out = env.run(&["trigger", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(quiet.bodies().len(), 0);
    let loud = loud.bodies();
    assert_eq!(loud.len(), 1);
    assert_eq!(loud[0]["event"], "success");
    assert_eq!(loud[0]["failed_tasks"], serde_json::json!([]));
}

#[tokio::test]
async fn a_webhook_that_answers_500_twice_gets_the_notification_on_the_third_try() {
    let env = Env::new();
    let hook = Hook::start("/flaky", &[500, 500]);
    env.flow(
        "flaky",
        &format!(
            "name: flaky\nnotify:\n  - on: [failed]\n    webhook: {}\ntasks:\n  - id: boom\n    \
             kind: shell\n    params: {{command: 'exit 1'}}\n",
            hook.url
        ),
    );
    let out = env.run(&["trigger", "flaky"]);
    assert_eq!(out.status.code(), Some(1));
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["event"] == "failed" && b["run_id"] == 1)
    );
    let recorded = attempts(&env, 1).await;
    let seen: Vec<(i64, bool, &str)> = recorded
        .iter()
        .map(|a| (a.attempt, a.ok, a.detail.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, false, "HTTP 500"),
            (2, false, "HTTP 500"),
            (3, true, "HTTP 200")
        ]
    );
    // The run's state was recorded before any delivery and is not touched by them.
    let (_, show) = env.json(&["runs", "show", "1"]);
    assert_eq!(show["run"]["state"], "failed");
}

#[tokio::test]
async fn a_run_past_its_sla_notifies_once_while_still_running_and_not_again_at_its_end() {
    let env = Env::new();
    let hook = Hook::start("/sla", &[]);
    env.flow(
        "slow",
        &format!(
            "name: slow\nsla: 1s\nnotify:\n  - on: [sla_missed, failed]\n    webhook: {}\n\
             tasks:\n  - id: wait\n    kind: shell\n    params: {{command: 'sleep 6'}}\n",
            hook.url
        ),
    );
    let server = crate::server::Server::start(&env, &[]);
    let (code, created) = crate::server::post(&server.url("/api/flows/slow/trigger"), None, None);
    assert!((200..300).contains(&code), "{code} {created}");
    let run = created["run_id"].as_i64().unwrap();
    // The watcher sees it late while the task still sleeps.
    let bodies = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "sla_missed");
    assert_eq!(bodies[0]["state"], "running");
    let done = crate::server::wait_run(&server, run);
    assert_eq!(done["run"]["state"], "success", "{done}");
    // Ending late does not notify the SLA a second time; success was not asked for.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.bodies().len(), 1, "{:?}", hook.bodies());
    // The run page and the API show the attempt.
    let page = crate::server::text(&server.url(&format!("/runs/{run}")));
    assert!(
        page.contains("sla_missed") && page.contains("id=\"notifications\""),
        "{page}"
    );
    assert!(!page.contains("/sla"), "the webhook path is not shown");
    let (_, api) = crate::server::get(&server.url(&format!("/api/runs/{run}")));
    assert_eq!(api["notifications"][0]["event"], "sla_missed");
    let metrics = crate::server::text(&server.url("/metrics"));
    assert!(
        metrics.contains("flowctl_sla_missed_runs{flow=\"slow\"} 1"),
        "{metrics}"
    );
    server.kill();
}

#[test]
fn a_bad_notify_block_is_reported_with_file_and_line() {
    let env = Env::new();
    let path = env.flow(
        "bad",
        "name: bad\nsla: 0s\nnotify:\n  - on: [failed, exploded]\n    webhook: ftp://x\n  \
         - on: [failed]\n    webhook: http://a\n    command: echo\n  - webhook: http://a\n  \
         - on: [failed]\ntasks:\n  - id: a\n    kind: noop\n",
    );
    let out = env.run(&["flows", "validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = format!("{}{}", stdout(&out), stderr(&out));
    let p = path.display();
    for want in [
        format!("{p}:2:"),
        format!("{p}:4: unknown notify event `exploded`"),
        format!("{p}:5: `webhook` must be an http:// or https:// URL"),
        format!("{p}:6: a `notify` entry takes `webhook:` or `command:`, not both"),
        format!("{p}:9: a `notify` entry needs `on: [events]`"),
        format!("{p}:10: a `notify` entry needs a `webhook:` URL or a `command:`"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
}

#[tokio::test]
async fn a_late_run_is_counted_while_running_even_when_no_rule_listens() {
    let env = Env::new();
    env.flow(
        "quiet",
        "name: quiet\nsla: 1s\ntasks:\n  - id: wait\n    kind: shell\n    params: {command: 'sleep 5'}\n",
    );
    let server = crate::server::Server::start(&env, &[]);
    let (code, created) = crate::server::post(&server.url("/api/flows/quiet/trigger"), None, None);
    assert!((200..300).contains(&code), "{code} {created}");
    let run = created["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let counted = loop {
        let metrics = crate::server::text(&server.url("/metrics"));
        if metrics.contains("flowctl_sla_missed_runs{flow=\"quiet\"} 1")
            || Instant::now() >= deadline
        {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        counted.contains("flowctl_sla_missed_runs{flow=\"quiet\"} 1"),
        "{counted}"
    );
    let (_, show) = crate::server::get(&server.url(&format!("/api/runs/{run}")));
    assert_eq!(
        show["run"]["state"], "running",
        "counted while still late, not at its end"
    );
    server.kill();
}
