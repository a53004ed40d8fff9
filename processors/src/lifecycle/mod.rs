//! The payment lifecycle (docs/architecture.md, "Payment lifecycle and ledger"):
//!
//! ```text
//!   (none) ──PaymentInitiated──► INITIATED ──AuthSucceeded──► AUTHORIZED ──SettlementReported──► SETTLED
//!                                    │
//!                                    └──────AuthFailed──────► DECLINED
//! ```
//!
//! Any other transition is dead-lettered as `illegal_transition` naming the current and
//! attempted states. Auth and settlement events are deduplicated by `event_id`: the
//! payment's value keeps the ids of the events applied to it and of those waiting for it
//! (never of one that was dead-lettered). An auth or settlement event for a payment not
//! seen yet, and a settlement for a payment not yet authorized, waits in the payment's
//! value and is applied in event-time order when the payment reaches the state it needs.
//! Events arrive out of order in normal operation: the repartitioned payment and its auth
//! event come from different topics. A payment's waiting events are bounded: at most
//! [`PENDING_EVENTS_PER_PAYMENT_MAX`] of them, and at most [`PENDING_VALUE_BYTES_MAX`] for
//! its whole value, which is written as one changelog record. An event past either bound
//! is dead-lettered on arrival (`pending_buffer_full`, `record_too_large`) and not kept.
//!
//! Everything the lifecycle keeps about a payment is one value in the `payments` store
//! (format in [`stored`], docs/architecture.md "State layout"): an event loads it once and
//! it is written once, after everything the event caused.
//!
//! Each transition emits a `PaymentStatusChanged`; AUTHORIZED and SETTLED also emit their
//! balanced journal entry (see [`crate::ledger`]).
//!
//! Timers (event time, kept in the payment's value and found through the task's
//! [`TimerIndex`], see [`crate::timers`]):
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
//! | `mod.rs` (here) | [`LifecycleProcessor`]; the [`Processor`] impl: key check, deduplication by `event_id`, routing of each event to the state machine or the pending buffer, draining the buffer once a payment is created, the timer index (rebuilt at `init`) and timer dispatch at punctuation |
//! | `stored.rs` | the payment's value ([`stored::StoredPayment`]): its format, loading and writing it back (which keeps the timer index in step), and reading the stores of earlier releases after an upgrade |
//! | `model.rs` | [`LifecycleSettings`] and [`PaymentState`]: the small items the other files share |
//! | `state_machine.rs` | [`transition`], [`LEGAL_TRANSITIONS`]; the per-event handlers that apply a transition and emit status changes and journal entries |
//! | `settlement_check.rs` | the check of an applied settlement against its authorization; the reconciliation exceptions it raises |
//! | `pending.rs` | the pending buffer: when an event waits, buffering within [`PENDING_EVENTS_PER_PAYMENT_MAX`] and [`PENDING_VALUE_BYTES_MAX`], draining in event-time order; `pending/format.rs`, the layout of a waiting event |
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
//! Handlers change the loaded value and forward their outputs through the
//! [`ProcessorContext`]; `mod.rs` writes the value back, all inside the task's open
//! transaction.
//!
//! # Dependencies
//!
//! Imports point one way, from the files that decide what to do to the ones that do it;
//! no file imports one that imports it:
//!
//! ```text
//! mod.rs ─► callbacks.rs ─► pending.rs ─► state_machine.rs ─► settlement_check.rs ─► stored.rs ─► model.rs
//! ```
//!
//! (each file may also import any file to its right; `pending/format.rs`, which
//! `stored.rs` imports, imports none of them). The state machine does not drain the pending buffer itself: its callers do,
//! after a transition (`mod.rs` once a payment is created or an event applied,
//! `pending::drain` as it goes).

use paystream_runtime::serde::AvroSerde;
use paystream_runtime::{Forward, Input, Sink};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, InputEvent, PaymentInitiated, PaymentStatusChanged,
    ReconciliationException, SettlementReported,
};

use crate::metrics::{OutputCounts, PaymentMetrics};
use crate::names::{sinks, topics};
use crate::serdes::{EventDeserializer, JournalEntrySerializer};
use crate::timers::{self, DueTimer, TimerIndex, TimerKind, TimerSource};
use crate::{
    DeadLetterReason, Origin, Output, Processor, ProcessorContext, ProcessorError, Record, Result,
    StoreSpec, stores,
};

/// The positions of the lifecycle's inputs in [`Processor::inputs`] (for
/// [`ProcessorContext::partition_time_ms`]).
pub mod inputs {
    /// The deduplicated payments (`<app>-payments-by-id`).
    pub const PAYMENTS_BY_ID: usize = 0;
    pub const AUTH_SUCCESS: usize = 1;
    pub const AUTH_FAILURE: usize = 2;
    pub const SETTLEMENT: usize = 3;
}

