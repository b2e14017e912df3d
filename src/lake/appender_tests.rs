use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::lake::append::split_by_date;
use crate::lake::bronze_writer_properties;
use crate::lake::fixtures::{batch, schema};

fn txn(app: &str, v: i64) -> AppTxn {
    AppTxn {
        app_id: app.into(),
        version: v,
    }
}

async fn new_table(dir: &std::path::Path) -> LakeTable {
    LakeTable::open_or_create(dir, &schema(), &["event_date"])
        .await
        .unwrap()
}

/// Commits rows `i*2..i*2+2` (over two dates) with txn `a:0` → `i`, alternating both paths.
async fn commit(a: &mut Appender, i: i64) -> i64 {
    let rows = batch(i * 2..i * 2 + 2, 2);
    if i % 2 == 0 {
        let props = bronze_writer_properties(&schema());
        let parts = split_by_date(&rows, None, "event_date").unwrap();
        let adds = a.parts_writer(&props).unwrap().write(parts).await.unwrap();
        a.commit_files(adds, &[txn("a:0", i)], Some(9))
            .await
            .unwrap()
    } else {
        a.append_txns([rows], &[txn("a:0", i)], Some(9))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn blind_commits_make_a_log_any_reader_reads_with_checkpoints_where_delta_rs_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Appender::new(new_table(dir.path()).await);
    assert_eq!(a.version(), 0);
    for i in 0..130 {
        assert_eq!(commit(&mut a, i).await, i + 1);
    }
    let t = LakeTable::open(dir.path()).await.unwrap();
    assert_eq!(t.version(), 130);
    assert_eq!(t.txn_version("a:0").await.unwrap(), Some(129));
    assert_eq!(t.row_count().unwrap(), 260);
    let log = dir.path().join("_delta_log");
    // delta-rs checkpoints when (version + 1) is a multiple of the interval (100).
    assert!(
        log.join("00000000000000000099.checkpoint.parquet")
            .is_file()
    );
    assert!(!log.join("00000000000000000129.checkpoint.parquet").exists());
    // Each commit is a WRITE naming the run, as the full path writes it.
    let history = t.history(Some(1)).await.unwrap();
    assert_eq!(history[0].operation.as_deref(), Some("WRITE"));
    let last = std::fs::read_to_string(log.join("00000000000000000130.json")).unwrap();
    let info: serde_json::Value = last
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find_map(|a| a.get("commitInfo").cloned())
        .unwrap();
    assert_eq!(crate::lake::commit_run_id(&info), Some(9));
}

#[tokio::test]
async fn a_commit_after_another_writer_takes_the_full_path_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Appender::new(new_table(dir.path()).await);
    assert_eq!(commit(&mut a, 0).await, 1);
    // Another writer appends (version 2) behind the appender's back.
    let mut other = LakeTable::open(dir.path()).await.unwrap();
    other
        .append_txns([batch(100..103, 1)], &[txn("b:0", 5)], None)
        .await
        .unwrap();
    // Version 2 is taken: the appender reads the table again and commits version 3.
    assert_eq!(commit(&mut a, 1).await, 3);
    // And goes on blind from there.
    assert_eq!(commit(&mut a, 2).await, 4);
    let t = LakeTable::open(dir.path()).await.unwrap();
    assert_eq!(t.version(), 4);
    assert_eq!(t.txn_version("a:0").await.unwrap(), Some(2));
    assert_eq!(t.txn_version("b:0").await.unwrap(), Some(5));
    assert_eq!(t.row_count().unwrap(), 2 * 3 + 3);
}

#[tokio::test]
async fn a_schema_changed_by_another_writer_fails_the_commit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Appender::new(new_table(dir.path()).await);
    assert_eq!(commit(&mut a, 0).await, 1);
    let mut other = LakeTable::open(dir.path()).await.unwrap();
    let wider = Schema::new(
        schema()
            .fields()
            .iter()
            .cloned()
            .chain([Arc::new(Field::new("extra", DataType::Utf8, true))])
            .collect::<Vec<_>>(),
    );
    assert_eq!(other.add_missing_columns(&wider).await.unwrap(), ["extra"]);
    let err = a
        .append_txns([batch(10..12, 1)], &[txn("a:0", 1)], None)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Changed { .. }), "{err}");
    let t = LakeTable::open(dir.path()).await.unwrap();
    assert_eq!(t.version(), 2);
    assert_eq!(t.txn_version("a:0").await.unwrap(), Some(0));
    assert_eq!(t.row_count().unwrap(), 2);
}
