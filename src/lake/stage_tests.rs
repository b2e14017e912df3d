use std::sync::Arc;

use deltalake::arrow::array::{Date32Array, Int64Array, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::lake::lake_root;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("event_date", DataType::Date32, true),
    ]))
}

/// Rows `ids`, on day 20_000 + id % days.
fn batch(ids: std::ops::Range<i64>, days: i64, tag: &str) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("{tag}{i}")),
            )),
            Arc::new(Date32Array::from_iter_values(
                ids.map(|i| 20_000 + (i % days) as i32),
            )),
        ],
    )
    .unwrap()
}

async fn table(home: &Path) -> LakeTable {
    LakeTable::open_or_create(&lake_root(home).join("t"), &schema(), &["event_date"])
        .await
        .unwrap()
}

fn spec(mode: StageMode, run: i64) -> StageSpec {
    StageSpec {
        run_id: Some(run),
        ..StageSpec::new(mode)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_rows_are_invisible_until_published_then_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut t = table(home).await;
    t.append([batch(0..10, 2, "a")], None).await.unwrap();
    let mut s = spec(StageMode::Append, 7);
    s.txns.push(AppTxn {
        app_id: "silver<-bronze".into(),
        version: 3,
    });
    let st = stage(home, "t", &t, [batch(10..15, 2, "a")], s)
        .await
        .unwrap();
    assert_eq!(st.base_version, 1);
    assert_eq!(st.rows_added, 5);
    // Readers still see version 1 with 10 rows.
    t.refresh().await.unwrap();
    assert_eq!(t.version(), 1);
    assert_eq!(t.scan().unwrap().collect().unwrap().height(), 10);
    let again = staged(home, "t").unwrap().expect("pending");
    assert_eq!(again.candidate_df().await.unwrap().height(), 15);
    let v = again.publish(home).await.unwrap();
    assert_eq!(v, 2);
    assert!(staged(home, "t").unwrap().is_none());
    t.refresh().await.unwrap();
    assert_eq!(t.scan().unwrap().collect().unwrap().height(), 15);
    assert_eq!(t.txn_version("silver<-bronze").await.unwrap(), Some(3));
    // The commit names the run.
    let log =
        std::fs::read_to_string(t.path().join("_delta_log/00000000000000000002.json")).unwrap();
    assert!(log.contains("\"userMetadata\":\"run=7\""), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_partitions_only_touches_those_dates() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut t = table(home).await;
    t.append([batch(0..30, 3, "a")], None).await.unwrap();
    let before = t.files().unwrap();
    // Recompute day 20_001 only: ids ≡ 1 (mod 3), renamed.
    let ids: Vec<i64> = (0..30).filter(|i| i % 3 == 1).collect();
    let b = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("b{i}")),
            )),
            Arc::new(Date32Array::from_iter_values(ids.iter().map(|_| 20_001))),
        ],
    )
    .unwrap();
    let st = stage(home, "t", &t, [b], spec(StageMode::ReplacePartitions, 1))
        .await
        .unwrap();
    assert_eq!(st.partitions, vec!["2024-10-05".to_string()]);
    assert_eq!(st.removes.len(), 1);
    st.publish(home).await.unwrap();
    t.refresh().await.unwrap();
    let after = t.files().unwrap();
    let kept: Vec<_> = before
        .iter()
        .filter(|f| after.contains(f))
        .map(|f| f.partition_values["event_date"].clone().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.contains(&"2024-10-05".to_string()));
    let df = t.scan().unwrap().collect().unwrap();
    assert_eq!(df.height(), 30);
    let renamed = df
        .column("name")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .filter(|n| n.unwrap().starts_with('b'))
        .count();
    assert_eq!(renamed, 10);
    // Time travel still sees the old names.
    let old = t.read_df_at(1).await.unwrap();
    assert_eq!(old.height(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_over_a_moved_table_is_refused_and_discard_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut t = table(home).await;
    let st = stage(
        home,
        "t",
        &t,
        [batch(0..5, 1, "a")],
        spec(StageMode::Overwrite, 1),
    )
    .await
    .unwrap();
    let staged_file = t.path().join(&st.adds[0].path);
    assert!(staged_file.exists());
    // Someone else commits in between.
    t.append([batch(100..101, 1, "x")], None).await.unwrap();
    let err = st.publish(home).await.unwrap_err();
    assert!(
        matches!(
            err,
            LakeError::Moved {
                base: 0,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    st.discard(home).await.unwrap();
    assert!(!staged_file.exists());
    assert!(staged(home, "t").unwrap().is_none());
    t.refresh().await.unwrap();
    assert_eq!(t.version(), 1);
    assert_eq!(t.scan().unwrap().collect().unwrap().height(), 1);
}

/// A crash after the commit but before the pending record was removed: publishing the record
/// again is a no-op, not a conflict, and discarding it deletes nothing committed.
#[tokio::test(flavor = "multi_thread")]
async fn republishing_after_a_crash_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let t = table(home).await;
    let st = stage(
        home,
        "t",
        &t,
        [batch(0..5, 1, "a")],
        spec(StageMode::Append, 1),
    )
    .await
    .unwrap();
    assert_eq!(st.publish(home).await.unwrap(), 1);
    st.save(home).unwrap();
    assert_eq!(
        staged(home, "t")
            .unwrap()
            .unwrap()
            .publish(home)
            .await
            .unwrap(),
        1
    );
    assert!(staged(home, "t").unwrap().is_none());
    st.save(home).unwrap();
    st.discard(home).await.unwrap();
    let t = table(home).await;
    assert_eq!(t.version(), 1);
    assert_eq!(t.scan().unwrap().collect().unwrap().height(), 5);
}
