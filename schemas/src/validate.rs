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
//! | free text (`reason` of `AuthFailed`, `AuthorizationVoided`, `RefundIssued`) | cleaned before the checks, never refused for its form ([`clean_free_text`]): each control character but tab and line breaks replaced by U+FFFD, cut to [`FREE_TEXT_BYTES_MAX`] bytes | it is informational (the PSP's words): a decline must decline its payment whatever its reason text holds; PostgreSQL refuses NUL bytes, and state store values and changelog records stay small |
//! | amounts and fees | amounts > 0, fees >= 0, both at most [`AMOUNT_MINOR_MAX`] minor units | sums of many amounts stay far from `i64` overflow |
//! | event time | not before 1970, at most `processing.event_time_skew_max_ms` ahead of the record's broker timestamp ([`check_event_time`]) | a producer clock running fast; PostgreSQL's timestamp range |

//!
//! Each input event type has its checks in its [`EventChecks`] implementation;
//! [`validate`] and [`clean_event_free_text`] dispatch to them for an [`InputEvent`].

use crate::events::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, ChargebackReported, InputEvent,
    PaymentCaptured, PaymentInitiated, RefundIssued, SettlementReported,
};

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

/// Longest free-text field (a `reason`), bytes of UTF-8.
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
    match event {
        InputEvent::PaymentInitiated(e) => e.clean_free_text_fields(),
        InputEvent::AuthSucceeded(e) => e.clean_free_text_fields(),
        InputEvent::AuthFailed(e) => e.clean_free_text_fields(),
        InputEvent::SettlementReported(e) => e.clean_free_text_fields(),
        InputEvent::PaymentCaptured(e) => e.clean_free_text_fields(),
        InputEvent::AuthorizationVoided(e) => e.clean_free_text_fields(),
        InputEvent::RefundIssued(e) => e.clean_free_text_fields(),
        InputEvent::ChargebackReported(e) => e.clean_free_text_fields(),
    }
}

/// The checks of one input event type: what [`validate`] and [`clean_event_free_text`]
/// do for an [`InputEvent`] of that type.
pub trait EventChecks {
    /// Checks the event's values, in the order [`validate`] documents.
    ///
    /// # Errors
    /// The first [`Violation`] found.
    fn check(&self) -> Result<(), Violation>;

    /// Cleans the event's free-text fields ([`clean_free_text`]); returns each field that
    /// was changed, with what was changed. Events without free text change nothing.
    fn clean_free_text_fields(&mut self) -> Vec<(&'static str, FreeTextCleaning)> {
        Vec::new()
    }
}

/// [`clean_free_text`] of one field, as [`EventChecks::clean_free_text_fields`] reports it.
fn clean_field(field: &'static str, value: &mut String) -> Vec<(&'static str, FreeTextCleaning)> {
    let cleaning = clean_free_text(value);
    if cleaning.is_clean() {
        Vec::new()
    } else {
        vec![(field, cleaning)]
    }
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
        InputEvent::PaymentInitiated(e) => e.check(),
        InputEvent::AuthSucceeded(e) => e.check(),
        InputEvent::AuthFailed(e) => e.check(),
        InputEvent::SettlementReported(e) => e.check(),
        InputEvent::PaymentCaptured(e) => e.check(),
        InputEvent::AuthorizationVoided(e) => e.check(),
        InputEvent::RefundIssued(e) => e.check(),
        InputEvent::ChargebackReported(e) => e.check(),
    }
}

impl EventChecks for PaymentInitiated {
    fn check(&self) -> Result<(), Violation> {
        validate_initiated(self)
    }
}

impl EventChecks for AuthSucceeded {
    fn check(&self) -> Result<(), Violation> {
        validate_auth_succeeded(self)
    }
}

impl EventChecks for AuthFailed {
    fn check(&self) -> Result<(), Violation> {
        validate_auth_failed(self)
    }

    fn clean_free_text_fields(&mut self) -> Vec<(&'static str, FreeTextCleaning)> {
        clean_field("reason", &mut self.reason)
    }
}

impl EventChecks for SettlementReported {
    fn check(&self) -> Result<(), Violation> {
        validate_settlement(self)
    }
}

