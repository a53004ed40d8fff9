//! The lifecycle's legal transitions ([`LEGAL_TRANSITIONS`], [`transition`]): the state
//! machine's handlers (`state_machine.rs`) check every change against them, and so do
//! the money movements (`movements.rs`). After the authorization the status follows from
//! the payment's running totals (`money.rs`); the list is exactly the changes those can
//! make (a test in `state_machine.rs` checks it), drawn in docs/architecture.md.

use paystream_schemas::PaymentStatus;

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {}→{to}", from.map_or("(none)", PaymentStatus::as_str))]
pub struct IllegalTransition {
    pub from: Option<PaymentStatus>,
    pub to: PaymentStatus,
}

use PaymentStatus::{
    Authorized, Captured, ChargebackLost, ChargebackWon, Declined, Disputed, Initiated,
    PartiallyCaptured, PartiallyRefunded, Refunded, Settled, Voided,
};

/// Every legal edge of the lifecycle; `None` is "no payment yet". The statuses after the
/// authorization follow from the payment's running totals
/// ([`super::money::MoneyTotals::status`]); these are all the changes they can make
/// (docs/architecture.md has the diagram).
pub const LEGAL_TRANSITIONS: [(Option<PaymentStatus>, PaymentStatus); 31] = [
    (None, Initiated),
    (Some(Initiated), Authorized),
    (Some(Initiated), Declined),
    // Captures and voids (manual capture).
    (Some(Authorized), PartiallyCaptured),
    (Some(Authorized), Captured),
    (Some(Authorized), Voided),
    (Some(PartiallyCaptured), Captured),
    // Settlement of what was captured (AUTHORIZED: automatic capture).
    (Some(Authorized), Settled),
    (Some(PartiallyCaptured), Settled),
    (Some(Captured), Settled),
    // More captures after a settlement of the first ones.
    (Some(Settled), PartiallyCaptured),
    (Some(Settled), Captured),
    // Refunds, after capture or settlement.
    (Some(Authorized), PartiallyRefunded),
    (Some(Authorized), Refunded),
    (Some(PartiallyCaptured), PartiallyRefunded),
    (Some(PartiallyCaptured), Refunded),
    (Some(Captured), PartiallyRefunded),
    (Some(Captured), Refunded),
    (Some(Settled), PartiallyRefunded),
    (Some(Settled), Refunded),
    (Some(PartiallyRefunded), Refunded),
    // A refund of all that was captured, then another capture.
    (Some(Refunded), PartiallyRefunded),
    // Chargebacks: opened (funds withdrawn), won (reinstated), lost; a win can be
    // followed by a second chargeback (lost) or another dispute.
    (Some(Authorized), Disputed),
    (Some(PartiallyCaptured), Disputed),
    (Some(Captured), Disputed),
    (Some(Settled), Disputed),
    (Some(PartiallyRefunded), Disputed),
    (Some(Disputed), ChargebackWon),
    (Some(Disputed), ChargebackLost),
    (Some(ChargebackWon), Disputed),
    (Some(ChargebackWon), ChargebackLost),
];

/// The transition function of the lifecycle.
///
/// # Errors
/// [`IllegalTransition`] for any edge not in [`LEGAL_TRANSITIONS`].
pub fn transition(
    from: Option<PaymentStatus>,
    to: PaymentStatus,
) -> std::result::Result<PaymentStatus, IllegalTransition> {
    if LEGAL_TRANSITIONS.contains(&(from, to)) {
        Ok(to)
    } else {
        Err(IllegalTransition { from, to })
    }
}
