//! The small items every part of the lifecycle shares: the timer settings
//! ([`LifecycleSettings`]), what the `payments` store keeps per payment
//! ([`PaymentState`]), and `mark_seen`, the `seen_events` write.
//!
//! This file imports no other part of the lifecycle; the others import it (see
//! "Dependencies" in `mod.rs`).

use paystream_schemas::PaymentStatus;
use serde::{Deserialize, Serialize};

use crate::{ProcessorContext, Result, stores};

/// Timer settings of the lifecycle (config keys `processing.orphan_timeout_ms` and
/// `processing.settlement_window_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Stream time an event may wait for its payment before an exception is raised,
    /// milliseconds. Default 10 minutes.
    pub orphan_timeout_ms: i64,
    /// Stream time an authorized payment may wait for its settlement before
    /// `MISSING_IN_PSP` is raised, milliseconds. Default 3 days.
    pub settlement_window_ms: i64,
    /// Stream time events may wait for a payment that never appears before they leave
    /// `pending` for the dead-letter queue (`orphan_expired`), milliseconds. Default 72 h.
    pub pending_retention_ms: i64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            orphan_timeout_ms: 10 * 60 * 1_000,
            settlement_window_ms: 3 * 24 * 60 * 60 * 1_000,
            pending_retention_ms: 72 * 60 * 60 * 1_000,
        }
    }
}

/// What the `payments` store keeps per payment.
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
}

/// Records that an auth or settlement event was applied or buffered, so a retry of it is
/// dropped as a duplicate. Events that were dead-lettered are not marked: a redrive of
/// a fixed record must not be mistaken for a duplicate.
pub(super) fn mark_seen(ctx: &mut dyn ProcessorContext, event_id: &str) -> Result<()> {
    ctx.store(stores::SEEN_EVENTS)?
        .put(event_id.as_bytes(), b"")?;
    Ok(())
}
