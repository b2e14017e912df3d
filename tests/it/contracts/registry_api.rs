//! The registry's REST API: Confluent status codes, error codes and bodies.

use super::*;

#[tokio::test]
async fn registry_api_status_codes_and_bodies() {
    let (_d, a) = api().await;
    assert_eq!(a.get("/subjects").await, (200, json!([])));
    let (s, b) = a
        .post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V1}),
        )
        .await;
    assert_eq!((s, b["id"].as_i64()), (200, Some(1)));
    // Same schema again, whitespace aside: same id, no new version.
    let compact =
        serde_json::to_string(&serde_json::from_str::<Value>(builtin::ORDERS_V1).unwrap()).unwrap();
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": compact, "schemaType": "AVRO"})
        )
        .await,
        (200, json!({"id": 1}))
    );
    // Same schema under another subject: same global id (content-addressed).
    assert_eq!(
        a.post(
            "/subjects/orders-copy-value/versions",
            json!({"schema": builtin::ORDERS_V1})
        )
        .await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await,
        (200, json!({"id": 2}))
    );
    assert_eq!(
        a.get("/subjects").await,
        (200, json!(["orders-copy-value", "orders-value"]))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await,
        (200, json!([1, 2]))
    );

    let (s, v) = a.get("/subjects/orders-value/versions/latest").await;
    assert_eq!(
        (s, &v["subject"], &v["version"], &v["id"]),
        (200, &json!("orders-value"), &json!(2), &json!(2))
    );
    assert_eq!(
        ParsedSchema::parse(v["schema"].as_str().unwrap())
            .unwrap()
            .normalized,
        ParsedSchema::parse(builtin::ORDERS_V2).unwrap().normalized
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions/1").await.1["id"],
        json!(1)
    );
    let (s, raw) = a.get("/subjects/orders-value/versions/1/schema").await;
    assert_eq!((s, &raw["name"]), (200, &json!("Order")));
    let (s, by_id) = a.get("/schemas/ids/2").await;
    assert_eq!(s, 200);
    assert_eq!(by_id["schema"], v["schema"]);
    assert_eq!(
        a.get("/schemas/ids/1/versions").await.1,
        json!([{"subject": "orders-copy-value", "version": 1}, {"subject": "orders-value", "version": 1}])
    );

    // Lookup.
    let (s, l) = a
        .post(
            "/subjects/orders-value",
            json!({"schema": builtin::ORDERS_V1}),
        )
        .await;
    assert_eq!((s, &l["version"], &l["id"]), (200, &json!(1), &json!(1)));
    let (s, e) = a
        .post(
            "/subjects/orders-value",
            json!({"schema": builtin::PAYMENTS}),
        )
        .await;
    assert_eq!((s, code(&e)), (404, 40403));

    // Not found, invalid version.
    let (s, e) = a.get("/subjects/nope/versions").await;
    assert_eq!((s, code(&e)), (404, 40401));
    assert!(e["message"].as_str().unwrap().contains("nope"));
    let (s, e) = a.get("/subjects/orders-value/versions/9").await;
    assert_eq!((s, code(&e)), (404, 40402));
    let (s, e) = a.get("/subjects/orders-value/versions/abc").await;
    assert_eq!((s, code(&e)), (422, 42202));
    let (s, e) = a.get("/schemas/ids/999").await;
    assert_eq!((s, code(&e)), (404, 40403));

    // Compatibility: the incompatible variant is refused with 409 and explained with verbose.
    let (s, c) = a
        .post(
            "/compatibility/subjects/orders-value/versions/latest",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    assert_eq!((s, c), (200, json!({"is_compatible": false})));
    let (_, c) = a
        .post(
            "/compatibility/subjects/orders-value/versions/1?verbose=true",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    let msgs = c["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{c}");
    assert!(
        msgs.iter()
            .any(|m| m.as_str().unwrap().contains("$.warehouse_id"))
    );
    assert_eq!(
        a.post(
            "/compatibility/subjects/orders-value/versions/2",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await,
        (200, json!({"is_compatible": true}))
    );
    let (s, e) = a
        .post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE}),
        )
        .await;
    assert_eq!((s, code(&e)), (409, 409));
    assert!(
        e["message"].as_str().unwrap().contains("incompatible"),
        "{e}"
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
}

