//! The payment state machine: the handlers that apply one event to a payment (the legal
//! transitions are in `transitions.rs`; the state the `payments` store keeps per payment,
//! [`PaymentState`], is in `model.rs`).
//!
//! A handler checks the transition ([`transition`]), records the event's id in the state
//! (a retry of it is then a duplicate), changes the payment's value and emits a
//! `PaymentStatusChanged`; an authorization emits its balanced journal entry (a hold under
//! manual capture, see [`crate::ledger`]) and starts the settlement window timer, and a
//! settlement emits its entry, cancels the timer and compares the settlement with what it
//! settles ([`super::settlement_check::reconcile_settlement`]). Captures, voids, refunds
//! and chargebacks go to `movements.rs`. An illegal transition is dead-lettered as
//! `illegal_transition`, naming the current and attempted states, and the event is not
//! recorded. Handlers change the loaded value ([`super::stored::Loaded`]);
//! their caller writes it once, after everything the event caused.
//!
//! The handlers import only `model.rs`, `settlement_check.rs` and `stored.rs`. They do not drain the
//! pending buffer after a transition: their callers do (`mod.rs`, `pending::drain`).

use paystream_schemas::{
    AuthFailed, AuthSucceeded, CaptureMode, InputEvent, PaymentInitiated, PaymentStatus,
    PaymentStatusChanged, SettlementReported,
};

use super::model::{LifecycleSettings, PaymentState};
use super::movements::apply_movement;
use super::settlement_check::reconcile_settlement;
use super::stored::Loaded;
use super::transitions::{IllegalTransition, transition};
use crate::ledger::EntryContext;
use crate::timers::{DueTimer, TimerKind};
use crate::{DeadLetterReason, Origin, Output, ProcessorContext, Result, ledger};

/// Creates the payment of `event` (→ INITIATED) in `loaded`. Returns whether it did:
/// `false` for a duplicate or an illegal transition (dead-lettered). Once it did, the
/// caller applies the events that waited for the payment (`pending::drain`) and writes
/// the value.
pub(super) fn initiate(
    loaded: &mut Loaded,
    event: PaymentInitiated,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
) -> Result<bool> {
    if let Some(state) = &loaded.payment.state {
        if state.initiated_event_id == event.event_id {
            ctx.forward(Output::DuplicateDropped);
        } else {
            ctx.forward(illegal(
                origin,
                state,
                PaymentStatus::Initiated,
                &event.event_id,
            ));
        }
        return Ok(false);
    }
    let state = PaymentState {
        payment_id: event.payment_id,
        merchant_id: event.merchant_id,
        psp: event.psp,
        amount_minor: event.amount_minor,
        currency: event.currency,
        status: PaymentStatus::Initiated,
        initiated_event_id: event.event_id,
        authorized_amount_minor: None,
        authorized_currency: None,
        auth_event_id: None,
        settlement_event_id: None,
        capture_mode: event.capture_mode,
        money: None,
    };
    ctx.forward(Output::PaymentStatus(status_changed(
        &state,
        None,
        &state.initiated_event_id,
        event.occurred_at,
    )));
    loaded.payment.state = Some(state);
    Ok(true)
}

/// Applies an auth or settlement event to the payment in `loaded`, which exists.
/// Returns whether it did: `false` for an illegal transition (dead-lettered) or a
/// payment event (a duplicate or illegal, see [`initiate`]).
pub(super) fn apply(
    loaded: &mut Loaded,
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    settings: &LifecycleSettings,
) -> Result<bool> {
    match event {
        InputEvent::AuthSucceeded(auth) => on_auth_succeeded(loaded, auth, origin, ctx, settings),
        InputEvent::AuthFailed(failed) => on_auth_failed(loaded, failed, origin, ctx),
        InputEvent::SettlementReported(s) => on_settlement(loaded, s, origin, ctx),
        event @ (InputEvent::PaymentCaptured(_)
        | InputEvent::AuthorizationVoided(_)
        | InputEvent::RefundIssued(_)
        | InputEvent::ChargebackReported(_)) => apply_movement(loaded, event, origin, ctx),
        // The payment exists, so this is a duplicate or an illegal transition: no
        // payment is created and nothing waits to be drained.
        InputEvent::PaymentInitiated(p) => initiate(loaded, p, origin, ctx).map(|_| false),
    }
}

