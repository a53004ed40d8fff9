//! The pending buffer: auth and settlement events that arrived before the state they
//! need wait in their payment's value in the `payments` store (`stored.rs`).
//!
//! An event waits when its payment has not been seen yet (normal: the payment reaches
//! the lifecycle through the repartition topic, its auth directly), or when it is a
//! settlement and the payment is not yet authorized (`waits_for_auth`). `buffer` adds
//! it to the value, whose waiting events count as seen; for a payment not seen yet the
//! first waiting event also sets the orphan timeout and the pending retention (they fire
//! in `callbacks.rs`). `drain` applies the waiting events the payment's state allows,
//! in event-time order, whenever the payment is created or changes state.
//!
//! A payment's waiting events are bounded, because its value is written as one changelog
//! record: at most [`PENDING_EVENTS_PER_PAYMENT_MAX`] events, and at most
//! [`PENDING_VALUE_BYTES_MAX`] bytes for the whole value. An event past either bound is
//! dead-lettered on arrival (`pending_buffer_full`, `record_too_large`) and not kept.
//!
//! The layout of a waiting event (postcard, shared with the `pending` store of earlier
//! releases, whose values `upgrade.rs` moves into the payments' values at task start) is
//! in [`mod@format`].

pub mod format;

pub use format::{FORMAT_LEGACY_JSON, FORMAT_VERSION_1, PendingEvent, decode, encode};

use paystream_schemas::{InputEvent, PaymentStatus};

use super::model::{LifecycleSettings, PaymentState};
use super::state_machine::apply;
use super::stored::{self, Loaded};
use crate::timers::{DueTimer, TimerKind};
use crate::{DeadLetterReason, Origin, Output, ProcessorContext, Result};

/// At most this many events wait for one payment.
pub const PENDING_EVENTS_PER_PAYMENT_MAX: usize = 16;

/// At most this many bytes in the `payments` store's value for one payment, all its
/// waiting events included: 256 KiB. The value is written as one changelog record, and
/// the changelog topics take records up to the broker's default `message.max.bytes`
/// (1 MiB); the margin leaves room for the key, record headers and framing. An event is
/// its decoded form plus its record value, so one that carries more than about 128 KiB
/// of text cannot wait for its payment (it is still applied when its payment is there).
pub const PENDING_VALUE_BYTES_MAX: usize = 256 * 1024;

/// True when `event` must wait for `state` to move on: a settlement before the payment
/// is authorized (or, under manual capture, while its authorization is open), and a capture,
/// void, refund or chargeback in the cases [`super::movements::must_wait`] lists.
pub(super) fn waits_for_auth(state: &PaymentState, event: &InputEvent) -> bool {
    (state.status == PaymentStatus::Initiated && matches!(event, InputEvent::SettlementReported(_)))
        || super::movements::must_wait(state, event)
}

/// Adds `event` to the events waiting in `loaded`. For a payment not seen yet
/// (`orphan_timers` given), the first waiting event sets the orphan timeout and the
/// pending retention. Dead-letters it instead when [`PENDING_EVENTS_PER_PAYMENT_MAX`]
/// events already wait (`pending_buffer_full`) or the payment's value with it would be
/// larger than [`PENDING_VALUE_BYTES_MAX`] (`record_too_large`). Returns whether it waits.
pub(super) fn buffer(
    loaded: &mut Loaded,
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    orphan_timers: Option<&LifecycleSettings>,
) -> Result<bool> {
    let payment = &mut loaded.payment;
    let payment_id = &loaded.payment_id;
    if payment.pending.len() >= PENDING_EVENTS_PER_PAYMENT_MAX {
        ctx.forward(Output::DeadLetter {
            origin,
            reason: DeadLetterReason::PendingBufferFull,
            message: format!(
                "{PENDING_EVENTS_PER_PAYMENT_MAX} events already wait for payment {payment_id}"
            ),
        });
        return Ok(false);
    }
    let timers_before = payment.timers.len();
    if let Some(settings) = orphan_timers
        && payment.pending.is_empty()
    {
        for (kind, after_ms) in [
            (TimerKind::Orphan, settings.orphan_timeout_ms),
            (TimerKind::PendingExpiry, settings.pending_retention_ms),
        ] {
            let due_ms = origin.timestamp_ms.saturating_add(after_ms);
            payment.timers.push(DueTimer { kind, due_ms });
        }
    }
    payment.pending.push(PendingEvent { event, origin });
    // The value as it would be written, with the new event last.
    let value_bytes = stored::encode(payment).len();
    if value_bytes <= PENDING_VALUE_BYTES_MAX {
        return Ok(true);
    }
    let waiting = payment.pending.pop().expect("the event was just pushed");
    payment.timers.truncate(timers_before);
    let record_value_bytes = waiting.origin.value.as_ref().map_or(0, Vec::len);
    ctx.forward(Output::DeadLetter {
        message: format!(
            "event {} would wait for payment {payment_id}, whose value in the payments store \
             would then be {value_bytes} bytes, above its maximum of \
             {PENDING_VALUE_BYTES_MAX} bytes ({} events already wait; this record value \
             is {record_value_bytes} bytes)",
            waiting.event.event_id(),
            payment.pending.len(),
        ),
        origin: waiting.origin,
        reason: DeadLetterReason::RecordTooLarge,
    });
    Ok(false)
}

