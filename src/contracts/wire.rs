//! Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, then the Avro
//! binary body. Every Confluent client frames messages this way, so it is the contract between
//! our producers and any consumer.

/// The only magic byte Confluent has defined.
pub const MAGIC: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error(
        "message of {0} bytes is too short for the Confluent wire format: expected at least 5 (magic byte + schema id)"
    )]
    TooShort(usize),
    #[error("wrong magic byte: expected 0, found {0}")]
    BadMagic(u8),
}

/// Appends the 5-byte header for `schema_id` to `out`.
pub fn write_header(out: &mut Vec<u8>, schema_id: u32) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed message into its schema id and Avro body.
pub fn split(msg: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::TooShort(msg.len()));
    }
    if msg[0] != MAGIC {
        return Err(WireError::BadMagic(msg[0]));
    }
    let id = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
    Ok((id, &msg[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_header(&mut buf, 0x0102_0304);
        buf.extend_from_slice(b"body");
        assert_eq!(buf[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split(&buf), Ok((0x0102_0304, &b"body"[..])));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(split(&[0, 0, 0]), Err(WireError::TooShort(3)));
        assert_eq!(split(&[1, 0, 0, 0, 7, 9]), Err(WireError::BadMagic(1)));
        // An empty body is a valid frame (e.g. a record with no fields).
        assert_eq!(split(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
    }
}
