//! `flowctl tables` against real Delta tables built from many small appends in a temp
//! FLOWCTL_HOME: optimize keeps content identical while cutting file counts, time travel still
//! reads old versions after it, vacuum never deletes a live file, show/history/list outputs,
//! the `maintain` task kind, and the Python `deltalake` package reading an optimized table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use flowctl::lake::maintain::{self, MaintainError, OptimizeOptions};
use flowctl::lake::{LakeTable, lake_root};
use polars::prelude::{DataFrame, IntoLazy, SortMultipleOptions};

use crate::common::{Env, run_id, stderr, stdout};
use crate::lake::python_read;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("event_date", DataType::Date32, true),
    ]))
}

/// Rows `ids`, over 3 days; status cycles PAID/NEW/null, amount = id * 10.
fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let status: Vec<Option<&str>> = ids
        .clone()
        .map(|i| match i % 3 {
            0 => Some("PAID"),
            1 => Some("NEW"),
            _ => None,
        })
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from(status)),
            Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| i * 10))),
            Arc::new(Date32Array::from_iter_values(
                ids.map(|i| 20_000 + (i % 3) as i32),
            )),
        ],
    )
    .unwrap()
}

/// `appends` commits of `rows` rows each into `lake/<name>`, partitioned by day (3 files per
/// commit): the small files micro-batches leave. The last commit carries run id 42.
async fn build(home: &Path, name: &str, appends: i64, rows: i64) -> PathBuf {
    let path = lake_root(home).join(name);
    let mut t = LakeTable::open_or_create(&path, &schema(), &["event_date"])
        .await
        .unwrap();
    for i in 0..appends {
        let run = (i == appends - 1).then_some(42);
        t.append_txns([batch(i * rows..(i + 1) * rows)], &[], run)
            .await
            .unwrap();
    }
    path
}

fn sorted(df: DataFrame) -> DataFrame {
    df.lazy()
        .sort(["id"], SortMultipleOptions::default())
        .collect()
        .unwrap()
}

async fn rows(path: &Path) -> DataFrame {
    sorted(LakeTable::open(path).await.unwrap().read_df().unwrap())
}

