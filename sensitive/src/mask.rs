//! The card-number byte masker of dead letters ([`mask_pans`]): the same card numbers as
//! [`crate::pan_ranges`] finds, and more. Validation refuses a field only for a card
//! number written as one (standing alone, in a card layout), so that identifiers pass;
//! a dead letter is read by people, so here every Luhn-valid window of a digit run is
//! masked whatever touches it — over-masking costs a dead letter nothing, a miss would
//! leak a card number. Why it is a byte scan: the "Masking" section of
//! `runtime/src/dead_letter.rs`.

pub use crate::{PAN_DIGITS_MAX, PAN_DIGITS_MIN};

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
/// Two things are never taken for a card number, whatever their digits:
/// - a canonical UUID, 8-4-4-4-12 hex digits with dashes (RFC 9562): its bytes end a
///   digit sequence, so identifiers keep every byte (a random UUID whose leading groups
///   are all digits holds a Luhn-valid 13-digit window one time in ten);
/// - a window whose first digit is `0`: no card number starts with 0 (ISO/IEC 7812-1
///   major industry identifier 0 is not issued to card schemes), so a limit such as
///   `1000000000000000` keeps its zeros.
///
/// Numbers the program writes into texts are grouped with `'` ([`crate::grouped`]),
/// which is not a separator here: they end a digit
/// sequence every three digits and are never masked.
///
/// Cost: O(`bytes.len()` × 19).
pub fn mask_pans(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let uuids = uuid_spans(bytes);
    let mut next_uuid = uuids.iter().peekable();
    // Positions of the last `PAN_DIGITS_MAX` digits of the current digit sequence, oldest
    // first; `recent_len` of them are set.
    let mut recent = [0usize; PAN_DIGITS_MAX];
    let mut recent_len = 0;
    let mut separator_run_bytes = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        while next_uuid.peek().is_some_and(|(_, end)| *end <= position) {
            next_uuid.next();
        }
        if next_uuid
            .peek()
            .is_some_and(|(start, end)| (*start..*end).contains(&position))
        {
            recent_len = 0;
            separator_run_bytes = 0;
        } else if byte.is_ascii_digit() {
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
        if digits >= PAN_DIGITS_MIN && luhn_sum.is_multiple_of(10) && bytes[position] != b'0' {
            longest_valid_digits = digits;
        }
    }
    for &position in &digit_positions[digit_positions.len() - longest_valid_digits..] {
        out[position] = b'*';
    }
}

/// Length of a canonical UUID, bytes: 32 hex digits and 4 dashes.
const UUID_BYTES: usize = 36;

/// The byte ranges of canonical UUIDs in `bytes` (8-4-4-4-12 ASCII hex digits, either
/// case, with dashes; RFC 9562 section 4), left to right, not overlapping.
fn uuid_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    if !bytes.contains(&b'-') {
        return spans;
    }
    let mut start = 0;
    while start + UUID_BYTES <= bytes.len() {
        if is_uuid(&bytes[start..start + UUID_BYTES]) {
            spans.push((start, start + UUID_BYTES));
            start += UUID_BYTES;
        } else {
            start += 1;
        }
    }
    spans
}

/// True when `candidate` (36 bytes) is a canonical UUID.
fn is_uuid(candidate: &[u8]) -> bool {
    candidate.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}
