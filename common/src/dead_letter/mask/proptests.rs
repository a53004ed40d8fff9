//! The property test of the card-number masker: card numbers in many layouts, at every
//! position of every string field, next to every length byte; nothing readable may
//! remain in the key, the value or the headers of the dead letter.

use std::fmt::Write as _;

use paystream_sensitive::luhn_valid;
use proptest::prelude::*;

use super::tests::*;
use super::*;

/// How the digits of a card number are written.
#[derive(Debug, Clone)]
enum Layout {
    Unbroken,
    /// Groups of 4, the last one shorter (4-4-4-4, 4-4-4-4-3).
    Fours(&'static str),
    /// 4-6-5 / 4-6-4 … (American Express, Diners), the rest unbroken.
    FourSixRest(&'static str),
    /// A separator (or none) after each digit, chosen at random.
    Random(Vec<Option<&'static str>>),
}

const SEPARATORS: &[&str] = &[
    " ",
    "-",
    ".",
    "/",
    "_",
    "  ",
    " - ",
    "--",
    ", ",
    "\u{a0}",
    "\u{2013}",
    " \u{2013} ",
    "\u{2009}",
    "\t",
];

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(SEPARATORS)
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::Unbroken),
        separator().prop_map(Layout::Fours),
        separator().prop_map(Layout::FourSixRest),
        prop::collection::vec(prop::option::of(separator()), PAN_DIGITS_MAX)
            .prop_map(Layout::Random),
    ]
}

fn lay_out(digits: &str, layout: &Layout) -> String {
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 {
            let separator = match layout {
                Layout::Unbroken => None,
                Layout::Fours(s) => (i % 4 == 0).then_some(*s),
                Layout::FourSixRest(s) => (i == 4 || i == 10).then_some(*s),
                Layout::Random(choices) => choices[i - 1],
            };
            out.push_str(separator.unwrap_or(""));
        }
        out.push(digit);
    }
    out
}

/// Random Luhn-valid card numbers of 13–19 digits, starting with 1–9 as every issued
/// card number does (ISO/IEC 7812-1: major industry identifier 0 is not a card scheme's).
fn card_number() -> impl Strategy<Value = String> {
    (PAN_DIGITS_MIN..=PAN_DIGITS_MAX)
        .prop_flat_map(|digits| (1u8..10, prop::collection::vec(0u8..10, digits - 2)))
        .prop_map(|(first, payload)| {
            let mut text = format!("{first}");
            for d in payload {
                write!(text, "{d}").expect("writing to a String");
            }
            with_check_digit(&text)
        })
}

/// Canonical UUIDs (8-4-4-4-12 hex): random ones, in either case, and ones whose groups
/// are all digits (the shape most often taken for a card number).
fn uuid_text() -> impl Strategy<Value = String> {
    let all_digits = prop::collection::vec(0u8..10, 32).prop_map(|digits| {
        let d: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &d[0..8],
            &d[8..12],
            &d[12..16],
            &d[16..20],
            &d[20..32]
        )
    });
    let leading_digits =
        (0u64..100_000_000, 0u16..10_000, any::<u128>()).prop_map(|(first, second, rest)| {
            let hex = uuid::Uuid::from_u128(rest).simple().to_string();
            format!(
                "{first:08}-{second:04}-{}-{}-{}",
                &hex[0..4],
                &hex[4..8],
                &hex[8..20]
            )
        });
    prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n)
            .hyphenated()
            .to_string()
            .to_uppercase()),
        all_digits,
        leading_digits,
    ]
}

/// Text next to the card number: letters, digits, separators or any character, of
/// 0–90 bytes or more, so the field's length byte takes every one-byte value (and
/// two-byte ones) and the card's neighbours are every kind of byte.
fn neighbour_text() -> impl Strategy<Value = String> {
    let character = prop_oneof![
        prop::char::range('a', 'z'),
        prop::char::range('A', 'Z'),
        prop::char::range('0', '9'),
        prop::sample::select(vec![' ', '-', '.', '/', '_', ',', ':', '=']),
        any::<char>(),
    ];
    prop::collection::vec(character, 0..90).prop_map(|chars| chars.into_iter().collect())
}

#[derive(Debug, Clone, Copy)]
enum Placement {
    Start,
    Middle,
    End,
}

const STRING_FIELDS: [&str; 7] = [
    "event_id",
    "idempotency_key",
    "payment_id",
    "merchant_id",
    "customer_id",
    "payment_method_token",
    "psp",
];

fn other_field() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_:-]{0,70}"
}

