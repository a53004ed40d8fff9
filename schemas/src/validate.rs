//! Value checks every input event passes before a processor sees it (docs/architecture.md,
//! "Bad input").
//!
//! A failed check is a [`Violation`]; the runtime dead-letters the record with the
//! violation's reason and never processes it. Besides the event's contract (amounts,
//! currency, sums), the checks refuse at the door what PostgreSQL or the broker would
//! refuse later, where it would stop the pipeline instead of one record:
//!
//! | what | rule | why |
//! |---|---|---|
//! | identifiers (ids, keys, references, codes) | UTF-8, no control character, at most [`IDENTIFIER_BYTES_MAX`] bytes | PostgreSQL refuses NUL bytes in text and btree keys over 2704 bytes |
//! | free text (`AuthFailed.reason`) | no control character but tab and line breaks, at most [`FREE_TEXT_BYTES_MAX`] bytes | the same, and state store values and changelog records stay small |
//! | amounts and fees | at most [`AMOUNT_MINOR_MAX`] minor units | sums of many amounts stay far from `i64` overflow |
//! | event time | not before 1970, at most `processing.event_time_skew_max_ms` ahead of the record's broker timestamp ([`check_event_time`]) | a producer clock running fast; PostgreSQL's timestamp range |

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

use crate::events::{AuthFailed, AuthSucceeded, InputEvent, PaymentInitiated, SettlementReported};

/// Why an event's values are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A value breaks a rule of the event's contract (amounts, currency, sums).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A string field holds something that looks like a card number (13–19 digits passing
    /// the Luhn check). The field is named, the value never is.
    #[error("field {field} looks like a card number (PAN)")]
    PanDetected { field: &'static str },
    /// A string field holds something that looks like a credential (`password=…`,
    /// `secret: …`, see [`credential_ranges`]). The field is named, the value never is.
    #[error("field {field} looks like it holds a credential")]
    SecretDetected { field: &'static str },
    /// A value is outside its documented bounds: an amount above [`AMOUNT_MINOR_MAX`], an
    /// identifier longer than [`IDENTIFIER_BYTES_MAX`], free text longer than
    /// [`FREE_TEXT_BYTES_MAX`].
    #[error("value out of range: {0}")]
    ValueOutOfRange(String),
    /// The event time is further ahead of the record's broker timestamp than allowed.
    #[error(
        "event time {event_time_ms} ms is {ahead_ms} ms ahead of the record timestamp \
         (at most {skew_max_ms} ms allowed: processing.event_time_skew_max_ms)"
    )]
    EventTimeInFuture {
        event_time_ms: i64,
        ahead_ms: i64,
        skew_max_ms: i64,
    },
}

/// Largest amount or fee an event may carry, minor units (10^15: ten trillion of a
/// two-decimal currency). Sums of up to ~9,000 such amounts fit an `i64`; every sum the
/// pipeline makes is checked anyway.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;

/// Longest identifier (ids, idempotency keys, references, codes, PSP names), bytes of
/// UTF-8. Well below PostgreSQL's btree key limit (2704 bytes) with room for the account
/// name prefixes the ledger adds (`merchant_payable:`…).
pub const IDENTIFIER_BYTES_MAX: usize = 256;

/// Longest free-text field (`AuthFailed.reason`), bytes of UTF-8.
pub const FREE_TEXT_BYTES_MAX: usize = 4_096;

/// Checks that `event_time_ms` is at most `skew_max_ms` ahead of the record's broker
/// timestamp `record_timestamp_ms` (both milliseconds since the Unix epoch), and not
/// before the epoch. Other times in the past are accepted.
///
/// # Errors
/// [`Violation::EventTimeInFuture`] when it is further ahead;
/// [`Violation::ValueOutOfRange`] when it is before 1970.
pub fn check_event_time(
    event_time_ms: i64,
    record_timestamp_ms: i64,
    skew_max_ms: i64,
) -> Result<(), Violation> {
    if event_time_ms < 0 {
        return Err(Violation::ValueOutOfRange(format!(
            "event time {event_time_ms} ms is before the Unix epoch"
        )));
    }
    let ahead_ms = event_time_ms.saturating_sub(record_timestamp_ms);
    if ahead_ms > skew_max_ms {
        return Err(Violation::EventTimeInFuture {
            event_time_ms,
            ahead_ms,
            skew_max_ms,
        });
    }
    Ok(())
}

