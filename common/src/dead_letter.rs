//! The dead-letter format (KIP-1034; docs/architecture.md, "Bad input"): one function
//! builds the dead-letter record, for the stream runtime and the ledger sink alike
//! (what happens to a record that failed is the runtime's dead-letter policy).
//!
//! A dead-lettered record goes to `<source topic>.dlq`, same partition as its source, with
//! its original key and value bytes — card numbers and credential values (`password=…`)
//! masked (`*` for each byte, so Avro string lengths stay valid; see "Masking" below) —
//! and these headers:
//!
//! | header | value |
//! |---|---|
//! | `paystream.dlq.reason` | a [`DeadLetterReason`] name, e.g. `invalid_value` |
//! | `paystream.dlq.error` | the error message (card numbers and credentials redacted, ≤ 1024 bytes) |
//! | `paystream.dlq.source.topic` / `.partition` / `.offset` | where the record was read |
//! | `paystream.dlq.source.timestamp` | its timestamp, milliseconds since the Unix epoch |
//! | `paystream.dlq.application.id` | the application that dead-lettered it |
//! | `paystream.dlq.stage` | where it failed: `decode`, `validate`, `process`, `produce` or `sink` |
//! | `paystream.dlq.truncated` | only when key and value together were over [`DEAD_LETTER_KEY_VALUE_BYTES_MAX`] (an input topic allowing larger records): what was kept |
//! | `paystream.dlq.masked` | only when bytes of the key or value were masked: `key`, `value` or `key,value` |
//!
//! # Masking
//!
//! Dead letters are read by people (`paystream dlq`), so no card number may be readable in
//! them (`docs/architecture.md`, "Dead letters"). The key, the value and the error header
//! go through [`mask_pans`]: every window of 13–19 consecutive digits that passes the Luhn
//! check (ISO/IEC 7812-1) has its digits replaced by `*` — digits written unbroken or in
//! any groups, with up to [`SEPARATOR_RUN_BYTES_MAX`] bytes of space, tab, `-`, `.`, `/`,
//! `_`, `,` or non-ASCII (Unicode spaces and dashes) between digits, and whatever bytes
//! touch the number. The error header is masked the same way first, then redacted
//! ([`redact_sensitive`], for credentials: redacting a narrower card-like run before
//! masking could split a card number and leave part of it readable); credential values
//! ([`credential_ranges`]) are masked in key and value as well.
//!
//! Why a byte scan and not one that needs a card number to stand alone: a value is the
//! Confluent wire format (magic byte 0, 4-byte schema id, binary Avro), where each string
//! is preceded by its zigzag-varint length, and that length byte is often an ASCII letter
//! or digit (length 25 is `0x32`, `2`; length 40 is `0x50`, `P`). A card number at the
//! start of a string, or at the end of one followed by the next string's length, touches
//! such a byte, so a rule that wants letters and digits kept apart misses it. Neighbouring
//! digits are therefore part of the run and every window inside it is checked; this
//! over-masks (a Luhn check passes one time in ten by chance, and a masked length byte
//! can make the value undecodable), which a dead letter can afford, while a miss would
//! leak a card number.
//!
//! Decoding the value, masking the decoded string fields and re-encoding would find no
//! more: an Avro string's UTF-8 bytes are contiguous in the body, so every card number in
//! a decoded string is a byte run of the body, which the scan sees whatever surrounds it,
//! and a length-preserving mask leaves every string its length. The byte scan also
//! works when the schema is unknown or the value undecodable — the records that are
//! dead-lettered for exactly that reason.

use paystream_sensitive::{credential_ranges, redact_sensitive};

use crate::{DeadLetterReason, Origin, Stage};

pub use paystream_sensitive::mask::{
    PAN_DIGITS_MAX, PAN_DIGITS_MIN, SEPARATOR_RUN_BYTES_MAX, mask_pans, mask_pans_in_text,
};

#[cfg(test)]
mod mask;

