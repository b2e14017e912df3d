//! Lineage from the Delta logs (`flowctl lineage`) and OpenLineage run events, validated with
//! the official OpenLineage Python client.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{stderr, stdout};
use crate::contracts::{broker, unique};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_flow_emits_valid_openlineage_events_and_bronze_lineage_reaches_kafka() {
    let bootstrap = broker();
    let env = crate::ingest::env_with_schemas(&bootstrap);
    let topic = unique("orders-lineage");
    let sent = crate::ingest::produce(&env, &bootstrap, &topic, 900, 0.1, 3)["sent"]
        .as_u64()
        .unwrap();
    env.flow(
        "lineage_demo",
        &format!(
            "name: lineage_demo\ntasks:\n  - id: ingest\n    kind: ingest_bronze\n    params:\n      \
             topics: [{topic}]\n      dlq_topic: {topic}-dlq\n      batch_records: 400\n  \
             - id: broken\n    kind: shell\n    depends_on: [ingest]\n    params: {{command: exit 3}}\n"
        ),
    );
    let events = env.dir.path().join("openlineage.jsonl");
    let out = env
        .cmd(&["trigger", "lineage_demo", "--json"])
        .env("FLOWCTL_KAFKA_BOOTSTRAP", &bootstrap)
        .env("FLOWCTL_OPENLINEAGE_FILE", &events)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the shell task fails: {}",
        stderr(&out)
    );

    let check = std::process::Command::new("python3")
        .arg(repo().join("tests/python/validate_openlineage.py"))
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "OpenLineage validation: {}{}",
        stdout(&check),
        stderr(&check)
    );
    let summary: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(summary["runs"], 2, "{summary}");
    assert_eq!(summary["by_type"]["START"], 2);
    assert_eq!(summary["by_type"]["COMPLETE"], 1);
    assert_eq!(summary["by_type"]["FAIL"], 1);
    let text = std::fs::read_to_string(&events).unwrap();
    let complete: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["eventType"] == "COMPLETE")
        .unwrap();
    assert_eq!(complete["job"]["name"], "lineage_demo.ingest");
    assert_eq!(complete["inputs"][0]["name"], topic.as_str());
    let table = flowctl::ingest::bronze_table(&topic);
    let outputs: Vec<&str> = complete["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        outputs.iter().any(|n| n.ends_with(&format!("/{table}"))),
        "{outputs:?}"
    );

    // The bronze table's lineage: the run that wrote it and every offset it holds.
    let (code, lineage) = env.json(&["lineage", &table]);
    assert_eq!(code, 0);
    assert!(lineage["run_id"].as_i64().is_some(), "{lineage}");
    let reflected: i64 = lineage["kafka"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["to_offset"].as_i64().unwrap() + 1)
        .sum();
    assert_eq!(
        reflected as u64, sent,
        "offsets up to the end of every partition"
    );
    // An older version reflects fewer offsets; a version that does not exist is a usage error.
    let (_, v1) = env.json(&["lineage", &table, "--version", "1"]);
    let first: i64 = v1["commit_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["to_offset"].as_i64().unwrap() - i["from_offset"].as_i64().unwrap() + 1)
        .sum();
    assert!(
        first > 0 && (first as u64) < sent,
        "first batch read {first} of {sent}"
    );
    let missing = env.run(&["lineage", &table, "--version", "999"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));

    // The UI's table page shows it.
    let server = crate::server::Server::start(&env, &[]);
    let html = ureq::get(&server.url(&format!("/tables/{table}")))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(html.contains("Lineage of v"), "{html}");
    assert!(
        html.contains(&format!("reflects Kafka <code>{topic}[0]</code>")),
        "the table page names the Kafka source"
    );
}

/// Issue 18 (low): `flowctl lineage ../../outside` read a Delta table outside the lake.
#[test]
fn lineage_reads_only_tables_of_the_lake() {
    let env = crate::common::Env::new();
    // A Delta log outside the lake, reachable by `..` from it.
    let outside = env.dir.path().join("outside/_delta_log");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("00000000000000000000.json"),
        r#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(env.home().join("lake")).unwrap();
    for name in ["../../outside", "../outside", "/tmp", ".hidden", ""] {
        let out = env.run(&["lineage", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("not a table name"),
            "{name}: {}",
            stderr(&out)
        );
    }
}
