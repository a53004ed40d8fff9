//! Unit tests of the card-number masker on real Avro records in the Confluent framing.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use paystream_sensitive::{luhn_valid, pan_ranges};
use serde::{Deserialize, Serialize};

use super::*;
use crate::dead_letter::{DeadLetterRecord, dead_letter_record};
use crate::{DeadLetterReason, Origin, Stage};

/// A record with the shape of a typical ingress event — identifiers, an amount, a
/// currency, a token, a time — written here so the masker is tested on real Avro bytes
/// without any application's types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SampleRecord {
    pub event_id: String,
    pub idempotency_key: String,
    pub payment_id: String,
    pub merchant_id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method_token: String,
    pub psp: String,
    pub occurred_at: i64,
}

impl SampleRecord {
    const SCHEMA_JSON: &'static str = r#"{"type": "record", "name": "SampleRecord",
        "namespace": "test", "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "idempotency_key", "type": "string"},
        {"name": "payment_id", "type": "string"},
        {"name": "merchant_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount_minor", "type": "long"},
        {"name": "currency", "type": "string"},
        {"name": "payment_method_token", "type": "string"},
        {"name": "psp", "type": "string"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;

    /// `merchant_id:idempotency_key`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.merchant_id, self.idempotency_key)
    }
}

/// Appends the Luhn check digit (ISO/IEC 7812-1 Annex B) to `payload` (ASCII digits).
pub(super) fn with_check_digit(payload: &str) -> String {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // The check digit will sit at index 0 from the right, so the payload's
            // rightmost digit is the first doubled one.
            if i % 2 == 0 {
                (d * 2) % 10 + d * 2 / 10
            } else {
                d
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

pub(super) fn initiated() -> SampleRecord {
    SampleRecord {
        event_id: "0d7c1f5e-8a7b-4f51-9b0e-1c2d3e4f5a6b".into(),
        idempotency_key: "order-17".into(),
        payment_id: "7a1e0c3b-2d4f-4e6a-8b9c-0d1e2f3a4b5c".into(),
        merchant_id: "m-42".into(),
        customer_id: "c-9".into(),
        amount_minor: 1250,
        currency: "EUR".into(),
        payment_method_token: "pm_abc".into(),
        psp: "adyen".into(),
        occurred_at: 1_700_000_000_000,
    }
}

/// `event` in the Confluent wire format: magic byte 0, `schema_id` big-endian, Avro.
pub(super) fn framed(event: &SampleRecord, schema_id: u32) -> Vec<u8> {
    let schema = Schema::parse_str(SampleRecord::SCHEMA_JSON).expect("schema parses");
    let writer = GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer builds");
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    writer.write_ser(&mut out, event).expect("event encodes");
    out
}

pub(super) fn decoded(value: &[u8]) -> SampleRecord {
    let schema = Schema::parse_str(SampleRecord::SCHEMA_JSON).expect("schema parses");
    let reader = GenericDatumReader::builder(&schema)
        .build()
        .expect("reader builds");
    let mut body = &value[5..];
    reader.read_deser(&mut body).expect("masked value decodes")
}

pub(super) fn dead_letter_of(
    event: &SampleRecord,
    schema_id: u32,
    message: &str,
) -> DeadLetterRecord {
    let origin = Origin {
        topic: "payment_initiated".into(),
        partition: 0,
        offset: 1,
        timestamp_ms: 2,
        key: Some(event.key().into_bytes()),
        value: Some(framed(event, schema_id)),
    };
    dead_letter_record(
        &origin,
        DeadLetterReason::new("pan_detected", Stage::Validate),
        message,
        "app",
    )
}

/// Replaces string field `field` of `event` with `text`.
pub(super) fn set_field(event: &mut SampleRecord, field: &str, text: String) {
    let slot = match field {
        "event_id" => &mut event.event_id,
        "idempotency_key" => &mut event.idempotency_key,
        "payment_id" => &mut event.payment_id,
        "merchant_id" => &mut event.merchant_id,
        "customer_id" => &mut event.customer_id,
        "payment_method_token" => &mut event.payment_method_token,
        "psp" => &mut event.psp,
        other => panic!("not a string field: {other}"),
    };
    *slot = text;
}

/// The dead letter's error header.
pub(super) fn error_header(dead_letter: &DeadLetterRecord) -> &str {
    &dead_letter
        .headers
        .iter()
        .find(|(name, _)| *name == crate::dead_letter::headers::ERROR)
        .expect("error header")
        .1
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that every digit of every occurrence of `card` (as laid out) in
/// `original` is `*` in `masked`.
pub(super) fn assert_every_occurrence_masked(
    original: &[u8],
    masked: &[u8],
    card: &[u8],
    what: &str,
) {
    assert_eq!(original.len(), masked.len(), "{what}: length kept");
    for start in 0..original.len().saturating_sub(card.len() - 1) {
        if &original[start..start + card.len()] == card {
            for i in start..start + card.len() {
                if original[i].is_ascii_digit() {
                    assert_eq!(
                        masked[i],
                        b'*',
                        "{what}: digit at byte {i} of the card at {start} is readable: {}",
                        String::from_utf8_lossy(masked)
                    );
                }
            }
        }
    }
}

#[test]
fn dead_letter_masks_a_string_field_starting_with_a_spaced_card_number() {
    // 25 bytes: the field's Avro length byte is 0x32, the ASCII digit '2', right
    // before the card number.
    let field = "4111 1111 1111 1111 xyzab";
    assert_eq!(field.len(), 25);
    for (name, event) in [
        (
            "payment_method_token",
            SampleRecord {
                payment_method_token: field.into(),
                ..initiated()
            },
        ),
        (
            "event_id",
            SampleRecord {
                event_id: field.into(),
                ..initiated()
            },
        ),
    ] {
        let original = framed(&event, 7);
        assert!(contains(&original, b"\x324111 1111"), "{name}");
        let dead_letter = dead_letter_of(&event, 7, "field looks like a card number");
        let value = dead_letter.value.expect("value kept");
        assert_every_occurrence_masked(&original, &value, b"4111 1111 1111 1111", name);
        // Nothing but the card's digits changed, so the value still decodes.
        let mut expected = event.clone();
        set_field(&mut expected, name, "**** **** **** **** xyzab".into());
        assert_eq!(decoded(&value), expected, "{name}");
    }
}

#[test]
fn dead_letter_masks_an_idempotency_key_ending_in_a_card_number_before_a_length_byte() {
    for card in [
        "4111111111111111",
        "4111-1111-1111-1111",
        "3782 822463 10005",
    ] {
        let event = SampleRecord {
            idempotency_key: format!("order-{card}"),
            // 26 bytes: the next field's length byte is 0x34, the ASCII digit '4'.
            payment_id: "p".repeat(26),
            ..initiated()
        };
        let original = framed(&event, 3);
        let mut touching = card.as_bytes().to_vec();
        touching.push(b'4');
        assert!(contains(&original, &touching), "{card}");
        let dead_letter = dead_letter_of(&event, 3, "idempotency key rejected");
        let key = dead_letter.key.expect("key kept");
        let value = dead_letter.value.expect("value kept");
        assert_every_occurrence_masked(event.key().as_bytes(), &key, card.as_bytes(), "key");
        assert_every_occurrence_masked(&original, &value, card.as_bytes(), "value");
    }
}

#[test]
fn dead_letter_masks_the_error_header_after_redaction() {
    let event = initiated();
    let message = "token x4111 1111 1111 1111y and 4111111111111111 rejected";
    let dead_letter = dead_letter_of(&event, 1, message);
    let error = error_header(&dead_letter);
    assert!(!error.contains("4111"), "{error}");
    assert!(error.contains("x**** **** **** ****y"), "{error}");
}

#[test]
fn masks_whatever_touches_the_card_number() {
    let card = b"4111111111111111";
    for (before, after) in [
        (&b""[..], &b""[..]),
        (b"a", b"b"),
        (b"7", b"3"),
        (b"\x32", b"\x34"),
        (b"99999", b"88888"),
        (b"\xff", b"\x00"),
    ] {
        for layout in [&card[..], b"4111 1111 1111 1111", b"4111.1111.1111.1111"] {
            let bytes = [before, layout, after].concat();
            let masked = mask_pans(&bytes);
            assert_every_occurrence_masked(&bytes, &masked, layout, "bytes");
            // Only digits change, and only into `*`.
            for (b, m) in bytes.iter().zip(&masked) {
                assert!(b == m || (b.is_ascii_digit() && *m == b'*'));
            }
        }
    }
}

#[test]
fn checks_every_window_of_a_long_digit_run() {
    // A 19-digit Luhn-valid number in the middle of 40 digits of noise on each side.
    let card = with_check_digit("622126000000001234");
    assert_eq!(card.len(), 19);
    assert!(luhn_valid(card.as_bytes()));
    let noise = "1234567890".repeat(4);
    let bytes = format!("{noise}{card}{noise}");
    assert_every_occurrence_masked(
        bytes.as_bytes(),
        &mask_pans(bytes.as_bytes()),
        card.as_bytes(),
        "run",
    );
}

#[test]
fn leaves_short_and_luhn_invalid_runs_and_breaks_at_long_separator_runs() {
    assert_eq!(mask_pans(b"1111111111111"), b"1111111111111");
    // The 16 digits fail the Luhn check, but their last 13 pass it.
    assert_eq!(mask_pans(b"4111111111111112"), b"411*************");
    assert_eq!(mask_pans(b"411111111111"), b"411111111111");
    // Six spaces end the digit sequence: "4111" and the rest are checked apart.
    assert_eq!(
        mask_pans(b"4111      111111111111"),
        b"4111      111111111111"
    );
    assert_eq!(mask_pans(b""), b"");
}

#[test]
fn masks_at_least_what_pan_ranges_finds() {
    for text in [
        "card 4111 1111 1111 1111 here",
        "amex 3782-822463-10005.",
        "4012888888881881",
        "x 5555 5555 5555 4444",
    ] {
        let masked = mask_pans(text.as_bytes());
        let ranges = pan_ranges(text.as_bytes());
        assert!(!ranges.is_empty(), "{text}");
        for (start, end) in ranges {
            assert!(!masked[start..end].iter().any(u8::is_ascii_digit), "{text}");
        }
    }
}

#[test]
fn the_uuid_of_the_report_and_program_written_numbers_are_kept() {
    // Both were masked before: a UUID with all-digit middle groups, and an error text
    // with an amount and a limit.
    let uuid = "deadbeef-4539-4488-8343-6464deadbeef";
    assert_eq!(mask_pans(uuid.as_bytes()), uuid.as_bytes());
    let text = "amount_minor 12'345'678'901'234'567 is above the maximum \
                1'000'000'000'000'000 minor units";
    assert_eq!(mask_pans_in_text(text), text);
    // A limit written without grouping keeps its zeros: no card number starts with 0.
    assert_eq!(
        mask_pans_in_text("maximum 1000000000000000"),
        "maximum 1000000000000000"
    );
    // A card number right after a UUID, or one starting a longer digit run, is still
    // masked.
    assert_eq!(
        mask_pans_in_text(&format!("{uuid}4111111111111111")),
        format!("{uuid}****************")
    );
    assert_eq!(mask_pans_in_text("04111111111111111"), "0****************");
}

#[test]
fn a_masked_dead_letter_says_so_and_a_clean_one_does_not() {
    let mut event = initiated();
    let clean = dead_letter_of(&event, 1, "x");
    assert!(
        clean
            .headers
            .iter()
            .all(|(n, _)| *n != crate::dead_letter::headers::MASKED)
    );
    set_field(
        &mut event,
        "payment_method_token",
        "4111111111111111".into(),
    );
    let masked = dead_letter_of(&event, 1, "x");
    let header = masked
        .headers
        .iter()
        .find(|(n, _)| *n == crate::dead_letter::headers::MASKED)
        .map(|(_, v)| v.as_str());
    assert_eq!(header, Some("value"));
}
