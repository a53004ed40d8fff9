//! The check of a settlement against what it settles — the authorization under automatic
//! capture, what was captured under manual capture — run by the settlement handler in
//! `state_machine.rs` when a settlement is applied: a gross amount or currency other than
//! that raises `AMOUNT_MISMATCH` / `CURRENCY_MISMATCH` through
//! [`crate::reconciliation::raise`] (the settlement is still posted as reported).

use paystream_schemas::{CaptureMode, ReconciliationExceptionKind, SettlementReported};

use super::model::PaymentState;
use crate::reconciliation::{self, Amounts};
use crate::{ProcessorContext, Result};

/// Compares a settlement with the authorization it settles (detected at the settlement's
/// `settled_at`, so a replay raises the same exception).
pub(super) fn reconcile_settlement(
    state: &PaymentState,
    settlement: &SettlementReported,
    ctx: &mut dyn ProcessorContext,
) -> Result<()> {
    // What the settlement should cover: the authorization under automatic capture,
    // what was captured under manual capture.
    let authorized_minor = match state.capture_mode {
        CaptureMode::Automatic => state.authorized_amount_minor.unwrap_or(state.amount_minor),
        CaptureMode::Manual => state
            .money_now()
            .map_or(0, |money| money.totals.captured_minor),
    };
    let authorized_currency = state
        .authorized_currency
        .as_deref()
        .unwrap_or(&state.currency);
    let kind = if settlement.currency != authorized_currency {
        ReconciliationExceptionKind::CurrencyMismatch
    } else if settlement.gross_amount_minor != authorized_minor {
        ReconciliationExceptionKind::AmountMismatch
    } else {
        return Ok(());
    };
    reconciliation::raise(
        ctx,
        &state.payment_id,
        kind,
        Amounts {
            expected_minor: Some(authorized_minor),
            actual_minor: Some(settlement.gross_amount_minor),
            currency: Some(settlement.currency.clone()),
        },
        settlement.settled_at,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use paystream_schemas::InputEvent;

    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::test_support::*;

    #[test]
    fn a_settlement_for_a_different_amount_raises_amount_mismatch_and_posts_what_was_paid() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        let mut short = settled("p1", "s1");
        if let InputEvent::SettlementReported(s) = &mut short {
            s.gross_amount_minor = 900;
            s.net_amount_minor = 875;
        }
        let out = d.pipe(rec(short));
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::AmountMismatch,
                Some(1000),
                Some(900)
            )]
        );
        assert!(entries(&out)[0].is_balanced());
    }

    #[test]
    fn a_settlement_in_another_currency_raises_currency_mismatch() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        let mut usd = settled("p1", "s1");
        if let InputEvent::SettlementReported(s) = &mut usd {
            s.currency = "USD".into();
        }
        let out = d.pipe(rec(usd));
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::CurrencyMismatch,
                Some(1000),
                Some(1000)
            )]
        );
    }
}
