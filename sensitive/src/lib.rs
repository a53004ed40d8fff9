//! Card numbers and credentials in text and bytes: the one detector of sensitive data
//! (docs/architecture.md, "Bad input" and "Dead letters").
//!
//! Input validation refuses an event whose field holds a card number (a primary account
//! number, PAN) or a credential value (`password=…`); error texts are redacted with
//! [`redact_sensitive`] before they reach a log or a dead-letter header. It knows no
//! record type: it reads `&str` and `&[u8]`.
//!
//! A card number here is digits, optionally in groups separated by single spaces or
//! dashes, standing alone, with 13–19 digits in a card layout, passing the Luhn check
//! (ISO/IEC 7812-1): see [`pan_ranges`]. Dead letters are masked by the wider rule of
//! [`mask`] (every Luhn-valid window, whatever touches it), which finds every card
//! number [`pan_ranges`] finds; neither takes a canonical UUID for one.

mod credentials;
pub mod mask;

use credentials::CredentialValues;
pub use credentials::{CREDENTIAL_WORDS, contains_credential, credential_ranges};

/// Replaces every card-number-like run ([`pan_ranges`]) and credential value
/// ([`credential_ranges`]) in `text` with `[REDACTED PAN]` / `[REDACTED]`. Ranges are
/// taken by start (at the same start, the shorter first; at the same span, the card
/// number); one overlapping a range already replaced is skipped.
pub fn redact_sensitive(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut ranges: Vec<(usize, usize, &str)> = PanRuns::new(bytes)
        .map(|(s, e)| (s, e, "[REDACTED PAN]"))
        .chain(CredentialValues::new(bytes).map(|(s, e)| (s, e, "[REDACTED]")))
        .collect();
    // No two ranges are equal: each kind's ranges are disjoint and the marks differ.
    ranges.sort_unstable();
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

/// Fewest digits of a card-number-like run (ISO/IEC 7812-1 allows 8–19; the card
/// numbers in use today have 13 or more).
pub const PAN_DIGITS_MIN: usize = 13;

/// Most digits of a card-number-like run (ISO/IEC 7812-1).
pub const PAN_DIGITS_MAX: usize = 19;

/// True when `text` contains something that looks like a primary account number: see
/// [`pan_ranges`].
///
/// Allocates nothing. Two cheap necessary conditions reject most clean text before the
/// scan: at least 13 ASCII digits in all (a vectorised count), and two neighbouring
/// 4-byte blocks (aligned on multiples of 4) made only of digits, spaces and dashes (most
/// UUIDs have none). Other text is scanned once, from the stretch of digits, spaces and
/// dashes that holds the first such pair of blocks, stopping at the first
/// card-number-like run.
pub fn contains_pan(text: &str) -> bool {
    PanRuns::new(text.as_bytes()).next().is_some()
}

/// The number of ASCII digits in `bytes`, counted in chunks of 255 bytes into one byte
/// per lane, which the compiler vectorises.
fn ascii_digit_count(bytes: &[u8]) -> usize {
    bytes
        .chunks(usize::from(u8::MAX))
        .map(|chunk| {
            let digits = chunk
                .iter()
                .fold(0u8, |n, b| n.wrapping_add(u8::from(b.is_ascii_digit())));
            usize::from(digits)
        })
        .sum()
}

/// True for the bytes a card-number-like run is made of: ASCII digits, spaces and dashes.
fn is_run_byte(b: u8) -> bool {
    b.is_ascii_digit() | (b == b' ') | (b == b'-')
}

/// Where the scan for card-number-like runs in `bytes` needs to start, or `None` when
/// `bytes` cannot hold one.
///
/// A card-number-like run has at least 13 digits, so `bytes` needs 13 ASCII digits in
/// all. Its bytes are all [run bytes](is_run_byte) and it spans at least 13 bytes, and
/// any 13 consecutive bytes cover two whole neighbouring blocks of
/// `bytes.chunks_exact(4)`: so every such run covers a pair of blocks made of run bytes,
/// and none starts before the stretch of run bytes that holds the first pair. That
/// stretch starts at the start of `bytes` or after a byte no digit run holds, so a scan
/// from there finds the same runs as one from the start of `bytes`.
fn run_scan_start(bytes: &[u8]) -> Option<usize> {
    if ascii_digit_count(bytes) < PAN_DIGITS_MIN {
        return None;
    }
    let mut previous = false;
    for (index, block) in bytes.chunks_exact(4).enumerate() {
        // No early exit within a block: four compares without branches.
        let run_bytes = block.iter().fold(true, |all, &b| all & is_run_byte(b));
        if run_bytes & previous {
            let pair_start = 4 * (index - 1);
            let stretch_start = bytes[..pair_start]
                .iter()
                .rposition(|&b| !is_run_byte(b))
                .map_or(0, |last| last + 1);
            return Some(stretch_start);
        }
        previous = run_bytes;
    }
    None
}

/// Replaces every card-number-like run ([`pan_ranges`]) in `text` with `[REDACTED PAN]`.
pub fn redact_pans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in PanRuns::new(text.as_bytes()) {
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
/// stands alone (no letter or digit right before or after it), starts with 1–9 (no card
/// number starts with 0), has 13–19 digits in a card layout — one unbroken group, groups of 4 with a shorter last group (4-4-4-4,
/// 4-4-4-4-3), or 4-6-5 / 4-6-4 (American Express, Diners) — and passes the Luhn check
/// (ISO/IEC 7812). The layout and boundary rules keep identifiers such as UUIDs from
/// matching.
///
/// Returns `(start, end)` pairs, `start < end`, in increasing order and not overlapping;
/// each starts and ends with a digit, so it is a valid `str` range of UTF-8 input. The
/// quick rejections of [`contains_pan`], then one pass; only the result is allocated.
pub fn pan_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    PanRuns::new(bytes).collect()
}

/// The Luhn check (ISO/IEC 7812-1) over ASCII digits; false for anything else.
pub fn luhn_valid(digits: &[u8]) -> bool {
    digits.iter().all(u8::is_ascii_digit) && std::str::from_utf8(digits).is_ok_and(luhn::valid)
}

/// The card-number-like runs of a byte string, left to right: see [`pan_ranges`].
struct PanRuns<'a> {
    bytes: &'a [u8],
    /// Where the search for the next run starts: never inside a run.
    at: usize,
}