#[tokio::test]
async fn registry_rejects_malformed_requests_and_stores_nothing() {
    let (_d, a) = api().await;
    for (body, want) in [
        ("{not json", 422),
        (r#"{"schemaa": "x"}"#, 422),
        (r#"{"schema": 42}"#, 422),
    ] {
        let (s, e) = a.raw_post("/subjects/t-value/versions", body).await;
        assert_eq!((s, code(&e)), (422, want), "{body}");
    }
    for schema in [
        r#"{"type":"record","name":"A","fields":[{"name":"x","type":"no_such_type"}]}"#,
        r#"{"type":"record","fields":[]}"#,
        "not json at all",
        r#"{"type":"enum","name":"E","symbols":"A"}"#,
        r#"{"type":"record","name":"A","fields":[{"name":"x","type":["null","string"],"default":"a"}]}"#,
    ] {
        let (s, e) = a
            .post("/subjects/t-value/versions", json!({"schema": schema}))
            .await;
        assert_eq!((s, code(&e)), (422, 42201), "{schema}: {e}");
    }
    let (s, e) = a
        .post(
            "/subjects/t-value/versions",
            json!({"schema": builtin::PAYMENTS, "schemaType": "PROTOBUF"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, 42201));
    let (s, e) = a
        .post(
            "/compatibility/subjects/t-value/versions/latest",
            json!({"schema": "{"}),
        )
        .await;
    assert_eq!((s, code(&e)), (422, 42201));
    // Nothing was stored: no subject, and the first valid schema gets id 1.
    assert_eq!(a.get("/subjects?deleted=true").await, (200, json!([])));
    assert_eq!(
        a.post(
            "/subjects/t-value/versions",
            json!({"schema": builtin::PAYMENTS})
        )
        .await,
        (200, json!({"id": 1}))
    );
}

#[tokio::test]
async fn registry_config_levels_and_deletes() {
    let (_d, a) = api().await;
    assert_eq!(
        a.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    let (s, e) = a.put("/config", json!({"compatibility": "SIDEWAYS"})).await;
    assert_eq!((s, code(&e)), (422, 42203));
    let (s, e) = a.get("/config/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40408));
    assert_eq!(
        a.get("/config/orders-value?defaultToGlobal=true").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );

    a.post(
        "/subjects/orders-value/versions",
        json!({"schema": builtin::ORDERS_V1}),
    )
    .await;
    // FORWARD: v2 adds fields with defaults — old readers skip them: allowed.
    assert_eq!(
        a.put("/config/orders-value", json!({"compatibility": "FORWARD"}))
            .await,
        (200, json!({"compatibility": "FORWARD"}))
    );
    assert_eq!(
        a.get("/config/orders-value").await.1,
        json!({"compatibilityLevel": "FORWARD"})
    );
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_V2})
        )
        .await
        .0,
        200
    );
    // NONE lets the incompatible variant in.
    a.put("/config/orders-value", json!({"compatibility": "NONE"}))
        .await;
    assert_eq!(
        a.post(
            "/subjects/orders-value/versions",
            json!({"schema": builtin::ORDERS_INCOMPATIBLE})
        )
        .await,
        (200, json!({"id": 3}))
    );
    // Global level is separate from the subject's.
    assert_eq!(
        a.put("/config", json!({"compatibility": "FULL_TRANSITIVE"}))
            .await
            .0,
        200
    );
    assert_eq!(
        a.get("/config").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        a.delete("/config/orders-value").await,
        (200, json!({"compatibilityLevel": "NONE"}))
    );

    // Deletes: hard delete needs a soft delete first; soft-deleted versions are hidden.
    let (s, e) = a
        .delete("/subjects/orders-value/versions/3?permanent=true")
        .await;
    assert_eq!((s, code(&e)), (404, 40405));
    assert_eq!(
        a.delete("/subjects/orders-value/versions/3").await,
        (200, json!(3))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions?deleted=true")
            .await
            .1,
        json!([1, 2, 3])
    );
    assert_eq!(
        a.delete("/subjects/orders-value/versions/3?permanent=true")
            .await,
        (200, json!(3))
    );
    assert_eq!(
        a.get("/subjects/orders-value/versions?deleted=true")
            .await
            .1,
        json!([1, 2])
    );
    // The schema id stays resolvable: messages already in Kafka must still decode.
    assert_eq!(a.get("/schemas/ids/3").await.0, 200);
    assert_eq!(
        a.delete("/subjects/orders-value").await,
        (200, json!([1, 2]))
    );
    assert_eq!(a.get("/subjects").await.1, json!([]));
    let (s, e) = a.delete("/subjects/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40404));
    assert_eq!(
        a.delete("/subjects/orders-value?permanent=true").await,
        (200, json!([1, 2]))
    );
    let (s, e) = a.delete("/subjects/orders-value").await;
    assert_eq!((s, code(&e)), (404, 40401));
    // Version numbers restart only after a hard delete of every version.
    a.post(
        "/subjects/orders-value/versions",
        json!({"schema": builtin::ORDERS_V1}),
    )
    .await;
    assert_eq!(a.get("/subjects/orders-value/versions").await.1, json!([1]));
}

/// `flowctl serve` merges the registry routes into its own router, which has its own `/` and
/// fallback: that must neither panic nor shadow the API.
#[tokio::test]
async fn registry_routes_merge_into_another_router() {
    let (_d, store) = temp_store().await;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ui" }))
        .merge(flowctl::contracts::registry::registry_router(store))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "ui 404") });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(&base).send().await.unwrap().text().await.unwrap(),
        "ui"
    );
    let r = http
        .post(format!("{base}/subjects/x-value/versions"))
        .body(json!({"schema": builtin::CLICKSTREAM}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"id": 1}));
    assert_eq!(
        http.get(format!("{base}/nope"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}
