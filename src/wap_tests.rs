use std::sync::Arc;

use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::lake::{LakeTable, StageMode, StageSpec, stage};

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("event_date", DataType::Date32, true),
    ]))
}

fn batch(n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(Date32Array::from_iter_values((0..n).map(|_| 20_000))),
        ],
    )
    .unwrap()
}

async fn stage_rows(home: &Path, n: i64, run: i64) {
    let t = LakeTable::open_or_create(&lake_root(home).join("t"), &schema(), &["event_date"])
        .await
        .unwrap();
    let mut spec = StageSpec::new(StageMode::Append);
    spec.run_id = Some(run);
    stage(home, "t", &t, [batch(n)], spec).await.unwrap();
}

async fn version(home: &Path) -> i64 {
    LakeTable::open(&lake_root(home).join("t"))
        .await
        .unwrap()
        .version()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_candidate_is_published_on_pass_and_discarded_on_fail() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let none = audit(home, "t", &Audit::MinRows(3), true).await.unwrap();
    assert_eq!(none.verdict, Verdict::Missing);
    assert!(none.results.is_empty());

    stage_rows(home, 2, 1).await;
    let out = audit(home, "t", &Audit::MinRows(3), true).await.unwrap();
    assert_eq!(out.verdict, Verdict::Discarded { version: 0 });
    assert!(!out.verdict.passed());
    assert_eq!(out.results[0].outcome, Outcome::Fail);
    assert_eq!(version(home).await, 0);
    assert!(
        staged(home, "t").unwrap().is_none(),
        "the candidate is gone"
    );

    stage_rows(home, 5, 2).await;
    // Left alone when the gate does not publish: the current version is judged.
    let out = audit(home, "t", &Audit::MinRows(3), false).await.unwrap();
    assert_eq!(
        out.verdict,
        Verdict::CheckedCurrent {
            version: 0,
            passed: true
        }
    );
    assert!(staged(home, "t").unwrap().is_some());
    let out = audit(home, "t", &Audit::MinRows(3), true).await.unwrap();
    assert_eq!(
        out.verdict,
        Verdict::Published {
            version: 1,
            rows_added: 5
        }
    );
    assert_eq!(version(home).await, 1);
    let out = audit(home, "t", &Audit::MinRows(99), true).await.unwrap();
    assert_eq!(
        out.verdict,
        Verdict::CheckedCurrent {
            version: 1,
            passed: true
        },
        "a current version is never held to the minimum"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expectations_gate_a_candidate_and_a_missing_table_is_a_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let exp = quality::parse_file(
        Path::new("expectations/t.yaml"),
        "checks:\n  - row_count: \"> 3\"\n",
    )
    .unwrap();
    let gate = Audit::Expectations {
        exp,
        refs: Frames::default(),
        now: Utc::now(),
    };
    let out = audit(home, "t", &gate, true).await.unwrap();
    assert_eq!(out.verdict, Verdict::Missing);
    assert_eq!(out.results[0].check, "table_exists");
    assert!(out.results[0].blocks());
    stage_rows(home, 3, 1).await;
    let out = audit(home, "t", &gate, true).await.unwrap();
    assert_eq!(out.verdict, Verdict::Discarded { version: 0 });
    stage_rows(home, 4, 2).await;
    let out = audit(home, "t", &gate, true).await.unwrap();
    assert!(matches!(out.verdict, Verdict::Published { version: 1, .. }));
    assert!(out.results.iter().all(|r| r.outcome == Outcome::Pass));
}