impl EventChecks for PaymentCaptured {
    fn check(&self) -> Result<(), Violation> {
        validate_captured(self)
    }
}

impl EventChecks for AuthorizationVoided {
    fn check(&self) -> Result<(), Violation> {
        validate_voided(self)
    }

    fn clean_free_text_fields(&mut self) -> Vec<(&'static str, FreeTextCleaning)> {
        clean_field("reason", &mut self.reason)
    }
}

impl EventChecks for RefundIssued {
    fn check(&self) -> Result<(), Violation> {
        validate_refund(self)
    }

    fn clean_free_text_fields(&mut self) -> Vec<(&'static str, FreeTextCleaning)> {
        clean_field("reason", &mut self.reason)
    }
}

impl EventChecks for ChargebackReported {
    fn check(&self) -> Result<(), Violation> {
        validate_chargeback(self)
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

fn validate_captured(e: &PaymentCaptured) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("capture_id", &e.capture_id),
        ("psp_reference", &e.psp_reference),
    ];
    check_no_sensitive(&identifiers)?;
    check_identifiers(&identifiers)?;
    check_non_empty(&[
        ("event_id", &e.event_id),
        ("payment_id", &e.payment_id),
        ("capture_id", &e.capture_id),
    ])?;
    check_amount("amount_minor", e.amount_minor)?;
    check_currency(&e.currency)
}

fn validate_voided(e: &AuthorizationVoided) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("psp_reference", &e.psp_reference),
    ];
    let [event_id, payment_id, psp_reference] = identifiers;
    check_no_sensitive(&[event_id, payment_id, psp_reference, ("reason", &e.reason)])?;
    check_identifiers(&identifiers)?;
    check_free_text("reason", &e.reason)?;
    check_non_empty(&[("event_id", &e.event_id), ("payment_id", &e.payment_id)])
}

fn validate_refund(e: &RefundIssued) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("refund_id", &e.refund_id),
        ("psp_reference", &e.psp_reference),
    ];
    let [event_id, payment_id, refund_id, psp_reference] = identifiers;
    check_no_sensitive(&[
        event_id,
        payment_id,
        refund_id,
        psp_reference,
        ("reason", &e.reason),
    ])?;
    check_identifiers(&identifiers)?;
    check_free_text("reason", &e.reason)?;
    check_non_empty(&[
        ("event_id", &e.event_id),
        ("payment_id", &e.payment_id),
        ("refund_id", &e.refund_id),
    ])?;
    check_amount("amount_minor", e.amount_minor)?;
    check_currency(&e.currency)
}

fn validate_chargeback(e: &ChargebackReported) -> Result<(), Violation> {
    let identifiers = [
        ("event_id", e.event_id.as_str()),
        ("payment_id", &e.payment_id),
        ("dispute_id", &e.dispute_id),
        ("reason_code", &e.reason_code),
    ];
    check_no_sensitive(&identifiers)?;
    check_identifiers(&identifiers)?;
    check_non_empty(&[
        ("event_id", &e.event_id),
        ("payment_id", &e.payment_id),
        ("dispute_id", &e.dispute_id),
    ])?;
    check_amount("amount_minor", e.amount_minor)?;
    check_fee("fee_minor", e.fee_minor)?;
    check_currency(&e.currency)
}

