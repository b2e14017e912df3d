//! `flowctl serve` against hostile input: other sites' pages driving the API through the
//! user's browser, oversized and malformed requests, a state DB deleted under the server, and a
//! bounded burst of all of it with /healthz answering within a second throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Env;
use crate::server::{Server, agent, get, post, wait_run};

const FLOWS: &[(&str, &str)] = &[
    ("ok", "name: ok\ntasks:\n  - {id: a, kind: noop}\n"),
    (
        "nightly",
        "name: nightly\nschedule: '@yearly'\ntasks:\n  - {id: a, kind: noop}\n",
    ),
    (
        "slow",
        "name: slow\ntasks:\n  - id: s\n    kind: shell\n    params: {command: 'exec sleep 60'}\n",
    ),
];

fn setup() -> Env {
    let env = Env::new();
    for (name, yaml) in FLOWS {
        env.flow(name, yaml);
    }
    env
}

/// Sends `req` as is; returns the status code and the rest of the response (`None` when the
/// server closed the connection without answering).
fn raw(authority: &str, req: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before it read everything: keep what it said.
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((code, text))
}

/// A request with `headers` (each `Name: value`) and `body`, `Connection: close`.
fn request(method: &str, path: &str, host: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn runs(s: &Server) -> usize {
    get(&s.url("/api/runs"))
        .1
        .get("runs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// method, path, headers, body, expected status, expected text in the answer
type Case<'a> = (&'a str, &'a str, Vec<&'a str>, &'a [u8], u16, &'a str);

/// Issue 18 item 6: with no token set, any page the user opens could drive the API. Each
/// request here is what a browser sends for a page on `evil.example` without asking first
/// (no CORS preflight); on the old server they got 201, 200, 202 and 200.
#[test]
fn other_sites_pages_cannot_drive_the_api() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let host = s.authority().to_string();
    let evil = "Origin: http://evil.example";
    let (_, t) = post(&s.url("/api/flows/slow/trigger"), None, None);
    let slow = t["run_id"].as_i64().unwrap();

    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/flows/ok/trigger",
            vec![evil],
            b"",
            403,
            "cross-site request refused",
        ),
        (
            "POST",
            "/api/flows/nightly/pause",
            vec![evil],
            b"",
            403,
            "Origin `http://evil.example`",
        ),
        (
            "POST",
            "/api/flows/ok/trigger",
            vec!["Sec-Fetch-Site: cross-site"],
            b"",
            403,
            "Sec-Fetch-Site",
        ),
        (
            "POST",
            "/api/flows/ok/trigger",
            vec!["Referer: http://evil.example/page"],
            b"",
            403,
            "Referer",
        ),
        (
            "POST",
            "/api/flows/ok/trigger",
            vec!["Origin: null"],
            b"",
            403,
            "Origin: null",
        ),
        // A form on another site posting to the API without an Origin (old browsers): its media
        // types are the ones a page may send unasked.
        (
            "POST",
            "/api/flows/ok/trigger",
            vec!["Content-Type: text/plain"],
            b"{}",
            415,
            "application/json",
        ),
        (
            "POST",
            "/api/flows/ok/trigger",
            vec!["Content-Type: application/x-www-form-urlencoded"],
            b"a=b",
            415,
            "application/json",
        ),
        (
            "POST",
            "/api/flows/ok/trigger",
            vec![],
            b"{}",
            415,
            "Content-Type",
        ),
        (
            "PUT",
            "/config",
            vec![evil, "Content-Type: text/plain"],
            br#"{"compatibility":"NONE"}"#,
            403,
            "cross-site",
        ),
        (
            "PUT",
            "/config",
            vec!["Content-Type: text/plain"],
            br#"{"compatibility":"NONE"}"#,
            415,
            "schemaregistry",
        ),
        (
            "POST",
            "/subjects/x-value/versions",
            vec!["Content-Type: multipart/form-data; boundary=b"],
            b"--b--",
            415,
            "schemaregistry",
        ),
        // UI forms: the CSRF token is not even looked at for another site's post.
        (
            "POST",
            "/ui/flows/ok/trigger",
            vec![evil, "Content-Type: application/x-www-form-urlencoded"],
            b"csrf=x",
            403,
            "cross-site",
        ),
    ];
    for (method, path, headers, body, want, needle) in &cases {
        let (code, text) = raw(&host, &request(method, path, &host, headers, body))
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        assert_eq!(code, *want, "{method} {path} {headers:?}: {text}");
        assert!(
            text.contains(needle),
            "{method} {path}: `{needle}` not in {text}"
        );
    }
    // Cancel, too (it would have been 202).
    let cancel = format!("/api/runs/{slow}/cancel");
    let (code, text) = raw(&host, &request("POST", &cancel, &host, &[evil], b"")).unwrap();
    assert_eq!(code, 403, "{text}");
    // The registry answers in its own error format.
    let (_, text) = raw(
        &host,
        &request(
            "PUT",
            "/config",
            &host,
            &["Content-Type: text/plain"],
            b"{}",
        ),
    )
    .unwrap();
    assert!(text.contains("\"error_code\":415"), "{text}");

    // Nothing happened: one run (the slow one, still going), the global level untouched.
    assert_eq!(runs(&s), 1);
    let state = get(&s.url(&format!("/api/runs/{slow}"))).1["run"]["state"].clone();
    assert!(
        state == "queued" || state == "running",
        "the slow run is {state}"
    );
    assert_eq!(get(&s.url("/config")).1["compatibilityLevel"], "BACKWARD");

    // A DNS-rebinding page is "same origin" with the server, but sends its own host name.
    let (code, text) = raw(
        &host,
        &request("GET", "/api/runs", "evil.example:1234", &[], b""),
    )
    .unwrap();
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("FLOWCTL_ALLOWED_HOSTS"), "{text}");
    let rebound = "Origin: http://evil.example:1234";
    let (code, _) = raw(
        &host,
        &request(
            "POST",
            "/api/flows/ok/trigger",
            "evil.example:1234",
            &[rebound],
            b"",
        ),
    )
    .unwrap();
    assert_eq!(code, 403);

    // Our own pages and clients that are not browsers still work.
    let own = format!("Origin: http://{host}");
    let (code, text) = raw(
        &host,
        &request(
            "POST",
            "/api/flows/ok/trigger",
            &host,
            &[&own, "Sec-Fetch-Site: same-origin"],
            b"",
        ),
    )
    .unwrap();
    assert_eq!(code, 201, "{text}");
    let (code, text) = raw(
        &host,
        &request(
            "POST",
            "/api/flows/ok/trigger",
            &host,
            &["Content-Type: application/json; charset=utf-8"],
            b"{}",
        ),
    )
    .unwrap();
    assert_eq!(code, 201, "{text}");
    let (code, text) = raw(
        &host,
        &request(
            "PUT",
            "/config",
            &host,
            &["Content-Type: application/vnd.schemaregistry.v1+json"],
            br#"{"compatibility":"FULL"}"#,
        ),
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    let (code, _) = raw(&host, &request("POST", &cancel, &host, &[], b"")).unwrap();
    assert_eq!(code, 202);
    wait_run(&s, slow);
}

