//! The card-number byte masker of dead letters: see [`mask_pans`] and the "Masking"
//! section of the parent module's docs for the rule and why it is a byte scan.

/// Fewest digits of a primary account number (ISO/IEC 7812-1 allows 8–19; the card
/// numbers in use today have 13 or more).
pub const PAN_DIGITS_MIN: usize = 13;

/// Most digits of a primary account number (ISO/IEC 7812-1).
pub const PAN_DIGITS_MAX: usize = 19;

/// Longest run of separator bytes (see [`mask_pans`]) allowed between two digits of
/// one card number, bytes: room for `" - "`, `" – "` (en dash, 3 bytes in UTF-8) and a
/// no-break space (2 bytes) next to a space.
pub const SEPARATOR_RUN_BYTES_MAX: usize = 5;

/// True for the bytes that may sit between the digit groups of a written card number:
/// ASCII space, tab, `-`, `.`, `/`, `_`, `,`, and every non-ASCII byte (the UTF-8
/// encodings of no-break, thin and figure spaces and of the Unicode dashes are made of
/// such bytes).
///
/// Counting more bytes as separators can only mask more, never less: every digit window
/// of a shorter run is also a window of the longer run it joins.
fn is_separator(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'-' | b'.' | b'/' | b'_' | b',') || !byte.is_ascii()
}

/// Overwrites with `*` every digit of every card-number-like digit window in `bytes` (any
/// bytes: keys, framed Avro values, header text), keeping every other byte and the
/// length, so a framed Avro value keeps its size and its strings their lengths.
///
/// A *digit sequence* is a run of ASCII digits in which consecutive digits are adjacent
/// or separated by at most [`SEPARATOR_RUN_BYTES_MAX`] separator bytes (space, tab, `-`,
/// `.`, `/`, `_`, `,` or any non-ASCII byte). Every window of 13–19 consecutive digits of
/// a digit sequence (separators ignored) that passes the Luhn check (ISO/IEC 7812-1,
/// Annex B) has its digits masked — whatever bytes surround the sequence (letters,
/// digits, an Avro length byte, the start or end of `bytes`) and whatever its layout
/// (unbroken, 4-4-4-4, 4-6-5, any grouping). Because neighbouring digits join the
/// sequence, every window inside a longer run is checked: a card number followed by an
/// Avro length byte that happens to be a digit (string length 24–28 is written `0`,
/// `2`, `4`, `6` or `8`) is still found.
///
/// This over-masks on purpose: about one window in ten of any long digit run passes the
/// Luhn check by chance, so unrelated digits next to a card number (or a length byte that
/// is a digit) may be masked too. A dead letter loses nothing that matters by that; a
/// missed card number would leak.
///
/// Cost: O(`bytes.len()` × 19).
pub fn mask_pans(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    // Positions of the last `PAN_DIGITS_MAX` digits of the current digit sequence, oldest
    // first; `recent_len` of them are set.
    let mut recent = [0usize; PAN_DIGITS_MAX];
    let mut recent_len = 0;
    let mut separator_run_bytes = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        if byte.is_ascii_digit() {
            if recent_len == PAN_DIGITS_MAX {
                recent.copy_within(1.., 0);
                recent_len -= 1;
            }
            recent[recent_len] = position;
            recent_len += 1;
            separator_run_bytes = 0;
            mask_windows_ending_at_last(bytes, &recent[..recent_len], &mut out);
        } else if is_separator(byte)
            && recent_len > 0
            && separator_run_bytes < SEPARATOR_RUN_BYTES_MAX
        {
            separator_run_bytes += 1;
        } else {
            recent_len = 0;
            separator_run_bytes = 0;
        }
    }
    out
}

/// [`mask_pans`] over UTF-8 text (an error message): only ASCII digits change, into `*`,
/// so the result is valid UTF-8 of the same length.
pub fn mask_pans_in_text(text: &str) -> String {
    String::from_utf8(mask_pans(text.as_bytes()))
        .expect("masking turns ASCII digits into `*` only, keeping UTF-8 valid")
}

