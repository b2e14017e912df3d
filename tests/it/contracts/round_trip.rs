//! produce → nisshi → consume, with exact counts per fault category; broker.sh restarts.

use super::*;

#[tokio::test]
async fn produce_consume_round_trip_counts_every_fault_category() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    for (kind, topic) in [
        (EventKind::Orders, unique("orders-rt")),
        (EventKind::Payments, unique("payments-rt")),
        (EventKind::Clickstream, unique("clickstream-rt")),
    ] {
        let s = produce(
            options(&topic, 6_000, 0.1, SchemaVersion::V1),
            &reg,
            &KafkaSettings::new(bs.as_str()),
        )
        .await
        .unwrap();
        assert_eq!(s.generated, 6_000);
        assert_eq!(s.failed, 0, "{:?}", s.first_delivery_error);
        assert_eq!(s.sent + s.rejected, 6_000);
        assert!(s.rejected > 0 && s.late > 0 && s.duplicates > 0, "{s:?}");
        let want = expected_counts(&s);
        assert_eq!(
            want.len(),
            Fault::applicable(kind).len(),
            "every applicable category injected: {want:?}"
        );
        let msgs = consume_all(&bs, &topic);
        assert_eq!(msgs.len() as u64, s.sent);
        let known = schemas_for(&reg, &msgs).await;
        assert_eq!(
            known.keys().collect::<Vec<_>>(),
            [&s.schema_id],
            "only the real id resolves"
        );
        assert_eq!(classify(kind, &msgs, &known), want, "{topic}");
        // Clean records are keyed by their business key.
        for (k, v) in &msgs {
            if let Ok(d) = inspect(kind, k.as_deref(), v, &known, T0) {
                let apache_avro::types::Value::Record(f) = d.value else {
                    panic!()
                };
                assert_eq!(
                    f[0].1,
                    apache_avro::types::Value::String(
                        String::from_utf8(k.clone().unwrap()).unwrap()
                    )
                );
            }
        }
    }
}

#[tokio::test]
async fn produce_is_reproducible_and_evolves_to_v2() {
    let bs = broker();
    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    let topic = unique("orders-evolve");
    let s1 = produce(
        options(&topic, 500, 0.0, SchemaVersion::V1),
        &reg,
        &KafkaSettings::new(bs.as_str()),
    )
    .await
    .unwrap();
    let s2 = produce(
        options(&topic, 500, 0.0, SchemaVersion::V2),
        &reg,
        &KafkaSettings::new(bs.as_str()),
    )
    .await
    .unwrap();
    assert_ne!(s1.schema_id, s2.schema_id);
    assert_eq!((s1.sent, s2.sent), (500, 500));
    let msgs = consume_all(&bs, &topic);
    let known = schemas_for(&reg, &msgs).await;
    assert_eq!(known.len(), 2);
    assert_eq!(
        classify(EventKind::Orders, &msgs, &known),
        BTreeMap::from([("clean".to_string(), 1_000)])
    );
    // Same seed → the v1 and v2 runs carry the same orders (v2 adds fields): 500 keys, each twice.
    let mut keys: HashMap<Vec<u8>, u32> = HashMap::new();
    for (k, _) in &msgs {
        *keys.entry(k.clone().unwrap()).or_default() += 1;
    }
    assert!(
        keys.values().all(|n| n % 2 == 0),
        "each key appears in both runs"
    );
    // A v2 reader resolves v1 data, filling the defaults.
    let v1 = ParsedSchema::parse(builtin::ORDERS_V1).unwrap();
    let v2 = ParsedSchema::parse(builtin::ORDERS_V2).unwrap();
    let (_, v1_msg) = msgs
        .iter()
        .find(|(_, v)| v[1..5] == s1.schema_id.to_be_bytes())
        .unwrap();
    #[allow(deprecated)]
    let read = apache_avro::from_avro_datum(&v1.avro, &mut &v1_msg[5..], Some(&v2.avro)).unwrap();
    let apache_avro::types::Value::Record(f) = read else {
        panic!()
    };
    assert_eq!(
        f.iter().find(|(n, _)| n == "channel").unwrap().1,
        apache_avro::types::Value::String("web".into())
    );
}

/// `scripts/broker.sh` on its own port and state dir: start is idempotent, status tells the
/// truth, and with `BROKER_STORAGE=sqlite` the data survives a stop/start.
#[tokio::test]
async fn broker_script_restarts_with_sqlite_storage() {
    let home = tempfile::tempdir().unwrap();
    let bs = format!("127.0.0.1:{}", crate::server::free_port());
    let script = |cmd: &str| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg(cmd)
            .current_dir(home.path())
            .env("FLOWCTL_HOME", home.path())
            .env("FLOWCTL_KAFKA_BOOTSTRAP", &bs)
            .env("BROKER_STORAGE", "sqlite")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    assert_eq!(script("status").0, Some(1), "nothing runs yet");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("already") || out.contains("running"),
        "second start reuses the broker: {out}"
    );
    assert_eq!(script("status").0, Some(0));

    let (_d, store) = temp_store().await;
    let reg = Registry::Embedded(flowctl::contracts::registry::Embedded::new(store));
    let topic = unique("payments-restart");
    let s = produce(
        options(&topic, 300, 0.0, SchemaVersion::V1),
        &reg,
        &KafkaSettings::new(bs.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(s.sent, 300);

    let (code, out) = script("stop");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(script("status").0, Some(1), "stopped");
    let (code, out) = script("start");
    assert_eq!(code, Some(0), "{out}");
    let bs2 = bs.clone();
    let topic2 = topic.clone();
    let msgs = tokio::task::spawn_blocking(move || consume_all(&bs2, &topic2))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 300, "data survived the restart");
    assert_eq!(script("stop").0, Some(0));
}
