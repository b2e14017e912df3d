//! Secured Kafka against the real broker: nisshi serving TLS only and requiring SASL/SCRAM-
//! SHA-512 logins (`scripts/broker.sh`'s secured mode), with a CA made here by `openssl`.
//! Every client flowctl makes takes its settings from `FLOWCTL_KAFKA_CONFIG`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::common::*;
use super::ingest::{PrivateBroker, assert_exactly_once, env_with_schemas, landed};

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = pki.dir.path();
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=flowctl test CA",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl (Debian `openssl`) makes the test certificates");
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        }
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

const USER: &str = "flow-ingest";
const PASSWORD: &str = "Sc4am-p4ss-9d1f";
const WRONG: &str = "not-the-password-77a2";

/// A client properties file as Kafka's tools take it, with `extra` lines after the usual ones.
fn properties(dir: &Path, name: &str, password: &str, ca: &str, extra: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "# as for kafka-console-producer --command-config\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.username={USER}\nsasl.password={password}\n\
             ssl.ca.location={ca}\n{extra}"
        ),
    )
    .unwrap();
    p
}

fn secured(env: &Env, bootstrap: &str, config: &Path, args: &[&str]) -> Output {
    env.cmd(args)
        .env("FLOWCTL_KAFKA_BOOTSTRAP", bootstrap)
        .env("FLOWCTL_KAFKA_CONFIG", config)
        .output()
        .unwrap()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[tokio::test]
async fn sasl_ssl_produce_and_ingest_land_exactly_once_and_a_wrong_password_fails_fast() {
    let pki = Pki::new();
    let users = format!("{USER}:{PASSWORD}");
    let broker = PrivateBroker::start_with(
        "sqlite",
        &[
            ("BROKER_TLS_CERT", &pki.path("server.pem")),
            ("BROKER_TLS_KEY", &pki.path("server.key")),
            ("BROKER_SCRAM_USERS", &users),
        ],
    );
    let bootstrap = broker.bootstrap.clone();
    let env = env_with_schemas(&bootstrap);
    let ca = pki.path("ca.pem");
    let good = properties(pki.dir.path(), "client.properties", PASSWORD, &ca, "");
    let topic = "orders-secured";

    let out = secured(
        &env,
        &bootstrap,
        &good,
        &[
            "produce",
            "--topic",
            topic,
            "--count",
            "600",
            "--seed",
            "5",
            "--bad-ratio",
            "0.05",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "produce over SASL_SSL: {}",
        stderr(&out)
    );
    let sent = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["sent"]
        .as_u64()
        .unwrap();
    assert!(sent > 500, "{sent}");
    let out = secured(&env, &bootstrap, &good, &["ingest", "--topics", topic]);
    assert!(
        out.status.success(),
        "ingest over SASL_SSL: {}",
        stderr(&out)
    );
    let table = flowctl::ingest::bronze_table(topic);
    let l = landed(&env.home(), topic, &table).await;
    assert_exactly_once(&l, sent);
    assert!(
        l.bronze.len() > 500 && !l.audit.is_empty(),
        "bronze {} dlq {}",
        l.bronze.len(),
        l.audit.len()
    );

    // A plaintext client is not let in (the listener speaks TLS only), and is told why at once.
    let t = Instant::now();
    let out = env
        .cmd(&["ingest", "--topics", topic])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a plaintext ingest must fail");
    assert!(
        stderr(&out).contains("security.protocol"),
        "{}",
        stderr(&out)
    );
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "took {:?}",
        t.elapsed()
    );

    // A wrong password fails at once, naming authentication, never echoing the password.
    let bad = properties(pki.dir.path(), "wrong.properties", WRONG, &ca, "");
    for args in [
        &["ingest", "--topics", topic][..],
        &["produce", "--topic", topic, "--count", "10"][..],
    ] {
        let t = Instant::now();
        let out = secured(&env, &bootstrap, &bad, args);
        let took = t.elapsed();
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{args:?} with a wrong password must fail"
        );
        assert!(err.contains("authentication failed"), "{args:?}: {err}");
        assert!(
            err.contains("wrong.properties"),
            "names the settings file: {err}"
        );
        assert!(
            !err.contains(WRONG) && !stdout(&out).contains(WRONG),
            "{err}"
        );
        // Well inside the 10 s the probe would otherwise wait, and nowhere near a hang.
        assert!(
            took < Duration::from_secs(9),
            "{args:?} took {took:?}: {err}"
        );
    }

    // A setting flowctl owns is refused before anything connects, with file and line.
    let owned = properties(
        pki.dir.path(),
        "owned.properties",
        PASSWORD,
        &ca,
        "enable.auto.commit=true\n",
    );
    let out = secured(&env, &bootstrap, &owned, &["ingest", "--topics", topic]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("owned.properties:7: `enable.auto.commit` is set by flowctl"),
        "{}",
        stderr(&out)
    );

    // The password is nowhere in flowctl's state, logs or lake, nor in the broker's log.
    assert_eq!(files_holding(&env.home(), PASSWORD), Vec::<PathBuf>::new());
    assert_eq!(files_holding(&env.home(), WRONG), Vec::<PathBuf>::new());
    assert_eq!(
        files_holding(broker.home(), PASSWORD),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn an_external_registry_is_logged_in_to_with_flowctl_schema_registry_auth() {
    // flowctl's own server as the external registry, its writes guarded by a bearer token.
    let server_env = Env::new();
    let token = "reg-token-5be1c0";
    let server = super::server::Server::start(&server_env, &[("FLOWCTL_API_TOKEN", token)]);
    let url = server.base.clone();
    let client = Env::new();
    std::os::unix::fs::symlink(
        super::ingest::repo().join("schemas"),
        client.dir.path().join("schemas"),
    )
    .unwrap();
    let register = |auth: Option<&str>| {
        let mut c = client.cmd(&["schemas", "register"]);
        c.env("FLOWCTL_SCHEMA_REGISTRY_URL", &url);
        match auth {
            Some(a) => c.env("FLOWCTL_SCHEMA_REGISTRY_AUTH", a),
            None => c.env_remove("FLOWCTL_SCHEMA_REGISTRY_AUTH"),
        };
        c.output().unwrap()
    };
    let out = register(None);
    assert!(!out.status.success(), "unauthenticated writes are refused");
    let out = register(Some("bearer:wrong-token-3"));
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("wrong-token-3"), "{}", stderr(&out));
    let out = register(Some(&format!("bearer:{token}")));
    assert!(out.status.success(), "{}", stderr(&out));
    let subjects: Vec<String> = ureq::get(&format!("{url}/subjects"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert!(subjects.iter().any(|s| s == "orders-value"), "{subjects:?}");
    // Set without a URL there is nothing to log in to: refused at start.
    let out = client
        .cmd(&["schemas", "register"])
        .env_remove("FLOWCTL_SCHEMA_REGISTRY_URL")
        .env("FLOWCTL_SCHEMA_REGISTRY_AUTH", format!("bearer:{token}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("FLOWCTL_SCHEMA_REGISTRY_AUTH"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(token), "{}", stderr(&out));
    server.kill();
}
