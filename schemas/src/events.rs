//! The event types of every paystream topic, one struct per Avro record in `schemas/avro/`.
//!
//! Field names follow the Avro schemas exactly (they are the contract with producers and
//! consumers). Units: `*_minor` fields are integer minor units of the record's ISO 4217
//! `currency`; `occurred_at`, `settled_at` and `detected_at` are milliseconds since the
//! Unix epoch (Avro `timestamp-millis`).
//!
//! How each schema evolves, and why the output enums end in an `UNKNOWN` symbol no Rust
//! variant has: docs/schemas.md.

use serde::{Deserialize, Serialize};

pub use paystream_avro::AvroRecord;

macro_rules! avro_record {
    ($type:ty, $name:literal, $file:literal) => {
        impl AvroRecord for $type {
            const FULL_NAME: &'static str = concat!("paystream.events.", $name);
            const SCHEMA_JSON: &'static str = include_str!(concat!("../avro/", $file));
        }
    };
}

/// A payment request accepted by the payment API (topic `payment_initiated`, key
/// `merchant_id:idempotency_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInitiated {
    pub event_id: String,
    pub idempotency_key: String,
    pub payment_id: String,
    pub merchant_id: String,
    pub customer_id: String,
    /// Minor units of `currency`, > 0.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
    /// A PSP token such as `pm_…`; never a card number.
    pub payment_method_token: String,
    pub psp: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
    /// How the payment is captured; [`CaptureMode::Automatic`] when the record has no
    /// such field (written before it existed).
    #[serde(default)]
    pub capture_mode: CaptureMode,
}
avro_record!(
    PaymentInitiated,
    "PaymentInitiated",
    "payment_initiated.avsc"
);

impl PaymentInitiated {
    /// The record key producers must use: `merchant_id:idempotency_key`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.merchant_id, self.idempotency_key)
    }
}

/// How a payment's authorization turns into money moved (Avro enum `CaptureMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// The authorization is also the capture (the behaviour of every payment before capture
    /// modes existed).
    #[default]
    Automatic,
    /// The authorization only holds the funds; [`PaymentCaptured`] events capture them.
    Manual,
}

impl CaptureMode {
    /// Every capture mode.
    pub const ALL: [CaptureMode; 2] = [CaptureMode::Automatic, CaptureMode::Manual];

    /// The upper-case name used in Avro.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Automatic => "AUTOMATIC",
            CaptureMode::Manual => "MANUAL",
        }
    }
}

/// The PSP authorized and captured a payment (topic `auth_success`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSucceeded {
    pub event_id: String,
    pub payment_id: String,
    pub psp_reference: String,
    pub auth_code: String,
    /// Authorized amount, minor units of `currency`, > 0.
    pub amount_minor: i64,
    pub currency: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(AuthSucceeded, "AuthSucceeded", "auth_succeeded.avsc");

/// The PSP declined a payment (topic `auth_failure`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailed {
    pub event_id: String,
    pub payment_id: String,
    pub psp_reference: Option<String>,
    pub decline_code: String,
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(AuthFailed, "AuthFailed", "auth_failed.avsc");

/// The PSP settled a payment (topic `settlement`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementReported {
    pub event_id: String,
    pub payment_id: String,
    pub psp_reference: String,
    pub settlement_batch_id: String,
    /// Minor units, > 0.
    pub gross_amount_minor: i64,
    /// Minor units, >= 0 and <= gross.
    pub fee_minor: i64,
    /// Minor units, = gross − fee.
    pub net_amount_minor: i64,
    pub currency: String,
    /// Milliseconds since the Unix epoch.
    pub settled_at: i64,
}
avro_record!(
    SettlementReported,
    "SettlementReported",
    "settlement_reported.avsc"
);

/// The PSP captured (part of) an authorized payment (topic `capture`, key `payment_id`).
/// Several partial captures may follow one authorization, up to its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub event_id: String,
    pub payment_id: String,
    /// Id of this capture (one payment may have several).
    pub capture_id: String,
    pub psp_reference: String,
    /// Captured amount, minor units of `currency` (ISO 4217 exponent), > 0.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
    /// True for the last capture: the rest of the authorization is released.
    pub final_capture: bool,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(PaymentCaptured, "PaymentCaptured", "payment_captured.avsc");