/// Checks an input event.
///
/// # Errors
/// The first [`Violation`] found: card-number-like strings first, then credential-like
/// ones, then identifiers and free text (length, control characters), then amounts
/// (> 0, ≤ [`AMOUNT_MINOR_MAX`], fee ≥ 0, net = gross − fee), then the currency (an ISO
/// 4217 code, upper case). The event time is checked apart, by [`check_event_time`], as
/// it needs the record's timestamp.
pub fn validate(event: &InputEvent) -> Result<(), Violation> {
    match event {
        InputEvent::PaymentInitiated(e) => validate_initiated(e),
        InputEvent::AuthSucceeded(e) => validate_auth_succeeded(e),
        InputEvent::AuthFailed(e) => validate_auth_failed(e),
        InputEvent::SettlementReported(e) => validate_settlement(e),
    }
}

fn validate_initiated(e: &PaymentInitiated) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("idempotency_key", &e.idempotency_key),
        ("payment_id", &e.payment_id),
        ("merchant_id", &e.merchant_id),
        ("customer_id", &e.customer_id),
        ("payment_method_token", &e.payment_method_token),
        ("psp", &e.psp),
    ];
    check_no_sensitive(&identifiers)?;
    check_identifiers(&identifiers)?;
    check_non_empty(&[
        ("idempotency_key", &e.idempotency_key),
        ("payment_id", &e.payment_id),
        ("merchant_id", &e.merchant_id),
        ("psp", &e.psp),
    ])?;
    check_amount("amount_minor", e.amount_minor)?;
    check_currency(&e.currency)
}

fn validate_auth_succeeded(e: &AuthSucceeded) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("psp_reference", &e.psp_reference),
        ("auth_code", &e.auth_code),
    ];
    check_no_sensitive(&identifiers)?;
    check_identifiers(&identifiers)?;
    check_non_empty(&[("event_id", &e.event_id), ("payment_id", &e.payment_id)])?;
    check_amount("amount_minor", e.amount_minor)?;
    check_currency(&e.currency)
}

fn validate_auth_failed(e: &AuthFailed) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("psp_reference", e.psp_reference.as_deref().unwrap_or("")),
        ("decline_code", &e.decline_code),
    ];
    let [event_id, payment_id, psp_reference, decline_code] = identifiers;
    check_no_sensitive(&[
        event_id,
        payment_id,
        psp_reference,
        decline_code,
        ("reason", &e.reason),
    ])?;
    check_identifiers(&identifiers)?;
    check_free_text("reason", &e.reason)?;
    check_non_empty(&[("event_id", &e.event_id), ("payment_id", &e.payment_id)])
}

fn validate_settlement(e: &SettlementReported) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("psp_reference", &e.psp_reference),
        ("settlement_batch_id", &e.settlement_batch_id),
    ];
    check_no_sensitive(&identifiers)?;
    check_identifiers(&identifiers)?;
    check_non_empty(&[("event_id", &e.event_id), ("payment_id", &e.payment_id)])?;
    check_amount("gross_amount_minor", e.gross_amount_minor)?;
    if e.fee_minor < 0 || e.fee_minor > e.gross_amount_minor {
        return Err(Violation::InvalidValue(format!(
            "fee_minor {} must be between 0 and gross_amount_minor {}",
            e.fee_minor, e.gross_amount_minor
        )));
    }
    // Cannot overflow: 0 ≤ fee ≤ gross ≤ AMOUNT_MINOR_MAX.
    if e.net_amount_minor != e.gross_amount_minor - e.fee_minor {
        return Err(Violation::InvalidValue(format!(
            "net_amount_minor {} != gross_amount_minor {} - fee_minor {}",
            e.net_amount_minor, e.gross_amount_minor, e.fee_minor
        )));
    }
    check_currency(&e.currency)
}

/// An amount in minor units: > 0 and at most [`AMOUNT_MINOR_MAX`].
fn check_amount(field: &str, amount_minor: i64) -> Result<(), Violation> {
    if amount_minor <= 0 {
        return Err(Violation::InvalidValue(format!(
            "{field} must be > 0, got {amount_minor}"
        )));
    }
    if amount_minor > AMOUNT_MINOR_MAX {
        return Err(Violation::ValueOutOfRange(format!(
            "{field} {amount_minor} is above the maximum {AMOUNT_MINOR_MAX} minor units"
        )));
    }
    Ok(())
}

