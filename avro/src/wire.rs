//! Framing of the [Confluent wire format]: magic byte `0`, a 4-byte big-endian schema id,
//! then the Avro binary body. Checked here before any registry call so that a record with
//! a wrong magic byte or a truncated header is classified without network I/O.
//!
//! [Confluent wire format]: https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format

/// The only magic byte the Confluent wire format defines.
pub const MAGIC_BYTE: u8 = 0;
/// Length of the header: magic byte plus 4-byte schema id.
pub const HEADER_LEN_BYTES: usize = 5;

/// Why a value is not a Confluent-framed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The value is absent or empty (a tombstone or an empty produce).
    #[error("empty value: expected a Confluent wire-format record")]
    Empty,
    /// Shorter than the 5-byte header.
    #[error("truncated value: {len_bytes} bytes, the Confluent header alone is 5")]
    Truncated { len_bytes: usize },
    /// First byte is not 0.
    #[error("bad magic byte {found:#04x}: expected 0x00 (Confluent wire format)")]
    BadMagicByte { found: u8 },
}

/// Splits a framed value into `(schema_id, avro_body)`.
///
/// # Errors
/// [`FramingError`] when the value is empty, shorter than the header, or has a magic byte
/// other than 0.
pub fn split(value: Option<&[u8]>) -> Result<(u32, &[u8]), FramingError> {
    let bytes = match value {
        None => return Err(FramingError::Empty),
        Some([]) => return Err(FramingError::Empty),
        Some(b) => b,
    };
    if bytes[0] != MAGIC_BYTE {
        return Err(FramingError::BadMagicByte { found: bytes[0] });
    }
    if bytes.len() < HEADER_LEN_BYTES {
        return Err(FramingError::Truncated {
            len_bytes: bytes.len(),
        });
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN_BYTES..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_and_body() {
        let framed = [0u8, 0, 0, 1, 2, 42, 43];
        assert_eq!(split(Some(&framed)), Ok((258, &[42u8, 43][..])));
    }

    #[test]
    fn rejects_empty_truncated_and_bad_magic() {
        assert_eq!(split(None), Err(FramingError::Empty));
        assert_eq!(split(Some(&[])), Err(FramingError::Empty));
        assert_eq!(
            split(Some(&[0, 0, 1])),
            Err(FramingError::Truncated { len_bytes: 3 })
        );
        assert_eq!(
            split(Some(&[7, 0, 0, 0, 1, 2])),
            Err(FramingError::BadMagicByte { found: 7 })
        );
    }
}
