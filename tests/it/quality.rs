//! Quality gates through the real binary: real Delta tables in a temp `FLOWCTL_HOME`, the
//! shipped expectation files, a flow with `quality_check` tasks, the rows stored in
//! `quality_results`, and `flowctl checks RUN` (output and exit code).

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::{Field, Schema};
use flowctl::lake::{LakeTable, lake_root};
use flowctl::store::Store;
use serde_json::Value;

use crate::common::{Env, attempts, run_id, stderr, stdout, task_state, with_expectations};

/// 2025-11-23 as days since the epoch.
const DAY: i32 = 20_415;

/// Creates `table` under the env's lake with one appended batch (so it is at version 1).
async fn write_table(env: &Env, table: &str, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let path = lake_root(&env.home()).join(table);
    let mut t = LakeTable::open_or_create(&path, &schema, &["event_date"])
        .await
        .unwrap();
    assert_eq!(t.append([batch], None).await.unwrap(), 1);
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

async fn payment_success_rate(env: &Env) {
    write_table(
        env,
        "gold_payment_success_rate",
        vec![
            (
                "event_date",
                Arc::new(Date32Array::from(vec![DAY, DAY, DAY - 1])),
            ),
            ("method", strings(&["card", "paypal", "card"])),
            ("attempts", Arc::new(Int64Array::from(vec![100, 40, 90]))),
            ("successes", Arc::new(Int64Array::from(vec![92, 37, 80]))),
            (
                "success_rate",
                Arc::new(Float64Array::from(vec![0.92, 0.925, 80.0 / 90.0])),
            ),
        ],
    )
    .await;
}

/// One group has negative revenue: the `fail` check `revenue_positive` must stop the gate.
async fn bad_daily_revenue(env: &Env) {
    write_table(
        env,
        "gold_daily_revenue",
        vec![
            ("event_date", Arc::new(Date32Array::from(vec![DAY, DAY]))),
            ("campaign_id", strings(&["cmp-001", "(none)"])),
            ("currency", strings(&["EUR", "USD"])),
            ("orders", Arc::new(Int64Array::from(vec![12, 3]))),
            ("revenue", Arc::new(Float64Array::from(vec![1234.5, -5.0]))),
            (
                "avg_order_value",
                Arc::new(Float64Array::from(vec![102.875, 1.0])),
            ),
            (
                "distinct_customers",
                Arc::new(Int64Array::from(vec![11, 3])),
            ),
        ],
    )
    .await;
}

const GATES: &str = r#"
name: gates
retries: {count: 2, delay: 100ms}
tasks:
  - id: check_payments
    kind: quality_check
    params: {table: gold_payment_success_rate}
  - id: check_revenue
    kind: quality_check
    params: {tables: [gold_daily_revenue]}
  - id: publish
    kind: noop
    depends_on: [check_revenue]
  - id: check_health
    kind: quality_check
    params: {tables: [gold_pipeline_health]}
"#;

fn results_of<'a>(v: &'a Value, table: &str) -> Vec<&'a Value> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["table_name"] == table)
        .collect()
}