/// A fee in minor units: >= 0 and at most [`AMOUNT_MINOR_MAX`] (a chargeback fee may
/// exceed the disputed amount).
fn check_fee(field: &str, fee_minor: i64) -> Result<(), Violation> {
    if fee_minor < 0 {
        return Err(Violation::InvalidValue(format!(
            "{field} must be >= 0, got {}",
            grouped(fee_minor)
        )));
    }
    if fee_minor > AMOUNT_MINOR_MAX {
        return Err(Violation::ValueOutOfRange(format!(
            "{field} {} is above the maximum {} minor units",
            grouped(fee_minor),
            grouped(AMOUNT_MINOR_MAX)
        )));
    }
    Ok(())
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

/// The rule a payment id given to look a payment up by must meet (the identifier rule
/// the events' `payment_id` meets): not empty, no control character, at most
/// [`IDENTIFIER_BYTES_MAX`] bytes, and nothing that looks like a card number — such an
/// id cannot be a payment's, and is never echoed.
///
/// # Errors
/// The [`Violation`] naming the rule broken (never the value).
pub fn check_payment_id(payment_id: &str) -> Result<(), Violation> {
    check_non_empty(&[("payment_id", payment_id)])?;
    check_identifiers(&[("payment_id", payment_id)])?;
    if contains_pan(payment_id) {
        return Err(Violation::PanDetected {
            field: "payment_id",
        });
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

    fn captured() -> PaymentCaptured {
        PaymentCaptured {
            event_id: "e3".into(),
            payment_id: "p1".into(),
            capture_id: "cap-1".into(),
            psp_reference: "psp-cap-1".into(),
            amount_minor: 600,
            currency: "EUR".into(),
            final_capture: false,
            occurred_at: 2,
        }
    }

    fn voided(reason: &str) -> AuthorizationVoided {
        AuthorizationVoided {
            event_id: "e4".into(),
            payment_id: "p1".into(),
            psp_reference: "psp-void-1".into(),
            reason: reason.into(),
            occurred_at: 2,
        }
    }

    fn refund(reason: &str) -> RefundIssued {
        RefundIssued {
            event_id: "e5".into(),
            payment_id: "p1".into(),
            refund_id: "ref-1".into(),
            psp_reference: "psp-ref-1".into(),
            amount_minor: 250,
            currency: "EUR".into(),
            reason: reason.into(),
            occurred_at: 3,
        }
    }

    fn chargeback() -> ChargebackReported {
        ChargebackReported {
            event_id: "e6".into(),
            payment_id: "p1".into(),
            dispute_id: "dp-1".into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            fee_minor: 1500,
            reason_code: "10.4".into(),
            stage: crate::events::ChargebackStage::Opened,
            occurred_at: 4,
        }
    }

    #[test]
    fn accepts_valid_captures_voids_refunds_and_chargebacks() {
        assert_eq!(captured().check(), Ok(()));
        assert_eq!(voided("customer cancelled").check(), Ok(()));
        assert_eq!(refund("returned goods\nparcel 2 of 2").check(), Ok(()));
        // A chargeback fee may exceed the disputed amount; a zero fee is fine.
        assert_eq!(chargeback().check(), Ok(()));
        assert_eq!(
            ChargebackReported {
                fee_minor: 0,
                ..chargeback()
            }
            .check(),
            Ok(())
        );
    }

    #[test]
    fn new_events_refuse_bad_amounts_fees_and_currencies() {
        fn invalid(field: &str, r: Result<(), Violation>) -> bool {
            matches!(r, Err(Violation::InvalidValue(m)) if m.contains(field))
        }
        for amount_minor in [0, -1] {
            let c = PaymentCaptured {
                amount_minor,
                ..captured()
            };
            assert!(invalid("amount_minor", c.check()));
            let r = RefundIssued {
                amount_minor,
                ..refund("r")
            };
            assert!(invalid("amount_minor", r.check()));
            let b = ChargebackReported {
                amount_minor,
                ..chargeback()
            };
            assert!(invalid("amount_minor", b.check()));
        }
        let c = PaymentCaptured {
            amount_minor: AMOUNT_MINOR_MAX + 1,
            ..captured()
        };
        assert!(
            matches!(c.check(), Err(Violation::ValueOutOfRange(m)) if m.contains("amount_minor"))
        );
        let b = ChargebackReported {
            fee_minor: -1,
            ..chargeback()
        };
        assert!(invalid("fee_minor", b.check()));
        let b = ChargebackReported {
            fee_minor: AMOUNT_MINOR_MAX + 1,
            ..chargeback()
        };
        assert!(matches!(b.check(), Err(Violation::ValueOutOfRange(m)) if m.contains("fee_minor")));
        for currency in ["eur", "XYZ", ""] {
            let c = PaymentCaptured {
                currency: currency.into(),
                ..captured()
            };
            assert!(invalid("currency", c.check()), "{currency}");
            let r = RefundIssued {
                currency: currency.into(),
                ..refund("r")
            };
            assert!(invalid("currency", r.check()), "{currency}");
            let b = ChargebackReported {
                currency: currency.into(),
                ..chargeback()
            };
            assert!(invalid("currency", b.check()), "{currency}");
        }
    }

    #[test]
    fn new_events_keep_the_strict_rule_for_identifiers() {
        let control = |field: &str, r: Result<(), Violation>| matches!(r, Err(Violation::InvalidValue(m)) if m.contains(field) && m.contains("U+0000"));
        let c = PaymentCaptured {
            capture_id: "cap\0".into(),
            ..captured()
        };
        assert!(control("capture_id", c.check()));
        let v = AuthorizationVoided {
            psp_reference: "v\0".into(),
            ..voided("r")
        };
        assert!(control("psp_reference", v.check()));
        let r = RefundIssued {
            refund_id: "r\0".into(),
            ..refund("r")
        };
        assert!(control("refund_id", r.check()));
        let b = ChargebackReported {
            reason_code: "10.\u{0}4".into(),
            ..chargeback()
        };
        assert!(control("reason_code", b.check()));
        let b = ChargebackReported {
            dispute_id: "d".repeat(IDENTIFIER_BYTES_MAX + 1),
            ..chargeback()
        };
        assert!(
            matches!(b.check(), Err(Violation::ValueOutOfRange(m)) if m.contains("dispute_id"))
        );
        // The ids that name a capture, a refund or a dispute are required.
        let empty = |field: &str, r: Result<(), Violation>| matches!(r, Err(Violation::InvalidValue(m)) if m == format!("{field} is empty"));
        assert!(empty(
            "capture_id",
            PaymentCaptured {
                capture_id: String::new(),
                ..captured()
            }
            .check()
        ));
        assert!(empty(
            "refund_id",
            RefundIssued {
                refund_id: String::new(),
                ..refund("r")
            }
            .check()
        ));
        assert!(empty(
            "dispute_id",
            ChargebackReported {
                dispute_id: String::new(),
                ..chargeback()
            }
            .check()
        ));
        assert!(empty(
            "payment_id",
            AuthorizationVoided {
                payment_id: String::new(),
                ..voided("r")
            }
            .check()
        ));
        // Card numbers and credentials are refused in every field, free text included.
        let c = PaymentCaptured {
            psp_reference: "4111 1111 1111 1111".into(),
            ..captured()
        };
        assert_eq!(
            c.check(),
            Err(Violation::PanDetected {
                field: "psp_reference"
            })
        );
        let b = ChargebackReported {
            dispute_id: "dp password=hunter2".into(),
            ..chargeback()
        };
        assert_eq!(
            b.check(),
            Err(Violation::SecretDetected {
                field: "dispute_id"
            })
        );
    }

    #[test]
    fn reasons_of_voids_and_refunds_are_cleaned_not_refused() {
        let dirty = "PSP said\u{0}\u{1b}[0m no";
        let mut v = voided(dirty);
        assert!(v.check().is_err(), "uncleaned free text is refused");
        let cleaning = FreeTextCleaning {
            control_characters_replaced: 2,
            bytes_cut: 0,
        };
        assert_eq!(v.clean_free_text_fields(), [("reason", cleaning)]);
        assert_eq!(v.reason, "PSP said\u{fffd}\u{fffd}[0m no");
        assert_eq!(v.check(), Ok(()));

        let mut r = refund(&"é".repeat(FREE_TEXT_BYTES_MAX));
        let changed = r.clean_free_text_fields();
        assert!(matches!(changed.as_slice(), [("reason", c)] if c.bytes_cut > 0));
        assert_eq!(r.check(), Ok(()));

        // Clean text is left alone; a card number in a reason is still refused.
        let mut clean = refund("duplicate order");
        assert!(clean.clean_free_text_fields().is_empty());
        let mut card = voided("card 4111111111111111 blocked");
        card.clean_free_text_fields();
        assert_eq!(
            card.check(),
            Err(Violation::PanDetected { field: "reason" })
        );
        // Events without free text change nothing.
        assert!(captured().clean_free_text_fields().is_empty());
        assert!(chargeback().clean_free_text_fields().is_empty());
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
