//! The payment lifecycle (docs/architecture.md, "Payment lifecycle and ledger"):
//!
//! ```text
//!   (none) ──PaymentInitiated──► INITIATED ──AuthSucceeded──► AUTHORIZED ──SettlementReported──► SETTLED
//!                                    │
//!                                    └──────AuthFailed──────► DECLINED
//! ```
//!
//! Any other transition is dead-lettered as `illegal_transition` naming the current and
//! attempted states. Auth and settlement events are deduplicated by `event_id` (the
//! `seen_events` store, written when an event is applied or buffered, never when it is
//! dead-lettered). An auth or settlement event for a payment not seen yet, and a
//! settlement for a payment not yet authorized, waits in the `pending` store and is
//! applied in event-time order when the payment reaches the state it needs. Events arrive
//! out of order in normal operation: the repartitioned payment and its auth event come
//! from different topics. A payment's waiting events are bounded: at most
//! [`PENDING_EVENTS_PER_PAYMENT_MAX`] of them, and at most [`PENDING_VALUE_BYTES_MAX`] for
//! its stored value (format in [`pending::format`]), which is written as one changelog
//! record. An event past either bound is dead-lettered on arrival
//! (`pending_buffer_full`, `record_too_large`) and not marked seen.
//!
//! Each transition emits a `PaymentStatusChanged`; AUTHORIZED and SETTLED also emit their
//! balanced journal entry (see [`crate::ledger`]).
//!
//! Timers (event time, persisted in the `timers` store, see [`crate::timers`]):
//! - **orphan timeout** ([`LifecycleSettings::orphan_timeout_ms`], default 10 min): set when
//!   the first event of a payment not seen yet is buffered, due at its record timestamp
//!   plus the timeout on the payments stream's clock. When it fires and the payment still
//!   has not appeared, a waiting settlement raises `MISSING_IN_LEDGER` and a waiting auth
//!   event `ORPHAN_EVENT`. The events keep waiting: if the payment appears later they are
//!   applied as usual (the exception stays on record for finance).
//! - **pending retention** ([`LifecycleSettings::pending_retention_ms`], default 72 h): set
//!   with the orphan timeout. When it fires and the payment still has not appeared, the
//!   waiting events go to the dead-letter queue (`orphan_expired`), no longer marked seen.
//! - **settlement window** ([`LifecycleSettings::settlement_window_ms`], default 3 days):
//!   set at authorization, due at the auth record's timestamp plus the window on the
//!   settlement stream's clock. When it fires and the payment is still AUTHORIZED,
//!   `MISSING_IN_PSP` is raised.
//!
//! A settlement whose gross amount or currency differs from the authorization raises
//! `AMOUNT_MISMATCH` / `CURRENCY_MISMATCH` and is still posted as reported: the ledger
//! shows what the PSP paid, the exception shows the difference (see
//! [`crate::reconciliation`]).
//!
//! # Parts
//!
//! | file | role |
//! |---|---|
//! | `mod.rs` (here) | [`LifecycleProcessor`]; the [`Processor`] impl: key check, deduplication by `event_id`, routing of each event to the state machine or the pending buffer, draining the buffer once a payment is created, timer dispatch at punctuation |
//! | `model.rs` | [`LifecycleSettings`], [`PaymentState`] and `mark_seen`: the small items the other files share |
//! | `state_machine.rs` | [`transition`], [`LEGAL_TRANSITIONS`]; the per-event handlers that apply a transition and emit status changes and journal entries |
//! | `settlement_check.rs` | the check of an applied settlement against its authorization; the reconciliation exceptions it raises |
//! | `pending.rs` | the pending buffer: when an event waits, buffering within [`PENDING_EVENTS_PER_PAYMENT_MAX`] and [`PENDING_VALUE_BYTES_MAX`], draining in event-time order; `pending/format.rs`, the stored value format |
//! | `callbacks.rs` | what the orphan timeout, pending retention and settlement window do when they fire; the reconciliation exceptions they raise |
//!
//! # Data flow
//!
//! ```text
//! PaymentInitiated ─► state_machine::initiate (→ INITIATED) ─► pending::drain
//! auth/settlement ─► key check ─► seen? ─► can apply? ─► state_machine::apply ─► pending::drain
//!                     │            │        └─ no ─► pending::buffer (+ timers if no payment yet)
//!                     │            └─ yes ─► dropped as a duplicate
//!                     └─ wrong key ─► dead letter (key_mismatch)
//! pending::drain ─► state_machine::apply per waiting event the state now allows, event-time order
//! punctuate ─► due timers ─► callbacks ─► reconciliation exceptions, orphan_expired dead letters
//! ```
//!
//! Every handler writes its stores and forwards its outputs through the
//! [`ProcessorContext`], inside the task's open transaction.
//!
//! # Dependencies
//!
//! Imports point one way, from the files that decide what to do to the ones that do it;
//! no file imports one that imports it:
//!
//! ```text
//! mod.rs ─► callbacks.rs ─► pending.rs ─► state_machine.rs ─► settlement_check.rs ─► model.rs
//! ```
//!
//! (each file may also import any file to its right; `pending/format.rs` imports none of
//! them). The state machine does not drain the pending buffer itself: its callers do,
//! after a transition (`mod.rs` once a payment is created or an event applied,
//! `pending::drain` as it goes).