/// The PSP voided (reversed) an authorization before capture: the held funds are
/// released (topic `void`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationVoided {
    pub event_id: String,
    pub payment_id: String,
    pub psp_reference: String,
    /// The PSP's free text: informational, cleaned, never a reason to refuse the event
    /// ([`clean_free_text`](crate::validate::clean_free_text)).
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(
    AuthorizationVoided,
    "AuthorizationVoided",
    "authorization_voided.avsc"
);

/// The PSP refunded (part of) a captured payment to the customer (topic `refund`, key
/// `payment_id`). Several partial refunds may follow, never more than was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIssued {
    pub event_id: String,
    pub payment_id: String,
    /// Id of this refund (one payment may have several).
    pub refund_id: String,
    pub psp_reference: String,
    /// Refunded amount, minor units of `currency` (ISO 4217 exponent), > 0.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
    /// Free text: informational, cleaned, never a reason to refuse the event
    /// ([`clean_free_text`](crate::validate::clean_free_text)).
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(RefundIssued, "RefundIssued", "refund_issued.avsc");

/// The stage of a chargeback: only stages that move funds are reported (Avro enum
/// `ChargebackStage`, default `OPENED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChargebackStage {
    /// The disputed amount is withdrawn from the merchant.
    Opened,
    /// The merchant won the dispute: the amount is reinstated.
    Won,
    /// The merchant lost the dispute: the loss is final.
    Lost,
}

impl ChargebackStage {
    /// Every stage, in the order a dispute goes through them.
    pub const ALL: [ChargebackStage; 3] = [
        ChargebackStage::Opened,
        ChargebackStage::Won,
        ChargebackStage::Lost,
    ];

    /// The upper-case name used in Avro.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargebackStage::Opened => "OPENED",
            ChargebackStage::Won => "WON",
            ChargebackStage::Lost => "LOST",
        }
    }
}

/// A card network dispute moved funds of a payment (topic `chargeback`, key
/// `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargebackReported {
    pub event_id: String,
    pub payment_id: String,
    /// The PSP's id of the dispute; every stage of one dispute carries it.
    pub dispute_id: String,
    /// Disputed amount, minor units of `currency` (ISO 4217 exponent), > 0.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
    /// Chargeback fee, minor units of `currency`, >= 0.
    pub fee_minor: i64,
    /// The card network's reason code, such as `10.4`.
    pub reason_code: String,
    pub stage: ChargebackStage,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(
    ChargebackReported,
    "ChargebackReported",
    "chargeback_reported.avsc"
);

/// Lifecycle status of a payment. Legal transitions are in
/// `paystream_processors::lifecycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Initiated,
    /// Authorized: with automatic capture also captured; with manual capture the funds are
    /// only held.
    Authorized,
    Declined,
    Settled,
    /// Manual capture: captures cover part of the authorized amount.
    PartiallyCaptured,
    /// Manual capture: captured in full, or a final capture released the rest.
    Captured,
    /// The authorization was voided before capture.
    Voided,
    /// Refunds cover part of the captured amount.
    PartiallyRefunded,
    /// Refunded in full.
    Refunded,
    /// A chargeback is open: its amount is withdrawn.
    Disputed,
    /// The merchant won the chargeback: its amount is reinstated.
    ChargebackWon,
    /// The merchant lost the chargeback: the loss is final.
    ChargebackLost,
}

impl PaymentStatus {
    /// Every status: those of the first schema, then those added with captures, voids,
    /// refunds and chargebacks (the order of the Avro symbols).
    pub const ALL: [PaymentStatus; 12] = [
        PaymentStatus::Initiated,
        PaymentStatus::Authorized,
        PaymentStatus::Declined,
        PaymentStatus::Settled,
        PaymentStatus::PartiallyCaptured,
        PaymentStatus::Captured,
        PaymentStatus::Voided,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Disputed,
        PaymentStatus::ChargebackWon,
        PaymentStatus::ChargebackLost,
    ];