mod callbacks;
mod model;
pub mod pending;
#[cfg(test)]
mod properties;
mod settlement_check;
mod state_machine;
pub mod stored;
#[cfg(test)]
mod test_support;

pub use model::{EVENT_TIME_SKEW_MAX_MS, LifecycleSettings, PaymentState};
pub use pending::{PENDING_EVENTS_PER_PAYMENT_MAX, PENDING_VALUE_BYTES_MAX};
pub use state_machine::{IllegalTransition, LEGAL_TRANSITIONS, transition};
use state_machine::{apply, initiate};
use stored::{LegacyStores, Loaded};

/// At most this many timers fire per punctuation (per task and commit); the rest fire at
/// the next one, so one commit's transaction stays bounded.
pub const TIMERS_PER_PUNCTUATION_MAX: usize = 1_000;

/// Keys read per page when the timer index is rebuilt at task start.
const INDEX_SCAN_PAGE_KEYS: usize = 1_024;

/// The payment lifecycle processor over the `payments` and `reconciliation` stores (and,
/// after an upgrade, the `seen_events`, `pending` and `timers` stores of earlier
/// releases until they are empty).
#[derive(Debug, Clone)]
pub struct LifecycleProcessor {
    settings: LifecycleSettings,
    /// How long an event id is remembered in the `seen_events` store of earlier
    /// releases, milliseconds of stream time (its keys expire after it).
    event_id_retention_ms: i64,
    /// The due timers of the task's payments (rebuilt by `init`).
    timers: TimerIndex,
    /// Which stores of earlier releases still hold keys.
    legacy: LegacyStores,
    /// `legacy` as of the last commit (an abort puts back what it deleted).
    legacy_committed: LegacyStores,
    /// What the open transaction forwarded, for `metrics` once it commits.
    counts: OutputCounts,
    /// Where committed counts go (`None`: not counted).
    metrics: Option<PaymentMetrics>,
}

impl Default for LifecycleProcessor {
    fn default() -> Self {
        LifecycleProcessor::new(LifecycleSettings::default())
    }
}

impl LifecycleProcessor {
    /// A lifecycle processor with these timer settings.
    pub fn new(settings: LifecycleSettings) -> Self {
        LifecycleProcessor {
            settings,
            event_id_retention_ms: crate::defaults::IDEMPOTENCY_RETENTION_MS,
            timers: TimerIndex::new(),
            legacy: LegacyStores::default(),
            legacy_committed: LegacyStores::default(),
            counts: OutputCounts::default(),
            metrics: None,
        }
    }

