//! The decoder on real Avro from the project's own producer encoding: v1 + v2, every kind of bad
//! record, and enough records to cross flushes and replays.

use super::*;
use crate::contracts::encode::encode;
use crate::contracts::generate::{SchemaVersion, order};
use crate::contracts::schema::{ParsedSchema, builtin};
use crate::contracts::wire::{self, SchemaId};
use deltalake::arrow::array::{AsArray, Date32Array, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::Int64Type;

const T0: i64 = 1_763_900_000_000; // 2025-11-23T12:13:20Z
pub(super) const V1: SchemaId = 11;
pub(super) const V2: SchemaId = 12;

fn framed(id: SchemaId, version: SchemaVersion, n: u64) -> Vec<u8> {
    framed_at(id, version, n, T0)
}

/// Order `n`, its event time a few seconds before `base_ms`, framed with schema id `id`.
pub(super) fn framed_at(id: SchemaId, version: SchemaVersion, n: u64, base_ms: i64) -> Vec<u8> {
    let text = match version {
        SchemaVersion::V1 => builtin::ORDERS_V1,
        SchemaVersion::V2 => builtin::ORDERS_V2,
    };
    let parsed = ParsedSchema::parse(text).unwrap();
    let mut out = Vec::new();
    wire::write_header(&mut out, id);
    encode(&parsed.model, &order(7, n, version, base_ms), &mut out).unwrap();
    out
}

pub(super) fn decoder() -> BronzeDecoder {
    let mut d = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
    d.add_writer_schema(V1, builtin::ORDERS_V1).unwrap();
    d.add_writer_schema(V2, builtin::ORDERS_V2).unwrap();
    d
}

pub(super) fn records(payloads: &[Vec<u8>]) -> Vec<KafkaRecord<'_>> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| KafkaRecord {
            topic: "orders",
            partition: 3,
            offset: 100 + i as i64,
            key: Some(b"k".as_slice()),
            timestamp_ms: Some(T0),
            payload: p,
        })
        .collect()
}