    /// The upper-case name used in Avro, PostgreSQL and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "INITIATED",
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Settled => "SETTLED",
            PaymentStatus::PartiallyCaptured => "PARTIALLY_CAPTURED",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::Voided => "VOIDED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Disputed => "DISPUTED",
            PaymentStatus::ChargebackWon => "CHARGEBACK_WON",
            PaymentStatus::ChargebackLost => "CHARGEBACK_LOST",
        }
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output: a payment moved to a new status (topic `payment_status`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStatusChanged {
    pub payment_id: String,
    pub merchant_id: String,
    pub status: PaymentStatus,
    pub previous_status: Option<PaymentStatus>,
    /// Minor units of `currency`.
    pub amount_minor: i64,
    pub currency: String,
    pub caused_by_event_id: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
}
avro_record!(
    PaymentStatusChanged,
    "PaymentStatusChanged",
    "payment_status_changed.avsc"
);

/// What business event a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JournalEntryKind {
    /// Authorization with capture: debit `psp_receivable:{psp}`, credit `merchant_payable:{merchant}`.
    Authorization,
    /// Settlement: debit `bank:settlement` net and `expense:psp_fees:{psp}` fee, credit
    /// `psp_receivable:{psp}` gross.
    Settlement,
    /// A capture of a manual-capture payment (money owed by the PSP from now on).
    Capture,
    /// A manual-capture authorization: the funds are held, not yet owed.
    AuthorizationHold,
    /// A void: the hold of an authorization is released.
    Void,
    /// A refund: captured money goes back to the customer.
    Refund,
    /// A chargeback opened: the disputed amount is withdrawn.
    ChargebackOpened,
    /// A chargeback won: the disputed amount is reinstated.
    ChargebackWon,
    /// A chargeback lost: the withdrawal is final.
    ChargebackLost,
}

impl JournalEntryKind {
    /// Every kind: those of the first schema, then those added with captures, voids,
    /// refunds and chargebacks (the order of the Avro symbols).
    pub const ALL: [JournalEntryKind; 9] = [
        JournalEntryKind::Authorization,
        JournalEntryKind::Settlement,
        JournalEntryKind::Capture,
        JournalEntryKind::AuthorizationHold,
        JournalEntryKind::Void,
        JournalEntryKind::Refund,
        JournalEntryKind::ChargebackOpened,
        JournalEntryKind::ChargebackWon,
        JournalEntryKind::ChargebackLost,
    ];

    /// The upper-case name used in Avro and PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalEntryKind::Authorization => "AUTHORIZATION",
            JournalEntryKind::Settlement => "SETTLEMENT",
            JournalEntryKind::Capture => "CAPTURE",
            JournalEntryKind::AuthorizationHold => "AUTHORIZATION_HOLD",
            JournalEntryKind::Void => "VOID",
            JournalEntryKind::Refund => "REFUND",
            JournalEntryKind::ChargebackOpened => "CHARGEBACK_OPENED",
            JournalEntryKind::ChargebackWon => "CHARGEBACK_WON",
            JournalEntryKind::ChargebackLost => "CHARGEBACK_LOST",
        }
    }
}

/// Which side of an account a posting moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PostingSide {
    Debit,
    Credit,
}

impl PostingSide {
    /// The upper-case name used in Avro and PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            PostingSide::Debit => "DEBIT",
            PostingSide::Credit => "CREDIT",
        }
    }
}

/// One line of a journal entry: an amount debited or credited to one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: String,
    pub side: PostingSide,
    /// Minor units of `currency`, > 0.
    pub amount_minor: i64,
    pub currency: String,
}

/// Output: a balanced double-entry journal entry (topic `ledger_entries`, key `payment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// UUID v5 derived from `payment_id` and `kind` (and the capture, refund or dispute
    /// id for kinds that happen several times): replays can never post twice.
    pub id: String,
    pub payment_id: String,
    pub kind: JournalEntryKind,
    pub postings: Vec<Posting>,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
    pub caused_by_event_id: String,
    /// The payment's merchant (`None` in entries written before the field existed).
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// The payment's PSP (`None` in entries written before the field existed).
    #[serde(default)]
    pub psp: Option<String>,
}
avro_record!(JournalEntry, "JournalEntry", "journal_entry.avsc");