/// Bodies over the limit get 413 on every route (a 3 MB trigger body used to get 400), the
/// bearer scheme is case-insensitive, and `runs list --limit 0` is a usage error.
#[test]
fn size_limits_and_auth_scheme() {
    let env = setup();
    let s = Server::start(&env, &[("FLOWCTL_API_TOKEN", "t0ken")]);
    let host = s.authority().to_string();
    let big = vec![b' '; 3 * 1024 * 1024];
    for (path, ct) in [
        ("/api/flows/ok/trigger", "application/json"),
        ("/api/runs/1/cancel", "application/json"),
        (
            "/subjects/x-value/versions",
            "application/vnd.schemaregistry.v1+json",
        ),
        ("/ui/flows/ok/trigger", "application/x-www-form-urlencoded"),
        ("/login", "application/x-www-form-urlencoded"),
    ] {
        let ct = format!("Content-Type: {ct}");
        let (code, text) = raw(
            &host,
            &request(
                "POST",
                path,
                &host,
                &[&ct, "Authorization: Bearer t0ken"],
                &big,
            ),
        )
        .unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(code, 413, "{path}: {text}");
    }
    // Without a length the extractor's limit answers, with the same status.
    let mut chunked = format!(
        "POST /api/flows/ok/trigger HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer t0ken\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1024 * 1024).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 1024 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (code, text) = raw(&host, &chunked).unwrap();
    assert_eq!(code, 413, "{text}");
    assert_eq!(runs(&s), 0);

    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("Authorization: {scheme} t0ken");
        let (code, text) = raw(
            &host,
            &request("POST", "/api/flows/ok/trigger", &host, &[&auth], b""),
        )
        .unwrap();
        assert_eq!(code, 201, "{scheme}: {text}");
    }
    let (code, _) = raw(
        &host,
        &request(
            "POST",
            "/api/flows/ok/trigger",
            &host,
            &["Authorization: bearer wrong"],
            b"",
        ),
    )
    .unwrap();
    assert_eq!(code, 401);

    let out = env.run(&["runs", "list", "--limit", "0"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        crate::common::stderr(&out)
    );
    assert!(crate::common::stderr(&out).contains("--limit must be at least 1"));
    let (_, one) = env.json(&["runs", "list", "--limit", "1"]);
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);
}