    /// Counts committed status changes, journal entries and exceptions in `metrics`.
    pub fn with_metrics(mut self, metrics: PaymentMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Expires the event ids of the `seen_events` store of earlier releases after
    /// `retention_ms` of stream time (the `state.idempotency_retention_ms` setting).
    pub fn with_event_id_retention_ms(mut self, retention_ms: i64) -> Self {
        self.event_id_retention_ms = retention_ms;
        self
    }

    /// Fills the timer index from every payment's value, and from the `timers` store of
    /// earlier releases while it holds keys (a key that is not a timer is deleted).
    fn rebuild_timer_index(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.timers = TimerIndex::new();
        let mut from = Vec::new();
        loop {
            let page = ctx
                .store(stores::PAYMENTS)?
                .range(&from, INDEX_SCAN_PAGE_KEYS)?;
            for (key, value) in &page {
                let payment_id =
                    std::str::from_utf8(key).map_err(|_| ProcessorError::CorruptState {
                        store: stores::PAYMENTS,
                        key: String::from_utf8_lossy(key).into_owned(),
                        message: "key is not UTF-8".to_string(),
                    })?;
                for timer in stored::decode_timers(payment_id, value)? {
                    self.timers.insert(payment_id, timer, TimerSource::Payment);
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == INDEX_SCAN_PAGE_KEYS => {
                    from = paystream_state::key_after(last)
                }
                _ => break,
            }
        }
        from = Vec::new();
        while self.legacy.timers {
            let page = ctx
                .store(stores::TIMERS)?
                .range(&from, INDEX_SCAN_PAGE_KEYS)?;
            for (key, _) in &page {
                match timers::parse_legacy_key(key) {
                    Some((payment_id, timer)) => {
                        self.timers.insert(&payment_id, timer, TimerSource::Legacy)
                    }
                    // Not a key earlier releases wrote: drop it rather than keep it forever.
                    None => ctx.store(stores::TIMERS)?.delete(key)?,
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == INDEX_SCAN_PAGE_KEYS => {
                    from = paystream_state::key_after(last)
                }
                _ => break,
            }
        }
        self.timers.committed();
        Ok(())
    }

    /// Fires one due timer: takes it out of its payment's value (or deletes its key in
    /// the `timers` store of earlier releases) and runs its callback. A timer the
    /// payment's value no longer holds (set by an aborted transaction) is skipped.
    fn fire(&mut self, timer: timers::Timer, ctx: &mut dyn ProcessorContext) -> Result<()> {
        let mut loaded = Loaded::load(ctx, self.legacy, &timer.payment_id)?;
        let due = DueTimer {
            kind: timer.kind,
            due_ms: timer.due_ms,
        };
        match timer.source {
            TimerSource::Payment => {
                if !loaded.payment.timers.contains(&due) {
                    return Ok(());
                }
                loaded.payment.timers.retain(|t| *t != due);
            }
            TimerSource::Legacy => ctx.store(stores::TIMERS)?.delete(&timers::legacy_key(
                timer.kind,
                timer.due_ms,
                &timer.payment_id,
            ))?,
        }
        match timer.kind {
            TimerKind::Orphan => callbacks::on_orphan_timeout(&loaded, &timer, ctx)?,
            TimerKind::SettlementWindow => {
                callbacks::on_settlement_window_closed(&loaded, &timer, ctx)?
            }
            TimerKind::PendingExpiry => callbacks::on_pending_expired(
                &mut loaded,
                &timer,
                self.settings.pending_retention_ms,
                self.legacy,
                ctx,
            )?,
        }
        loaded.save(ctx, &mut self.timers)
    }
}

impl Processor for LifecycleProcessor {
    type Input = InputEvent;

    fn name(&self) -> &'static str {
        "payment-lifecycle"
    }

    /// The deduplicated payments (repartitioned by payment id) and the auth and
    /// settlement topics, all keyed by payment id, in the order of [`inputs`].
    fn inputs(&self) -> Vec<Input<InputEvent>> {
        let skew_ms = self.settings.event_time_skew_max_ms;
        vec![
            Input::new(
                topics::PAYMENTS_BY_ID,
                EventDeserializer::<PaymentInitiated, InputEvent>::new(skew_ms),
            ),
            Input::new(
                topics::AUTH_SUCCESS,
                EventDeserializer::<AuthSucceeded, InputEvent>::new(skew_ms),
            ),
            Input::new(
                topics::AUTH_FAILURE,
                EventDeserializer::<AuthFailed, InputEvent>::new(skew_ms),
            ),
            Input::new(
                topics::SETTLEMENT,
                EventDeserializer::<SettlementReported, InputEvent>::new(skew_ms),
            ),
        ]
    }

    /// `payments` and `reconciliation`, and the three stores of earlier releases, kept
    /// so that their changelogs are restored and read after an upgrade.
    fn stores(&self) -> Vec<StoreSpec> {
        vec![
            StoreSpec::kept(stores::PAYMENTS),
            StoreSpec::expiring(stores::SEEN_EVENTS, self.event_id_retention_ms),
            StoreSpec::kept(stores::PENDING),
            StoreSpec::kept(stores::TIMERS),
            StoreSpec::kept(stores::RECONCILIATION),
        ]
    }

    fn sinks(&self) -> Vec<Sink> {
        vec![
            Sink::new(
                sinks::PAYMENT_STATUS,
                topics::PAYMENT_STATUS,
                AvroSerde::<PaymentStatusChanged>::new(),
            ),
            Sink::new(
                sinks::JOURNAL_ENTRY,
                topics::LEDGER_ENTRIES,
                JournalEntrySerializer,
            ),
            Sink::new(
                sinks::RECONCILIATION_EXCEPTION,
                topics::RECONCILIATION_EXCEPTIONS,
                AvroSerde::<ReconciliationException>::new(),
            ),
        ]
    }

    /// Notes which stores of earlier releases hold keys and rebuilds the timer index
    /// from the restored stores: one scan of `payments`, reading only the timers at the
    /// start of each value.
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.legacy = LegacyStores::check(ctx)?;
        self.legacy_committed = self.legacy;
        self.rebuild_timer_index(ctx)
    }

    fn process(
        &mut self,
        record: Record<InputEvent>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        let mut counts = std::mem::take(&mut self.counts);
        let ctx: &mut dyn ProcessorContext = &mut Counting {
            inner: ctx,
            counts: &mut counts,
        };
        let result = match record.value {
            InputEvent::PaymentInitiated(event) => on_initiated(event, record.origin, ctx, self),
            event => on_payment_event(event, record.origin, ctx, self),
        };
        self.counts = counts;
        result
    }

    /// Fires the timers due on their streams' partition times (at most
    /// [`TIMERS_PER_PUNCTUATION_MAX`] of each kind).
    fn punctuate(&mut self, _stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()> {
        let mut counts = std::mem::take(&mut self.counts);
        let ctx: &mut dyn ProcessorContext = &mut Counting {
            inner: ctx,
            counts: &mut counts,
        };
        let result = self.punctuate_timers(ctx);
        self.counts = counts;
        result
    }

    fn committed(&mut self) {
        self.timers.committed();
        self.legacy_committed = self.legacy;
        let counts = std::mem::take(&mut self.counts);
        if let Some(metrics) = &self.metrics {
            metrics.publish(&counts);
        }
    }

    fn aborted(&mut self) {
        self.timers.aborted();
        self.legacy = self.legacy_committed;
        self.counts = OutputCounts::default();
    }
}

impl LifecycleProcessor {
    /// See [`Processor::punctuate`].
    fn punctuate_timers(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        if self.legacy.any() {
            self.legacy = LegacyStores::check(ctx)?;
        }
        for kind in TimerKind::ALL {
            let now_ms = ctx.partition_time_ms(kind.clock().input());
            for timer in self
                .timers
                .take_due(kind, now_ms, TIMERS_PER_PUNCTUATION_MAX)
            {
                self.fire(timer, ctx)?;
            }
        }
        Ok(())
    }
}

/// A [`ProcessorContext`] that counts what goes through it for the business metrics.
struct Counting<'a> {
    inner: &'a mut dyn ProcessorContext,
    counts: &'a mut OutputCounts,
}

impl ProcessorContext for Counting<'_> {
    fn store(&mut self, name: &str) -> Result<&mut dyn paystream_state::KeyValueStore> {
        self.inner.store(name)
    }