/// Identifiers: no control character (NUL included) and at most
/// [`IDENTIFIER_BYTES_MAX`] bytes. The value is never shown: only the field, the length
/// and the position of the first offending character.
fn check_identifiers(fields: &[(&'static str, &str)]) -> Result<(), Violation> {
    for (field, value) in fields {
        if value.len() > IDENTIFIER_BYTES_MAX {
            return Err(Violation::ValueOutOfRange(format!(
                "{field} is {} bytes long, at most {IDENTIFIER_BYTES_MAX} allowed",
                value.len()
            )));
        }
        if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
            return Err(Violation::InvalidValue(format!(
                "{field} holds control character U+{:04X} at byte {at}; identifiers are \
                 printable text",
                c as u32
            )));
        }
    }
    Ok(())
}

/// Free text: no control character but tab, line feed and carriage return, and at most
/// [`FREE_TEXT_BYTES_MAX`] bytes.
fn check_free_text(field: &'static str, value: &str) -> Result<(), Violation> {
    if value.len() > FREE_TEXT_BYTES_MAX {
        return Err(Violation::ValueOutOfRange(format!(
            "{field} is {} bytes long, at most {FREE_TEXT_BYTES_MAX} allowed",
            value.len()
        )));
    }
    if let Some((at, c)) = value
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(Violation::InvalidValue(format!(
            "{field} holds control character U+{:04X} at byte {at}",
            c as u32
        )));
    }
    Ok(())
}

fn check_non_empty(fields: &[(&'static str, &str)]) -> Result<(), Violation> {
    match fields.iter().find(|(_, value)| value.is_empty()) {
        Some((field, _)) => Err(Violation::InvalidValue(format!("{field} is empty"))),
        None => Ok(()),
    }
}

/// An ISO 4217 alphabetic code in upper case.
fn check_currency(code: &str) -> Result<(), Violation> {
    let upper = code.chars().all(|c| c.is_ascii_uppercase());
    if upper && iso_currency::Currency::from_code(code).is_some() {
        return Ok(());
    }
    // The value is short and not sensitive, but cap it so garbage stays bounded.
    let shown: String = code.chars().take(8).collect();
    Err(Violation::InvalidValue(format!(
        "currency {shown:?} is not an upper-case ISO 4217 code"
    )))
}

/// Checks every field for a card-number-like run ([`contains_pan`]), then every field for
/// a credential value ([`contains_credential`]). Allocates nothing.
fn check_no_sensitive(fields: &[(&'static str, &str)]) -> Result<(), Violation> {
    if let Some((field, _)) = fields.iter().find(|(_, value)| contains_pan(value)) {
        return Err(Violation::PanDetected { field });
    }
    match fields
        .iter()
        .find(|(_, value)| contains_credential(value.as_bytes()))
    {
        Some((field, _)) => Err(Violation::SecretDetected { field }),
        None => Ok(()),
    }
}

/// Words that, followed by `=` or `:`, introduce a credential. None is part of another,
/// so at most one of them starts at any position.
const CREDENTIAL_WORDS: [&[u8]; 7] = [
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"api_key",
    b"apikey",
    b"access_token",
];

/// [`CREDENTIAL_WORDS`] in any ASCII case, as one automaton built on first use: a search
/// finds the leftmost word at or after a position in one pass, without a lower-cased copy.
static CREDENTIAL_WORD_SEARCH: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(CREDENTIAL_WORDS)
        .expect("seven short ASCII words make an automaton")
});

/// True when `bytes` (any bytes) holds a credential value, that is when
/// [`credential_ranges`] would not be empty.
///
/// Allocates nothing. A value needs a word right before its `=` or `:` (spaces and quotes
/// aside), so a vectorised search for `=` and `:` with a look at the bytes before each
/// rejects nearly every clean field (most have neither); only bytes with a word before a
/// separator are searched for the words from the start, stopping at the first value.
pub fn contains_credential(bytes: &[u8]) -> bool {
    CredentialValues::new(bytes).next().is_some()
}

/// Whether `bytes`, less its trailing spaces and quotes, ends with a word of
/// [`CREDENTIAL_WORDS`] in any ASCII case. No word ends with a space or a quote, so this
/// holds for the bytes before the `=` or `:` of every credential value.
fn ends_with_credential_word(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'"' | b'\''))
        .map_or(0, |last| last + 1);
    let Some(last) = end
        .checked_sub(1)
        .map(|last| bytes[last].to_ascii_lowercase())
    else {
        return false;
    };
    CREDENTIAL_WORDS.iter().any(|word| {
        word.last() == Some(&last)
            && end
                .checked_sub(word.len())
                .is_some_and(|start| bytes[start..end].eq_ignore_ascii_case(word))
    })
}

