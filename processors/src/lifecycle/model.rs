//! The small items every part of the lifecycle shares: the timer settings
//! ([`LifecycleSettings`]) and the state of a payment ([`PaymentState`]), part of what
//! the `payments` store keeps per payment (`stored.rs`).
//!
//! This file imports no other part of the lifecycle; the others import it (see
//! "Dependencies" in `mod.rs`).

use paystream_schemas::{CaptureMode, ChargebackStage, PaymentStatus};

use super::money::MoneyTotals;
use serde::{Deserialize, Serialize};

/// Timer settings of the lifecycle (config keys `processing.orphan_timeout_ms`,
/// `processing.settlement_window_ms`, `processing.pending_retention_ms`,
/// `processing.event_time_skew_max_ms`, and `payments.stuck_payment_timeout_ms` and
/// `payments.uncaptured_authorization_timeout_ms` and `payments.movement_reorder_wait_ms`
/// of the application's own section,
/// [`crate::PaymentsConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Stream time an event may wait for its payment before an exception is raised,
    /// milliseconds. Default 10 minutes.
    pub orphan_timeout_ms: i64,
    /// Stream time an authorized payment may wait for its settlement before
    /// `MISSING_IN_PSP` is raised, milliseconds. Default 3 days.
    pub settlement_window_ms: i64,
    /// Stream time events may wait for a payment that never appears before they leave
    /// its value for the dead-letter queue (`orphan_expired`), milliseconds. Default 72 h.
    pub pending_retention_ms: i64,
    /// How far an event's own time may be ahead of its record's broker timestamp,
    /// milliseconds; an event further ahead is dead-lettered as `event_time_in_future`.
    /// Default 1 h.
    pub event_time_skew_max_ms: i64,
    /// Wall-clock time a payment may wait in INITIATED for its auth outcome, from when
    /// the lifecycle applied it, before `STUCK_PAYMENT` is raised, milliseconds; 0 turns
    /// the check off. Default 15 minutes.
    pub stuck_payment_timeout_ms: i64,
    /// Wall-clock time an authorization under manual capture may wait for its first
    /// capture or a void before `STUCK_PAYMENT` is raised, milliseconds; 0 turns the
    /// check off. Default 7 days (card authorizations expire after about that).
    pub uncaptured_authorization_timeout_ms: i64,
    /// Wall-clock time the money movements of a payment wait after the last of them
    /// arrived before they apply, in event-time order, milliseconds; 0 applies each as
    /// it is read. Default 1 s.
    pub movement_reorder_wait_ms: i64,
}

pub use crate::defaults::{
    EVENT_TIME_SKEW_MAX_MS, MOVEMENT_REORDER_WAIT_MS, STUCK_PAYMENT_TIMEOUT_MS,
    UNCAPTURED_AUTHORIZATION_TIMEOUT_MS,
};

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            orphan_timeout_ms: 10 * 60 * 1_000,
            settlement_window_ms: 3 * 24 * 60 * 60 * 1_000,
            pending_retention_ms: 72 * 60 * 60 * 1_000,
            event_time_skew_max_ms: EVENT_TIME_SKEW_MAX_MS,
            stuck_payment_timeout_ms: STUCK_PAYMENT_TIMEOUT_MS,
            uncaptured_authorization_timeout_ms: UNCAPTURED_AUTHORIZATION_TIMEOUT_MS,
            movement_reorder_wait_ms: MOVEMENT_REORDER_WAIT_MS,
        }
    }
}

/// The state of a payment once its `PaymentInitiated` was applied. Earlier releases
/// stored it alone, as JSON, in the `payments` store; `stored/format.rs` still reads that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    pub payment_id: String,
    pub merchant_id: String,
    pub psp: String,
    /// Requested amount, minor units of `currency`.
    pub amount_minor: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// Event id of the `PaymentInitiated` that created the payment.
    pub initiated_event_id: String,
    /// Amount the PSP authorized, minor units of `authorized_currency` (set at AUTHORIZED).
    #[serde(default)]
    pub authorized_amount_minor: Option<i64>,
    /// ISO 4217 currency of the authorization.
    #[serde(default)]
    pub authorized_currency: Option<String>,
    /// Event id of the applied auth event, success or failure (set at AUTHORIZED or
    /// DECLINED): a retry of it is a duplicate. `None` in values of earlier releases.
    #[serde(default)]
    pub auth_event_id: Option<String>,
    /// Event id of the applied settlement (set at SETTLED). `None` in values of earlier
    /// releases.
    #[serde(default)]
    pub settlement_event_id: Option<String>,
    /// How the payment is captured, from its `PaymentInitiated` (AUTOMATIC in values of
    /// earlier releases).
    #[serde(skip)]
    pub capture_mode: CaptureMode,
    /// Its money after the authorization, kept once it was authorized under manual
    /// capture or a capture, void, refund or chargeback touched it; `None` before (an
    /// automatic capture's totals follow from the authorization alone).
    #[serde(skip)]
    pub money: Option<Money>,
}

/// The money of a payment after its authorization: running totals and what moved them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Money {
    pub totals: MoneyTotals,
    /// The movements applied, in order: a retry of one (same event id, or the same
    /// movement id under another event id) is a duplicate.
    pub applied: Vec<AppliedMovement>,
    /// Each chargeback's current stage and amount, by dispute id.
    pub disputes: Vec<Dispute>,
}

/// One applied capture, void, refund or chargeback stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMovement {
    pub event_id: String,
    /// The movement's own id: `CAPTURE:{capture_id}`, `VOID`, `REFUND:{refund_id}`,
    /// `CHARGEBACK_{stage}:{dispute_id}` (also the journal entry's sub-id).
    pub movement_id: String,
}

/// A chargeback of the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    pub dispute_id: String,
    pub stage: ChargebackStage,
    /// The disputed amount, minor units of the payment's currency.
    pub amount_minor: i64,
}

impl PaymentState {
    /// The money of an authorized payment as it stands: what is kept, or for a payment
    /// that kept none yet, what its authorization says (`None` before it).
    pub fn money_now(&self) -> Option<Money> {
        if let Some(money) = &self.money {
            return Some(money.clone());
        }
        let authorized = self.authorized_amount_minor?;
        let mut totals = MoneyTotals::authorized(authorized, self.capture_mode);
        if self.status == PaymentStatus::Settled {
            totals.settled_minor = authorized;
        }
        Some(Money {
            totals,
            ..Money::default()
        })
    }
}