fn strings(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = cast(batch.column_by_name(col).unwrap(), &DataType::Utf8).unwrap();
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn offsets(batch: &RecordBatch) -> Vec<i64> {
    let a = batch.column_by_name("_kafka_offset").unwrap();
    a.as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn v1_and_v2_land_in_one_batch_with_metadata() {
    let mut d = decoder();
    let payloads: Vec<_> = (0..6)
        .map(|n| {
            let v = if n % 2 == 0 {
                SchemaVersion::V1
            } else {
                SchemaVersion::V2
            };
            framed(if n % 2 == 0 { V1 } else { V2 }, v, n)
        })
        .collect();
    let out = d.decode(&records(&payloads), 42).unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let b = out.batch.unwrap();
    assert_eq!(b.num_rows(), 6);
    assert_eq!(b.schema(), d.schema());
    assert_eq!(out.decoded, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(offsets(&b), vec![100, 101, 102, 103, 104, 105]);
    // v1 rows: coupon_code is null (its default), channel takes its default "web".
    let coupons = strings(&b, "coupon_code");
    let channels = strings(&b, "channel");
    for i in [0, 2, 4] {
        assert_eq!(coupons[i], None);
        assert_eq!(channels[i].as_deref(), Some("web"));
    }
    assert!(channels.iter().all(Option::is_some));
    let ids = cast(b.column_by_name("_schema_id").unwrap(), &DataType::Int64).unwrap();
    assert_eq!(
        ids.as_primitive::<Int64Type>().values().to_vec(),
        vec![11, 12, 11, 12, 11, 12]
    );
    assert_eq!(strings(&b, "_kafka_topic")[0].as_deref(), Some("orders"));
    // event_date is the UTC day of event_time.
    let et = b.column_by_name("event_time").unwrap();
    assert_eq!(
        et.data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
    );
    let dates = b.column_by_name("event_date").unwrap();
    let dates = dates.as_any().downcast_ref::<Date32Array>().unwrap();
    let ts = et
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    for i in 0..6 {
        assert_eq!(
            dates.value(i) as i64,
            ts.value(i).div_euclid(MICROS_PER_DAY)
        );
    }
    let ingested = b.column_by_name("_ingested_at").unwrap();
    let ingested = ingested
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert!(ingested.values().iter().all(|&v| v == 42));
}

#[test]
fn bad_records_are_reported_and_the_rest_decode() {
    let mut d = decoder();
    let good = framed(V2, SchemaVersion::V2, 1);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 6);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0xff; 9]);
    let mut wrong_magic = good.clone();
    wrong_magic[0] = 7;
    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    let payloads = vec![
        framed(V1, SchemaVersion::V1, 0), // 0 good
        b"\x00\x00".to_vec(),             // 1 too short
        wrong_magic,                      // 2
        good.clone(),                     // 3 good
        unknown,                          // 4
        truncated,                        // 5
        good.clone(),                     // 6 good
        trailing,                         // 7
        b"\x00\x00\x00\x00\x0c\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(), // 8 garbage body
        good.clone(),                     // 9 good
    ];
    let out = d.decode(&records(&payloads), 0).unwrap();
    let faults: Vec<_> = out.errors.iter().map(|e| (e.index, e.fault)).collect();
    assert_eq!(
        faults,
        vec![
            (1, DecodeFault::Undecodable),
            (2, DecodeFault::WrongMagic),
            (4, DecodeFault::UnknownSchemaId),
            (5, DecodeFault::Undecodable),
            (7, DecodeFault::Undecodable),
            (8, DecodeFault::Undecodable),
        ]
    );
    assert_eq!(out.errors[2].schema_id, Some(999));
    assert_eq!(out.errors[2].offset, 104);
    assert!(
        out.errors[2].detail.contains("999"),
        "{}",
        out.errors[2].detail
    );
    assert_eq!(out.decoded, vec![0, 3, 6, 9]);
    let b = out.batch.unwrap();
    assert_eq!(offsets(&b), vec![100, 103, 106, 109]);
    // A header of ff ff ff ff is schema id -1, as Confluent reads it: the id and the text agree.
    let mut hostile = framed(V2, SchemaVersion::V2, 1);
    hostile[1..5].copy_from_slice(&[0xff; 4]);
    let out = d.decode(&records(&[hostile]), 0).unwrap();
    assert_eq!(out.errors[0].schema_id, Some(-1));
    assert_eq!(out.errors[0].detail, "schema id -1 is not registered");
    // The replayed rows are whole: every good row has its order id.
    assert!(strings(&b, "order_id").iter().all(Option::is_some));
    // And the decoder is still usable afterwards.
    let again = d.decode(&records(&[good]), 0).unwrap();
    assert_eq!(again.batch.unwrap().num_rows(), 1);
}

#[test]
fn incompatible_writer_schema_is_a_schema_mismatch() {
    let mut d = decoder();
    assert!(
        d.add_writer_schema(13, builtin::ORDERS_INCOMPATIBLE)
            .is_err()
    );
    let mut p = framed(V2, SchemaVersion::V2, 0);
    p[1..5].copy_from_slice(&13u32.to_be_bytes());
    let out = d
        .decode(&records(&[p, framed(V2, SchemaVersion::V2, 1)]), 0)
        .unwrap();
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].fault, DecodeFault::SchemaMismatch);
    assert_eq!(out.decoded, vec![1]);
}

#[test]
fn many_records_across_flushes_and_replays_keep_order() {
    many_records_keep_order(decoder());
}

/// The rebuild-and-replay path, for bodies the structural check lets through (here: all of
/// them, with the check off).
#[test]
fn without_the_structural_check_replays_keep_order() {
    let mut d = decoder();
    d.shapes.clear();
    d.directs.clear();
    many_records_keep_order(d);
    let mut d = decoder();
    d.shapes.clear();
    d.directs.clear();
    let good = framed(V2, SchemaVersion::V2, 1);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 3);
    let out = d
        .decode(&records(&[good.clone(), truncated, good]), 0)
        .unwrap();
    assert_eq!(out.decoded, vec![0, 2]);
    assert_eq!(out.errors[0].fault, DecodeFault::Undecodable);
}

