//! Reconciliation: what happens when the lifecycle's timers fire. Each raises
//! reconciliation exceptions through [`crate::reconciliation::raise`], at most once per
//! payment and kind.
//!
//! Timers are part of their payment's value (`stored.rs`), set by
//! [`super::pending::buffer`] (orphan timeout, pending retention) and by the AUTHORIZED
//! handler in [`super::state_machine`] (settlement window), and found through the
//! task's timer index ([`crate::timers::TimerIndex`]). [`super::LifecycleProcessor`]
//! takes the due ones at each punctuation, loads their payment, and calls:
//! - [`on_orphan_timeout`]: the payment still has not appeared; a waiting settlement
//!   raises `MISSING_IN_LEDGER`, a waiting auth, capture, void, refund or chargeback
//!   `ORPHAN_EVENT`. The events keep
//!   waiting.
//! - [`on_pending_expired`]: the pending retention ran out; the waiting events go to the
//!   dead-letter queue (`orphan_expired`) and leave the payment's value, so they are no
//!   longer seen.
//! - [`on_settlement_window_closed`]: the payment is still AUTHORIZED; `MISSING_IN_PSP`.
//! - [`on_stuck_payment`] (wall-clock time, from the wall-clock punctuation): the payment
//!   is still INITIATED; `STUCK_PAYMENT`.
//!
//! Its caller writes the payment's value afterwards. The check of a settlement against
//! its authorization, which runs when the settlement is applied, is in
//! `settlement_check.rs`.

use paystream_schemas::{CaptureMode, InputEvent, PaymentStatus, ReconciliationExceptionKind};

use super::model::{LifecycleSettings, PaymentState};
use super::stored::Loaded;
use crate::reconciliation::{self, Amounts};
use crate::timers::{self, TimerKind};
use crate::{DeadLetterReason, Output, ProcessorContext, Result};

/// The orphan timeout of a payment fired: exceptions for the events still waiting for it.
pub(super) fn on_orphan_timeout(
    loaded: &Loaded,
    timer: &timers::Timer,
    ctx: &mut dyn ProcessorContext,
) -> Result<()> {
    if loaded.payment.state.is_some() {
        return Ok(());
    }
    for waiting in &loaded.payment.pending {
        let (kind, amounts) = match &waiting.event {
            InputEvent::SettlementReported(s) => (
                ReconciliationExceptionKind::MissingInLedger,
                Amounts {
                    expected_minor: None,
                    actual_minor: Some(s.gross_amount_minor),
                    currency: Some(s.currency.clone()),
                },
            ),
            InputEvent::AuthSucceeded(a) => (
                ReconciliationExceptionKind::OrphanEvent,
                Amounts {
                    expected_minor: None,
                    actual_minor: Some(a.amount_minor),
                    currency: Some(a.currency.clone()),
                },
            ),
            InputEvent::AuthFailed(_) | InputEvent::AuthorizationVoided(_) => {
                (ReconciliationExceptionKind::OrphanEvent, Amounts::default())
            }
            // A capture, refund or chargeback for a payment never seen: money moved at
            // the PSP that our books do not know.
            InputEvent::PaymentCaptured(e) => orphan_of(e.amount_minor, &e.currency),
            InputEvent::RefundIssued(e) => orphan_of(e.amount_minor, &e.currency),
            InputEvent::ChargebackReported(e) => orphan_of(e.amount_minor, &e.currency),
            InputEvent::PaymentInitiated(_) => continue,
        };
        reconciliation::raise(ctx, &timer.payment_id, kind, amounts, timer.due_ms)?;
    }
    Ok(())
}

/// `ORPHAN_EVENT` with the amount the PSP reported.
fn orphan_of(amount_minor: i64, currency: &str) -> (ReconciliationExceptionKind, Amounts) {
    (
        ReconciliationExceptionKind::OrphanEvent,
        Amounts {
            expected_minor: None,
            actual_minor: Some(amount_minor),
            currency: Some(currency.to_string()),
        },
    )
}