impl JournalEntry {
    /// Per currency, the debits minus the credits of this entry's postings, in minor units.
    /// A balanced entry has only zeros.
    pub fn imbalance_by_currency(&self) -> std::collections::BTreeMap<String, i128> {
        let mut sums = std::collections::BTreeMap::new();
        for posting in &self.postings {
            let signed = match posting.side {
                PostingSide::Debit => i128::from(posting.amount_minor),
                PostingSide::Credit => -i128::from(posting.amount_minor),
            };
            *sums.entry(posting.currency.clone()).or_insert(0) += signed;
        }
        sums
    }

    /// True when debits equal credits in every currency and every amount is positive.
    pub fn is_balanced(&self) -> bool {
        !self.postings.is_empty()
            && self.postings.iter().all(|p| p.amount_minor > 0)
            && self.imbalance_by_currency().values().all(|sum| *sum == 0)
    }
}

/// The kinds of reconciliation exception (docs/architecture.md, "Timers and reconciliation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReconciliationExceptionKind {
    AmountMismatch,
    CurrencyMismatch,
    MissingInLedger,
    MissingInPsp,
    OrphanEvent,
    /// A payment stayed in a non-final status longer than allowed.
    StuckPayment,
    /// Captures add up to more than the authorized amount.
    CaptureExceedsAuthorization,
    /// Refunds add up to more than the captured amount.
    RefundExceedsCaptured,
    /// A chargeback is for more than the captured amount.
    ChargebackExceedsCaptured,
    /// A money movement the payment's status does not allow (e.g. a refund of a voided
    /// payment).
    IllegalMoneyMovement,
}

impl ReconciliationExceptionKind {
    /// Every kind: those of the first schema, then those added with captures, voids,
    /// refunds and chargebacks (the order of the Avro symbols).
    pub const ALL: [ReconciliationExceptionKind; 10] = [
        ReconciliationExceptionKind::AmountMismatch,
        ReconciliationExceptionKind::CurrencyMismatch,
        ReconciliationExceptionKind::MissingInLedger,
        ReconciliationExceptionKind::MissingInPsp,
        ReconciliationExceptionKind::OrphanEvent,
        ReconciliationExceptionKind::StuckPayment,
        ReconciliationExceptionKind::CaptureExceedsAuthorization,
        ReconciliationExceptionKind::RefundExceedsCaptured,
        ReconciliationExceptionKind::ChargebackExceedsCaptured,
        ReconciliationExceptionKind::IllegalMoneyMovement,
    ];

    /// The upper-case name used in Avro, PostgreSQL and metric labels (`AMOUNT_MISMATCH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReconciliationExceptionKind::AmountMismatch => "AMOUNT_MISMATCH",
            ReconciliationExceptionKind::CurrencyMismatch => "CURRENCY_MISMATCH",
            ReconciliationExceptionKind::MissingInLedger => "MISSING_IN_LEDGER",
            ReconciliationExceptionKind::MissingInPsp => "MISSING_IN_PSP",
            ReconciliationExceptionKind::OrphanEvent => "ORPHAN_EVENT",
            ReconciliationExceptionKind::StuckPayment => "STUCK_PAYMENT",
            ReconciliationExceptionKind::CaptureExceedsAuthorization => {
                "CAPTURE_EXCEEDS_AUTHORIZATION"
            }
            ReconciliationExceptionKind::RefundExceedsCaptured => "REFUND_EXCEEDS_CAPTURED",
            ReconciliationExceptionKind::ChargebackExceedsCaptured => "CHARGEBACK_EXCEEDS_CAPTURED",
            ReconciliationExceptionKind::IllegalMoneyMovement => "ILLEGAL_MONEY_MOVEMENT",
        }
    }
}

