//! Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, then the Avro
//! binary body. Every Confluent client frames messages this way, so it is the contract between
//! our producers and any consumer.

/// The only magic byte Confluent has defined.
pub const MAGIC: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// A schema id as the wire carries it: a signed 32-bit int, which is how Confluent's
/// serializers write and read it (Java `ByteBuffer.getInt`) and what registries hand out.
/// Reading the four bytes as unsigned made a hostile `ff ff ff ff` header show up as
/// 4294967295 in one place and -1 in another (the audit table's `schema_id` is an `int`).
pub type SchemaId = i32;

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
pub fn write_header(out: &mut Vec<u8>, schema_id: SchemaId) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed message into its schema id and Avro body.
pub fn split(msg: &[u8]) -> Result<(SchemaId, &[u8]), WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::TooShort(msg.len()));
    }
    if msg[0] != MAGIC {
        return Err(WireError::BadMagic(msg[0]));
    }
    let id = SchemaId::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
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

    #[test]
    fn the_schema_id_is_signed_as_confluent_reads_it() {
        assert_eq!(split(&[0, 0xff, 0xff, 0xff, 0xff]), Ok((-1, &[][..])));
        assert_eq!(split(&[0, 0x80, 0, 0, 0]), Ok((i32::MIN, &[][..])));
        let mut buf = Vec::new();
        write_header(&mut buf, -2);
        assert_eq!(buf, [0, 0xff, 0xff, 0xff, 0xfe]);
    }
}
