//! The pending buffer: auth and settlement events that arrived before the state they
//! need wait in the `pending` store, keyed by payment id.
//!
//! An event waits when its payment has not been seen yet (normal: the payment reaches
//! the lifecycle through the repartition topic, its auth directly), or when it is a
//! settlement and the payment is not yet authorized (`waits_for_auth`). `buffer` stores
//! it and marks it seen; for a payment not seen yet the first waiting event also starts
//! the orphan timeout and the pending retention (they fire in `callbacks.rs`). `drain`
//! applies the waiting events the payment's state allows, in event-time order, whenever
//! the payment is created or changes state.
//!
//! A payment's waiting events are bounded, because the stored value is written as one
//! changelog record: at most [`PENDING_EVENTS_PER_PAYMENT_MAX`] events and at most
//! [`PENDING_VALUE_BYTES_MAX`] bytes. An event past either bound is dead-lettered on
//! arrival (`pending_buffer_full`, `record_too_large`) and not marked seen.
//!
//! The value format (postcard, versioned by its first byte; the JSON of earlier releases
//! still reads) is in [`mod@format`]; its public items are re-exported here.

pub mod format;

pub use format::{FORMAT_LEGACY_JSON, FORMAT_VERSION_1, PendingEvent, decode, encode};
pub(crate) use format::{read, write};

use paystream_schemas::{InputEvent, PaymentStatus};

use super::model::{LifecycleSettings, PaymentState, mark_seen};
use super::state_machine::apply;
use crate::timers::{self, TimerKind};
use crate::{DeadLetterReason, Origin, Output, ProcessorContext, Result, read_json, stores};

/// At most this many events wait in the `pending` store for one payment.
pub const PENDING_EVENTS_PER_PAYMENT_MAX: usize = 16;

/// At most this many bytes in the `pending` store's value for one payment, all its
/// waiting events included: 256 KiB. The value is written as one changelog record, and
/// the changelog topics take records up to the broker's default `message.max.bytes`
/// (1 MiB); the margin leaves room for the key, record headers and framing. An event is
/// its decoded form plus its record value, so one that carries more than about 128 KiB
/// of text cannot wait for its payment (it is still applied when its payment is there).
pub const PENDING_VALUE_BYTES_MAX: usize = 256 * 1024;

/// A settlement that arrives before its payment is authorized waits for the auth.
pub(super) fn waits_for_auth(state: &PaymentState, event: &InputEvent) -> bool {
    state.status == PaymentStatus::Initiated && matches!(event, InputEvent::SettlementReported(_))
}

/// Buffers `event` in `pending`. For a payment not seen yet (`orphan_timers` given), the
/// first waiting event starts the orphan timeout and the pending retention. Dead-letters
/// it instead when [`PENDING_EVENTS_PER_PAYMENT_MAX`] events already wait
/// (`pending_buffer_full`) or the payment's value with it would be larger than
/// [`PENDING_VALUE_BYTES_MAX`] (`record_too_large`).
pub(super) fn buffer(
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    orphan_timers: Option<&LifecycleSettings>,
) -> Result<()> {
    let payment_id = event.payment_id().to_string();
    let mut pending = read(ctx, &payment_id)?.unwrap_or_default();
    if pending.len() >= PENDING_EVENTS_PER_PAYMENT_MAX {
        ctx.forward(Output::DeadLetter {
            origin,
            reason: DeadLetterReason::PendingBufferFull,
            message: format!(
                "{PENDING_EVENTS_PER_PAYMENT_MAX} events already wait for payment {payment_id}"
            ),
        });
        return Ok(());
    }
    let first_waiting = pending.is_empty();
    // The value as it would be written, with the new event last.
    pending.push(PendingEvent { event, origin });
    let value = encode(&pending);
    let waiting = pending.pop().expect("the event was just pushed");
    if value.len() > PENDING_VALUE_BYTES_MAX {
        let record_value_bytes = waiting.origin.value.as_ref().map_or(0, Vec::len);
        ctx.forward(Output::DeadLetter {
            origin: waiting.origin,
            reason: DeadLetterReason::RecordTooLarge,
            message: format!(
                "event {} would wait for payment {payment_id} in the pending store, whose \
                 value for the payment would then be {} bytes, above its maximum of \
                 {PENDING_VALUE_BYTES_MAX} bytes ({} events already wait; this record value \
                 is {record_value_bytes} bytes)",
                waiting.event.event_id(),
                value.len(),
                pending.len(),
            ),
        });
        return Ok(());
    }
    mark_seen(ctx, waiting.event.event_id())?;
    if let Some(settings) = orphan_timers
        && first_waiting
    {
        for (kind, after_ms) in [
            (TimerKind::Orphan, settings.orphan_timeout_ms),
            (TimerKind::PendingExpiry, settings.pending_retention_ms),
        ] {
            let due_ms = waiting.origin.timestamp_ms.saturating_add(after_ms);
            timers::schedule(ctx, due_ms, kind, &payment_id)?;
        }
    }
    ctx.store(stores::PENDING)?
        .put(payment_id.as_bytes(), &value)?;
    Ok(())
}

