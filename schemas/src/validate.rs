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
//! | free text (`AuthFailed.reason`) | cleaned before the checks, never refused for its form ([`clean_free_text`]): each control character but tab and line breaks replaced by U+FFFD, cut to [`FREE_TEXT_BYTES_MAX`] bytes | it is informational (the PSP's words): a decline must decline its payment whatever its reason text holds; PostgreSQL refuses NUL bytes, and state store values and changelog records stay small |
//! | amounts and fees | at most [`AMOUNT_MINOR_MAX`] minor units | sums of many amounts stay far from `i64` overflow |
//! | event time | not before 1970, at most `processing.event_time_skew_max_ms` ahead of the record's broker timestamp ([`check_event_time`]) | a producer clock running fast; PostgreSQL's timestamp range |

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
        "event time {} ms is {} ms ahead of the record timestamp \
         (at most {} ms allowed: processing.event_time_skew_max_ms)",
        paystream_sensitive::grouped(*event_time_ms),
        paystream_sensitive::grouped(*ahead_ms),
        paystream_sensitive::grouped(*skew_max_ms)
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

/// What [`clean_free_text`] changed in one free-text field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreeTextCleaning {
    /// Control characters (other than tab, line feed and carriage return) replaced by
    /// U+FFFD.
    pub control_characters_replaced: usize,
    /// Bytes cut from the end to keep it within [`FREE_TEXT_BYTES_MAX`].
    pub bytes_cut: usize,
}

impl FreeTextCleaning {
    /// True when nothing was changed.
    pub fn is_clean(&self) -> bool {
        *self == FreeTextCleaning::default()
    }
}

/// Cleans free text a PSP sent (a decline reason): it is informational, so its form is
/// never a reason to refuse the event. Each control character but tab, line feed and
/// carriage return becomes U+FFFD (the Unicode replacement character), then the text is
/// cut to at most [`FREE_TEXT_BYTES_MAX`] bytes at a character boundary. A card number
/// or a credential in it is still refused by [`validate`]: cleaning never hides one.
pub fn clean_free_text(value: &mut String) -> FreeTextCleaning {
    let is_refused = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    let mut cleaning = FreeTextCleaning::default();
    if value.chars().any(is_refused) {
        let cleaned: String = value
            .chars()
            .map(|c| {
                if is_refused(c) {
                    cleaning.control_characters_replaced += 1;
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect();
        *value = cleaned;
    }
    if value.len() > FREE_TEXT_BYTES_MAX {
        let mut cut = FREE_TEXT_BYTES_MAX;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        cleaning.bytes_cut = value.len() - cut;
        value.truncate(cut);
    }
    cleaning
}

/// Cleans the free-text fields of `event` ([`clean_free_text`]). Returns each field
/// that was changed, with what was changed.
pub fn clean_event_free_text(event: &mut InputEvent) -> Vec<(&'static str, FreeTextCleaning)> {
    let mut changed = Vec::new();
    if let InputEvent::AuthFailed(e) = event {
        let cleaning = clean_free_text(&mut e.reason);
        if !cleaning.is_clean() {
            changed.push(("reason", cleaning));
        }
    }
    changed
}

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
            "event time {} ms is before the Unix epoch",
            grouped(event_time_ms)
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
/// ones, then identifiers and free text (length, control characters: clean it first with
/// [`clean_event_free_text`], as the pipeline does, or it is refused), then amounts
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
            grouped(e.fee_minor),
            grouped(e.gross_amount_minor)
        )));
    }
    // Cannot overflow: 0 ≤ fee ≤ gross ≤ AMOUNT_MINOR_MAX.
    if e.net_amount_minor != e.gross_amount_minor - e.fee_minor {
        return Err(Violation::InvalidValue(format!(
            "net_amount_minor {} != gross_amount_minor {} - fee_minor {}",
            grouped(e.net_amount_minor),
            grouped(e.gross_amount_minor),
            grouped(e.fee_minor)
        )));
    }
    check_currency(&e.currency)
}

/// An amount in minor units: > 0 and at most [`AMOUNT_MINOR_MAX`].
fn check_amount(field: &str, amount_minor: i64) -> Result<(), Violation> {
    if amount_minor <= 0 {
        return Err(Violation::InvalidValue(format!(
            "{field} must be > 0, got {}",
            grouped(amount_minor)
        )));
    }
    if amount_minor > AMOUNT_MINOR_MAX {
        return Err(Violation::ValueOutOfRange(format!(
            "{field} {} is above the maximum {} minor units",
            grouped(amount_minor),
            grouped(AMOUNT_MINOR_MAX)
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

use paystream_sensitive::grouped;
pub use paystream_sensitive::{
    CREDENTIAL_WORDS, contains_credential, contains_pan, credential_ranges, luhn_valid, pan_ranges,
    redact_pans, redact_sensitive,
};

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
            capture_mode: crate::events::CaptureMode::Automatic,
        }
    }

    #[test]
    fn free_text_is_cleaned_not_refused_and_identifiers_keep_the_strict_rule() {
        let declined = |reason: &str| {
            InputEvent::AuthFailed(AuthFailed {
                event_id: "e2".into(),
                payment_id: "p1".into(),
                psp_reference: None,
                decline_code: "05".into(),
                reason: reason.into(),
                occurred_at: 1,
            })
        };
        let mut event = declined("Do not honour\u{0}\u{1b}[31m\tcall issuer\r\n");
        assert!(validate(&event).is_err(), "uncleaned free text is refused");
        let changed = clean_event_free_text(&mut event);
        assert_eq!(
            changed,
            [(
                "reason",
                FreeTextCleaning {
                    control_characters_replaced: 2,
                    bytes_cut: 0
                }
            )]
        );
        validate(&event).unwrap();
        let InputEvent::AuthFailed(cleaned) = &event else {
            unreachable!()
        };
        assert_eq!(
            cleaned.reason,
            "Do not honour\u{fffd}\u{fffd}[31m\tcall issuer\r\n"
        );

        // Too long: cut at a character boundary, within the limit.
        let mut long = "é".repeat(FREE_TEXT_BYTES_MAX);
        let cleaning = clean_free_text(&mut long);
        assert!(long.len() <= FREE_TEXT_BYTES_MAX && long.chars().all(|c| c == 'é'));
        assert_eq!(cleaning.bytes_cut, 2 * FREE_TEXT_BYTES_MAX - long.len());

        // Clean text is left alone; a card number in free text is still refused.
        let mut clean = declined("insufficient funds");
        assert!(clean_event_free_text(&mut clean).is_empty());
        let mut card = declined("card 4111111111111111 declined\u{7}");
        clean_event_free_text(&mut card);
        assert!(matches!(
            validate(&card),
            Err(Violation::PanDetected { field: "reason" })
        ));

        // An identifier with a control character is still refused.
        let mut bad_id = declined("ok");
        if let InputEvent::AuthFailed(e) = &mut bad_id {
            e.decline_code = "0\u{0}5".into();
        }
        clean_event_free_text(&mut bad_id);
        assert!(validate(&bad_id).is_err());
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
