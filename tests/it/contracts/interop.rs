//! The official Python confluent-kafka client against flowctl's registry and producer.

use super::*;

#[tokio::test]
async fn confluent_kafka_python_client_interoperates() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let url = serve(store).await;
    // flowctl's HTTP client registers and produces through the served registry.
    let reg = Registry::Http(RegistryClient::new(
        &flowctl::contracts::registry::RegistryEndpoint::new(url.clone()),
    ));
    let topic = unique("orders-interop");
    let s = produce(
        options(&topic, 2_000, 0.0, SchemaVersion::V1),
        &reg,
        &KafkaSettings::new(bs.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(s.sent, 2_000);
    let report = reg
        .check(&format!("{topic}-value"), builtin::ORDERS_INCOMPATIBLE)
        .await
        .unwrap();
    assert!(
        !report.is_compatible && report.messages.len() == 2,
        "{report:?}"
    );
    let py_topic = unique("payments-py");
    flowctl::kafka::ensure_topic(
        &flowctl::kafka::KafkaSettings::new(bs.as_str()),
        &py_topic,
        2,
    )
    .await
    .unwrap();
    let out = tokio::process::Command::new("python3")
        .arg(repo().join("tests/python/test_confluent_interop.py"))
        .env("REGISTRY_URL", &url)
        .env("BOOTSTRAP", &bs)
        .env("TOPIC", &topic)
        .env("EXPECTED", s.sent.to_string())
        .env("PY_TOPIC", &py_topic)
        .env("SCHEMAS_DIR", repo().join("schemas"))
        .output()
        .await
        .expect("running python3");
    assert!(
        out.status.success(),
        "python confluent-kafka interop failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    // The Python producer's schema was registered through our API.
    let subjects = match &reg {
        Registry::Http(c) => c.subjects().await.unwrap(),
        _ => unreachable!(),
    };
    assert!(
        subjects.contains(&format!("{py_topic}-value")),
        "{subjects:?}"
    );
}
