//! The smallest cases on which the one-pass decoder and the general path (structural check +
//! arrow-avro) once disagreed, or on which either panicked, found by the property in
//! `direct_props`. Each decodes both ways and holds both to the reference's answer.

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

use super::tests::records;
use super::*;

const ID: SchemaId = 2;
const V1: SchemaId = 1;

fn schema(fields: &str) -> String {
    format!(r#"{{"type": "record", "name": "R", "namespace": "cases", "fields": [{fields}]}}"#)
}

fn framed(id: SchemaId, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    wire::write_header(&mut p, id);
    p.extend_from_slice(body);
    p
}

/// A decoder of `reader` with `writers` registered, both on the one-pass path (asserted) and
/// on the general one.
fn decoders(reader: &str, writers: &[(SchemaId, &str)]) -> (BronzeDecoder, BronzeDecoder) {
    let make = || {
        let mut d = BronzeDecoder::new(reader).unwrap();
        for (id, w) in writers {
            d.add_writer_schema(*id, w).unwrap();
        }
        d
    };
    let direct = make();
    assert_eq!(direct.directs.len(), writers.len(), "on the one-pass path");
    let mut general = make();
    general.directs.clear();
    (direct, general)
}

/// `payloads` decoded both ways: the two outcomes, asserted the same.
fn both(reader: &str, writers: &[(SchemaId, &str)], payloads: &[Vec<u8>]) -> DecodeOutcome {
    let (mut direct, mut general) = decoders(reader, writers);
    let recs = records(payloads);
    let a = direct.decode(&recs, 7).expect("the one-pass path decodes");
    let b = general.decode(&recs, 7).expect("the general path decodes");
    let verdicts = |o: &DecodeOutcome| -> Vec<(usize, DecodeFault)> {
        o.errors.iter().map(|e| (e.index, e.fault)).collect()
    };
    assert_eq!(verdicts(&a), verdicts(&b), "verdicts");
    assert_eq!(a.decoded, b.decoded, "rows");
    assert_eq!(a.batch, b.batch, "batches");
    a
}

/// A long whose tenth byte is above 1 holds more than 64 bits: arrow-avro refuses it ("bad
/// varint"). The one-pass decoder (and the structural check) took it, dropping the high bits.
#[test]
fn a_varint_past_64_bits_is_a_bad_record() {
    let s = schema(r#"{"name": "x", "type": "long"}"#);
    let past = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    // The largest ten bytes that fit: zig-zag u64::MAX, i64::MIN.
    let mut fits = past;
    fits[9] = 0x01;
    let out = both(&s, &[(ID, &s)], &[framed(ID, &past), framed(ID, &fits)]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].index, 0);
    assert_eq!(out.errors[0].fault, DecodeFault::Undecodable);
    assert!(
        out.errors[0].detail.contains("64 bits"),
        "{}",
        out.errors[0].detail
    );
    let b = out.batch.unwrap();
    assert_eq!(
        b.column(0).as_primitive::<Int64Type>().values(),
        &[i64::MIN]
    );
}

/// An array block with a negative count is followed by its size in bytes, which arrow-avro
/// refuses when negative. The one-pass decoder (and the structural check) skipped it whatever
/// it was.
#[test]
fn a_negative_block_size_is_a_bad_record() {
    let s = schema(
        r#"{"name": "a", "type": {"type": "array", "items": {"type": "record", "name": "I",
            "fields": [{"name": "i0", "type": "int"}]}}}"#,
    );
    // Count -1, size -2, the item (i0 = 1), the end.
    let negative = [0x01, 0x03, 0x02, 0x00];
    // Count -1, size 1: the same item, well formed.
    let sized = [0x01, 0x02, 0x02, 0x00];
    let out = both(
        &s,
        &[(ID, &s)],
        &[framed(ID, &negative), framed(ID, &sized)],
    );
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].index, 0);
    assert!(
        out.errors[0].detail.contains("negative block size"),
        "{}",
        out.errors[0].detail
    );
    assert_eq!(out.decoded, vec![1]);
}