/// Masks in `out` the longest Luhn-valid window of 13–19 digits that ends at the last of
/// `digit_positions` (positions in `bytes` of consecutive digits of one digit sequence);
/// a shorter valid window ending there lies inside it.
fn mask_windows_ending_at_last(bytes: &[u8], digit_positions: &[usize], out: &mut [u8]) {
    let mut luhn_sum = 0u32;
    let mut longest_valid_digits = 0;
    // Luhn from the right: the check digit counts as is, every second digit left of it is
    // doubled, and a doubled value above 9 counts as its digit sum (value − 9).
    for (index_from_right, &position) in digit_positions.iter().rev().enumerate() {
        let digit = u32::from(bytes[position] - b'0');
        luhn_sum += if index_from_right % 2 == 1 {
            let doubled = digit * 2;
            if doubled > 9 { doubled - 9 } else { doubled }
        } else {
            digit
        };
        let digits = index_from_right + 1;
        if digits >= PAN_DIGITS_MIN && luhn_sum.is_multiple_of(10) {
            longest_valid_digits = digits;
        }
    }
    for &position in &digit_positions[digit_positions.len() - longest_valid_digits..] {
        out[position] = b'*';
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use apache_avro::Schema;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use paystream_processors::{DeadLetterReason, Origin};
    use paystream_schemas::events::{AvroRecord, PaymentInitiated};
    use paystream_schemas::validate::{luhn_valid, pan_ranges};
    use proptest::prelude::*;

    use super::*;
    use crate::dead_letter::{DeadLetterRecord, dead_letter_record};

    /// Appends the Luhn check digit (ISO/IEC 7812-1 Annex B) to `payload` (ASCII digits).
    fn with_check_digit(payload: &str) -> String {
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

    fn initiated() -> PaymentInitiated {
        PaymentInitiated {
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
    fn framed(event: &PaymentInitiated, schema_id: u32) -> Vec<u8> {
        let schema = Schema::parse_str(PaymentInitiated::SCHEMA_JSON).expect("schema parses");
        let writer = GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer builds");
        let mut out = vec![0];
        out.extend_from_slice(&schema_id.to_be_bytes());
        writer.write_ser(&mut out, event).expect("event encodes");
        out
    }

    fn decoded(value: &[u8]) -> PaymentInitiated {
        let schema = Schema::parse_str(PaymentInitiated::SCHEMA_JSON).expect("schema parses");
        let reader = GenericDatumReader::builder(&schema)
            .build()
            .expect("reader builds");
        let mut body = &value[5..];
        reader.read_deser(&mut body).expect("masked value decodes")
    }

    fn dead_letter_of(event: &PaymentInitiated, schema_id: u32, message: &str) -> DeadLetterRecord {
        let origin = Origin {
            topic: "payment_initiated".into(),
            partition: 0,
            offset: 1,
            timestamp_ms: 2,
            key: Some(event.key().into_bytes()),
            value: Some(framed(event, schema_id)),
        };
        dead_letter_record(&origin, DeadLetterReason::PanDetected, message, "app")
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Asserts that every digit of every occurrence of `card` (as laid out) in
    /// `original` is `*` in `masked`.
    fn assert_every_occurrence_masked(original: &[u8], masked: &[u8], card: &[u8], what: &str) {
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
                PaymentInitiated {
                    payment_method_token: field.into(),
                    ..initiated()
                },
            ),
            (
                "event_id",
                PaymentInitiated {
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
            let event = PaymentInitiated {
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
        let error = &dead_letter
            .headers
            .iter()
            .find(|(name, _)| *name == crate::dead_letter::headers::ERROR)
            .expect("error header")
            .1;
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

    /// Random Luhn-valid card numbers of 13–19 digits.
    fn card_number() -> impl Strategy<Value = String> {
        (PAN_DIGITS_MIN..=PAN_DIGITS_MAX)
            .prop_flat_map(|digits| prop::collection::vec(0u8..10, digits - 1))
            .prop_map(|payload| {
                let mut text = String::new();
                for d in payload {
                    write!(text, "{d}").expect("writing to a String");
                }
                with_check_digit(&text)
            })
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

    fn event() -> impl Strategy<Value = PaymentInitiated> {
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
                PaymentInitiated {
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

    fn set_field(event: &mut PaymentInitiated, field: &str, text: String) {
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Wherever a card number sits in a real PaymentInitiated record, however it is
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

            let key = dead_letter.key.expect("key kept");
            let value = dead_letter.value.expect("value kept");
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
            let error = &dead_letter
                .headers
                .iter()
                .find(|(name, _)| *name == crate::dead_letter::headers::ERROR)
                .expect("error header")
                .1;
            let digit_count = |s: &str| s.bytes().filter(u8::is_ascii_digit).count();
            prop_assert!(
                digit_count(error) <= digit_count(&message) - card.len(),
                "error header keeps card digits: {:?}", error
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
}