impl<'a> PanRuns<'a> {
    /// The runs of `bytes`, scanned from [`run_scan_start`]; none at once, without a
    /// scan, when `bytes` cannot hold one.
    fn new(bytes: &'a [u8]) -> Self {
        PanRuns {
            bytes,
            at: run_scan_start(bytes).unwrap_or(bytes.len()),
        }
    }
}

impl Iterator for PanRuns<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.bytes;
        loop {
            let Some(skipped) = bytes[self.at..].iter().position(u8::is_ascii_digit) else {
                self.at = bytes.len();
                return None;
            };
            let start = self.at + skipped;
            let run = DigitRun::read(bytes, start);
            self.at = run.end;
            let alone = (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
                && bytes
                    .get(run.end)
                    .is_none_or(|b| !b.is_ascii_alphanumeric());
            // The run is ASCII digits, spaces and dashes, which the Luhn check skips.
            // No card number starts with 0: ISO/IEC 7812-1 issues major industry
            // identifier 0 to no card scheme.
            if alone
                && bytes[start] != b'0'
                && (PAN_DIGITS_MIN..=PAN_DIGITS_MAX).contains(&run.digits)
                && run.card_layout()
                && std::str::from_utf8(&bytes[start..run.end]).is_ok_and(luhn::valid)
            {
                return Some((start, run.end));
            }
        }
    }
}

/// The shape of one run of digits in groups separated by single spaces or dashes, read
/// in one pass without storing its digits or groups.
struct DigitRun {
    /// Position after the run's last digit.
    end: usize,
    /// Digits in the run.
    digits: usize,
    /// Groups before the last one.
    earlier_groups: usize,
    /// Lengths of the first and second groups, when there are earlier groups.
    first: usize,
    second: usize,
    /// Whether every earlier group has 4 digits.
    earlier_groups_of_four: bool,
    /// Length of the last group.
    last: usize,
}

impl DigitRun {
    /// Reads the run starting at `start` (a digit): digits, and a space or dash wherever
    /// a digit follows it.
    fn read(bytes: &[u8], start: usize) -> DigitRun {
        let mut run = DigitRun {
            end: start,
            digits: 0,
            earlier_groups: 0,
            first: 0,
            second: 0,
            earlier_groups_of_four: true,
            last: 0,
        };
        let mut i = start;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii_digit() {
                run.digits += 1;
                run.last += 1;
                i += 1;
                run.end = i;
            } else if matches!(b, b' ' | b'-') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                match run.earlier_groups {
                    0 => run.first = run.last,
                    1 => run.second = run.last,
                    _ => {}
                }
                run.earlier_groups_of_four &= run.last == 4;
                run.earlier_groups += 1;
                run.last = 0;
                i += 1;
            } else {
                break;
            }
        }
        run
    }

    /// One unbroken group; 4-6-5 or 4-6-4; or groups of 4 and a last one of 1–4.
    fn card_layout(&self) -> bool {
        self.earlier_groups == 0
            || (self.earlier_groups == 2
                && self.first == 4
                && self.second == 6
                && matches!(self.last, 4 | 5))
            || (self.earlier_groups_of_four && (1..=4).contains(&self.last))
    }
}

/// `n` written for a text the masker reads: its digits in groups of three separated by
/// `'` (`1'000'000'000'000'000`, `-42`). `'` is not a separator of written card numbers,
/// so no window of 13 digits runs through such a number and the dead-letter masker never
/// takes an amount, a limit or a time the program wrote into an error text for a card
/// number (docs/architecture.md, "Dead letters").
pub fn grouped(n: i64) -> Grouped {
    Grouped(n)
}

/// See [`grouped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouped(i64);

impl std::fmt::Display for Grouped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.0.unsigned_abs().to_string();
        if self.0 < 0 {
            f.write_str("-")?;
        }
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                f.write_str("'")?;
            }
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_three_with_apostrophes() {
        assert_eq!(grouped(0).to_string(), "0");
        assert_eq!(grouped(999).to_string(), "999");
        assert_eq!(grouped(1_000).to_string(), "1'000");
        assert_eq!(
            grouped(1_000_000_000_000_000).to_string(),
            "1'000'000'000'000'000"
        );
        assert_eq!(grouped(-1_234_567).to_string(), "-1'234'567");
        assert_eq!(grouped(i64::MIN).to_string(), "-9'223'372'036'854'775'808");
    }
}