impl std::fmt::Display for ReconciliationExceptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output: our books and the PSP disagree (topic `reconciliation_exceptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationException {
    pub id: String,
    pub kind: ReconciliationExceptionKind,
    pub payment_id: String,
    pub expected_amount_minor: Option<i64>,
    pub actual_amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub detected_at: i64,
}
avro_record!(
    ReconciliationException,
    "ReconciliationException",
    "reconciliation_exception.avsc"
);

/// Any event of the input topics. New variants go last: a waiting event is stored with
/// its variant's index (`paystream_processors`' pending layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    PaymentInitiated(PaymentInitiated),
    AuthSucceeded(AuthSucceeded),
    AuthFailed(AuthFailed),
    SettlementReported(SettlementReported),
    PaymentCaptured(PaymentCaptured),
    AuthorizationVoided(AuthorizationVoided),
    RefundIssued(RefundIssued),
    ChargebackReported(ChargebackReported),
}

impl InputEvent {
    /// The base name of the input topic the event arrives on (before `topics.prefix`):
    /// `payment_initiated`, `auth_success`, `auth_failure`, `settlement`, `capture`,
    /// `void`, `refund`, `chargeback`.
    pub fn topic_name(&self) -> &'static str {
        match self {
            InputEvent::PaymentInitiated(_) => "payment_initiated",
            InputEvent::AuthSucceeded(_) => "auth_success",
            InputEvent::AuthFailed(_) => "auth_failure",
            InputEvent::SettlementReported(_) => "settlement",
            InputEvent::PaymentCaptured(_) => "capture",
            InputEvent::AuthorizationVoided(_) => "void",
            InputEvent::RefundIssued(_) => "refund",
            InputEvent::ChargebackReported(_) => "chargeback",
        }
    }

    /// The event's own id (for deduplication of retries).
    pub fn event_id(&self) -> &str {
        match self {
            InputEvent::PaymentInitiated(e) => &e.event_id,
            InputEvent::AuthSucceeded(e) => &e.event_id,
            InputEvent::AuthFailed(e) => &e.event_id,
            InputEvent::SettlementReported(e) => &e.event_id,
            InputEvent::PaymentCaptured(e) => &e.event_id,
            InputEvent::AuthorizationVoided(e) => &e.event_id,
            InputEvent::RefundIssued(e) => &e.event_id,
            InputEvent::ChargebackReported(e) => &e.event_id,
        }
    }

    /// The payment the event belongs to.
    pub fn payment_id(&self) -> &str {
        match self {
            InputEvent::PaymentInitiated(e) => &e.payment_id,
            InputEvent::AuthSucceeded(e) => &e.payment_id,
            InputEvent::AuthFailed(e) => &e.payment_id,
            InputEvent::SettlementReported(e) => &e.payment_id,
            InputEvent::PaymentCaptured(e) => &e.payment_id,
            InputEvent::AuthorizationVoided(e) => &e.payment_id,
            InputEvent::RefundIssued(e) => &e.payment_id,
            InputEvent::ChargebackReported(e) => &e.payment_id,
        }
    }

    /// True for the money movements after an authorization: a capture, a void, a refund
    /// or a chargeback stage.
    pub fn is_money_movement(&self) -> bool {
        matches!(
            self,
            InputEvent::PaymentCaptured(_)
                | InputEvent::AuthorizationVoided(_)
                | InputEvent::RefundIssued(_)
                | InputEvent::ChargebackReported(_)
        )
    }

    /// Event time, milliseconds since the Unix epoch.
    pub fn event_time_ms(&self) -> i64 {
        match self {
            InputEvent::PaymentInitiated(e) => e.occurred_at,
            InputEvent::AuthSucceeded(e) => e.occurred_at,
            InputEvent::AuthFailed(e) => e.occurred_at,
            InputEvent::SettlementReported(e) => e.settled_at,
            InputEvent::PaymentCaptured(e) => e.occurred_at,
            InputEvent::AuthorizationVoided(e) => e.occurred_at,
            InputEvent::RefundIssued(e) => e.occurred_at,
            InputEvent::ChargebackReported(e) => e.occurred_at,
        }
    }
}

/// The schemas paystream registers, with the base topic each belongs to.
pub fn all_schemas() -> [(&'static str, &'static str, &'static str); 11] {
    [
        (
            "payment_initiated",
            PaymentInitiated::FULL_NAME,
            PaymentInitiated::SCHEMA_JSON,
        ),
        (
            "auth_success",
            AuthSucceeded::FULL_NAME,
            AuthSucceeded::SCHEMA_JSON,
        ),
        (
            "auth_failure",
            AuthFailed::FULL_NAME,
            AuthFailed::SCHEMA_JSON,
        ),
        (
            "settlement",
            SettlementReported::FULL_NAME,
            SettlementReported::SCHEMA_JSON,
        ),
        (
            "capture",
            PaymentCaptured::FULL_NAME,
            PaymentCaptured::SCHEMA_JSON,
        ),
        (
            "void",
            AuthorizationVoided::FULL_NAME,
            AuthorizationVoided::SCHEMA_JSON,
        ),
        ("refund", RefundIssued::FULL_NAME, RefundIssued::SCHEMA_JSON),
        (
            "chargeback",
            ChargebackReported::FULL_NAME,
            ChargebackReported::SCHEMA_JSON,
        ),
        (
            "payment_status",
            PaymentStatusChanged::FULL_NAME,
            PaymentStatusChanged::SCHEMA_JSON,
        ),
        (
            "ledger_entries",
            JournalEntry::FULL_NAME,
            JournalEntry::SCHEMA_JSON,
        ),
        (
            "reconciliation_exceptions",
            ReconciliationException::FULL_NAME,
            ReconciliationException::SCHEMA_JSON,
        ),
    ]
}

/// Encodes an input event of any type for `topic`, as [`Codec::encode`](paystream_avro::Codec::encode) does its record
/// (the ingress simulator and the benchmark send all four).
///
/// # Errors
/// As [`Codec::encode`](paystream_avro::Codec::encode).
pub async fn encode_input_event(
    codec: &paystream_avro::Codec,
    topic: &str,
    event: &InputEvent,
) -> Result<Vec<u8>, paystream_avro::CodecError> {
    match event {
        InputEvent::PaymentInitiated(e) => codec.encode(topic, e).await,
        InputEvent::AuthSucceeded(e) => codec.encode(topic, e).await,
        InputEvent::AuthFailed(e) => codec.encode(topic, e).await,
        InputEvent::SettlementReported(e) => codec.encode(topic, e).await,
        InputEvent::PaymentCaptured(e) => codec.encode(topic, e).await,
        InputEvent::AuthorizationVoided(e) => codec.encode(topic, e).await,
        InputEvent::RefundIssued(e) => codec.encode(topic, e).await,
        InputEvent::ChargebackReported(e) => codec.encode(topic, e).await,
    }
}

#[cfg(test)]
mod compatibility;

#[cfg(test)]
mod avro_tests {
    use apache_avro::Schema;

    use super::*;

    /// Writes `record` as an Avro datum with its schema and reads it back.
    fn roundtrip<T>(record: T)
    where
        T: AvroRecord + Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        use apache_avro::reader::datum::GenericDatumReader;
        use apache_avro::writer::datum::GenericDatumWriter;

        let schema = Schema::parse_str(T::SCHEMA_JSON).unwrap();
        let mut datum = Vec::new();
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_ser(&mut datum, &record)
            .unwrap();
        let mut body = datum.as_slice();
        let reader = GenericDatumReader::builder(&schema).build().unwrap();
        assert_eq!(reader.read_deser::<T>(&mut body).unwrap(), record);
        assert!(body.is_empty(), "the whole datum is one record");
    }

    #[test]
    fn every_record_round_trips_through_its_schema() {
        roundtrip(PaymentInitiated {
            event_id: "e".into(),
            idempotency_key: "k".into(),
            payment_id: "p".into(),
            merchant_id: "m".into(),
            customer_id: "c".into(),
            amount_minor: 1999,
            currency: "EUR".into(),
            payment_method_token: "pm_1".into(),
            psp: "adyen".into(),
            occurred_at: 1_700_000_000_000,
            capture_mode: CaptureMode::Manual,
        });
        roundtrip(AuthFailed {
            event_id: "e".into(),
            payment_id: "p".into(),
            psp_reference: None,
            decline_code: "05".into(),
            reason: "do not honour".into(),
            occurred_at: 5,
        });
        roundtrip(PaymentCaptured {
            event_id: "e".into(),
            payment_id: "p".into(),
            capture_id: "c".into(),
            psp_reference: "r".into(),
            amount_minor: 700,
            currency: "EUR".into(),
            final_capture: true,
            occurred_at: 6,
        });
        roundtrip(AuthorizationVoided {
            event_id: "e".into(),
            payment_id: "p".into(),
            psp_reference: "r".into(),
            reason: "expired".into(),
            occurred_at: 7,
        });
        roundtrip(RefundIssued {
            event_id: "e".into(),
            payment_id: "p".into(),
            refund_id: "f".into(),
            psp_reference: "r".into(),
            amount_minor: 300,
            currency: "EUR".into(),
            reason: "returned".into(),
            occurred_at: 8,
        });
        for stage in ChargebackStage::ALL {
            roundtrip(ChargebackReported {
                event_id: "e".into(),
                payment_id: "p".into(),
                dispute_id: "d".into(),
                amount_minor: 700,
                currency: "EUR".into(),
                fee_minor: 1500,
                reason_code: "10.4".into(),
                stage,
                occurred_at: 9,
            });
        }
        roundtrip(PaymentStatusChanged {
            payment_id: "p".into(),
            merchant_id: "m".into(),
            status: PaymentStatus::Authorized,
            previous_status: Some(PaymentStatus::Initiated),
            amount_minor: 10,
            currency: "USD".into(),
            caused_by_event_id: "e".into(),
            occurred_at: 9,
        });
        roundtrip(JournalEntry {
            id: "j".into(),
            payment_id: "p".into(),
            kind: JournalEntryKind::Settlement,
            postings: vec![Posting {
                account: "bank:settlement".into(),
                side: PostingSide::Debit,
                amount_minor: 5,
                currency: "USD".into(),
            }],
            occurred_at: 9,
            caused_by_event_id: "e".into(),
            merchant_id: None,
            psp: None,
        });
        roundtrip(ReconciliationException {
            id: "x".into(),
            kind: ReconciliationExceptionKind::AmountMismatch,
            payment_id: "p".into(),
            expected_amount_minor: Some(10),
            actual_amount_minor: None,
            currency: Some("EUR".into()),
            detected_at: 3,
        });
    }

    /// The symbols and the enum default of the enum `name` inside the record `json`.
    fn enum_symbols(json: &str, name: &str) -> (Vec<String>, Option<String>) {
        let schema = Schema::parse_str(json).unwrap();
        let Schema::Record(record) = schema else {
            panic!("not a record")
        };
        for field in &record.fields {
            if let Schema::Enum(e) = &field.schema
                && e.name.name() == name
            {
                return (e.symbols.clone(), e.default.clone());
            }
        }
        panic!("no enum {name}")
    }

    #[test]
    fn rust_enums_name_every_avro_symbol_but_the_unknown_default() {
        let expect = |json, name, names: Vec<&str>| {
            let (symbols, default) = enum_symbols(json, name);
            assert_eq!(default.as_deref(), Some("UNKNOWN"), "{name}");
            assert_eq!(
                symbols.last().map(String::as_str),
                Some("UNKNOWN"),
                "{name}"
            );
            assert_eq!(symbols[..symbols.len() - 1], names, "{name}");
        };
        expect(
            PaymentStatusChanged::SCHEMA_JSON,
            "PaymentStatus",
            PaymentStatus::ALL.map(PaymentStatus::as_str).to_vec(),
        );
        expect(
            JournalEntry::SCHEMA_JSON,
            "JournalEntryKind",
            JournalEntryKind::ALL.map(JournalEntryKind::as_str).to_vec(),
        );
        expect(
            ReconciliationException::SCHEMA_JSON,
            "ReconciliationExceptionKind",
            ReconciliationExceptionKind::ALL
                .map(ReconciliationExceptionKind::as_str)
                .to_vec(),
        );
        let (symbols, default) = enum_symbols(PaymentInitiated::SCHEMA_JSON, "CaptureMode");
        assert_eq!(symbols, CaptureMode::ALL.map(CaptureMode::as_str));
        assert_eq!(default.as_deref(), Some("AUTOMATIC"));
        let (symbols, default) = enum_symbols(ChargebackReported::SCHEMA_JSON, "ChargebackStage");
        assert_eq!(symbols, ChargebackStage::ALL.map(ChargebackStage::as_str));
        assert_eq!(default.as_deref(), Some("OPENED"));
        // serde names are the Avro names.
        for status in PaymentStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        for kind in JournalEntryKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        for kind in ReconciliationExceptionKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
    }

    #[test]
    fn every_schema_parses_with_its_declared_name() {
        for (_, full_name, json) in all_schemas() {
            let schema = Schema::parse_str(json).unwrap();
            match schema {
                Schema::Record(r) => assert_eq!(r.name.fullname(None), full_name),
                other => panic!("{full_name} is not a record: {other:?}"),
            }
        }
    }
}