    fn forward_record(&mut self, forward: Forward) {
        if let Forward::To { sink, value, .. } = &forward {
            self.counts.count(sink, value.as_ref());
        }
        self.inner.forward_record(forward);
    }

    fn stream_time_ms(&self) -> i64 {
        self.inner.stream_time_ms()
    }

    fn partition_time_ms(&self, input: usize) -> i64 {
        self.inner.partition_time_ms(input)
    }
}

/// Creates the payment, then applies the events that waited for it.
fn on_initiated(
    event: PaymentInitiated,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    lifecycle: &mut LifecycleProcessor,
) -> Result<()> {
    let mut loaded = Loaded::load(ctx, lifecycle.legacy, &event.payment_id)?;
    if initiate(&mut loaded, event, origin, ctx)? {
        // The payment appeared: the events that waited for it no longer time out.
        loaded.payment.cancel_timers(TimerKind::Orphan);
        loaded.payment.cancel_timers(TimerKind::PendingExpiry);
        pending::drain(&mut loaded, ctx, &lifecycle.settings)?;
        loaded.save(ctx, &mut lifecycle.timers)?;
    }
    Ok(())
}

fn on_payment_event(
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    lifecycle: &mut LifecycleProcessor,
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
    let mut loaded = Loaded::load(ctx, lifecycle.legacy, event.payment_id())?;
    if loaded.has_seen(ctx, lifecycle.legacy, event.event_id())? {
        ctx.forward(Output::DuplicateDropped);
        return Ok(());
    }
    let changed = match &loaded.payment.state {
        Some(state) if !pending::waits_for_auth(state, &event) => {
            let applied = apply(&mut loaded, event, origin, ctx, &lifecycle.settings)?;
            // An auth may release a settlement that waited for it.
            let drained = pending::drain(&mut loaded, ctx, &lifecycle.settings)?;
            applied || drained
        }
        Some(_) => pending::buffer(&mut loaded, event, origin, ctx, None)?,
        None => pending::buffer(&mut loaded, event, origin, ctx, Some(&lifecycle.settings))?,
    };
    if changed {
        loaded.save(ctx, &mut lifecycle.timers)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use paystream_schemas::PaymentStatus;

    use paystream_schemas::ReconciliationExceptionKind;

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

    /// The stores as the release before the single-value layout wrote them: the state as
    /// JSON, event ids in `seen_events`, waiting events in `pending`, one key per timer.
    fn restore_earlier_release(ctx: &mut dyn ProcessorContext) {
        let mut put = |store: &str, key: &[u8], value: &[u8]| {
            ctx.store(store).unwrap().put(key, value).unwrap();
        };
        put(
            stores::PAYMENTS,
            b"p1",
            concat!(
                r#"{"payment_id":"p1","merchant_id":"m1","psp":"adyen","amount_minor":1000,"#,
                r#""currency":"EUR","status":"AUTHORIZED","initiated_event_id":"init-p1","#,
                r#""authorized_amount_minor":1000,"authorized_currency":"EUR"}"#
            )
            .as_bytes(),
        );
        put(stores::SEEN_EVENTS, b"a1", b"");
        let waiting = rec(auth_ok("p2", "a2"));
        let pending = pending::encode(&[pending::PendingEvent {
            event: waiting.value,
            origin: waiting.origin,
        }]);
        put(stores::PENDING, b"p2", &pending);
        put(stores::SEEN_EVENTS, b"a2", b"");
        let minute_ms = 60_000;
        for (kind, due_ms, payment_id) in [
            (TimerKind::SettlementWindow, 3 * 24 * 60 * minute_ms, "p1"),
            (TimerKind::Orphan, 10 * minute_ms, "p2"),
            (TimerKind::PendingExpiry, 72 * 60 * minute_ms, "p2"),
        ] {
            put(
                stores::TIMERS,
                &timers::legacy_key(kind, due_ms, payment_id),
                b"",
            );
        }
    }

    #[test]
    fn state_of_the_earlier_layout_is_read_and_moves_into_one_value_per_payment() {
        let mut d =
            TestDriver::with_restored(LifecycleProcessor::default(), restore_earlier_release);
        assert_eq!(
            d.pipe(rec(auth_ok("p1", "a1"))),
            vec![Output::DuplicateDropped],
            "an applied auth, known from seen_events"
        );
        assert_eq!(
            d.pipe(rec(auth_ok("p2", "a2"))),
            vec![Output::DuplicateDropped],
            "a waiting auth, known from pending"
        );
        let out = d.pipe(rec(initiated("p2")));
        assert_eq!(
            statuses(&out),
            vec![
                (None, PaymentStatus::Initiated),
                (Some(PaymentStatus::Initiated), PaymentStatus::Authorized)
            ],
            "the auth that waited in pending applies"
        );
        assert_eq!(d.store_len(stores::PENDING), 0, "it left pending");
        assert_eq!(
            statuses(&d.pipe(rec(settled("p1", "s1")))),
            vec![(Some(PaymentStatus::Authorized), PaymentStatus::Settled)]
        );
        let p1 = d.store_get(stores::PAYMENTS, b"p1").unwrap();
        assert_eq!(p1[0], stored::FORMAT_VERSION_1, "rewritten in version 1");
        assert_eq!(
            d.pipe(rec(settled("p1", "s1"))),
            vec![Output::DuplicateDropped]
        );
        assert_eq!(
            d.pipe(rec(auth_ok("p1", "a1"))),
            vec![Output::DuplicateDropped],
            "still known after the rewrite"
        );
        // The timers of the earlier release fire once and leave their store: p2 appeared
        // and p1 settled, so they raise nothing. p2's settlement window, a timer of the
        // new layout in its value, raises the one exception.
        let out = d.advance_stream_time_ms(4 * 24 * 60 * 60 * 1_000);
        assert_eq!(
            out.iter()
                .filter_map(|o| match o {
                    Output::ReconciliationException(x) => Some((x.kind, x.payment_id.as_str())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            vec![(ReconciliationExceptionKind::MissingInPsp, "p2")]
        );
        assert_eq!(d.store_len(stores::TIMERS), 0);
        assert!(stored_payment(&d, "p2").timers.is_empty());
    }

    #[test]
    fn a_waiting_event_of_the_earlier_layout_expires_to_the_dead_letter_queue() {
        let mut d =
            TestDriver::with_restored(LifecycleProcessor::default(), restore_earlier_release);
        let out = d.advance_stream_time_ms(11 * 60 * 1_000);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::OrphanEvent, None, Some(1000))]
        );
        let out = d.advance_stream_time_ms(72 * 60 * 60 * 1_000);
        assert!(
            is_dead_letter(
                &out.into_iter()
                    .filter(|o| matches!(o, Output::DeadLetter { .. }))
                    .collect::<Vec<_>>(),
                DeadLetterReason::OrphanExpired
            ),
            "the waiting auth expires"
        );
        assert_eq!(d.store_len(stores::PENDING), 0);
        assert_eq!(d.store_len(stores::SEEN_EVENTS), 1, "only a1 is still seen");
        assert_eq!(stored_payment(&d, "p2"), stored::StoredPayment::default());
    }
}