fn event() -> impl Strategy<Value = SampleRecord> {
    (
        prop::collection::vec(other_field(), 7),
        any::<i64>(),
        "[A-Z]{3}",
        any::<i64>(),
    )
        .prop_map(|(strings, amount_minor, currency, occurred_at)| {
            let [
                event_id,
                idempotency_key,
                payment_id,
                merchant_id,
                customer_id,
                payment_method_token,
                psp,
            ] = <[String; 7]>::try_from(strings).expect("7 strings");
            SampleRecord {
                event_id,
                idempotency_key,
                payment_id,
                merchant_id,
                customer_id,
                amount_minor,
                currency,
                payment_method_token,
                psp,
                occurred_at,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Wherever a card number sits in a real record, however it is
    /// written and whatever is next to it, none of its digits is readable in the dead
    /// letter's key, value or headers, and the value keeps its length.
    #[test]
    fn dead_letter_never_shows_a_card_number(
        card in card_number(),
        layout in layout(),
        placement in prop_oneof![
            Just(Placement::Start), Just(Placement::Middle), Just(Placement::End)
        ],
        before in neighbour_text(),
        after in neighbour_text(),
        field in prop::sample::select(STRING_FIELDS.to_vec()),
        mut event in event(),
        schema_id in any::<u32>(),
    ) {
        prop_assert!(luhn_valid(card.as_bytes()), "generated {card} fails Luhn");
        let laid_out = lay_out(&card, &layout);
        let text = match placement {
            Placement::Start => format!("{laid_out}{after}"),
            Placement::Middle => format!("{before}{laid_out}{after}"),
            Placement::End => format!("{before}{laid_out}"),
        };
        set_field(&mut event, field, text.clone());
        let original_value = framed(&event, schema_id);
        let original_key = event.key().into_bytes();
        let message = format!("field {field} looks like a card number (PAN): {text}");
        let dead_letter = dead_letter_of(&event, schema_id, &message);

        let key = dead_letter.key.clone().expect("key kept");
        let value = dead_letter.value.clone().expect("value kept");
        prop_assert_eq!(value.len(), original_value.len());
        assert_every_occurrence_masked(&original_value, &value, laid_out.as_bytes(), "value");
        assert_every_occurrence_masked(&original_key, &key, laid_out.as_bytes(), "key");
        let mut readable: Vec<(&str, &[u8])> = vec![("key", &key), ("value", &value)];
        readable.extend(dead_letter.headers.iter().map(|(n, v)| (*n, v.as_bytes())));
        for (name, bytes) in readable {
            prop_assert!(
                !contains(bytes, card.as_bytes()) && !contains(bytes, laid_out.as_bytes()),
                "{} shows the card number {:?}: {:?}",
                name, laid_out, String::from_utf8_lossy(bytes)
            );
        }
        let error = error_header(&dead_letter);
        let digit_count = |s: &str| s.bytes().filter(u8::is_ascii_digit).count();
        prop_assert!(
            digit_count(error) <= digit_count(&message) - card.len(),
            "error header keeps card digits: {:?}", error
        );
    }

    /// A dead letter whose identifiers are UUIDs — random, or with all-digit groups —
    /// keeps its key and value byte for byte, and says nothing was masked.
    #[test]
    fn uuids_are_never_taken_for_card_numbers(
        uuids in prop::collection::vec(uuid_text(), STRING_FIELDS.len()),
        mut event in event(),
        schema_id in any::<u32>(),
    ) {
        for (field, uuid) in STRING_FIELDS.iter().zip(&uuids) {
            set_field(&mut event, field, uuid.clone());
        }
        let dead_letter = dead_letter_of(&event, schema_id, &format!("payment {} failed", uuids[2]));
        let key = event.key();
        prop_assert_eq!(dead_letter.key.as_deref(), Some(key.as_bytes()));
        let original_value = framed(&event, schema_id);
        prop_assert_eq!(dead_letter.value.as_deref(), Some(original_value.as_slice()));
        prop_assert!(
            dead_letter.headers.iter().all(|(name, _)| *name != crate::dead_letter::headers::MASKED),
            "{:?}", dead_letter.headers
        );
        prop_assert!(error_header(&dead_letter).contains(&uuids[2]));
    }

    /// Both directions at once: a card number beside a UUID is masked, the UUID kept.
    #[test]
    fn a_card_number_beside_a_uuid_is_masked_and_the_uuid_kept(
        uuid in uuid_text(),
        card in card_number(),
        layout in layout(),
        card_first in any::<bool>(),
        field in prop::sample::select(STRING_FIELDS.to_vec()),
        mut event in event(),
        schema_id in any::<u32>(),
    ) {
        let laid_out = lay_out(&card, &layout);
        let text = if card_first {
            format!("{laid_out} {uuid}")
        } else {
            format!("{uuid} {laid_out}")
        };
        set_field(&mut event, field, text);
        let dead_letter = dead_letter_of(&event, schema_id, "x");
        let value = dead_letter.value.clone().expect("value kept");
        prop_assert!(contains(&value, uuid.as_bytes()), "{uuid} kept");
        prop_assert!(
            !contains(&value, laid_out.as_bytes()),
            "card {laid_out:?} readable in {:?}", String::from_utf8_lossy(&value)
        );
    }

    /// On any bytes, masking keeps the length and turns only digits into `*`.
    #[test]
    fn masking_changes_only_digits(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let masked = mask_pans(&bytes);
        prop_assert_eq!(masked.len(), bytes.len());
        for (b, m) in bytes.iter().zip(&masked) {
            prop_assert!(b == m || (b.is_ascii_digit() && *m == b'*'));
        }
    }
}
