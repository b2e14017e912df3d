// Temporary micro-benchmark (not committed).
use flowctl::contracts::encode::encode;
use flowctl::contracts::generate::{SchemaVersion, order};
use flowctl::contracts::schema::{ParsedSchema, builtin};
use flowctl::contracts::wire;
use flowctl::lake::{BronzeDecoder, KafkaRecord};
use std::time::Instant;

fn main() {
    let parsed = ParsedSchema::parse(builtin::ORDERS_V2).unwrap();
    let n = 100_000u64;
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut out = Vec::new();
            wire::write_header(&mut out, 12);
            encode(&parsed.model, &order(7, i, SchemaVersion::V2, 1_763_900_000_000), &mut out).unwrap();
            if i % 1000 == 500 {
                let l = out.len();
                out.truncate(5 + (l - 5) / 3);
            }
            out
        })
        .collect();
    let bytes: usize = payloads.iter().map(|p| p.len()).sum();
    println!("{} records, {} bytes", n, bytes);
    let records: Vec<KafkaRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| KafkaRecord { topic: "orders", partition: 0, offset: i as i64, key: Some(b"key-0123456789"), timestamp_ms: Some(1), payload: p })
        .collect();
    let mut d = BronzeDecoder::new(builtin::ORDERS_V2).unwrap();
    d.add_writer_schema(12, builtin::ORDERS_V2).unwrap();
    let mut best = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        let out = d.decode(&records, 0).unwrap();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.errors.len(), 100);
    }
    println!("best of 30: {best:.1} ms");
}