fn on_auth_succeeded(
    loaded: &mut Loaded,
    auth: AuthSucceeded,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    settings: &LifecycleSettings,
) -> Result<bool> {
    let recorded_ms = origin.timestamp_ms;
    let payment = &mut loaded.payment;
    let state = payment
        .state
        .as_mut()
        .expect("applied to a payment that exists");
    let Some(previous) = enter(
        state,
        PaymentStatus::Authorized,
        &auth.event_id,
        origin,
        ctx,
    ) else {
        return Ok(false);
    };
    state.authorized_amount_minor = Some(auth.amount_minor);
    state.authorized_currency = Some(auth.currency.clone());
    state.auth_event_id = Some(auth.event_id.clone());
    payment.timers.push(DueTimer {
        kind: TimerKind::SettlementWindow,
        due_ms: recorded_ms.saturating_add(settings.settlement_window_ms),
    });
    ctx.forward(Output::PaymentStatus(status_changed(
        state,
        Some(previous),
        &auth.event_id,
        auth.occurred_at,
    )));
    let entry = match state.capture_mode {
        CaptureMode::Automatic => ledger::authorization_entry(
            &state.payment_id,
            &state.psp,
            &state.merchant_id,
            auth.amount_minor,
            &auth.currency,
            auth.occurred_at,
            &auth.event_id,
        ),
        // Manual capture: the funds are only held until captures move them.
        CaptureMode::Manual => ledger::authorization_hold_entry(
            &EntryContext {
                payment_id: &state.payment_id,
                psp: &state.psp,
                merchant_id: &state.merchant_id,
                currency: &auth.currency,
                occurred_at_ms: auth.occurred_at,
                caused_by_event_id: &auth.event_id,
            },
            auth.amount_minor,
        ),
    };
    ctx.forward(Output::JournalEntry(entry));
    Ok(true)
}

fn on_auth_failed(
    loaded: &mut Loaded,
    failed: AuthFailed,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
) -> Result<bool> {
    let state = loaded
        .payment
        .state
        .as_mut()
        .expect("applied to a payment that exists");
    let Some(previous) = enter(
        state,
        PaymentStatus::Declined,
        &failed.event_id,
        origin,
        ctx,
    ) else {
        return Ok(false);
    };
    state.auth_event_id = Some(failed.event_id.clone());
    ctx.forward(Output::PaymentStatus(status_changed(
        state,
        Some(previous),
        &failed.event_id,
        failed.occurred_at,
    )));
    Ok(true)
}

fn on_settlement(
    loaded: &mut Loaded,
    settlement: SettlementReported,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
) -> Result<bool> {
    let payment = &mut loaded.payment;
    let state = payment
        .state
        .as_mut()
        .expect("applied to a payment that exists");
    let previous = state.status;
    let settles_money = state.capture_mode == CaptureMode::Manual || state.money.is_some();
    if settles_money
        && state.settlement_event_id.is_none()
        && let Some(mut money) = state.money_now()
        && money.totals.captured_minor > 0
    {
        // Captures, refunds or chargebacks moved its money: the settlement settles what
        // was captured (under manual capture it waited until the authorization closed;
        // a gross that differs raises AMOUNT_MISMATCH below) and the status follows
        // from the totals.
        money.totals.settled_minor = money.totals.captured_minor;
        state.status = money.totals.status(state.capture_mode);
        state.money = Some(money);
    } else if enter(
        state,
        PaymentStatus::Settled,
        &settlement.event_id,
        origin,
        ctx,
    )
    .is_none()
    {
        return Ok(false);
    }
    state.settlement_event_id = Some(settlement.event_id.clone());
    // Settled: the settlement window has nothing left to wait for.
    payment.cancel_timers(TimerKind::SettlementWindow);
    let state = payment.state.as_ref().expect("set above");
    if state.status != previous {
        ctx.forward(Output::PaymentStatus(status_changed(
            state,
            Some(previous),
            &settlement.event_id,
            settlement.settled_at,
        )));
    }
    ctx.forward(Output::JournalEntry(ledger::settlement_entry(
        &state.psp,
        &state.merchant_id,
        &settlement,
    )));
    reconcile_settlement(state, &settlement, ctx)?;
    Ok(true)
}

/// Moves `state` to `to` for event `event_id` if the lifecycle allows it and returns the
/// previous status. Otherwise dead-letters the record at `origin` as
/// `illegal_transition` and returns `None`.
fn enter(
    state: &mut PaymentState,
    to: PaymentStatus,
    event_id: &str,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
) -> Option<PaymentStatus> {
    let previous = state.status;
    if transition(Some(previous), to).is_err() {
        ctx.forward(illegal(origin, state, to, event_id));
        return None;
    }
    state.status = to;
    Some(previous)
}

