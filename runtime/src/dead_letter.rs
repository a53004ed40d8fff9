//! The dead-letter policy (STYLE 7, KIP-1034): one function per failure source decides
//! what happens to a record, and one function builds the dead-letter record.
//!
//! A dead-lettered record goes to `<source topic>.dlq`, same partition as its source, with
//! its original key and value bytes — card-number-like digit runs and credential values
//! (`password=…`) masked (`*` for each byte, so Avro string lengths stay valid) — and
//! these headers:
//!
//! | header | value |
//! |---|---|
//! | `paystream.dlq.reason` | a [`DeadLetterReason`] name, e.g. `invalid_value` |
//! | `paystream.dlq.error` | the error message (card numbers and credentials redacted, ≤ 1024 bytes) |
//! | `paystream.dlq.source.topic` / `.partition` / `.offset` | where the record was read |
//! | `paystream.dlq.source.timestamp` | its timestamp, milliseconds since the Unix epoch |
//! | `paystream.dlq.application.id` | the application that dead-lettered it |

use paystream_processors::{DeadLetterReason, Origin};
use paystream_schemas::validate::{Violation, credential_ranges, pan_ranges, redact_sensitive};
use paystream_schemas::{DecodeError, DecodeErrorKind};

/// What to do with a record that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Write it to the dead-letter queue and go on.
    DeadLetter(DeadLetterReason),
    /// Try the same record again later (a dependency is down).
    Retry,
}

/// The policy for records that could not be decoded.
pub fn on_decode_error(error: &DecodeError) -> FailureAction {
    match error.kind {
        DecodeErrorKind::Undecodable => FailureAction::DeadLetter(DeadLetterReason::Undecodable),
        DecodeErrorKind::BadMagicByte => FailureAction::DeadLetter(DeadLetterReason::BadMagicByte),
        DecodeErrorKind::UnknownSchema => {
            FailureAction::DeadLetter(DeadLetterReason::UnknownSchema)
        }
        DecodeErrorKind::RegistryUnavailable => FailureAction::Retry,
    }
}

/// The policy for decoded records whose values break the contract.
pub fn on_violation(violation: &Violation) -> FailureAction {
    match violation {
        Violation::InvalidValue(_) => FailureAction::DeadLetter(DeadLetterReason::InvalidValue),
        Violation::PanDetected { .. } => FailureAction::DeadLetter(DeadLetterReason::PanDetected),
        Violation::SecretDetected { .. } => {
            FailureAction::DeadLetter(DeadLetterReason::SecretDetected)
        }
    }
}

/// Header names of dead-letter records.
pub mod headers {
    pub const REASON: &str = "paystream.dlq.reason";
    pub const ERROR: &str = "paystream.dlq.error";
    pub const SOURCE_TOPIC: &str = "paystream.dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "paystream.dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "paystream.dlq.source.offset";
    pub const SOURCE_TIMESTAMP: &str = "paystream.dlq.source.timestamp";
    pub const APPLICATION_ID: &str = "paystream.dlq.application.id";
}

/// Longest error message written to a header, bytes.
pub const ERROR_HEADER_BYTES_MAX: usize = 1024;

/// A dead-letter record ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
    pub headers: Vec<(&'static str, String)>,
}

/// Builds the dead-letter record of `origin`.
pub fn dead_letter_record(
    origin: &Origin,
    reason: DeadLetterReason,
    message: &str,
    application_id: &str,
) -> DeadLetterRecord {
    let mut error = redact_sensitive(message);
    if error.len() > ERROR_HEADER_BYTES_MAX {
        let mut cut = ERROR_HEADER_BYTES_MAX;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    DeadLetterRecord {
        topic: format!("{}.dlq", origin.topic),
        partition: origin.partition,
        key: origin.key.as_deref().map(mask_sensitive),
        value: origin.value.as_deref().map(mask_sensitive),
        timestamp_ms: origin.timestamp_ms,
        headers: vec![
            (headers::REASON, reason.as_str().to_string()),
            (headers::ERROR, error),
            (headers::SOURCE_TOPIC, origin.topic.clone()),
            (headers::SOURCE_PARTITION, origin.partition.to_string()),
            (headers::SOURCE_OFFSET, origin.offset.to_string()),
            (headers::SOURCE_TIMESTAMP, origin.timestamp_ms.to_string()),
            (headers::APPLICATION_ID, application_id.to_string()),
        ],
    }
}

/// [`mask_pans`], then every credential value ([`credential_ranges`]) overwritten with
/// `*` byte for byte.
pub fn mask_sensitive(bytes: &[u8]) -> Vec<u8> {
    let mut out = mask_pans(bytes);
    for (start, end) in credential_ranges(bytes) {
        out[start..end].fill(b'*');
    }
    out
}

/// Overwrites each digit of every card-number-like run in `bytes` with `*`, keeping the
/// length of every byte string (so framed Avro stays decodable).
///
/// Besides [`pan_ranges`], any unbroken run of 13–19 digits passing the Luhn check is
/// masked: in binary Avro a length byte can sit between two strings' digits and hide a
/// card number's boundary, and masking too much here loses nothing that matters.
pub fn mask_pans(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut mask = |start: usize, end: usize| {
        for b in &mut out[start..end] {
            if b.is_ascii_digit() {
                *b = b'*';
            }
        }
    };
    for (start, end) in pan_ranges(bytes) {
        mask(start, end);
    }
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if (13..=19).contains(&(i - start))
            && paystream_schemas::validate::luhn_valid(&bytes[start..i])
        {
            mask(start, i);
        }
        i = i.max(start + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_map_to_reasons_and_registry_outages_retry() {
        let err = |kind| DecodeError {
            kind,
            message: String::new(),
        };
        assert_eq!(
            on_decode_error(&err(DecodeErrorKind::BadMagicByte)),
            FailureAction::DeadLetter(DeadLetterReason::BadMagicByte)
        );
        assert_eq!(
            on_decode_error(&err(DecodeErrorKind::RegistryUnavailable)),
            FailureAction::Retry
        );
    }

    #[test]
    fn a_dead_letter_keeps_bytes_and_says_why_without_card_numbers() {
        let origin = Origin {
            topic: "payment_initiated".into(),
            partition: 2,
            offset: 17,
            timestamp_ms: 99,
            key: Some(b"m:k".to_vec()),
            value: Some(b"\x00\x00\x00\x00\x01\x20pm 4111111111111111 x".to_vec()),
        };
        let dl = dead_letter_record(
            &origin,
            DeadLetterReason::PanDetected,
            "token 4111111111111111 looks like a card",
            "app",
        );
        assert_eq!(dl.topic, "payment_initiated.dlq");
        assert_eq!(dl.partition, 2);
        assert_eq!(dl.key.as_deref(), Some(&b"m:k"[..]));
        let value = dl.value.unwrap();
        // A digit right before the length byte does not hide the card number either.
        assert_eq!(
            mask_pans(b"id9\x204111111111111111"),
            b"id9\x20****************".to_vec()
        );
        assert_eq!(value.len(), origin.value.as_ref().unwrap().len());
        assert!(!String::from_utf8_lossy(&value).contains("4111"));
        let header = |name| {
            dl.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header(headers::REASON), "pan_detected");
        assert_eq!(header(headers::SOURCE_OFFSET), "17");
        assert!(!header(headers::ERROR).contains("4111"));
    }
}
