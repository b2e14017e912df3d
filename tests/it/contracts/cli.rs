//! The CLI's exit codes for the contracts commands.

use super::*;

#[test]
fn cli_schemas_register_and_check_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowctl"))
            .args(args)
            .current_dir(repo())
            .env("FLOWCTL_HOME", home.path())
            .env_remove("FLOWCTL_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap()
    };
    let out = run(&["schemas", "register", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg: Value = serde_json::from_slice(&out.stdout).unwrap();
    let subjects: Vec<(&str, i64)> = reg
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["subject"].as_str().unwrap(),
                r["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        subjects,
        [
            ("clickstream-value", 1),
            ("orders-value", 1),
            ("orders-value", 2),
            ("payments-value", 1)
        ]
    );
    let check = |file: &str| {
        run(&["schemas", "check", file, "--subject", "orders-value"])
            .status
            .code()
    };
    assert_eq!(check("schemas/orders-v2.avsc"), Some(0));
    assert_eq!(check("schemas/orders-incompatible.avsc"), Some(1));
    assert_eq!(check("Cargo.toml"), Some(2));
    assert_eq!(
        run(&["produce", "--topic", "orders"]).status.code(),
        Some(2),
        "needs --count or --rate"
    );
    assert_eq!(
        run(&["produce", "--topic", "inventory", "--count", "1"])
            .status
            .code(),
        Some(2),
        "no event family for the topic"
    );
    assert_eq!(
        run(&[
            "produce",
            "--topic",
            "payments",
            "--count",
            "1",
            "--schema-version",
            "v2"
        ])
        .status
        .code(),
        Some(2),
        "payments has no v2"
    );
}

/// `flowctl produce` and `flowctl bench produce` through the binary, against the real broker.
#[test]
fn cli_produce_and_bench_report_json_summaries() {
    let bs = broker();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flowctl"))
            .args(args)
            .env("FLOWCTL_HOME", home.path())
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bs)
            .env_remove("FLOWCTL_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let topic = unique("orders-cli");
    let s = run(&[
        "produce",
        "--topic",
        &topic,
        "--count",
        "800",
        "--bad-ratio",
        "0.1",
        "--seed",
        "3",
        "--json",
    ]);
    assert_eq!(s["generated"], json!(800));
    assert_eq!(s["failed"], json!(0));
    let (sent, rejected) = (s["sent"].as_u64().unwrap(), s["rejected"].as_u64().unwrap());
    assert_eq!(sent + rejected, 800);
    assert_eq!(
        s["injected"]["schema_violation"].as_u64().unwrap_or(0),
        rejected
    );
    assert_eq!(s["seed"], json!(3));
    assert_eq!(consume_all(&bs, &topic).len() as u64, sent);
    let b = run(&[
        "bench",
        "produce",
        "--count",
        "20000",
        "--topic",
        &unique("bench-orders-cli"),
        "--json",
    ]);
    assert_eq!(
        (b["sent"].clone(), b["failed"].clone()),
        (json!(20000), json!(0))
    );
    assert!(b["events_per_sec"].as_f64().unwrap() > 0.0);
}
