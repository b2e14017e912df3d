//! Records refused before decoding, for what they are as Kafka records rather than as Avro: a
//! null value (a tombstone: there is no event to decode) and a record larger than the ingest's
//! `max_record_bytes` (a bound of our own, so that one huge record cannot take a batch's memory
//! and its Arrow columns, whose 32-bit offsets hold 2 GiB, with it). Both go to the DLQ like any
//! other bad record, with their bytes kept whole in the audit table.

use super::raw::RawBatch;

/// Default `max_record_bytes`: key and value bytes of the largest record ingest decodes.
/// Far above any event the contracts describe (a few hundred bytes) and above what brokers
/// accept by default (about 1 MB), so it only stops records nobody meant to send.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// DLQ `error_type` of a record with a null value.
pub const NULL_VALUE: &str = "NULL_VALUE";
/// DLQ `error_type` of a record larger than `max_record_bytes`.
pub const RECORD_TOO_LARGE: &str = "RECORD_TOO_LARGE";

/// Why a record is refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// The value is null (a Kafka tombstone), not merely empty.
    NullValue,
    /// Key and value together are `bytes`, above `limit`.
    TooLarge { bytes: usize, limit: usize },
}

impl Screened {
    /// The DLQ `error_type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Screened::NullValue => NULL_VALUE,
            Screened::TooLarge { .. } => RECORD_TOO_LARGE,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Screened::NullValue => "the record's value is null (a Kafka tombstone): there is no \
                                    event to decode"
                .to_string(),
            Screened::TooLarge { bytes, limit } => format!(
                "the record is {bytes} bytes (key and value), above max_record_bytes {limit}: \
                 not decoded (its bytes are kept whole in the audit table; raise \
                 max_record_bytes and replay to land it)"
            ),
        }
    }
}

/// The records of `raw` refused before decoding, as (record index, why), in record order.
pub fn screen(raw: &RawBatch, max_record_bytes: usize) -> Vec<(usize, Screened)> {
    raw.records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if r.payload.is_none() {
                Some((i, Screened::NullValue))
            } else if r.size() > max_record_bytes {
                Some((
                    i,
                    Screened::TooLarge {
                        bytes: r.size(),
                        limit: max_record_bytes,
                    },
                ))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_values_and_records_above_the_limit_are_screened_out() {
        let mut raw = RawBatch::default();
        raw.push(0, 0, None, Some(b"k"), Some(b"\0\0\0\0\x01ok"));
        raw.push(0, 1, None, Some(b"k"), None);
        raw.push(0, 2, None, None, Some(&[7u8; 20]));
        raw.push(0, 3, None, Some(&[1u8; 15]), Some(b""));
        let out = screen(&raw, 12);
        assert_eq!(
            out,
            vec![
                (1, Screened::NullValue),
                (
                    2,
                    Screened::TooLarge {
                        bytes: 20,
                        limit: 12
                    }
                ),
                (
                    3,
                    Screened::TooLarge {
                        bytes: 15,
                        limit: 12
                    }
                ),
            ]
        );
        // An empty value is a value: the decoder says what is wrong with it.
        assert!(screen(&raw, 100).iter().all(|(i, _)| *i == 1));
        assert_eq!(out[1].1.error_type(), RECORD_TOO_LARGE);
        assert!(out[1].1.detail().contains("20 bytes"));
    }
}
