//! `decode_parts`: rows split by `event_date` as they are decoded, refused rows left out, and
//! the judge shown the same values the finished batch holds — on both decode paths.

use std::cell::RefCell;

use super::tests::{V1, V2, decoder, framed_at, records};
use super::*;
use crate::contracts::generate::SchemaVersion;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::{Date32Type, Int64Type};

const DAY_MS: i64 = 86_400_000;
const T: i64 = 1_763_900_000_000; // 2025-11-23T12:13:20Z

/// Records whose event days follow `days` (offsets from T's day), v1 and v2 mixed, with one
/// undecodable body every 7th record.
fn payloads(days: &[i64]) -> Vec<Vec<u8>> {
    days.iter()
        .enumerate()
        .map(|(n, d)| {
            if n % 7 == 3 {
                b"\x00\x00\x00\x00\x0c\xff\xff".to_vec()
            } else if n % 2 == 0 {
                framed_at(V1, SchemaVersion::V1, n as u64, T + d * DAY_MS)
            } else {
                framed_at(V2, SchemaVersion::V2, n as u64, T + d * DAY_MS)
            }
        })
        .collect()
}

fn offsets(b: &RecordBatch) -> Vec<i64> {
    let a = b.column_by_name("_kafka_offset").unwrap();
    a.as_primitive::<Int64Type>().values().to_vec()
}

fn dates(b: &RecordBatch) -> Vec<i32> {
    let a = b.column_by_name("event_date").unwrap();
    a.as_primitive::<Date32Type>().values().to_vec()
}

/// The rows of `parts` put back in offset order: they must be `decode`'s batch.
fn reassembled(schema: &SchemaRef, parts: &[RecordBatch]) -> RecordBatch {
    let all = concat_batches(schema, parts).unwrap();
    let offs = offsets(&all);
    let mut perm: Vec<u32> = (0..offs.len() as u32).collect();
    perm.sort_by_key(|&i| offs[i as usize]);
    take_record_batch(&all, &UInt32Array::from(perm)).unwrap()
}

fn check_split(mut d: BronzeDecoder, days: &[i64]) {
    let p = payloads(days);
    let recs = records(&p);
    let whole = d.decode(&recs, 5).unwrap();
    let out = d.decode_parts(&recs, 5, None).unwrap();
    let codes = |e: &[RecordError]| e.iter().map(|e| (e.index, e.fault)).collect::<Vec<_>>();
    assert_eq!(codes(&out.errors), codes(&whole.errors));
    assert!(out.refused.is_empty());
    let Some(batch) = whole.batch else {
        assert!(out.parts.is_empty());
        return;
    };
    for part in &out.parts {
        let ds = dates(part);
        assert!(ds.iter().all(|&x| x == ds[0]), "one date per part: {ds:?}");
        assert!(offsets(part).is_sorted(), "input order within a part");
    }
    let mut seen: Vec<i32> = out.parts.iter().map(|p| dates(p)[0]).collect();
    seen.sort_unstable();
    seen.dedup();
    let mut want = dates(&batch);
    want.sort_unstable();
    want.dedup();
    assert_eq!(seen, want);
    assert_eq!(
        reassembled(&d.schema(), &out.parts),
        batch,
        "the parts hold exactly decode's rows"
    );
}

#[test]
fn rows_are_split_by_date_as_they_are_decoded() {
    // A late event first: the main part starts on the wrong date and has to hand over.
    let mut days = vec![-1];
    days.extend((0..300).map(|n| if n % 11 == 0 { -2 } else { 0 }));
    days.extend([-1, 1, 0, 0]);
    check_split(decoder(), &days);
    // The general path (arrow-avro) splits afterwards, to the same parts.
    let mut general = decoder();
    general.directs.clear();
    check_split(general, &days);
    // One date, and none at all.
    check_split(decoder(), &[0; 40]);
    check_split(decoder(), &[]);
}

/// Refuses every record whose offset is a multiple of 3 and writes down every cell of every
/// row it is shown.
struct Recording {
    width: usize,
    seen: RefCell<Vec<Vec<String>>>,
}

impl RowJudge for Recording {
    fn judge(&self, row: &dyn Row) -> Option<Refusal> {
        let cells: Vec<String> = (0..self.width)
            .map(|c| format!("{:?}", row.cell(c)))
            .collect();
        let offset = match row.cell(self.width - 6) {
            Cell::Int(o) => o,
            other => panic!("_kafka_offset is {other:?}"),
        };
        let refuse = offset % 3 == 0;
        if !refuse {
            self.seen.borrow_mut().push(cells);
        }
        refuse.then(|| Refusal {
            rule: 7,
            found: offset.to_string(),
        })
    }
}

fn check_judge(mut d: BronzeDecoder) {
    let days: Vec<i64> = (0..200).map(|n| if n % 13 == 0 { -1 } else { 0 }).collect();
    let p = payloads(&days);
    let recs = records(&p);
    let whole = d.decode(&recs, 9).unwrap();
    let width = d.schema().fields().len();
    assert_eq!(d.schema().field(width - 6).name(), "_kafka_offset");
    let judge = Recording {
        width,
        seen: RefCell::new(Vec::new()),
    };
    let out = d.decode_parts(&recs, 9, Some(&judge)).unwrap();
    let decoded = &whole.decoded;
    let refused: Vec<usize> = decoded
        .iter()
        .copied()
        .filter(|i| (100 + i) % 3 == 0)
        .collect();
    assert_eq!(
        out.refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        refused
    );
    assert!(out.refused.iter().all(|(_, r)| r.rule == 7));
    let kept = reassembled(&d.schema(), &out.parts);
    let want: Vec<i64> = decoded
        .iter()
        .map(|&i| 100 + i as i64)
        .filter(|o| o % 3 != 0)
        .collect();
    assert_eq!(offsets(&kept), want);
    // What the judge saw of each kept row is what the batch holds (in offset order).
    let batch = whole.batch.unwrap();
    let mut seen = judge.seen.into_inner();
    seen.sort_by_key(|cells| {
        cells[width - 6]
            .clone()
            .replace("Int(", "")
            .replace(')', "")
            .parse::<i64>()
            .unwrap()
    });
    let mut k = 0;
    for row in 0..batch.num_rows() {
        if offsets(&batch)[row] % 3 == 0 {
            continue;
        }
        let cells: Vec<String> = (0..width)
            .map(|c| format!("{:?}", BatchRow { batch: &batch, row }.cell(c)))
            .collect();
        assert_eq!(seen[k], cells, "row {row}");
        k += 1;
    }
    assert_eq!(k, seen.len());
}

#[test]
fn refused_rows_are_left_out_and_the_judge_sees_the_batch_values() {
    check_judge(decoder());
    let mut general = decoder();
    general.directs.clear();
    check_judge(general);
}