fn illegal(origin: Origin, state: &PaymentState, to: PaymentStatus, event_id: &str) -> Output {
    let error = IllegalTransition {
        from: Some(state.status),
        to,
    };
    Output::DeadLetter {
        origin,
        reason: DeadLetterReason::IllegalTransition,
        message: format!(
            "{error}: payment {} is {}, event {event_id} asks for {to}",
            state.payment_id, state.status
        ),
    }
}

fn status_changed(
    state: &PaymentState,
    previous: Option<PaymentStatus>,
    caused_by_event_id: &str,
    occurred_at_ms: i64,
) -> PaymentStatusChanged {
    PaymentStatusChanged {
        payment_id: state.payment_id.clone(),
        merchant_id: state.merchant_id.clone(),
        status: state.status,
        previous_status: previous,
        amount_minor: state.amount_minor,
        currency: state.currency.clone(),
        caused_by_event_id: caused_by_event_id.to_string(),
        occurred_at: occurred_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use paystream_schemas::{JournalEntryKind, PostingSide};

    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::test_support::*;
    use crate::lifecycle::transitions::LEGAL_TRANSITIONS;

    #[test]
    fn the_transition_function_allows_exactly_the_legal_edges() {
        let froms = [None]
            .into_iter()
            .chain(PaymentStatus::ALL.into_iter().map(Some));
        for from in froms {
            for to in PaymentStatus::ALL {
                let legal = LEGAL_TRANSITIONS.contains(&(from, to));
                assert_eq!(transition(from, to).is_ok(), legal, "{from:?} -> {to}");
            }
        }
    }

    #[test]
    fn the_legal_edges_after_the_authorization_are_exactly_those_the_totals_make() {
        let reachable = crate::lifecycle::money::tests::reachable_status_changes(8);
        let listed: Vec<(PaymentStatus, PaymentStatus)> = LEGAL_TRANSITIONS
            .iter()
            .filter_map(|(from, to)| Some(((*from)?, *to)))
            .filter(|(from, _)| *from != PaymentStatus::Initiated)
            .collect();
        for edge in &reachable {
            assert!(listed.contains(edge), "{edge:?} made but not listed");
        }
        for edge in &listed {
            assert!(reachable.contains(edge), "{edge:?} listed but never made");
        }
    }

    #[test]
    fn walks_initiated_authorized_settled_with_balanced_entries() {
        let mut d = TestDriver::new(in_read_order());
        let out = d.pipe(rec(initiated("p1")));
        assert_eq!(statuses(&out), vec![(None, PaymentStatus::Initiated)]);
        let out = d.pipe(rec(auth_ok("p1", "a1")));
        assert_eq!(
            statuses(&out),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Authorized)]
        );
        let auth_entries = entries(&out);
        assert_eq!(auth_entries.len(), 1);
        assert_eq!(auth_entries[0].kind, JournalEntryKind::Authorization);
        assert!(auth_entries[0].is_balanced());
        let out = d.pipe(rec(settled("p1", "s1")));
        assert_eq!(
            statuses(&out),
            vec![(Some(PaymentStatus::Authorized), PaymentStatus::Settled)]
        );
        let settle = entries(&out);
        assert!(settle[0].is_balanced());
        let debit_total: i64 = settle[0]
            .postings
            .iter()
            .filter(|p| p.side == PostingSide::Debit)
            .map(|p| p.amount_minor)
            .sum();
        assert_eq!(debit_total, 1000);
    }

    #[test]
    fn walks_initiated_declined() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated("p1")));
        let out = d.pipe(rec(auth_failed("p1", "f1")));
        assert_eq!(
            statuses(&out),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Declined)]
        );
        assert!(entries(&out).is_empty(), "a decline posts nothing");
    }

    #[test]
    fn settlement_of_a_declined_payment_is_an_illegal_transition() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_failed("p1", "f1")));
        let out = d.pipe(rec(settled("p1", "s1")));
        assert!(is_dead_letter(&out, DeadLetterReason::IllegalTransition));
        match &out[0] {
            Output::DeadLetter { message, .. } => {
                assert!(
                    message.contains("DECLINED") && message.contains("SETTLED"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_auth_with_another_event_id_is_illegal() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        let out = d.pipe(rec(auth_failed("p1", "f2")));
        assert!(is_dead_letter(&out, DeadLetterReason::IllegalTransition));
    }
}