#[tokio::test]
async fn a_failing_gate_fails_its_task_records_every_result_and_blocks_downstream() {
    let env = Env::new();
    with_expectations(&env);
    payment_success_rate(&env).await;
    bad_daily_revenue(&env).await;
    env.flow("gates", GATES);

    let out = env.run(&["trigger", "gates"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let (_, show) = env.json(&["runs", "show", "1"]);
    assert_eq!(task_state(&show, "check_payments"), "success");
    assert_eq!(task_state(&show, "check_revenue"), "failed");
    assert_eq!(task_state(&show, "publish"), "upstream_failed");
    assert_eq!(task_state(&show, "check_health"), "failed");
    // A failed check is a user error: not retried, although the flow allows two retries.
    let revenue = attempts(&show, "check_revenue");
    assert_eq!(revenue.len(), 1);
    let error = revenue[0]["error"].as_str().unwrap();
    assert!(error.starts_with("1 blocking check(s) failed: gold_daily_revenue.revenue_positive (1 of 2 rows break `revenue must be > 0` (e.g. -5.0)"), "{error}");
    let payments = attempts(&show, "check_payments");
    assert_eq!(payments[0]["metrics"]["checks"], 8);
    assert_eq!(payments[0]["metrics"]["passed"], 8);
    assert_eq!(payments[0]["metrics"]["failed"], 0);

    // The rows in quality_results, straight from the store.
    let store = Store::open(&env.home().join("state.db")).await.unwrap();
    let rows = store.quality_results(1).await.unwrap();
    store.close().await;
    assert_eq!(rows.len(), 8 + 11 + 1);
    let revenue_positive = rows
        .iter()
        .find(|r| r.check_name == "revenue_positive")
        .unwrap();
    assert_eq!(revenue_positive.task_id.as_deref(), Some("check_revenue"));
    assert_eq!(revenue_positive.table_name, "gold_daily_revenue");
    assert_eq!(revenue_positive.version, Some(1));
    assert_eq!(revenue_positive.observed.as_deref(), Some("1"));
    assert_eq!(revenue_positive.threshold.as_deref(), Some("= 0"));
    assert_eq!(
        (
            revenue_positive.severity.as_str(),
            revenue_positive.outcome.as_str()
        ),
        ("fail", "fail")
    );
    // Tasks run concurrently: results are stored in completion order.
    let mut fails: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome != "pass")
        .map(|r| r.check_name.as_str())
        .collect();
    fails.sort();
    assert_eq!(fails, vec!["revenue_positive", "table_exists"]);
    let rate = rows
        .iter()
        .find(|r| r.check_name == "success_rate_plausible")
        .unwrap();
    assert_eq!(
        rate.observed.as_deref(),
        Some(&*format!("{:.4}", (0.92 + 0.925 + 80.0 / 90.0) / 3.0))
    );

    // `flowctl checks RUN --json`: the same rows; exit 1 because a check failed.
    let (code, v) = env.json(&["checks", "1"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        v["summary"],
        serde_json::json!({"pass": 18, "warn": 0, "fail": 2, "error": 0})
    );
    let health = results_of(&v, "gold_pipeline_health");
    assert_eq!(health.len(), 1);
    assert_eq!(health[0]["check_name"], "table_exists");
    assert_eq!(health[0]["version"], Value::Null);
    assert_eq!(health[0]["outcome"], "fail");
    assert!(
        results_of(&v, "gold_payment_success_rate")
            .iter()
            .all(|r| r["version"] == 1 && r["outcome"] == "pass")
    );

    // The human table: one line per result, the failing one readable at a glance.
    let out = env.run(&["checks", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("TABLE "), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("revenue_positive"))
        .unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        vec![
            "gold_daily_revenue",
            "1",
            "revenue_positive",
            "1",
            "=",
            "0",
            "fail",
            "fail"
        ]
    );
    assert!(
        text.trim_end()
            .ends_with("20 checks: 18 pass, 0 warn, 2 fail, 0 error"),
        "{text}"
    );

    // Task logs say what each check found.
    let logs = stdout(&env.run(&["logs", "1", "check_revenue"]));
    assert!(
        logs.contains("gold_daily_revenue v1 revenue_positive: fail (fail)"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_passing_gate_succeeds_and_checks_exits_zero() {
    let env = Env::new();
    with_expectations(&env);
    payment_success_rate(&env).await;
    env.flow(
        "ok",
        "name: ok\ntasks:\n  - id: gate\n    kind: quality_check\n    params: {tables: [gold_payment_success_rate]}\n",
    );
    let (code, v) = env.json(&["trigger", "ok"]);
    assert_eq!(code, 0, "{v}");
    let id = run_id(&v).to_string();
    let (code, v) = env.json(&["checks", &id]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["summary"]["pass"], 8);
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "has_rows",
            "schema",
            "one_row_per_group",
            "invalid_count(method) = 0",
            "attempts_positive",
            "successes_not_negative",
            "success_rate_is_a_ratio",
            "success_rate_plausible"
        ]
    );
    let out = env.run(&["checks", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("8 checks: 8 pass, 0 warn, 0 fail, 0 error"));
}

#[test]
fn flow_validation_rejects_a_bad_expectation_reference() {
    let env = Env::new();
    with_expectations(&env);
    let file = env.flow(
        "typo",
        "name: typo\ntasks:\n  - id: check\n    kind: quality_check\n    params:\n      tables:\n        - gold_daily_revenue\n        - gold_daily_revnue\n",
    );
    let out = env.run(&["flows", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("typo.yaml:8: task `check` (quality_check): no expectations for table(s) `gold_daily_revnue` in"),
        "{err}"
    );
    // Nothing runs.
    assert_eq!(env.run(&["trigger", "typo"]).status.code(), Some(2));

    // A broken expectation file is reported with its own file and line, by `flows validate`
    // and by `checks validate`.
    let broken = env.dir.path().join("expectations/gold_daily_revenue.yaml");
    std::fs::write(
        &broken,
        "checks:\n  - row_count: \"> 0\"\n  - missing_count: x\n    must_be: \"lots\"\n",
    )
    .unwrap();
    let ok_flow = env.flow(
        "fine",
        "name: fine\ntasks:\n  - id: check\n    kind: quality_check\n    params: {table: gold_payment_success_rate}\n",
    );
    let out = env.run(&["flows", "validate", ok_flow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("gold_daily_revenue.yaml:4: threshold `lots`: no comparison operator"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["checks", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expectations/gold_daily_revenue.yaml:4: threshold `lots`"),
        "{}",
        stderr(&out)
    );
    // FLOWCTL_EXPECTATIONS_DIR points elsewhere: the repository's intact files validate.
    let out = env
        .cmd(&["flows", "validate", ok_flow.to_str().unwrap()])
        .env(
            "FLOWCTL_EXPECTATIONS_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// In-process, so the process-wide Prometheus registry can be read: every stored result also
/// counts in `flowctl_quality_checks_total{table,check,outcome}`.
#[tokio::test]
async fn stored_results_feed_the_quality_checks_counter() {
    use flowctl::engine::{Engine, EngineConfig};
    use flowctl::store::Submitted;
    use flowctl::tasks::{TaskRegistry, TaskSettings};

    let env = Env::new();
    with_expectations(&env);
    bad_daily_revenue(&env).await;
    let yaml = format!(
        "name: counted\ntasks:\n  - id: gate\n    kind: quality_check\n    params:\n      tables: [gold_daily_revenue]\n      expectations_dir: {}\n",
        env.dir.path().join("expectations").display()
    );
    let registry = TaskRegistry::builtin(TaskSettings::default());
    let flow = flowctl::flow::parse_flow(Path::new("counted.yaml"), &yaml, &registry).unwrap();
    let store = Store::open(&env.home().join("state.db")).await.unwrap();
    let engine = Engine::new(
        store.clone(),
        registry,
        EngineConfig {
            home: env.home(),
            ..EngineConfig::default()
        },
    );
    let counter = |check: &str, outcome: &str| {
        flowctl::metrics::get()
            .quality_checks
            .with_label_values(&["gold_daily_revenue", check, outcome])
            .get()
    };
    let before = (
        counter("revenue_positive", "fail"),
        counter("has_rows", "pass"),
    );
    let Submitted::Created(id) = engine
        .submit(&flow, &Default::default(), "cli", None)
        .await
        .unwrap()
    else {
        panic!("a new run")
    };
    let state = engine.execute(id).await.unwrap();
    assert_eq!(state.as_str(), "failed");
    assert_eq!(counter("revenue_positive", "fail"), before.0 + 1);
    assert_eq!(counter("has_rows", "pass"), before.1 + 1);
    assert_eq!(store.quality_results(id).await.unwrap().len(), 11);
    let text = flowctl::metrics::render(&store).await.unwrap();
    assert!(
        text.contains(
            "flowctl_quality_checks_total{check=\"revenue_positive\",outcome=\"fail\",table=\"gold_daily_revenue\"}"
        ),
        "{text}"
    );
    store.close().await;
}

mod wap;

/// Issue 18: a rule on a column the table never has validated (exit 0); ingest then refused the
/// file with a misleading type message. Now `checks validate` names file, line and the columns
/// there are — bronze's from the Avro contracts, silver's and gold's from their definitions.
#[test]
fn checks_validate_names_columns_the_table_does_not_have() {
    let env = Env::new();
    with_expectations(&env);
    let dir = env.dir.path().join("expectations");
    let path = dir.join("bronze_clickstream.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "rules:\n",
        "rules:\n  - name: bogus\n    category: VALUE_OUT_OF_RANGE\n    invalid: no_such_column_xyz\n    valid_min: 0\n",
    );
    std::fs::write(&path, text).unwrap();
    let silver = dir.join("silver_orders.yaml");
    let text = std::fs::read_to_string(&silver).unwrap().replace(
        "checks:\n",
        "checks:\n  - name: typo\n    missing_count: totl_amount\n    must_be: \"= 0\"\n",
    );
    std::fs::write(&silver, text).unwrap();
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let out = env
        .cmd(&["checks", "validate"])
        .env("FLOWCTL_SCHEMAS_DIR", &schemas)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "expectations/bronze_clickstream.yaml:6: rule `bogus` names column `no_such_column_xyz`, which bronze_clickstream does not have (its columns: event_id,"
        ),
        "{err}"
    );
    assert!(
        err.contains("silver_orders.yaml:")
            && err.contains(
                "check `typo` names column `totl_amount`, which silver_orders does not have"
            ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[tokio::test]
async fn a_failing_gate_notifies_gate_failed_and_a_passing_one_does_not() {
    let env = Env::new();
    with_expectations(&env);
    payment_success_rate(&env).await;
    bad_daily_revenue(&env).await;
    let hook = crate::notifications::Hook::start("/gates", &[]);
    let notify = format!(
        "name: gates\nnotify:\n  - on: [gate_failed]\n    webhook: {}\n",
        hook.url
    );
    env.flow("gates", &GATES.replacen("name: gates\n", &notify, 1));
    let out = env.run(&["trigger", "gates"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "gate_failed");
    assert_eq!(bodies[0]["state"], "failed");
    assert!(
        bodies[0]["text"]
            .as_str()
            .unwrap()
            .contains("stopped by a failing quality gate"),
        "{}",
        bodies[0]
    );
    // The table's page shows its checks by version: revenue_positive failed at version 1.
    let server = crate::server::Server::start(&env, &[]);
    let page = crate::server::text(&server.url("/tables/gold_daily_revenue"));
    let row = page
        .split("<tr data-version=\"1\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no version 1 in the quality history: {page}"));
    let cells: Vec<&str> = row.split("<td>").skip(1).collect();
    assert!(
        cells[3].contains(">failed<") && cells[3].contains("</span> 1"),
        "{row}"
    );
    server.kill();

    // Only the passing gate: no gate_failed.
    let env = Env::new();
    with_expectations(&env);
    payment_success_rate(&env).await;
    let hook = crate::notifications::Hook::start("/gates", &[]);
    env.flow(
        "pass",
        &format!(
            "name: pass\nnotify:\n  - on: [gate_failed]\n    webhook: {}\ntasks:\n  - id: check\n    \
             kind: quality_check\n    params: {{table: gold_payment_success_rate}}\n",
            hook.url
        ),
    );
    let out = env.run(&["trigger", "pass"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hook.bodies().len(), 0);
}