/// Applies the events waiting for `payment_id` that its current state allows, in event
/// time order (auth before settlement on ties), until none applies.
pub(super) fn drain(
    payment_id: &str,
    ctx: &mut dyn ProcessorContext,
    settings: &LifecycleSettings,
) -> Result<()> {
    let Some(mut pending) = read(ctx, payment_id)? else {
        return Ok(());
    };
    pending.sort_by_key(|p| (p.event.event_time_ms(), event_rank(&p.event)));
    loop {
        let state: PaymentState = read_json(ctx, stores::PAYMENTS, payment_id)?
            .expect("drain runs after the payment was stored");
        let ready = pending
            .iter()
            .position(|p| !waits_for_auth(&state, &p.event));
        let Some(index) = ready else { break };
        let next = pending.remove(index);
        apply(state, next.event, next.origin, ctx, settings)?;
    }
    write(ctx, payment_id, &pending)
}

fn event_rank(event: &InputEvent) -> u8 {
    match event {
        InputEvent::PaymentInitiated(_) => 0,
        InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_) => 1,
        InputEvent::SettlementReported(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use paystream_state::KeyValueStore as _;
    use serde::Serialize;

    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::test_support::{
        auth_failed, auth_ok, entries, initiated, is_dead_letter, rec, settled, statuses,
    };
    use crate::{Processor, Record};

    #[test]
    fn events_before_their_payment_wait_and_apply_in_order() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
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
        assert_eq!(d.store_len(stores::PENDING), 0, "pending drained");
    }

    #[test]
    fn a_settlement_before_its_auth_waits_for_it() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
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
        assert_eq!(d.store_len(stores::PENDING), 0, "pending drained");
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
        assert_eq!(d.store_len(stores::PENDING), 0);
        assert_eq!(
            d.store_len(stores::TIMERS),
            0,
            "it does not wait, so no timer"
        );
        assert_eq!(d.store_len(stores::SEEN_EVENTS), 0, "not marked seen");
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
        assert_eq!(d.store_len(stores::PENDING), 1);
    }

    /// A context over in-memory stores a test writes to directly.
    struct StoreContext {
        stores: std::collections::HashMap<String, paystream_state::InMemoryStore>,
        outputs: Vec<Output>,
    }

    impl StoreContext {
        fn new() -> Self {
            StoreContext {
                stores: crate::Processor::stores(&LifecycleProcessor::default())
                    .iter()
                    .map(|spec| {
                        let name = spec.name;
                        (name.to_string(), paystream_state::InMemoryStore::new(name))
                    })
                    .collect(),
                outputs: Vec::new(),
            }
        }
    }

    impl ProcessorContext for StoreContext {
        fn store(&mut self, name: &str) -> Result<&mut dyn paystream_state::KeyValueStore> {
            Ok(self.stores.get_mut(name).expect("every store exists"))
        }

        fn forward(&mut self, output: Output) {
            self.outputs.push(output);
        }

        fn stream_time_ms(&self) -> i64 {
            0
        }

        fn partition_time_ms(&self, _stream: crate::Stream) -> i64 {
            0
        }
    }

    /// The `pending` entry of the release before the versioned format, as it wrote it.
    #[derive(Serialize)]
    struct PendingEventJson {
        event: InputEvent,
        origin: Origin,
    }

    #[test]
    fn events_waiting_in_the_json_of_earlier_releases_still_apply_after_an_upgrade() {
        let mut ctx = StoreContext::new();
        let settlement = rec(settled("p1", "s1"));
        let legacy = serde_json::to_vec(&[PendingEventJson {
            event: settlement.value.clone(),
            origin: settlement.origin.clone(),
        }])
        .unwrap();
        assert_eq!(legacy[0], b'[');
        ctx.store(stores::PENDING)
            .unwrap()
            .put(b"p1", &legacy)
            .unwrap();
        mark_seen(&mut ctx, "s1").unwrap();

        let mut lifecycle = LifecycleProcessor::default();
        lifecycle
            .process(rec(auth_ok("p1", "a1")), &mut ctx)
            .unwrap();
        assert!(ctx.outputs.is_empty(), "{:?}", ctx.outputs);
        let value = ctx.store(stores::PENDING).unwrap().get(b"p1").unwrap();
        let value = value.expect("both events wait");
        assert_eq!(value[0], FORMAT_VERSION_1, "rewritten in the new format");
        assert_eq!(decode("p1", &value).unwrap().len(), 2);

        lifecycle.process(rec(initiated("p1")), &mut ctx).unwrap();
        assert_eq!(
            statuses(&ctx.outputs),
            vec![
                (None, PaymentStatus::Initiated),
                (Some(PaymentStatus::Initiated), PaymentStatus::Authorized),
                (Some(PaymentStatus::Authorized), PaymentStatus::Settled),
            ]
        );
        assert_eq!(ctx.stores[stores::PENDING].approximate_len(), 0);
    }
}
