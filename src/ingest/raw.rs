//! The records of one micro-batch as the consumer thread copies them out of librdkafka's
//! buffers: one arena per batch (one allocation, not two per record), records as ranges into
//! it. Keys and values keep whether they were null.

use std::collections::BTreeMap;
use std::ops::Range;

use super::decode::KafkaRecord;

/// One record of a [`RawBatch`]: ranges into the batch's arena.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Range<usize>>,
    /// `None`: the record has a null value (a Kafka tombstone), which is not the same as an
    /// empty one and is kept as null all the way to the DLQ.
    pub payload: Option<Range<usize>>,
}

impl RawRecord {
    /// Key and value bytes together: what [`SourcePlan::batch_bytes`] and the ingest's
    /// `max_record_bytes` count.
    pub fn size(&self) -> usize {
        let len = |r: &Option<Range<usize>>| r.as_ref().map_or(0, |r| r.len());
        len(&self.key) + len(&self.payload)
    }
}

/// Records copied out of librdkafka's buffers into one arena (one allocation per batch, not
/// two per record).
#[derive(Debug, Default)]
pub struct RawBatch {
    pub arena: Vec<u8>,
    pub records: Vec<RawRecord>,
}

impl RawBatch {
    /// An empty batch with room for `records` records of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> RawBatch {
        RawBatch {
            arena: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
        }
    }

    /// Copies one record into the batch.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        let mut copy = |bytes: &[u8]| {
            let s = self.arena.len();
            self.arena.extend_from_slice(bytes);
            s..self.arena.len()
        };
        let key = key.map(&mut copy);
        let payload = payload.map(&mut copy);
        self.records.push(RawRecord {
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
        });
    }

    pub fn key(&self, r: &RawRecord) -> Option<&[u8]> {
        r.key.clone().map(|k| &self.arena[k])
    }
    /// The value, `None` for a null one.
    pub fn value(&self, r: &RawRecord) -> Option<&[u8]> {
        r.payload.clone().map(|p| &self.arena[p])
    }
    /// The value's bytes, empty for a null one (the decoder's view: no bytes to decode).
    pub fn payload(&self, r: &RawRecord) -> &[u8] {
        self.value(r).unwrap_or_default()
    }
    /// The records as the bronze decoder takes them, borrowing from the arena.
    pub fn kafka_records<'a>(&'a self, topic: &'a str) -> Vec<KafkaRecord<'a>> {
        self.records
            .iter()
            .map(|r| self.kafka_record(topic, r))
            .collect()
    }

    /// The records at `indices` only, as the bronze decoder takes them.
    pub fn kafka_records_at<'a>(
        &'a self,
        topic: &'a str,
        indices: &[usize],
    ) -> Vec<KafkaRecord<'a>> {
        indices
            .iter()
            .map(|&i| self.kafka_record(topic, &self.records[i]))
            .collect()
    }

    fn kafka_record<'a>(&'a self, topic: &'a str, r: &RawRecord) -> KafkaRecord<'a> {
        KafkaRecord {
            topic,
            partition: r.partition,
            offset: r.offset,
            key: self.key(r),
            timestamp_ms: r.timestamp_ms,
            payload: self.payload(r),
        }
    }

    /// The highest offset per partition in this batch.
    pub fn last_offsets(&self) -> BTreeMap<i32, i64> {
        self.offsets(i64::max)
    }

    /// The lowest offset per partition in this batch.
    pub fn first_offsets(&self) -> BTreeMap<i32, i64> {
        self.offsets(i64::min)
    }

    fn offsets(&self, pick: fn(i64, i64) -> i64) -> BTreeMap<i32, i64> {
        let mut m: BTreeMap<i32, i64> = BTreeMap::new();
        // Records of a partition mostly come in runs: one map lookup per run.
        let mut run: Option<(i32, i64)> = None;
        for r in &self.records {
            match &mut run {
                Some((p, o)) if *p == r.partition => *o = pick(*o, r.offset),
                _ => {
                    if let Some((p, o)) = run.replace((r.partition, r.offset)) {
                        let e = m.entry(p).or_insert(o);
                        *e = pick(*e, o);
                    }
                }
            }
        }
        if let Some((p, o)) = run {
            let e = m.entry(p).or_insert(o);
            *e = pick(*e, o);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_offsets_per_partition() {
        let mut b = RawBatch::default();
        for (p, o) in [(0, 5), (0, 6), (1, 9), (0, 7), (1, 8), (2, 1)] {
            b.push(p, o, None, None, Some(b"x"));
        }
        let first: Vec<_> = b.first_offsets().into_iter().collect();
        let last: Vec<_> = b.last_offsets().into_iter().collect();
        assert_eq!(first, vec![(0, 5), (1, 8), (2, 1)]);
        assert_eq!(last, vec![(0, 7), (1, 9), (2, 1)]);
        assert!(RawBatch::default().last_offsets().is_empty());
    }
}