/// Byte ranges of the credential values in `bytes` (any bytes: Avro bodies too): the
/// run after a credential word (`password`, `passwd`, `pwd`, `secret`, `api_key`,
/// `apikey`, `access_token`, in any ASCII case) and `=` or `:` (spaces and quotes
/// allowed around it), up to a space, quote, `&`, `,` or `;` or a non-printable
/// byte — the shape of `password=…` in query strings, `secret: …` in headers and
/// JSON-ish text.
///
/// Returns `(start, end)` pairs, `start < end`, in increasing order and not
/// overlapping: the scan goes on after each value (or after a word with no `=` or `:`),
/// so a word inside a value starts nothing. The quick rejection of
/// [`contains_credential`], then one pass; only the result is allocated.
pub fn credential_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    CredentialValues::new(bytes).collect()
}

/// The credential values of a byte string, left to right: see [`credential_ranges`].
struct CredentialValues<'a> {
    bytes: &'a [u8],
    /// Where the search for the next word starts.
    at: usize,
}

impl<'a> CredentialValues<'a> {
    /// The values of `bytes`; none at once, without a search for the words, when no `=` or
    /// `:` in `bytes` has a word right before it.
    fn new(bytes: &'a [u8]) -> Self {
        let candidate = memchr::memchr2_iter(b'=', b':', bytes)
            .any(|separator| ends_with_credential_word(&bytes[..separator]));
        CredentialValues {
            bytes,
            at: if candidate { 0 } else { bytes.len() },
        }
    }
}

impl Iterator for CredentialValues<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.bytes;
        while self.at < bytes.len() {
            let Some(word) = CREDENTIAL_WORD_SEARCH.find(Input::new(bytes).range(self.at..)) else {
                self.at = bytes.len();
                return None;
            };
            // Closing quotes and spaces between the word and the separator: `"password": "x"`.
            let after_word = skip_spaces_and_quotes(bytes, word.end());
            if !matches!(bytes.get(after_word), Some(b'=' | b':')) {
                self.at = after_word;
                continue;
            }
            let start = skip_spaces_and_quotes(bytes, after_word + 1);
            let end = bytes[start..]
                .iter()
                .position(|&b| {
                    !b.is_ascii_graphic() || matches!(b, b'"' | b'\'' | b'&' | b',' | b';')
                })
                .map_or(bytes.len(), |length| start + length);
            self.at = end;
            if end > start {
                return Some((start, end));
            }
        }
        None
    }
}

/// The first position at or after `from` whose byte is not a space or a quote.
fn skip_spaces_and_quotes(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|b| !matches!(b, b' ' | b'"' | b'\''))
        .map_or(bytes.len(), |length| from + length)
}

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

/// Fewest digits of a card-number-like run.
const PAN_DIGITS_MIN: usize = 13;

/// Most digits of a card-number-like run.
const PAN_DIGITS_MAX: usize = 19;

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
/// stands alone (no letter or digit right before or after it), has 13–19 digits in a
/// card layout — one unbroken group, groups of 4 with a shorter last group (4-4-4-4,
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
            if alone
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

#[cfg(test)]
mod reference;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod scan_bench;

#[cfg(test)]
mod tests {
    use super::*;

    fn initiated() -> PaymentInitiated {
        PaymentInitiated {
            event_id: "e1".into(),
            idempotency_key: "k1".into(),
            payment_id: "p1".into(),
            merchant_id: "m1".into(),
            customer_id: "c1".into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            payment_method_token: "pm_abc".into(),
            psp: "adyen".into(),
            occurred_at: 1,
        }
    }