/// A reader field v1 lacks takes its default: a timestamp-millis default is in milliseconds,
/// the column in microseconds. The one-pass decoder stored 1000 ms as 1000 µs.
#[test]
fn a_timestamp_millis_default_is_read_in_milliseconds() {
    let v1 = schema(r#"{"name": "x", "type": "long"}"#);
    let reader = schema(
        r#"{"name": "x", "type": "long"},
           {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"},
            "default": 1000}"#,
    );
    let out = both(&reader, &[(V1, &v1)], &[framed(V1, &[0x02])]);
    let b = out.batch.unwrap();
    let t = b.column_by_name("t").unwrap();
    assert_eq!(
        t.as_primitive::<TimestampMicrosecondType>().values(),
        &[1_000_000]
    );
}

/// A timestamp-millis whose microseconds overflow is a bad record on both paths. The one-pass
/// decoder said so; the general path cast it to null in a nullable column, and in one that is
/// not nullable failed the whole batch ("declared as non-nullable but contains null values").
#[test]
fn a_timestamp_millis_past_microseconds_is_a_bad_record() {
    let ts = r#"{"type": "long", "logicalType": "timestamp-millis"}"#;
    let long = |v: i64| {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        while u >= 0x80 {
            out.push(u as u8 | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
        out
    };
    let (now, past) = (long(1_763_900_000_000), long(i64::MAX / 1000 + 1));
    for (field, prefix, suffix) in [
        (
            format!(r#"{{"name": "event_time", "type": {ts}}}"#),
            vec![],
            vec![],
        ),
        (
            format!(r#"{{"name": "event_time", "type": ["null", {ts}]}}"#),
            vec![0x02],
            vec![],
        ),
        (
            format!(
                r#"{{"name": "a", "type": {{"type": "array", "items": {{"type": "record",
                    "name": "I", "fields": [{{"name": "i0", "type": {ts}}}]}}}}}}"#
            ),
            vec![0x02],
            vec![0x00],
        ),
    ] {
        let s = schema(&field);
        let body = |v: &[u8]| framed(ID, &[&prefix[..], v, &suffix[..]].concat());
        let out = both(&s, &[(ID, &s)], &[body(&now), body(&past)]);
        assert_eq!(out.decoded, vec![0], "{field}");
        assert_eq!(out.errors[0].index, 1);
        assert!(
            out.errors[0].detail.contains("timestamp-millis"),
            "{}",
            out.errors[0].detail
        );
    }
}

/// Records without fields take no bytes in an array (the item count is all there is); the
/// one-pass decoder made of them a struct array without children, which panics (arrow needs
/// its length given). They are left to arrow-avro now, which cannot flush them either: an
/// error for the batch, not a panic.
#[test]
fn arrays_of_records_without_fields_are_left_to_arrow_avro() {
    let s = schema(
        r#"{"name": "a", "type": {"type": "array", "items": {"type": "record", "name": "I",
            "fields": []}}}"#,
    );
    let mut d = BronzeDecoder::new(&s).unwrap();
    d.add_writer_schema(ID, &s).unwrap();
    assert!(d.directs.is_empty());
    // Three items, the end.
    let _ = d.decode(&records(&[framed(ID, &[0x06, 0x00])]), 7);
}

/// Refuses the rows whose `_kafka_timestamp` (column `column`) is null.
struct NoKafkaTime {
    column: usize,
}

impl RowJudge for NoKafkaTime {
    fn judge(&self, row: &dyn Row) -> Option<Refusal> {
        matches!(row.cell(self.column), Cell::Null).then(|| Refusal {
            rule: 1,
            found: "null".into(),
        })
    }
}

/// Producers set the Kafka timestamp, to any long: one whose microseconds overflow is a null
/// `_kafka_timestamp`, for the judge too. Both paths multiplied it (a panic in a debug build, a
/// wrapped value in a release one).
#[test]
fn a_kafka_timestamp_past_microseconds_is_null() {
    let s = schema(r#"{"name": "x", "type": "long"}"#);
    let payloads = vec![framed(ID, &[0x02]); 3];
    let mut recs = records(&payloads);
    recs[0].timestamp_ms = Some(i64::MAX);
    recs[1].timestamp_ms = Some(i64::MIN);
    let (mut direct, mut general) = decoders(&s, &[(ID, &s)]);
    let a = direct.decode(&recs, 7).unwrap().batch.unwrap();
    let b = general.decode(&recs, 7).unwrap().batch.unwrap();
    assert_eq!(a, b);
    let kt = a.column_by_name("_kafka_timestamp").unwrap();
    assert_eq!(kt.null_count(), 2);
    assert!(kt.is_valid(2));
    let judge = NoKafkaTime {
        column: direct.schema().index_of("_kafka_timestamp").unwrap(),
    };
    let a = direct.decode_parts(&recs, 7, Some(&judge)).unwrap();
    let b = general.decode_parts(&recs, 7, Some(&judge)).unwrap();
    assert_eq!(a.refused, b.refused);
    assert_eq!(
        a.refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1]
    );
}
