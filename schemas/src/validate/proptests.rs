//! The single-pass scan of card numbers and credentials gives exactly what the former
//! scan ([`super::reference`]) gives: property tests on text and raw bytes made of digit
//! runs, card-like groups, separators, credential words in random case, UUIDs, letters
//! and non-ASCII characters, and fixed cases (card numbers at every 4-byte alignment,
//! credential shapes).

use proptest::prelude::*;

use super::{
    CREDENTIAL_WORDS, check_no_sensitive, contains_credential, contains_pan, credential_ranges,
    pan_ranges, redact_pans, redact_sensitive, reference,
};

/// Luhn-valid card numbers of 13 to 19 digits, unbroken and in their layouts.
const CARDS: [&str; 14] = [
    "4222222222222",
    "30569309025904",
    "3056 930902 5904",
    "378282246310005",
    "3782 822463 10005",
    "3782-822463-10005",
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5555555555554444",
    "6011 1111 1111 1117",
    "6221260000000012345",
    "4222-2222-2222-2",
    "6221 2600 0000 0012 345",
];

/// A credential word with each letter in random case.
fn credential_word() -> impl Strategy<Value = String> {
    (
        prop::sample::select(CREDENTIAL_WORDS.to_vec()),
        prop::collection::vec(any::<bool>(), 12),
    )
        .prop_map(|(word, upper)| {
            word.iter()
                .zip(upper)
                .map(|(&b, upper)| char::from(if upper { b.to_ascii_uppercase() } else { b }))
                .collect()
        })
}

/// One piece of a generated text.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        // Digit runs of every length around the 13–19 of a card number.
        1 => "[0-9]{1,22}",
        // Digit groups with single or double separators, card layouts among them.
        1 => "[0-9]{4}([ -][0-9]{1,6}){1,5}",
        1 => "[0-9]{2,6}([ -]{1,2}[0-9]{2,6}){1,4}",
        // Luhn-valid card numbers, unbroken and in their layouts.
        1 => prop::sample::select(CARDS.to_vec()).prop_map(String::from),
        1 => prop::sample::select(vec![" ", "-", "  ", "--", " -", "- "]).prop_map(String::from),
        3 => credential_word(),
        // What may sit between a credential word and its value, and what ends a value.
        3 => prop::sample::select(vec![
            "=", ":", " = ", " : ", "\"", "'", "\": \"", "='", "&", ",", ";", "?", "/"
        ])
        .prop_map(String::from),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => "[a-zA-Z_]{1,6}",
        // Non-ASCII: no-break space, dashes, accents, non-ASCII digits, emoji; and controls.
        1 => prop::sample::select(vec![
            "\u{a0}", "–", "é", "日本", "🙂", "١٢٣", "Ⅻ", "\t", "\n", "\0"
        ])
        .prop_map(String::from),
        1 => "\\PC{1,3}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|pieces| pieces.concat())
}

/// Text pieces mixed with arbitrary bytes (not UTF-8 in general), as in an Avro body.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => piece().prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ],
        0..12,
    )
    .prop_map(|pieces| pieces.concat())
}

#[test]
fn card_numbers_are_found_at_every_alignment() {
    // The quick rejections look at 4-byte blocks: shift each card number across them.
    for card in CARDS {
        for (before, after) in [("=", ";"), (" ", " "), ("- -", " --"), ("x ", "")] {
            for shift in 0..8 {
                let text = format!("{}{before}{card}{after}", "~".repeat(shift));
                let expected = reference::pan_ranges(text.as_bytes());
                assert!(!expected.is_empty(), "{text:?}");
                assert_eq!(pan_ranges(text.as_bytes()), expected, "{text:?}");
                assert!(contains_pan(&text), "{text:?}");
                assert_eq!(redact_sensitive(&text), reference::redact_sensitive(&text));
            }
        }
    }
}

#[test]
fn credential_shapes_match_the_reference() {
    for text in [
        "{'password': 'hunter2'}",
        "{\"Secret\" : \"hunter2\"}",
        "PASSWORD = hunter2",
        "api_key\"=\"k\"",
        "passwordpassword=hunter2",
        "password=secret:abc",
        "pwd:",
        "pwd: ;x",
        "access_token '  : tok",
        "apikey=&password=hunter2",
        "x=1&ApiKey=k&y=2",
        "passwd\t=hunter2",
        "secret=\u{e9}t\u{e9}",
    ] {
        let bytes = text.as_bytes();
        let expected = reference::credential_ranges(bytes);
        assert_eq!(credential_ranges(bytes), expected, "{text:?}");
        assert_eq!(contains_credential(bytes), !expected.is_empty(), "{text:?}");
        assert_eq!(redact_sensitive(text), reference::redact_sensitive(text));
    }
}

proptest! {
    #[test]
    fn the_text_scan_matches_the_reference(text in text()) {
        let bytes = text.as_bytes();
        prop_assert_eq!(pan_ranges(bytes), reference::pan_ranges(bytes));
        prop_assert_eq!(contains_pan(&text), reference::contains_pan(&text));
        prop_assert_eq!(redact_pans(&text), reference::redact_pans(&text));
        let credentials = reference::credential_ranges(bytes);
        prop_assert_eq!(contains_credential(bytes), !credentials.is_empty());
        prop_assert_eq!(credential_ranges(bytes), credentials);
        prop_assert_eq!(redact_sensitive(&text), reference::redact_sensitive(&text));
    }

    #[test]
    fn the_byte_scan_matches_the_reference(bytes in bytes()) {
        prop_assert_eq!(pan_ranges(&bytes), reference::pan_ranges(&bytes));
        let credentials = reference::credential_ranges(&bytes);
        prop_assert_eq!(contains_credential(&bytes), !credentials.is_empty());
        prop_assert_eq!(credential_ranges(&bytes), credentials);
    }

    #[test]
    fn the_field_check_matches_the_reference(values in prop::collection::vec(text(), 1..5)) {
        const NAMES: [&str; 4] = ["a", "b", "c", "d"];
        let fields: Vec<(&'static str, &str)> =
            NAMES.iter().copied().zip(values.iter().map(String::as_str)).collect();
        prop_assert_eq!(check_no_sensitive(&fields), reference::check_no_sensitive(&fields));
    }
}