fn live_files_exist(path: &Path, t: &LakeTable) {
    for f in t.files().unwrap() {
        assert!(path.join(&f.path).exists(), "live file {} is gone", f.path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_optimize_keeps_content_cuts_files_and_time_travel_still_works() {
    let env = Env::new();
    let path = build(&env.home(), "events", 30, 40).await;
    let before = rows(&path).await;
    assert_eq!(before.height(), 1200);

    let (code, v) = env.json(&["tables", "optimize", "events"]);
    assert_eq!(code, 0, "{v}");
    let r = &v["optimize"];
    assert_eq!(r["files_before"], 90, "{v}");
    assert_eq!(r["files_after"], 3, "{v}");
    assert_eq!(r["files_removed"], 90);
    assert_eq!(r["files_added"], 3);
    assert_eq!(r["partitions_compacted"], 3);
    assert_eq!(r["version"], 31);
    println!(
        "optimize figures: files {} → {} in {} ms",
        r["files_before"], r["files_after"], r["elapsed_ms"]
    );

    let after = rows(&path).await;
    assert!(before.equals_missing(&after), "content changed");
    // Time travel to a version before the compaction reads the old files.
    let t = LakeTable::open(&path).await.unwrap();
    assert_eq!(t.read_df_at(10).await.unwrap().height(), 400);
    assert!(sorted(t.read_df_at(30).await.unwrap()).equals_missing(&before));
    let (code, v) = env.json(&[
        "tables",
        "show",
        "events",
        "--version",
        "10",
        "--limit",
        "0",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["row_count"], 400);

    // Nothing left to compact: no commit.
    let (code, v) = env.json(&["tables", "optimize", "events"]);
    assert_eq!(code, 0);
    assert!(v["optimize"]["version"].is_null(), "{v}");
    let out = env.run(&["tables", "optimize", "events"]);
    assert!(
        stdout(&out).contains("nothing to compact"),
        "{}",
        stdout(&out)
    );

    // History shows the OPTIMIZE commit with its metrics; other engines read the same rows.
    let (_, h) = env.json(&["tables", "history", "events", "--limit", "2"]);
    assert_eq!(h["commits"][0]["version"], 31);
    assert_eq!(h["commits"][0]["operation"], "OPTIMIZE");
    assert_eq!(h["commits"][0]["operation_metrics"]["numRemovedFiles"], 90);
    assert_eq!(h["commits"][1]["run_id"], 42);
    let py = python_read(&path, &[]);
    assert_eq!(py["rows"], 1200, "{py}");
    assert_eq!(py["version"], 31);
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_optimize_small_target_and_zorder() {
    let env = Env::new();
    let path = build(&env.home(), "z", 20, 500).await;
    let before = rows(&path).await;
    // A target far below the data size: files roll at it, so a day may keep several files.
    let (code, v) = env.json(&[
        "tables",
        "optimize",
        "z",
        "--target-size",
        "16KiB",
        "--zorder",
        "status,amount",
    ]);
    assert_eq!(code, 0, "{v}");
    let r = &v["optimize"];
    assert_eq!(r["files_before"], 60);
    let after_files = r["files_after"].as_u64().unwrap();
    assert!((3..60).contains(&after_files), "{v}");
    assert_eq!(r["zorder"], serde_json::json!(["status", "amount"]));
    assert!(before.equals_missing(&rows(&path).await));
    // Stable: the same command right after finds nothing to rewrite.
    let (code, v) = env.json(&[
        "tables",
        "optimize",
        "z",
        "--target-size",
        "16KiB",
        "--zorder",
        "status,amount",
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["optimize"]["version"].is_null(), "{v}");

    let out = env.run(&["tables", "optimize", "z", "--zorder", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot z-order by nope"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["tables", "optimize", "z", "--target-size", "12 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["tables", "optimize", "missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tables: z"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_optimize_keeps_a_concurrent_append_and_refuses_a_double_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "c", 10, 30).await;
    let mut t = LakeTable::open(&path).await.unwrap();
    let plan = maintain::plan_optimize(&t, OptimizeOptions::default()).unwrap();
    assert_eq!(plan.read_version, 10);
    // Another writer appends between the plan and the commit.
    let mut other = LakeTable::open(&path).await.unwrap();
    other.append([batch(1000..1030)], None).await.unwrap();
    let report = plan.execute(&mut t).await.unwrap();
    assert_eq!(report.version, Some(12));
    assert_eq!(report.files_removed, 30);
    // 3 compacted files + the append's 3.
    assert_eq!(report.files_after, 6);
    assert_eq!(t.read_df().unwrap().height(), 330);

    // Two optimizes planned on the same snapshot: the second must not commit duplicates.
    other.append([batch(2000..2030)], None).await.unwrap();
    t.refresh().await.unwrap();
    let mut t2 = LakeTable::open(&path).await.unwrap();
    let p1 = maintain::plan_optimize(&t, OptimizeOptions::default()).unwrap();
    let p2 = maintain::plan_optimize(&t2, OptimizeOptions::default()).unwrap();
    p1.execute(&mut t).await.unwrap();
    let err = p2.execute(&mut t2).await.unwrap_err();
    assert!(matches!(err, MaintainError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("nothing was committed"), "{err}");
    t2.refresh().await.unwrap();
    assert_eq!(t2.read_df().unwrap().height(), 360);
    live_files_exist(&path, &t2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_vacuum_never_deletes_live_files() {
    let env = Env::new();
    let path = build(&env.home(), "v", 12, 20).await;
    let (code, _) = env.json(&["tables", "optimize", "v"]);
    assert_eq!(code, 0);
    let before = rows(&path).await;
    let on_disk = maintain::files_on_disk(&path).unwrap().len();
    assert_eq!(on_disk, 36 + 3);

    // Below the minimum without --force: refused, exit 2.
    let out = env.run(&["tables", "vacuum", "v", "--retain", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("below the safe minimum"),
        "{}",
        stderr(&out)
    );
    // The default retention (7 days) deletes nothing: the files were removed just now.
    let (code, v) = env.json(&["tables", "vacuum", "v"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["vacuum"]["deleted"].as_array().unwrap().len(), 0);
    // Dry run lists the 36 old files and deletes nothing.
    let (code, v) = env.json(&[
        "tables",
        "vacuum",
        "v",
        "--retain",
        "0s",
        "--force",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["vacuum"]["deleted"].as_array().unwrap().len(), 36, "{v}");
    assert_eq!(maintain::files_on_disk(&path).unwrap().len(), on_disk);
    let out = env.run(&[
        "tables",
        "vacuum",
        "v",
        "--retain",
        "0s",
        "--force",
        "--dry-run",
    ]);
    assert!(
        stdout(&out).contains("would delete 36 of 39"),
        "{}",
        stdout(&out)
    );

    let out = env.run(&["tables", "vacuum", "v", "--retain", "0s", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("files on disk 39 → 3"),
        "{}",
        stdout(&out)
    );
    let t = LakeTable::open(&path).await.unwrap();
    live_files_exist(&path, &t);
    assert_eq!(maintain::files_on_disk(&path).unwrap().len(), 3);
    assert!(before.equals_missing(&rows(&path).await));
    assert_eq!(python_read(&path, &[])["rows"], 240);

    // Checkpoint: a Parquet checkpoint in the log; readers still agree.
    let (code, v) = env.json(&["tables", "checkpoint", "v"]);
    assert_eq!(code, 0, "{v}");
    let version = v["checkpoint"]["version"].as_i64().unwrap();
    assert!(
        path.join(format!("_delta_log/{version:020}.checkpoint.parquet"))
            .exists(),
        "{v}"
    );
    assert_eq!(
        v["checkpoint"]["log_files_after"].as_u64().unwrap(),
        v["checkpoint"]["log_files_before"].as_u64().unwrap() + 2,
        "checkpoint file + _last_checkpoint: {v}"
    );
    assert_eq!(python_read(&path, &[])["rows"], 240);
    assert_eq!(rows(&path).await.height(), 240);
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_show_history_and_list() {
    let env = Env::new();
    build(&env.home(), "orders", 4, 10).await;
    build(&env.home(), "other", 1, 5).await;

    // --where / --columns / --limit / --json.
    let (code, v) = env.json(&[
        "tables",
        "show",
        "orders",
        "--where",
        "status = 'PAID' and amount >= 100 or id in (1, 2)",
        "--columns",
        "id,status",
        "--limit",
        "0",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["columns"], serde_json::json!(["id", "status"]));
    let mut ids: Vec<i64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<i64> = (10..40).filter(|i| i % 3 == 0).collect();
    want.extend([1, 2]);
    want.sort();
    assert_eq!(ids, want);
    let (_, v) = env.json(&[
        "tables",
        "show",
        "orders",
        "--where",
        "status is null",
        "--limit",
        "3",
    ]);
    assert_eq!(v["row_count"], 3);
    assert!(
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("status").is_none_or(|s| s.is_null()))
    );
    let (_, v) = env.json(&[
        "tables",
        "show",
        "orders",
        "--where",
        "event_date = '2024-10-04'",
        "--limit",
        "0",
    ]);
    // Day 20_000 is 2024-10-04: ids ≡ 0 (mod 3).
    assert_eq!(v["row_count"], 14, "{v}");
    let out = env.run(&["tables", "show", "orders", "--where", "amount >"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--where: expected a value after `>` at column 9"),
        "{}",
        stderr(&out)
    );
    // Text output: a header row, aligned rows, a footer.
    let out = env.run(&[
        "tables",
        "show",
        "orders",
        "--limit",
        "2",
        "--columns",
        "id,amount",
    ]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("id") && lines[0].contains("amount"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[3].contains("2 rows of orders at version 4; --limit 2 reached"),
        "{text}"
    );

    // Time travel: --version and --as-of.
    let (_, v) = env.json(&["tables", "show", "orders", "--version", "2", "--limit", "0"]);
    assert_eq!(v["row_count"], 20);
    assert_eq!(v["version"], 2);
    let out = env.run(&["tables", "show", "orders", "--version", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("versions are 0..=4"),
        "{}",
        stderr(&out)
    );
    let (_, h) = env.json(&["tables", "history", "orders"]);
    let commits = h["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 5);
    assert_eq!(commits[4]["operation"], "CREATE TABLE");
    assert_eq!(commits[0]["run_id"], 42);
    let v2_time = commits[2]["timestamp"].as_str().unwrap().to_string();
    assert_eq!(commits[2]["version"], 2);
    let (code, v) = env.json(&[
        "tables", "show", "orders", "--as-of", &v2_time, "--limit", "0",
    ]);
    assert_eq!(code, 0, "{v}");
    assert!(v["version"].as_i64().unwrap() >= 2, "{v}");
    assert_eq!(
        v["row_count"].as_i64().unwrap(),
        v["version"].as_i64().unwrap() * 10
    );
    let (_, v) = env.json(&[
        "tables",
        "show",
        "orders",
        "--as-of",
        "2999-01-01",
        "--limit",
        "0",
    ]);
    assert_eq!(v["version"], 4);
    let out = env.run(&["tables", "show", "orders", "--as-of", "2001-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("before the table's first commit"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["tables", "show", "orders", "--as-of", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["tables", "history", "orders"]);
    assert!(stdout(&out).lines().next().unwrap().starts_with("VERSION"));

    // list: both tables with version, files, rows, size, last run.
    let (code, v) = env.json(&["tables", "list"]);
    assert_eq!(code, 0);
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    assert_eq!(tables[0]["table"], "orders");
    assert_eq!(tables[0]["version"], 4);
    assert_eq!(tables[0]["files"], 12);
    assert_eq!(tables[0]["rows"], 40);
    assert_eq!(tables[0]["last_run_id"], 42);
    assert!(tables[0]["bytes"].as_i64().unwrap() > 0);
    let out = env.run(&["tables", "list"]);
    let text = stdout(&out);
    assert!(text.starts_with("TABLE"), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("orders"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_maintain_task_reports_files_before_and_after() {
    let env = Env::new();
    let a = build(&env.home(), "a", 8, 10).await;
    build(&env.home(), "b", 5, 10).await;
    env.flow(
        "maint",
        "name: maint\ntasks:\n  - id: m\n    kind: maintain\n    params:\n      tables: all\n      zorder: {a: [amount]}\n      vacuum_retain: 1h\n      checkpoint: true\n",
    );
    let (code, v) = env.json(&["trigger", "maint"]);
    assert_eq!(code, 0, "{v}");
    let (_, show) = env.json(&["runs", "show", &run_id(&v).to_string()]);
    let m = &show["attempts"][0]["metrics"];
    assert_eq!(m["tables"], 2, "{show}");
    assert_eq!(m["files_before"], 24 + 15, "{show}");
    assert_eq!(m["files_after"], 6, "{show}");
    assert_eq!(m["a"]["files_after"], 3);
    assert!(m["a"]["checkpoint_version"].is_i64(), "{m}");
    assert_eq!(rows(&a).await.height(), 80);

    // Bad params are refused at validation, with the file's line.
    env.flow(
        "bad",
        "name: bad\ntasks:\n  - id: m\n    kind: maintain\n    params:\n      tables: every\n",
    );
    env.flow(
        "bad2",
        "name: bad2\ntasks:\n  - id: m\n    kind: maintain\n    params:\n      tables: [a]\n      vacuum_retain: 5m\n",
    );
    for f in ["bad", "bad2"] {
        let file = env.flows().join(format!("{f}.yaml"));
        let out = env.run(&["flows", "validate", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{f}: {}", stderr(&out));
    }
    let out = env.run(&[
        "flows",
        "validate",
        env.flows().join("bad2.yaml").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("below the safe minimum"),
        "{}",
        stderr(&out)
    );

    // The shipped maintenance flow validates.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = env.run(&[
        "flows",
        "validate",
        root.join("flows/lake_maintenance.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Timestamps, binaries and nested lists (what bronze holds) render as text and JSON, and a
/// `--where` on a timestamp column takes a string literal.
#[tokio::test(flavor = "multi_thread")]
async fn tables_show_renders_timestamps_binaries_and_lists() {
    use deltalake::arrow::array::{Array as _, BinaryArray, ListArray, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::{Int32Type, TimeUnit};
    let env = Env::new();
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        None,
        Some(vec![]),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("items", list.data_type().clone(), true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(
                // 2025-01-01T00:00:00Z, +1 day, +2 days
                TimestampMicrosecondArray::from(vec![
                    1_735_689_600_000_000,
                    1_735_776_000_000_000,
                    1_735_862_400_000_000,
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(BinaryArray::from(vec![Some(&b"k1"[..]), None, Some(b"k3")])),
            Arc::new(list),
        ],
    )
    .unwrap();
    let path = lake_root(&env.home()).join("bronze_like");
    let mut t = LakeTable::open_or_create(&path, &schema, &[])
        .await
        .unwrap();
    t.append([b], None).await.unwrap();

    let (code, v) = env.json(&[
        "tables",
        "show",
        "bronze_like",
        "--where",
        "event_time >= '2025-01-02T00:00:00Z'",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["row_count"], 2, "{v}");
    let (code, v) = env.json(&[
        "tables",
        "show",
        "bronze_like",
        "--where",
        "event_time < '2025-01-02'",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["row_count"], 1, "{v}");
    assert_eq!(v["rows"][0]["id"], 1);
    assert_eq!(v["rows"][0]["items"], serde_json::json!([1, 2]), "{v}");
    assert!(
        v["rows"][0]["event_time"]
            .as_str()
            .unwrap()
            .starts_with("2025-01-01"),
        "{v}"
    );
    let out = env.run(&["tables", "show", "bronze_like"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2025-01-01"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
}
