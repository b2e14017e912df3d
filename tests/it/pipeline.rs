//! The README's quick-start flow, end to end, as shipped in flows/: schemas registered, events
//! produced to the real broker, lake laid out.

use std::path::Path;

use crate::common::{Env, stderr};

#[test]
fn pipeline_full_runs_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start = std::process::Command::new("bash")
        .arg(root.join("scripts/broker.sh"))
        .arg("start")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "broker: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    let env = Env::new();
    let out = env
        .cmd(&[
            "trigger",
            "pipeline_full",
            "--param",
            "events=2000",
            "--param",
            "seed=11",
            "--json",
        ])
        .env("FLOWCTL_FLOWS_DIR", root.join("flows"))
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["state"], "success");
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "success", "{t}");
    }
    let logs = env.run(&["logs", &v["run"]["id"].to_string(), "produce_orders"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("generated       2000"), "{text}");
    let manifest = std::fs::read_to_string(env.home().join("lake/last_run_manifest.txt")).unwrap();
    assert!(manifest.contains("events=2000 seed=11"), "{manifest}");
}