/// Header names of dead-letter records.
pub mod headers {
    pub const REASON: &str = "paystream.dlq.reason";
    pub const ERROR: &str = "paystream.dlq.error";
    pub const SOURCE_TOPIC: &str = "paystream.dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "paystream.dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "paystream.dlq.source.offset";
    pub const SOURCE_TIMESTAMP: &str = "paystream.dlq.source.timestamp";
    pub const APPLICATION_ID: &str = "paystream.dlq.application.id";
    /// The [`Stage`](crate::Stage) at which the record failed.
    pub const STAGE: &str = "paystream.dlq.stage";
    /// Present when the record was too large for a dead-letter topic and its key or value
    /// was cut: what was kept of how many bytes.
    pub const TRUNCATED: &str = "paystream.dlq.truncated";
    /// Present when bytes of the key or value were masked (a card number or a credential
    /// value): `key`, `value` or `key,value`. Such a dead letter is not the record as it
    /// came, and `paystream dlq redrive` refuses it unless told otherwise.
    pub const MASKED: &str = "paystream.dlq.masked";
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

/// Builds the dead-letter record of `origin`, failed at the usual stage of `reason`
/// ([`DeadLetterReason::default_stage`]).
pub fn dead_letter_record(
    origin: &Origin,
    reason: DeadLetterReason,
    message: &str,
    application_id: &str,
) -> DeadLetterRecord {
    dead_letter_record_at(
        origin,
        reason,
        reason.default_stage(),
        message,
        application_id,
    )
}

/// Builds the dead-letter record of `origin`, failed at `stage`.
pub fn dead_letter_record_at(
    origin: &Origin,
    reason: DeadLetterReason,
    stage: Stage,
    message: &str,
    application_id: &str,
) -> DeadLetterRecord {
    let error = sanitize_error(message);
    let mut key = origin.key.as_deref().map(mask_sensitive);
    let mut value = origin.value.as_deref().map(mask_sensitive);
    let masked: Vec<&str> = [("key", &origin.key, &key), ("value", &origin.value, &value)]
        .into_iter()
        .filter(|(_, original, masked)| original != masked)
        .map(|(part, _, _)| part)
        .collect();
    let truncated = fit_key_and_value(&mut key, &mut value, DEAD_LETTER_KEY_VALUE_BYTES_MAX);
    let mut record = DeadLetterRecord {
        topic: format!("{}.dlq", origin.topic),
        partition: origin.partition,
        key,
        value,
        timestamp_ms: origin.timestamp_ms,
        headers: vec![
            (headers::REASON, reason.as_str().to_string()),
            (headers::ERROR, error),
            (headers::SOURCE_TOPIC, origin.topic.clone()),
            (headers::SOURCE_PARTITION, origin.partition.to_string()),
            (headers::SOURCE_OFFSET, origin.offset.to_string()),
            (headers::SOURCE_TIMESTAMP, origin.timestamp_ms.to_string()),
            (headers::APPLICATION_ID, application_id.to_string()),
            (headers::STAGE, stage.as_str().to_string()),
        ],
    };
    if let Some(truncated) = truncated {
        record.headers.push((headers::TRUNCATED, truncated));
    }
    if !masked.is_empty() {
        record.headers.push((headers::MASKED, masked.join(",")));
    }
    record
}

/// An error message as a dead letter carries it (the `paystream.dlq.error` header, and
/// wherever else a dead letter's reason is stored): card numbers masked
/// ([`mask_pans_in_text`]), then credentials and card-like runs redacted
/// ([`redact_sensitive`]), NUL bytes removed (PostgreSQL refuses them in text), at most
/// [`ERROR_HEADER_BYTES_MAX`] bytes, cut at a character boundary.
pub fn sanitize_error(message: &str) -> String {
    // Card digits are masked first: redacting a narrower card-like run first could cut a
    // card number in two and leave a readable part of it that no later scan finds.
    let mut error = redact_sensitive(&mask_pans_in_text(message)).replace('\0', "");
    if error.len() > ERROR_HEADER_BYTES_MAX {
        let mut cut = ERROR_HEADER_BYTES_MAX;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    error
}

/// Most bytes of key and value together that a dead letter carries: the dead-letter
/// topics' `max.message.bytes` (2 MiB, [`crate::topics::DEAD_LETTER_RECORD_BYTES_MAX`])
/// less room for the headers and the batch framing. A record an input topic accepted
/// with a higher limit is cut to this, so its dead letter can always be written.
pub const DEAD_LETTER_KEY_VALUE_BYTES_MAX: usize = 2 * 1024 * 1024 - 16 * 1024;

/// Cuts `key` and `value` so that together they hold at most `bytes_max` bytes (the value
/// first; the key to half of it if it is larger), and says what was cut, for the
/// `paystream.dlq.truncated` header.
fn fit_key_and_value(
    key: &mut Option<Vec<u8>>,
    value: &mut Option<Vec<u8>>,
    bytes_max: usize,
) -> Option<String> {
    let key_bytes = key.as_ref().map_or(0, Vec::len);
    let value_bytes = value.as_ref().map_or(0, Vec::len);
    if key_bytes + value_bytes <= bytes_max {
        return None;
    }
    if let Some(k) = key.as_mut() {
        k.truncate(
            k.len()
                .min(bytes_max / 2)
                .max(bytes_max.saturating_sub(value_bytes)),
        );
    }
    let room = bytes_max - key.as_ref().map_or(0, Vec::len);
    if let Some(v) = value.as_mut() {
        v.truncate(room);
    }
    Some(format!(
        "key {} of {key_bytes} bytes and value {} of {value_bytes} bytes kept",
        key.as_ref().map_or(0, Vec::len),
        value.as_ref().map_or(0, Vec::len)
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_too_large_for_a_dead_letter_topic_is_cut_to_fit() {
        let origin = Origin {
            topic: "settlement".into(),
            partition: 0,
            offset: 1,
            timestamp_ms: 1,
            key: Some(vec![b'k'; 10]),
            value: Some(vec![b'v'; 5 * 1024 * 1024]),
        };
        let dl = dead_letter_record(&origin, DeadLetterReason::RECORD_TOO_LARGE, "big", "app");
        assert_eq!(dl.key.as_ref().unwrap().len(), 10);
        assert_eq!(
            dl.value.as_ref().unwrap().len(),
            DEAD_LETTER_KEY_VALUE_BYTES_MAX - 10
        );
        let truncated = dl.headers.iter().find(|(k, _)| *k == headers::TRUNCATED);
        assert!(
            truncated.is_some_and(|(_, v)| v.contains("of 5242880 bytes")),
            "{:?}",
            dl.headers
        );
        let mut big_key = origin.clone();
        big_key.key = Some(vec![b'k'; 3 * 1024 * 1024]);
        let dl = dead_letter_record(&big_key, DeadLetterReason::RECORD_TOO_LARGE, "big", "app");
        let total = dl.key.unwrap().len() + dl.value.unwrap().len();
        assert!(total <= DEAD_LETTER_KEY_VALUE_BYTES_MAX, "{total}");
        let small = dead_letter_record(
            &Origin {
                value: Some(vec![1; 10]),
                ..origin
            },
            DeadLetterReason::UNDECODABLE,
            "x",
            "app",
        );
        assert!(small.headers.iter().all(|(k, _)| *k != headers::TRUNCATED));
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
            DeadLetterReason::new("pan_detected", Stage::Validate),
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
