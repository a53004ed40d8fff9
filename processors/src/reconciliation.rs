//! Reconciliation exceptions (docs/architecture.md, "Timers and reconciliation"): where our books and the PSP's
//! reports disagree.
//!
//! | kind | raised when |
//! |---|---|
//! | `AMOUNT_MISMATCH` | a settlement's gross amount differs from the authorized amount |
//! | `CURRENCY_MISMATCH` | a settlement's currency differs from the authorized currency |
//! | `MISSING_IN_LEDGER` | a settlement waited the orphan timeout for a payment never seen |
//! | `MISSING_IN_PSP` | an authorized payment was not settled within the settlement window |
//! | `ORPHAN_EVENT` | an auth event waited the orphan timeout for a payment never seen |
//! | `STUCK_PAYMENT` | a payment had no auth outcome within the stuck-payment timeout (wall-clock time) |
//!
//! Each exception is raised at most once per payment and kind: the `reconciliation`
//! store remembers what was raised, and the exception id is a UUID v5 of
//! `"{payment_id}:{kind}"`, so even a replay with wiped state yields the same id (the
//! sink's table has it as primary key).

use paystream_schemas::{ReconciliationException, ReconciliationExceptionKind};
use uuid::Uuid;

use crate::{Output, ProcessorContext, Result, stores};

/// UUID namespace of reconciliation exception ids (fixed forever).
pub const EXCEPTION_NAMESPACE: Uuid = Uuid::from_u128(0x0b7e_93c1_66a4_4f0e_b2d8_51c9_e3a7_1f52);

/// The deterministic id of `payment_id`'s exception of `kind`.
pub fn exception_id(payment_id: &str, kind: ReconciliationExceptionKind) -> String {
    Uuid::new_v5(
        &EXCEPTION_NAMESPACE,
        format!("{payment_id}:{}", kind.as_str()).as_bytes(),
    )
    .to_string()
}

/// What an exception says beyond its kind and payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amounts {
    /// What our books expected, minor units of `currency`.
    pub expected_minor: Option<i64>,
    /// What the PSP reported, minor units of `currency`.
    pub actual_minor: Option<i64>,
    /// ISO 4217 code of the amounts (the PSP's, where they disagree).
    pub currency: Option<String>,
}

/// Forwards `payment_id`'s exception of `kind`, detected at `detected_at_ms`
/// (milliseconds since the Unix epoch: a timer's due time on its clock, or the event's
/// time), unless it was raised before. Returns whether it was raised now.
///
/// # Errors
/// [`crate::ProcessorError::Store`] when the `reconciliation` store fails.
pub fn raise(
    ctx: &mut dyn ProcessorContext,
    payment_id: &str,
    kind: ReconciliationExceptionKind,
    amounts: Amounts,
    detected_at_ms: i64,
) -> Result<bool> {
    let marker = format!("{payment_id}:{}", kind.as_str());
    let store = ctx.store(stores::RECONCILIATION)?;
    if store.get(marker.as_bytes())?.is_some() {
        return Ok(false);
    }
    store.put(marker.as_bytes(), b"")?;
    ctx.forward(Output::ReconciliationException(ReconciliationException {
        id: exception_id(payment_id, kind),
        kind,
        payment_id: payment_id.to_string(),
        expected_amount_minor: amounts.expected_minor,
        actual_amount_minor: amounts.actual_minor,
        currency: amounts.currency,
        detected_at: detected_at_ms,
    }));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_ids_are_deterministic_per_payment_and_kind() {
        let a = exception_id("p1", ReconciliationExceptionKind::MissingInPsp);
        assert_eq!(
            a,
            exception_id("p1", ReconciliationExceptionKind::MissingInPsp)
        );
        assert_ne!(
            a,
            exception_id("p1", ReconciliationExceptionKind::OrphanEvent)
        );
        assert_ne!(
            a,
            exception_id("p2", ReconciliationExceptionKind::MissingInPsp)
        );
    }
}