/// The pending retention of a payment that never appeared ran out: its waiting events
/// go to the dead-letter queue (`orphan_expired`) and leave its value, so a redrive once
/// the payment exists is processed, not dropped as a duplicate.
pub(super) fn on_pending_expired(
    loaded: &mut Loaded,
    timer: &timers::Timer,
    retention_ms: i64,
    ctx: &mut dyn ProcessorContext,
) -> Result<()> {
    if loaded.payment.state.is_some() {
        return Ok(());
    }
    for waiting in std::mem::take(&mut loaded.payment.pending) {
        ctx.forward(Output::DeadLetter {
            origin: waiting.origin,
            reason: DeadLetterReason::OrphanExpired,
            message: format!(
                "waited {retention_ms} ms of payment stream time for payment {}, which never \
                 appeared; redrive it once the payment exists",
                timer.payment_id
            ),
        });
    }
    // Nothing waits any more.
    loaded.payment.cancel_timers(TimerKind::Orphan);
    loaded.payment.cancel_timers(TimerKind::MovementReorder);
    Ok(())
}

/// The settlement window of a payment closed: `MISSING_IN_PSP` if it is still unsettled.
pub(super) fn on_settlement_window_closed(
    loaded: &Loaded,
    timer: &timers::Timer,
    ctx: &mut dyn ProcessorContext,
) -> Result<()> {
    let Some(state) = &loaded.payment.state else {
        return Ok(());
    };
    // The PSP's settlement is here, waiting in the pending buffer (for the authorization
    // to close, or behind a money movement in the reorder wait): not missing.
    if loaded
        .payment
        .pending
        .iter()
        .any(|waiting| matches!(waiting.event, InputEvent::SettlementReported(_)))
    {
        return Ok(());
    }
    // Unsettled: automatic capture still AUTHORIZED, or under manual capture something
    // captured and nothing settled (a manual authorization with nothing captured has
    // nothing to settle: it is the uncaptured-authorization check's).
    let expected_minor = match state.capture_mode {
        CaptureMode::Automatic if state.status == PaymentStatus::Authorized => {
            state.authorized_amount_minor.unwrap_or(state.amount_minor)
        }
        CaptureMode::Manual if state.settlement_event_id.is_none() => state
            .money_now()
            .map_or(0, |money| money.totals.captured_minor),
        _ => 0,
    };
    if expected_minor == 0 {
        return Ok(());
    }
    let amounts = Amounts {
        expected_minor: Some(expected_minor),
        actual_minor: None,
        currency: Some(
            state
                .authorized_currency
                .clone()
                .unwrap_or_else(|| state.currency.clone()),
        ),
    };
    reconciliation::raise(
        ctx,
        &timer.payment_id,
        ReconciliationExceptionKind::MissingInPsp,
        amounts,
        timer.due_ms,
    )?;
    Ok(())
}

/// The wall-clock time a payment in `state` may stay as it is before it is stuck,
/// milliseconds: INITIATED waits for its auth outcome
/// ([`LifecycleSettings::stuck_payment_timeout_ms`]), AUTHORIZED under manual capture for
/// its first capture or a void
/// ([`LifecycleSettings::uncaptured_authorization_timeout_ms`]). `None` for any other
/// state, or a check turned off (0).
pub(super) fn stuck_timeout_ms(state: &PaymentState, settings: &LifecycleSettings) -> Option<i64> {
    match (state.status, state.capture_mode) {
        (PaymentStatus::Initiated, _) => Some(settings.stuck_payment_timeout_ms),
        (PaymentStatus::Authorized, CaptureMode::Manual) => {
            Some(settings.uncaptured_authorization_timeout_ms)
        }
        _ => None,
    }
    .filter(|timeout_ms| *timeout_ms > 0)
}