use paystream_schemas::{InputEvent, PaymentInitiated};

use crate::timers::{self, TimerKind};
use crate::{
    DeadLetterReason, EventType, Input, Origin, Output, OutputKind, OutputSpec, Processor,
    ProcessorContext, Record, Result, StoreSpec, TopicRef, read_json, stores,
};

mod callbacks;
mod model;
pub mod pending;
mod settlement_check;
mod state_machine;
#[cfg(test)]
mod test_support;

pub use model::{LifecycleSettings, PaymentState};
pub use pending::{PENDING_EVENTS_PER_PAYMENT_MAX, PENDING_VALUE_BYTES_MAX};
pub use state_machine::{IllegalTransition, LEGAL_TRANSITIONS, transition};
use state_machine::{apply, initiate};

/// At most this many timers fire per punctuation (per task and commit); the rest fire at
/// the next one, so one commit's transaction stays bounded.
pub const TIMERS_PER_PUNCTUATION_MAX: usize = 1_000;

/// The payment lifecycle processor over the `payments`, `seen_events`, `pending`,
/// `timers` and `reconciliation` stores.
#[derive(Debug, Clone)]
pub struct LifecycleProcessor {
    settings: LifecycleSettings,
    /// How long an applied event id is remembered in `seen_events`, milliseconds of
    /// stream time.
    event_id_retention_ms: i64,
}

impl Default for LifecycleProcessor {
    fn default() -> Self {
        LifecycleProcessor::new(LifecycleSettings::default())
    }
}

impl LifecycleProcessor {
    /// A lifecycle processor with these timer settings, remembering event ids for the
    /// default idempotency retention (72 h).
    pub fn new(settings: LifecycleSettings) -> Self {
        LifecycleProcessor {
            settings,
            event_id_retention_ms: crate::dedupe::DEFAULT_RETENTION_MS,
        }
    }

    /// Remembers applied event ids for `retention_ms` of stream time (the
    /// `state.idempotency_retention_ms` setting).
    pub fn with_event_id_retention_ms(mut self, retention_ms: i64) -> Self {
        self.event_id_retention_ms = retention_ms;
        self
    }
}

impl Processor for LifecycleProcessor {
    type Input = InputEvent;