/// The one-pass decoder and the general path (structural check + arrow-avro) give the same
/// rows and the same verdicts, on good v1 and v2 bodies and on every truncation, trailing
/// garbage and thousands of single-byte corruptions of them.
#[test]
fn the_one_pass_decoder_agrees_with_arrow_avro() {
    let mut direct = decoder();
    assert!(direct.directs.contains_key(&V1) && direct.directs.contains_key(&V2));
    let mut general = decoder();
    general.directs.clear();
    let mut payloads = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in 0..400u64 {
        let (id, v) = if n % 3 == 0 {
            (V1, SchemaVersion::V1)
        } else {
            (V2, SchemaVersion::V2)
        };
        let good = framed(id, v, n);
        payloads.push(good.clone());
        if n < 4 {
            for cut in wire::HEADER_LEN..good.len() {
                payloads.push(good[..cut].to_vec());
            }
            let mut trailing = good.clone();
            trailing.push(0);
            payloads.push(trailing);
        }
        for _ in 0..8 {
            let mut bad = good.clone();
            let at = wire::HEADER_LEN + (next() as usize) % (good.len() - wire::HEADER_LEN);
            bad[at] ^= 1 << (next() % 8);
            payloads.push(bad);
        }
    }
    let recs = records(&payloads);
    let (a, b) = (
        direct.decode(&recs, 7).unwrap(),
        general.decode(&recs, 7).unwrap(),
    );
    let verdicts = |o: &DecodeOutcome| -> Vec<(usize, DecodeFault)> {
        o.errors.iter().map(|e| (e.index, e.fault)).collect()
    };
    assert_eq!(verdicts(&a), verdicts(&b));
    assert!(a.errors.len() > 500, "{} bad records", a.errors.len());
    assert_eq!(a.decoded, b.decoded);
    assert_eq!(a.batch.unwrap(), b.batch.unwrap());
}

fn many_records_keep_order(mut d: BronzeDecoder) {
    let n = DECODER_BATCH * 2 + 500;
    let payloads: Vec<_> = (0..n)
        .map(|i| {
            if i % 997 == 5 {
                b"\x00\x00\x00\x00\x0c\xff\xff".to_vec()
            } else if i % 3 == 0 {
                framed(V1, SchemaVersion::V1, i as u64)
            } else {
                framed(V2, SchemaVersion::V2, i as u64)
            }
        })
        .collect();
    let out = d.decode(&records(&payloads), 0).unwrap();
    let bad: Vec<usize> = (0..n).filter(|i| i % 997 == 5).collect();
    assert_eq!(out.errors.iter().map(|e| e.index).collect::<Vec<_>>(), bad);
    let good: Vec<usize> = (0..n).filter(|i| i % 997 != 5).collect();
    assert_eq!(out.decoded, good);
    let b = out.batch.unwrap();
    let want: Vec<i64> = good.iter().map(|&i| 100 + i as i64).collect();
    assert_eq!(offsets(&b), want);
}

#[test]
fn no_writer_schemas_means_every_record_is_unknown() {
    let mut d = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
    let out = d
        .decode(&records(&[framed(V2, SchemaVersion::V2, 0)]), 0)
        .unwrap();
    assert!(out.batch.is_none());
    assert_eq!(out.errors[0].fault, DecodeFault::UnknownSchemaId);
}

/// A string that is not UTF-8 used to fail the whole flush (arrow validates string columns):
/// one such record stopped every batch it was in. It is a bad record like any other now.
#[test]
fn invalid_utf8_is_one_bad_record_not_a_failed_batch() {
    let mut d = decoder();
    let good = framed(V2, SchemaVersion::V2, 1);
    let mut not_utf8 = good.clone();
    // The first field, order_id: a one-byte length after the header, then its characters.
    assert!(not_utf8[wire::HEADER_LEN] < 0x80);
    not_utf8[wire::HEADER_LEN + 1] = 0xff;
    let out = d
        .decode(&records(&[good.clone(), not_utf8, good]), 0)
        .unwrap();
    assert_eq!(out.decoded, vec![0, 2]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].fault, DecodeFault::Undecodable);
    assert!(
        out.errors[0].detail.contains("UTF-8"),
        "{}",
        out.errors[0].detail
    );
}