    #[test]
    fn detects_and_redacts_credentials() {
        for text in [
            "password=hunter2",
            "ref?user=a&PASSWORD=hunter2&x=1",
            "{\"secret\": \"hunter2\"}",
            "api_key:hunter2",
        ] {
            assert!(!credential_ranges(text.as_bytes()).is_empty(), "{text}");
            let redacted = redact_sensitive(text);
            assert!(!redacted.contains("hunter2"), "{redacted}");
        }
        for text in ["pm_abc", "password-reset-flow", "secretariat", "pwd"] {
            assert!(credential_ranges(text.as_bytes()).is_empty(), "{text}");
        }
        let mut e = initiated();
        e.customer_id = "cust-9 password=hunter2".into();
        assert_eq!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::SecretDetected {
                field: "customer_id"
            })
        );
    }

    #[test]
    fn refuses_what_postgresql_would_refuse() {
        let mut e = initiated();
        e.merchant_id = "merchant\0a".into();
        assert!(matches!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::InvalidValue(m)) if m.contains("merchant_id") && m.contains("U+0000")
        ));
        let mut e = initiated();
        e.psp = "p".repeat(8 * 1024);
        assert!(matches!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::ValueOutOfRange(m)) if m.contains("psp") && m.contains("8192")
        ));
        let mut e = initiated();
        e.psp = "p".repeat(IDENTIFIER_BYTES_MAX);
        assert_eq!(validate(&InputEvent::PaymentInitiated(e)), Ok(()));
        let failed = |reason: String| {
            InputEvent::AuthFailed(AuthFailed {
                event_id: "e".into(),
                payment_id: "p".into(),
                psp_reference: None,
                decline_code: "05".into(),
                reason,
                occurred_at: 1,
            })
        };
        assert_eq!(
            validate(&failed("do not honour\nretry later".into())),
            Ok(())
        );
        assert!(matches!(
            validate(&failed("x".repeat(300 * 1024))),
            Err(Violation::ValueOutOfRange(m)) if m.contains("reason")
        ));
        assert!(matches!(
            validate(&failed("bad\0byte".into())),
            Err(Violation::InvalidValue(m)) if m.contains("reason")
        ));
    }

    #[test]
    fn amounts_are_bounded() {
        let mut e = initiated();
        e.amount_minor = AMOUNT_MINOR_MAX;
        assert_eq!(validate(&InputEvent::PaymentInitiated(e)), Ok(()));
        let mut e = initiated();
        e.amount_minor = i64::MAX / 2 + 1;
        assert!(matches!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::ValueOutOfRange(m)) if m.contains("amount_minor")
        ));
    }

    #[test]
    fn event_times_ahead_of_the_record_are_refused() {
        let hour_ms = 3_600_000;
        assert_eq!(check_event_time(1_000 + hour_ms, 1_000, hour_ms), Ok(()));
        assert_eq!(check_event_time(0, 1_000 + 10 * hour_ms, hour_ms), Ok(()));
        assert!(matches!(
            check_event_time(1_000 + 3 * hour_ms, 1_000, hour_ms),
            Err(Violation::EventTimeInFuture { ahead_ms, .. }) if ahead_ms == 3 * hour_ms
        ));
        assert!(check_event_time(i64::MAX, i64::MIN, hour_ms).is_err());
        assert!(matches!(
            check_event_time(-1, 1_000, hour_ms),
            Err(Violation::ValueOutOfRange(_))
        ));
    }

    #[test]
    fn accepts_a_valid_payment() {
        assert_eq!(validate(&InputEvent::PaymentInitiated(initiated())), Ok(()));
    }

    #[test]
    fn rejects_non_positive_amount_and_bad_currency() {
        let mut e = initiated();
        e.amount_minor = 0;
        assert!(matches!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::InvalidValue(m)) if m.contains("amount_minor")
        ));
        for code in ["eur", "EURO", "XYZ", ""] {
            let mut e = initiated();
            e.currency = code.into();
            assert!(
                matches!(validate(&InputEvent::PaymentInitiated(e)), Err(Violation::InvalidValue(m)) if m.contains("currency")),
                "{code} accepted"
            );
        }
    }

    #[test]
    fn rejects_settlement_whose_net_is_not_gross_minus_fee() {
        let s = SettlementReported {
            event_id: "e".into(),
            payment_id: "p".into(),
            psp_reference: "r".into(),
            settlement_batch_id: "b".into(),
            gross_amount_minor: 1000,
            fee_minor: 30,
            net_amount_minor: 980,
            currency: "USD".into(),
            settled_at: 1,
        };
        assert!(matches!(
            validate(&InputEvent::SettlementReported(s)),
            Err(Violation::InvalidValue(m)) if m.contains("net_amount_minor")
        ));
    }

    #[test]
    fn uuids_are_never_card_numbers() {
        // 101-4251-8613-5890 inside this UUID is 15 digits that pass the Luhn check.
        assert!(!contains_pan("8411d6bb-e101-4251-8613-5890f9452f88"));
        assert!(!contains_pan("12345678-1234-1234-1234-123456789012"));
        assert!(!contains_pan("abcdefab-4111-1111-1111-111111111111"));
    }

    #[test]
    fn detects_and_redacts_card_numbers() {
        let mut e = initiated();
        e.payment_method_token = "4111 1111 1111 1111".into();
        assert_eq!(
            validate(&InputEvent::PaymentInitiated(e)),
            Err(Violation::PanDetected {
                field: "payment_method_token"
            })
        );
        assert!(!contains_pan("4111111111111112")); // fails Luhn
        assert!(!contains_pan("pm_123456"));
        assert!(contains_pan("pm_4111111111111111"));
        assert!(contains_pan("3782 822463 10005")); // American Express layout
        assert_eq!(
            redact_pans("card=4111-1111-1111-1111;"),
            "card=[REDACTED PAN];"
        );
    }
}