/// Issue 18 item 8: with `state.db` (and `-wal`, `-shm`) deleted under it, the server used to
/// answer 200 and write new runs into the deleted file.
#[test]
fn a_state_db_deleted_under_the_server_turns_health_red_and_writes_fail() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let (code, t) = post(&s.url("/api/flows/ok/trigger"), None, None);
    assert_eq!(code, 201);
    wait_run(&s, t["run_id"].as_i64().unwrap());
    let db = env.home().join("state.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", db.display());
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    let (code, h) = get(&s.url("/healthz"));
    assert_eq!(code, 503, "{h}");
    let reason = h["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("deleted") && reason.contains(&db.display().to_string()),
        "{h}"
    );
    let (code, e) = post(&s.url("/api/flows/ok/trigger"), None, None);
    assert_eq!(code, 503, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(&db.display().to_string()),
        "{e}"
    );
    // The watchdog says it on stderr; no empty DB was created in the file's place.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.stderr_text().contains("was deleted") {
        assert!(
            Instant::now() < deadline,
            "no error on stderr: {}",
            s.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!db.exists(), "a new state DB appeared at {}", db.display());
    assert_eq!(get(&s.url("/healthz")).0, 503);
}

/// A bounded burst of nasty requests: /healthz answers within a second before, during and
/// after it, and the server is alive at the end.
#[test]
fn serve_survives_a_burst_of_hostile_requests() {
    let env = setup();
    let s = Server::start(&env, &[]);
    let host = s.authority().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (url, stop) = (s.url("/healthz"), stop.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut worst = Duration::ZERO;
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let status = agent.get(&url).call().map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(200), "/healthz failed during the burst");
                worst = worst.max(t.elapsed());
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, polls)
        })
    };
    // Connections that never finish their headers, held open through the burst.
    let slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = TcpStream::connect(&host).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x").unwrap();
            c
        })
        .collect();
    let huge_header = format!("X-Junk: {}", "a".repeat(512 * 1024));
    let many_headers: Vec<String> = (0..500).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many_headers.iter().map(String::as_str).collect();
    let long_path = format!("/runs/{}", "9".repeat(60_000));
    let json = "Content-Type: application/json";
    let big = vec![b'{'; 3 * 1024 * 1024];
    let nasty: Vec<(Vec<u8>, &[u16])> = vec![
        (request("GET", "/runs", &host, &[&huge_header], b""), &[431]),
        (request("GET", "/runs", &host, &many, b""), &[431]),
        (request("GET", &long_path, &host, &[], b""), &[400, 404, 414]),
        (request("GET", "/api/runs/99999999", &host, &[], b""), &[404]),
        (request("GET", "/api/runs/-1/logs?after=-5", &host, &[], b""), &[404]),
        (request("GET", "/runs/abc", &host, &[], b""), &[400]),
        (request("GET", "/api/runs/1?limit=1000000", &host, &[], b""), &[400]),
        (request("GET", "/api/runs?limit=99999999999", &host, &[], b""), &[400]),
        (request("GET", "/api/runs/1/logs?limit=4294967296", &host, &[], b""), &[400]),
        (request("POST", "/api/flows/..%2F..%2Fetc%2Fpasswd/trigger", &host, &[], b""), &[404]),
        (request("POST", "/api/flows/ok%00/trigger", &host, &[], b""), &[404]),
        (request("GET", "/runs/1/logs/..%2F..%2F..%2Fetc%2Fpasswd", &host, &[], b""), &[404]),
        (request("GET", "/../../etc/passwd", &host, &[], b""), &[404]),
        (request("POST", "/subjects/..%2F..%2Fx/versions", &host, &["Content-Type: application/json"], br#"{"schema":"\"string\""}"#), &[200, 422]),
        (request("POST", "/api/flows/ok/trigger", &host, &[json], b"{\"params\":"), &[400]),
        (request("POST", "/api/flows/ok/trigger", &host, &[json], b"\xff\xfe\x00"), &[400]),
        (request("POST", "/api/flows/ok/trigger", &host, &[json], b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]"), &[400]),
        (request("POST", "/api/flows/ok/trigger", &host, &[json], &big), &[413]),
        (request("POST", "/subjects/x/versions", &host, &[json], &big), &[413]),
        (request("PUT", "/config", &host, &[json], b"not json"), &[422]),
        (request("DELETE", "/subjects/nope", &host, &[], b""), &[404]),
        (request("PATCH", "/api/runs/1", &host, &[], b""), &[405]),
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), &[400, 404, 405]),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(), &[400]),
    ];
    let budget = 400;
    let mut sent = 0;
    let mut handles = Vec::new();
    'burst: for round in 0.. {
        let mut batch = Vec::new();
        for (req, want) in &nasty {
            if sent == budget {
                break;
            }
            sent += 1;
            let (authority, req, want) = (host.clone(), req.clone(), want.to_vec());
            batch.push(std::thread::spawn(move || {
                let head = String::from_utf8_lossy(&req[..req.len().min(80)]).into_owned();
                let (code, text) =
                    raw(&authority, &req).unwrap_or_else(|| panic!("no answer to {head:?}"));
                assert!(
                    want.contains(&code),
                    "{head:?}: wanted {want:?}, got {code}: {}",
                    &text[..text.len().min(300)]
                );
            }));
        }
        // Up to ~50 connections at once.
        handles.extend(batch);
        if handles.len() >= 50 || sent == budget {
            for h in handles.drain(..) {
                h.join().unwrap();
            }
        }
        if sent == budget {
            assert!(round > 0);
            break 'burst;
        }
    }
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (worst, polls) = poller.join().unwrap();
    assert!(polls >= 5, "only {polls} health polls");
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} during the burst"
    );
    let mut child = s;
    assert!(child.child.try_wait().unwrap().is_none(), "serve died");
    assert_eq!(get(&child.url("/healthz")).0, 200);
    assert_eq!(runs(&child), 0, "a hostile request started a run");
    let r = agent().get(&child.url("/runs")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    child.child.kill().ok();
}

/// `serve` and `registry serve` on a non-loopback address without a token say so loudly.
#[test]
fn serving_beyond_loopback_without_a_token_is_warned_about() {
    use std::io::BufRead;
    let env = setup();
    for (args, token) in [
        (vec!["serve", "--no-scheduler"], None),
        (vec!["registry", "serve"], None),
        (vec!["serve", "--no-scheduler"], Some("t")),
    ] {
        let port = crate::server::free_port();
        let addr = format!("0.0.0.0:{port}");
        let mut a = args.clone();
        a.extend(["--addr", addr.as_str()]);
        let mut cmd = env.cmd(&a);
        match token {
            Some(t) => cmd.env("FLOWCTL_API_TOKEN", t),
            None => cmd.env_remove("FLOWCTL_API_TOKEN"),
        };
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = String::new();
        for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("serving on") || line.contains("listening on http") {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let warned = seen.contains("WARNING") && seen.contains("FLOWCTL_API_TOKEN");
        assert_eq!(warned, token.is_none(), "{args:?} token {token:?}:\n{seen}");
    }
}