/// A payment's stuck-payment timer fired (wall-clock time): `STUCK_PAYMENT` if it still
/// waits ([`stuck_timeout_ms`]), with what it waits to move as the expected amount (the
/// requested amount, or the authorized one).
pub(super) fn on_stuck_payment(
    loaded: &Loaded,
    timer: &timers::Timer,
    settings: &LifecycleSettings,
    ctx: &mut dyn ProcessorContext,
) -> Result<()> {
    let Some(state) = &loaded.payment.state else {
        return Ok(());
    };
    if stuck_timeout_ms(state, settings).is_none() {
        return Ok(());
    }
    let amounts = Amounts {
        expected_minor: Some(state.authorized_amount_minor.unwrap_or(state.amount_minor)),
        actual_minor: None,
        currency: Some(
            state
                .authorized_currency
                .clone()
                .unwrap_or_else(|| state.currency.clone()),
        ),
    };
    reconciliation::raise(
        ctx,
        &timer.payment_id,
        ReconciliationExceptionKind::StuckPayment,
        amounts,
        timer.due_ms,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Processor;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::test_support::*;

    const MINUTE_MS: i64 = 60_000;
    const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

    #[test]
    fn after_a_restart_the_timer_index_is_rebuilt_over_punctuations_and_every_timer_fires_once() {
        // More payments than the rebuild reads in one punctuation (4 pages of 1,024).
        const PAYMENTS: usize = 5_000;
        let mut d = TestDriver::new(LifecycleProcessor::default());
        for n in 0..PAYMENTS {
            d.pipe(rec(auth_ok(&format!("p{n:05}"), &format!("a{n:05}"))));
        }
        d.restart(LifecycleProcessor::default());
        assert!(
            d.processor().awaits_wall_clock(),
            "the rebuild is under way after the restart"
        );
        // A punctuation whose transaction aborts in the middle of the rebuild: nothing is
        // lost, nothing fires twice.
        d.advance_stream_time_ms_and_abort(MINUTE_MS);
        let mut raised = exceptions(&d.advance_stream_time_ms(10 * MINUTE_MS)).len();
        for _ in 0..20 {
            raised += exceptions(&d.advance_stream_time_ms(1)).len();
        }
        assert_eq!(raised, PAYMENTS, "every orphan timeout fired, once");
        assert!(!d.processor().awaits_wall_clock(), "the rebuild is done");
    }

    #[test]
    fn an_auth_whose_payment_never_appears_raises_orphan_event_once_after_the_timeout() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        assert!(d.pipe(rec(auth_ok("p1", "a1"))).is_empty());
        assert!(
            d.advance_stream_time_ms(9 * MINUTE_MS).is_empty(),
            "not yet due"
        );
        let out = d.advance_stream_time_ms(2 * MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::OrphanEvent, None, Some(1000))]
        );
        assert!(d.advance_stream_time_ms(DAY_MS).is_empty(), "raised once");
        // The payment turns up late: the waiting auth still applies.
        let out = d.pipe(rec(initiated("p1")));
        assert_eq!(
            statuses(&out),
            vec![
                (None, PaymentStatus::Initiated),
                (Some(PaymentStatus::Initiated), PaymentStatus::Authorized)
            ]
        );
    }

    #[test]
    fn events_whose_payment_never_appears_expire_to_the_dead_letter_queue_and_can_be_redriven() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(auth_ok("p1", "a1")));
        d.pipe(rec(settled("p1", "s1")));
        assert!(
            !d.advance_stream_time_ms(71 * 60 * MINUTE_MS)
                .iter()
                .any(|o| matches!(o, Output::DeadLetter { .. })),
            "still within the 72 h retention"
        );
        let out = d.advance_stream_time_ms(2 * 60 * MINUTE_MS);
        let expired = out
            .iter()
            .filter(|o| {
                matches!(o, Output::DeadLetter { reason, .. } if *reason == DeadLetterReason::OrphanExpired)
            })
            .count();
        assert_eq!(expired, 2, "{out:?}");
        assert_eq!(
            stored_payment(&d, "p1"),
            crate::lifecycle::stored::StoredPayment::default(),
            "nothing is kept for the payment"
        );
        // The payment finally exists; the redriven events apply (not duplicates).
        d.pipe(rec(initiated("p1")));
        assert_eq!(
            statuses(&d.pipe(rec(auth_ok("p1", "a1")))),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Authorized)]
        );
        assert!(
            d.pipe(rec(settled("p1", "s1"))).is_empty(),
            "the settlement waits for the reorder wait"
        );
        assert_eq!(
            statuses(&d.advance_wall_clock_ms(crate::lifecycle::MOVEMENT_REORDER_WAIT_MS)),
            vec![(Some(PaymentStatus::Authorized), PaymentStatus::Settled)]
        );
    }

    #[test]
    fn a_settlement_whose_payment_never_appears_raises_missing_in_ledger() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        assert!(d.pipe(rec(settled("p1", "s1"))).is_empty());
        let out = d.advance_stream_time_ms(11 * MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::MissingInLedger,
                None,
                Some(1000)
            )]
        );
    }

    #[test]
    fn an_orphan_that_finds_its_payment_in_time_raises_nothing() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(auth_ok("p1", "a1")));
        d.advance_stream_time_ms(5 * MINUTE_MS);
        d.pipe(rec(initiated("p1")));
        assert!(exceptions(&d.advance_stream_time_ms(DAY_MS)).is_empty());
    }

    #[test]
    fn an_authorization_not_settled_within_the_window_raises_missing_in_psp() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        assert!(exceptions(&d.advance_stream_time_ms(2 * DAY_MS)).is_empty());
        let out = d.advance_stream_time_ms(2 * DAY_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::MissingInPsp, Some(1000), None)]
        );
    }

    #[test]
    fn a_settlement_within_the_window_raises_nothing() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        d.advance_stream_time_ms(DAY_MS);
        assert!(exceptions(&d.pipe(rec(settled("p1", "s1")))).is_empty());
        assert!(exceptions(&d.advance_stream_time_ms(10 * DAY_MS)).is_empty());
        assert!(
            stored_payment(&d, "p1").timers.is_empty(),
            "a settled payment keeps no timer"
        );
    }

    fn stuck_after(timeout_ms: i64) -> LifecycleProcessor {
        LifecycleProcessor::new(crate::lifecycle::LifecycleSettings {
            stuck_payment_timeout_ms: timeout_ms,
            ..Default::default()
        })
    }

    #[test]
    fn a_payment_without_an_auth_outcome_is_stuck_after_the_timeout_of_wall_clock_time() {
        let mut d = TestDriver::new(stuck_after(15 * MINUTE_MS));
        d.pipe(rec(initiated("p1")));
        // Stream time moving does not fire it; wall-clock time does.
        assert!(exceptions(&d.advance_stream_time_ms(DAY_MS)).is_empty());
        assert!(exceptions(&d.advance_wall_clock_ms(14 * MINUTE_MS)).is_empty());
        let out = d.advance_wall_clock_ms(MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::StuckPayment, Some(1000), None)]
        );
        let Output::ReconciliationException(stuck) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            stuck.detected_at,
            crate::driver::WALL_CLOCK_START_MS + 15 * MINUTE_MS,
            "detected at the due wall-clock time"
        );
        assert!(
            exceptions(&d.advance_wall_clock_ms(DAY_MS)).is_empty(),
            "raised once"
        );
        // The outcome comes late: it still applies.
        assert_eq!(
            statuses(&d.pipe(rec(auth_ok("p1", "a1")))),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Authorized)]
        );
    }

    #[test]
    fn an_auth_outcome_in_time_cancels_the_stuck_payment_check() {
        let mut d = TestDriver::new(stuck_after(15 * MINUTE_MS));
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(initiated("p2")));
        d.pipe(rec(auth_ok("p1", "a1")));
        d.pipe(rec(auth_failed("p2", "f2")));
        assert!(exceptions(&d.advance_wall_clock_ms(DAY_MS)).is_empty());
        for payment in ["p1", "p2"] {
            assert!(
                !stored_payment(&d, payment)
                    .timers
                    .iter()
                    .any(|t| t.kind == TimerKind::StuckPayment),
                "{payment}"
            );
        }
        // An auth that waited for its payment: the payment is never INITIATED for long.
        d.pipe(rec(auth_ok("p3", "a3")));
        d.pipe(rec(initiated("p3")));
        assert!(
            !stored_payment(&d, "p3")
                .timers
                .iter()
                .any(|t| t.kind == TimerKind::StuckPayment)
        );
    }

    #[test]
    fn the_stuck_payment_check_survives_a_restart_and_can_be_turned_off() {
        let mut d = TestDriver::new(stuck_after(MINUTE_MS));
        d.pipe(rec(initiated("p1")));
        d.restart(stuck_after(MINUTE_MS));
        assert_eq!(
            exceptions(&d.advance_wall_clock_ms(MINUTE_MS)),
            vec![(ReconciliationExceptionKind::StuckPayment, Some(1000), None)],
            "the timer was rebuilt from the stored value"
        );

        let off = LifecycleProcessor::new(crate::lifecycle::LifecycleSettings {
            stuck_payment_timeout_ms: 0,
            uncaptured_authorization_timeout_ms: 0,
            movement_reorder_wait_ms: 0,
            ..Default::default()
        });
        assert_eq!(
            crate::Processor::wall_clock_punctuation_interval_ms(&off),
            None
        );
        let mut d = TestDriver::new(off);
        d.pipe(rec(initiated("p1")));
        assert!(stored_payment(&d, "p1").timers.is_empty());
        assert!(exceptions(&d.advance_wall_clock_ms(DAY_MS)).is_empty());
    }

    #[test]
    fn an_authorization_under_manual_capture_never_captured_is_stuck_after_its_timeout() {
        let lifecycle = || {
            LifecycleProcessor::new(crate::lifecycle::LifecycleSettings {
                stuck_payment_timeout_ms: 15 * MINUTE_MS,
                uncaptured_authorization_timeout_ms: DAY_MS,
                movement_reorder_wait_ms: 0,
                ..Default::default()
            })
        };
        let mut d = TestDriver::new(lifecycle());
        d.pipe(rec(initiated_manual("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        d.pipe(rec(initiated_manual("p2")));
        d.pipe(rec(auth_ok("p2", "a2")));
        d.pipe(rec(capture("p2", "c2", 100, false)));
        assert!(
            exceptions(&d.advance_wall_clock_ms(DAY_MS - MINUTE_MS)).is_empty(),
            "the INITIATED timer was replaced by the uncaptured one"
        );
        let out = d.advance_wall_clock_ms(MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::StuckPayment, Some(1000), None)],
            "only the authorization with nothing captured: {out:?}"
        );
        // The settlement window finds what was captured unsettled, not the authorization
        // with nothing captured.
        assert_eq!(
            exceptions(&d.advance_stream_time_ms(10 * DAY_MS)),
            vec![(ReconciliationExceptionKind::MissingInPsp, Some(100), None)]
        );
    }

    #[test]
    fn a_refund_or_chargeback_for_a_payment_never_seen_is_an_orphan_after_the_timeout() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        assert!(d.pipe(rec(refund("p1", "r1", 300))).is_empty(), "it waits");
        assert!(
            d.pipe(rec(chargeback(
                "p2",
                "d2",
                paystream_schemas::ChargebackStage::Opened,
                400,
                15
            )))
            .is_empty()
        );
        assert!(exceptions(&d.advance_stream_time_ms(9 * MINUTE_MS)).is_empty());
        let mut out = exceptions(&d.advance_stream_time_ms(2 * MINUTE_MS));
        out.sort_by_key(|(_, _, actual)| *actual);
        assert_eq!(
            out,
            vec![
                (ReconciliationExceptionKind::OrphanEvent, None, Some(300)),
                (ReconciliationExceptionKind::OrphanEvent, None, Some(400)),
            ]
        );
    }

    #[test]
    fn a_settlement_waiting_for_a_capture_in_the_reorder_wait_is_not_missing_in_psp() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated_manual("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        d.pipe(rec(capture("p1", "c1", 600, false)));
        d.advance_wall_clock_ms(crate::lifecycle::MOVEMENT_REORDER_WAIT_MS);
        // The final capture waits for the reorder wait; the settlement waits for the
        // authorization to close, which the final capture does.
        d.pipe(rec(capture("p1", "c2", 400, true)));
        d.pipe(rec(settled("p1", "s1")));
        let out = d.advance_stream_time_ms(4 * DAY_MS);
        assert!(exceptions(&out).is_empty(), "{out:?}");
        let out = d.advance_wall_clock_ms(crate::lifecycle::MOVEMENT_REORDER_WAIT_MS);
        assert_eq!(
            entries(&out).len(),
            2,
            "the final capture and the settlement: {out:?}"
        );
    }
}
