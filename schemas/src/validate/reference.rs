//! The scan of card numbers and credentials as it was before the single-pass,
//! allocation-free one in the parent module: every credential word tried at every byte
//! of a lower-cased copy, and a `String` of digits and a `Vec` of groups for every digit
//! run. Kept as it was (only made visible to the tests, and reading the parent's word
//! list) as the reference the property tests compare the new scan with, and as the
//! "before" of the scan micro-benchmark.

use super::{CREDENTIAL_WORDS, Violation};

pub(super) fn check_no_sensitive(fields: &[(&'static str, &str)]) -> Result<(), Violation> {
    if let Some((field, _)) = fields.iter().find(|(_, value)| contains_pan(value)) {
        return Err(Violation::PanDetected { field });
    }
    match fields
        .iter()
        .find(|(_, value)| !credential_ranges(value.as_bytes()).is_empty())
    {
        Some((field, _)) => Err(Violation::SecretDetected { field }),
        None => Ok(()),
    }
}

/// Byte ranges of the credential values in `bytes` (any bytes: Avro bodies too): the
/// run after a word of [`CREDENTIAL_WORDS`] (any case) and `=` or `:` (spaces allowed
/// around it), up to a space, quote, `&`, `,` or `;` or a non-printable byte — the
/// shape of `password=…` in query strings, `secret: …` in headers and JSON-ish text.
pub(super) fn credential_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let lower = bytes.to_ascii_lowercase();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        let Some(word) = CREDENTIAL_WORDS.iter().find(|w| lower[i..].starts_with(w)) else {
            i += 1;
            continue;
        };
        let mut j = i + word.len();
        // Closing quotes and spaces between the word and the separator: `"password": "x"`.
        while j < lower.len() && matches!(lower[j], b' ' | b'"' | b'\'') {
            j += 1;
        }
        if j < lower.len() && matches!(lower[j], b'=' | b':') {
            j += 1;
            while j < lower.len() && matches!(lower[j], b' ' | b'"' | b'\'') {
                j += 1;
            }
            let start = j;
            while j < bytes.len()
                && bytes[j].is_ascii_graphic()
                && !matches!(bytes[j], b'"' | b'\'' | b'&' | b',' | b';')
            {
                j += 1;
            }
            if j > start {
                ranges.push((start, j));
            }
        }
        i = j.max(i + 1);
    }
    ranges
}

/// Replaces every card-number-like run and credential value in `text` with
/// `[REDACTED PAN]` / `[REDACTED]`.
pub(super) fn redact_sensitive(text: &str) -> String {
    let mut ranges: Vec<(usize, usize, &str)> = pan_ranges(text.as_bytes())
        .into_iter()
        .map(|(s, e)| (s, e, "[REDACTED PAN]"))
        .chain(
            credential_ranges(text.as_bytes())
                .into_iter()
                .map(|(s, e)| (s, e, "[REDACTED]")),
        )
        .collect();
    ranges.sort();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, mark) in ranges {
        if start < last || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(mark);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// True when `text` contains something that looks like a primary account number: see
/// [`pan_ranges`].
pub(super) fn contains_pan(text: &str) -> bool {
    !pan_ranges(text.as_bytes()).is_empty()
}

/// Replaces every card-number-like run in `text` with `[REDACTED PAN]`.
pub(super) fn redact_pans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in pan_ranges(text.as_bytes()) {
        out.push_str(&text[last..start]);
        out.push_str("[REDACTED PAN]");
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Byte ranges of the card-number-like runs in `bytes` (any bytes: Avro bodies too).
///
/// A run is digits, optionally in groups separated by single spaces or dashes, that
/// stands alone (no letter or digit right before or after it), has 13–19 digits in a
/// card layout — one unbroken group, groups of 4 with a shorter last group (4-4-4-4,
/// 4-4-4-4-3), or 4-6-5 / 4-6-4 (American Express, Diners) — and passes the Luhn check
/// (ISO/IEC 7812). The layout and boundary rules keep identifiers such as UUIDs from
/// matching.
pub(super) fn pan_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut groups: Vec<usize> = vec![0];
        let mut digits = String::new();
        let mut end = i;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_digit() {
                digits.push(b as char);
                *groups.last_mut().expect("one group") += 1;
                i += 1;
                end = i;
            } else if (b == b' ' || b == b'-')
                && i + 1 < bytes.len()
                && bytes[i + 1].is_ascii_digit()
            {
                groups.push(0);
                i += 1;
            } else {
                break;
            }
        }
        let alone = (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
            && (end == bytes.len() || !bytes[end].is_ascii_alphanumeric());
        // The rule added since: no card number starts with 0 (ISO/IEC 7812-1).
        if alone
            && bytes[start] != b'0'
            && (13..=19).contains(&digits.len())
            && card_layout(&groups)
            && luhn::valid(&digits)
        {
            ranges.push((start, end));
        }
        i = end.max(i);
    }
    ranges
}

fn card_layout(groups: &[usize]) -> bool {
    match groups {
        [_single] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|g| *g == 4) && (1..=4).contains(last),
        [] => false,
    }
}