/// Applies the events waiting in `loaded` that the payment's current state allows, in
/// event time order (auth before settlement on ties), until none applies. While the
/// payment's money movements wait for the reorder wait (a `MovementReorder` timer is
/// set), the first waiting movement or settlement stops the drain: nothing that happened
/// after it applies before it. Returns whether any left the buffer (applied, or
/// dead-lettered as an illegal transition).
pub(super) fn drain(
    loaded: &mut Loaded,
    ctx: &mut dyn ProcessorContext,
    settings: &LifecycleSettings,
) -> Result<bool> {
    if loaded.payment.pending.is_empty() {
        return Ok(false);
    }
    let movements_wait = loaded.payment.in_reorder_wait();
    let mut pending = std::mem::take(&mut loaded.payment.pending);
    let waiting_before = pending.len();
    // Event time, then the order things happen in, then arrival (the sort is stable):
    // records of one topic keep their order.
    pending.sort_by_key(|p| (p.event.event_time_ms(), event_rank(&p.event)));
    loop {
        let state = loaded.state();
        let ready = pending
            .iter()
            .take_while(|p| !(movements_wait && joins_reorder_wait(&p.event)))
            .position(|p| !waits_for_auth(state, &p.event));
        let Some(index) = ready else { break };
        let next = pending.remove(index);
        apply(loaded, next.event, next.origin, ctx, settings)?;
    }
    let drained = pending.len() != waiting_before;
    loaded.payment.pending = pending;
    Ok(drained)
}

/// True for the events that wait in the reorder wait: the money movements and the
/// settlement (it settles what the captures moved, and a refund or chargeback that
/// happened before it takes the payment to another status first).
pub(super) fn joins_reorder_wait(event: &InputEvent) -> bool {
    event.is_money_movement() || matches!(event, InputEvent::SettlementReported(_))
}