    fn name(&self) -> &'static str {
        "payment-lifecycle"
    }

    /// The deduplicated payments (repartitioned by payment id) and the auth and
    /// settlement topics, all keyed by payment id.
    fn inputs(&self) -> Vec<Input> {
        vec![
            Input {
                topic: TopicRef::Internal(crate::dedupe::REPARTITION_TOPIC),
                event: EventType::PaymentInitiated,
            },
            Input {
                topic: TopicRef::External("auth_success"),
                event: EventType::AuthSucceeded,
            },
            Input {
                topic: TopicRef::External("auth_failure"),
                event: EventType::AuthFailed,
            },
            Input {
                topic: TopicRef::External("settlement"),
                event: EventType::SettlementReported,
            },
        ]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            StoreSpec::kept(stores::PAYMENTS),
            StoreSpec::expiring(stores::SEEN_EVENTS, self.event_id_retention_ms),
            StoreSpec::kept(stores::PENDING),
            StoreSpec::kept(stores::TIMERS),
            StoreSpec::kept(stores::RECONCILIATION),
        ]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec {
                kind: OutputKind::PaymentStatus,
                topic: TopicRef::External("payment_status"),
            },
            OutputSpec {
                kind: OutputKind::JournalEntry,
                topic: TopicRef::External("ledger_entries"),
            },
            OutputSpec {
                kind: OutputKind::ReconciliationException,
                topic: TopicRef::External("reconciliation_exceptions"),
            },
        ]
    }

    fn process(
        &mut self,
        record: Record<InputEvent>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        match record.value {
            InputEvent::PaymentInitiated(event) => on_initiated(event, record.origin, ctx, self),
            event => on_payment_event(event, record.origin, ctx, self),
        }
    }

    /// Fires the timers due on their streams' partition times (at most
    /// [`TIMERS_PER_PUNCTUATION_MAX`] of each kind).
    fn punctuate(&mut self, _stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()> {
        for kind in TimerKind::ALL {
            for timer in timers::take_due(ctx, kind, TIMERS_PER_PUNCTUATION_MAX)? {
                match timer.kind {
                    TimerKind::Orphan => callbacks::on_orphan_timeout(&timer, ctx)?,
                    TimerKind::SettlementWindow => {
                        callbacks::on_settlement_window_closed(&timer, ctx)?
                    }
                    TimerKind::PendingExpiry => callbacks::on_pending_expired(
                        &timer,
                        self.settings.pending_retention_ms,
                        ctx,
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// Creates the payment, then applies the events that waited for it.
fn on_initiated(
    event: PaymentInitiated,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    lifecycle: &LifecycleProcessor,
) -> Result<()> {
    let payment_id = event.payment_id.clone();
    if initiate(event, origin, ctx)? {
        pending::drain(&payment_id, ctx, &lifecycle.settings)?;
    }
    Ok(())
}

fn on_payment_event(
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    lifecycle: &LifecycleProcessor,
) -> Result<()> {
    // Auth and settlement topics are keyed by payment id and co-partitioned with the
    // repartitioned payments: another key may put the event in a task that never sees
    // its payment.
    if origin.key.as_deref() != Some(event.payment_id().as_bytes()) {
        let found = match &origin.key {
            None => "no key".to_string(),
            Some(key) => format!("a {}-byte key that is not its payment_id", key.len()),
        };
        ctx.forward(Output::DeadLetter {
            origin,
            reason: DeadLetterReason::KeyMismatch,
            message: format!(
                "record has {found}; auth and settlement records are keyed by payment_id"
            ),
        });
        return Ok(());
    }
    let event_id = event.event_id().to_string();
    if ctx
        .store(stores::SEEN_EVENTS)?
        .get(event_id.as_bytes())?
        .is_some()
    {
        ctx.forward(Output::DuplicateDropped);
        return Ok(());
    }
    let state: Option<PaymentState> = read_json(ctx, stores::PAYMENTS, event.payment_id())?;
    match state {
        Some(state) if !pending::waits_for_auth(&state, &event) => {
            let payment_id = state.payment_id.clone();
            apply(state, event, origin, ctx, &lifecycle.settings)?;
            // An auth may release a settlement that waited for it.
            pending::drain(&payment_id, ctx, &lifecycle.settings)
        }
        Some(_) => pending::buffer(event, origin, ctx, None),
        None => pending::buffer(event, origin, ctx, Some(&lifecycle.settings)),
    }
}

#[cfg(test)]
mod tests {
    use paystream_schemas::PaymentStatus;

    use super::*;
    use crate::driver::{TestDriver, origin};
    use crate::lifecycle::test_support::*;

    #[test]
    fn an_auth_keyed_by_anything_but_its_payment_id_is_a_key_mismatch() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated("p1")));
        for key in [None, Some(b"p2".to_vec()), Some(vec![b'x'; 1_000_000])] {
            let out = d.pipe(Record {
                value: auth_ok("p1", "a1"),
                origin: origin("t", key.as_deref()),
            });
            assert!(
                is_dead_letter(&out, DeadLetterReason::KeyMismatch),
                "{key:?}"
            );
        }
        assert_eq!(
            statuses(&d.pipe(rec(auth_ok("p1", "a1")))),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Authorized)],
            "a dead-lettered event is not marked seen"
        );
    }

    #[test]
    fn duplicate_events_are_dropped() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated("p1")));
        assert_eq!(d.pipe(rec(initiated("p1"))), vec![Output::DuplicateDropped]);
        d.pipe(rec(auth_ok("p1", "a1")));
        assert_eq!(
            d.pipe(rec(auth_ok("p1", "a1"))),
            vec![Output::DuplicateDropped]
        );
    }
}