/// The order of events with the same event time: the payment, its auth, captures, a
/// void, settlement, refunds, chargebacks — the order they happen in.
fn event_rank(event: &InputEvent) -> u8 {
    match event {
        InputEvent::PaymentInitiated(_) => 0,
        InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_) => 1,
        InputEvent::PaymentCaptured(_) => 2,
        InputEvent::AuthorizationVoided(_) => 3,
        InputEvent::SettlementReported(_) => 4,
        InputEvent::RefundIssued(_) => 5,
        InputEvent::ChargebackReported(_) => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::test_support::{
        auth_failed, auth_ok, entries, in_read_order, initiated, is_dead_letter, rec, settled,
        statuses, stored_payment,
    };
    use crate::{Record, stores};

    #[test]
    fn events_before_their_payment_wait_and_apply_in_order() {
        let mut d = TestDriver::new(in_read_order());
        assert!(d.pipe(rec(settled("p1", "s1"))).is_empty());
        assert!(d.pipe(rec(auth_ok("p1", "a1"))).is_empty());
        // A duplicate of a waiting event is still a duplicate.
        assert_eq!(
            d.pipe(rec(auth_ok("p1", "a1"))),
            vec![Output::DuplicateDropped]
        );
        let out = d.pipe(rec(initiated("p1")));
        assert_eq!(
            statuses(&out),
            vec![
                (None, PaymentStatus::Initiated),
                (Some(PaymentStatus::Initiated), PaymentStatus::Authorized),
                (Some(PaymentStatus::Authorized), PaymentStatus::Settled),
            ]
        );
        assert_eq!(entries(&out).len(), 2);
        let stored = stored_payment(&d, "p1");
        assert!(stored.pending.is_empty(), "pending drained");
        assert!(
            stored
                .timers
                .iter()
                .all(|t| t.kind == TimerKind::SettlementWindow),
            "the orphan timers went once the payment appeared: {:?}",
            stored.timers
        );
    }

    #[test]
    fn a_settlement_before_its_auth_waits_for_it() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p1")));
        assert!(d.pipe(rec(settled("p1", "s1"))).is_empty());
        let out = d.pipe(rec(auth_ok("p1", "a1")));
        assert_eq!(
            statuses(&out),
            vec![
                (Some(PaymentStatus::Initiated), PaymentStatus::Authorized),
                (Some(PaymentStatus::Authorized), PaymentStatus::Settled),
            ]
        );
        assert!(
            stored_payment(&d, "p1").pending.is_empty(),
            "pending drained"
        );
    }

    #[test]
    fn the_pending_buffer_is_bounded() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        for i in 0..PENDING_EVENTS_PER_PAYMENT_MAX {
            assert!(d.pipe(rec(auth_ok("p1", &format!("a{i}")))).is_empty());
        }
        let out = d.pipe(rec(auth_ok("p1", "one-too-many")));
        assert!(is_dead_letter(&out, DeadLetterReason::PendingBufferFull));
    }
    /// `event` as a record whose value is `text_bytes` longer than the event's own
    /// fields, as a record carrying that much free text is.
    fn rec_with_text(mut event: InputEvent, text_bytes: usize) -> Record<InputEvent> {
        let text = "x".repeat(text_bytes);
        if let InputEvent::AuthFailed(failed) = &mut event {
            failed.reason = text.clone();
        }
        let mut record = rec(event);
        record.origin.value = Some([&[0u8, 0, 0, 0, 2][..], text.as_bytes()].concat());
        record
    }

    fn dead_letter_message(outputs: &[Output], reason: DeadLetterReason) -> &str {
        match outputs {
            [
                Output::DeadLetter {
                    reason: r, message, ..
                },
            ] if *r == reason => message,
            _ => panic!(
                "expected one {reason} dead letter, got {} outputs",
                outputs.len()
            ),
        }
    }

    #[test]
    fn an_event_too_large_to_wait_for_its_payment_is_dead_lettered_as_record_too_large() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        let big = || rec_with_text(auth_failed("p1", "f1"), 300_000);
        let out = d.pipe(big());
        let message = dead_letter_message(&out, DeadLetterReason::RecordTooLarge);
        assert!(
            message.contains("p1") && message.contains(&PENDING_VALUE_BYTES_MAX.to_string()),
            "{message}"
        );
        match &out[0] {
            Output::DeadLetter { origin, .. } => {
                assert_eq!(origin, &big().origin, "the dead letter keeps the record")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            d.store_len(stores::PAYMENTS),
            0,
            "it does not wait, so no timer, and it is not seen"
        );
        // Once its payment exists a redrive applies: it has nothing to wait for.
        d.pipe(rec(initiated("p1")));
        assert_eq!(
            statuses(&d.pipe(big())),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Declined)]
        );
    }

    #[test]
    fn the_pending_value_is_bounded_in_bytes_over_all_waiting_events() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        // About 40 KB stored per event (its text decoded and in its record value): six
        // fit in 256 KiB, the seventh would not.
        for i in 0..6 {
            let out = d.pipe(rec_with_text(auth_failed("p1", &format!("f{i}")), 20_000));
            assert!(out.is_empty(), "event {i} waits");
        }
        let out = d.pipe(rec_with_text(auth_failed("p1", "f6"), 20_000));
        let message = dead_letter_message(&out, DeadLetterReason::RecordTooLarge);
        assert!(message.contains("6 events already wait"), "{message}");
        assert!(
            d.pipe(rec(settled("p1", "s1"))).is_empty(),
            "a small event still fits"
        );
        assert_eq!(stored_payment(&d, "p1").pending.len(), 7);
    }
}
