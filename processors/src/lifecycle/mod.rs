//! The payment lifecycle (docs/architecture.md, "Payment lifecycle and ledger", which
//! has the whole diagram):
//!
//! ```text
//!   (none) ──PaymentInitiated──► INITIATED ──AuthSucceeded──► AUTHORIZED ──captures, void, settlement,
//!                                    │                                   refunds, chargebacks──► …
//!                                    └──────AuthFailed──────► DECLINED
//! ```
//!
//! After the authorization a payment's status follows from its running totals
//! ([`money::MoneyTotals`]): captures, voids, refunds and chargebacks each pass a guard
//! against them (`movements.rs`) and post one journal entry; a movement the totals refuse
//! is dead-lettered with its reason and raises a reconciliation exception. Any other
//! transition is dead-lettered as `illegal_transition` naming the current and attempted
//! states. Every event is deduplicated by `event_id`, a money movement also by its own id
//! (capture, refund or dispute id): the payment's value keeps the ids of the events
//! applied to it and of those waiting for it (never of one that was dead-lettered). An
//! event that arrives before what it needs — its payment, the authorization, the captures
//! a refund needs, the opening of a dispute — waits in the payment's value and is applied
//! in event-time order when the payment reaches the state it needs. Events arrive out of
//! order in normal operation: the repartitioned payment and its auth event come from
//! different topics. A payment's waiting events are bounded: at most
//! [`PENDING_EVENTS_PER_PAYMENT_MAX`] of them, and at most [`PENDING_VALUE_BYTES_MAX`] for
//! its whole value, which is written as one changelog record. An event past either bound
//! is dead-lettered on arrival (`pending_buffer_full`, `record_too_large`) and not kept.
//!
//! Everything the lifecycle keeps about a payment is one value in the `payments` store
//! (format in [`stored`], docs/architecture.md "State layout"): an event loads it once and
//! it is written once, after everything the event caused. The stores of earlier releases
//! are migrated into those values by the store side, not here: at `init` and at
//! punctuation (`upgrade.rs`), and on read (`stored.rs`).
//!
//! Each status change emits a `PaymentStatusChanged`; every money movement (an
//! authorization, a hold, a capture, a void, a settlement, a refund, a chargeback stage)
//! emits its balanced journal entry (see [`crate::ledger`]).
//!
//! Timers (kept in the payment's value and found through the task's [`TimerIndex`], see
//! [`crate::timers`]; all on event time but the stuck-payment timer):
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
//!   settlement stream's clock. When it fires and what was captured is unsettled,
//!   `MISSING_IN_PSP` is raised.
//! - **stuck payment** (wall-clock time, from the runtime's wall-clock punctuation, so it
//!   fires when traffic stops): set when a payment enters INITIATED
//!   ([`LifecycleSettings::stuck_payment_timeout_ms`], 15 min) or AUTHORIZED under manual
//!   capture ([`LifecycleSettings::uncaptured_authorization_timeout_ms`], 7 days),
//!   cancelled when it leaves that status; `STUCK_PAYMENT` if it has not.
//! - **movement reorder** (wall-clock time, [`LifecycleSettings::movement_reorder_wait_ms`],
//!   1 s): every capture, void, refund, chargeback and settlement waits in the pending
//!   buffer, and the timer is set that long after it arrived (moved on by each later
//!   one); when it fires the payment's waiting events apply in event-time order, so that those
//!   read in another order than they happened still come out as they happened
//!   (docs/architecture.md, "Order of money movements").
//!
//! A settlement whose gross amount or currency differs from what it settles (the
//! authorization, or under manual capture what was captured) raises
//! `AMOUNT_MISMATCH` / `CURRENCY_MISMATCH` and is still posted as reported: the ledger
//! shows what the PSP paid, the exception shows the difference (see
//! [`crate::reconciliation`]).
//!
//! # Parts
//!
//! | file | role |
//! |---|---|
//! | `mod.rs` (here) | [`LifecycleProcessor`]; the [`Processor`] impl: key check, deduplication by `event_id`, routing of each event to the state machine or the pending buffer, draining the buffer once a payment is created, the timer index (rebuilt at `init`) and timer dispatch at punctuation |
//! | `stored.rs` | the payment's value ([`stored::StoredPayment`]): loading and writing it back (which keeps the timer index in step), the timer index's rebuild; `stored/format.rs`, its format (and the JSON of earlier releases, read) |
//! | `upgrade.rs` | the migration of the `pending` and `timers` stores of earlier releases into the values (at `init`, and a page per punctuation) |
//! | `model.rs` | [`LifecycleSettings`] and [`PaymentState`] (with its `Money`): the small items the other files share |
//! | `money.rs` | [`money::MoneyTotals`]: a payment's running totals and the guard of every movement (pure) |
//! | `movements.rs` | captures, voids, refunds and chargeback stages: when they wait, how they apply, what a refusal raises |
//! | `transitions.rs` | [`transition`], [`LEGAL_TRANSITIONS`] |
//! | `state_machine.rs` | the per-event handlers that apply a transition and emit status changes and journal entries |
//! | `settlement_check.rs` | the check of an applied settlement against its authorization; the reconciliation exceptions it raises |
//! | `pending.rs` | the pending buffer: when an event waits, buffering within [`PENDING_EVENTS_PER_PAYMENT_MAX`] and [`PENDING_VALUE_BYTES_MAX`], draining in event-time order; `pending/format.rs`, the layout of a waiting event |
//! | `lookup.rs` | [`lookup::payment_view`]: a payment's value as the payment lookup shows it (read-only, outside the processor) |
//! | `callbacks.rs` | what the orphan timeout, pending retention and settlement window do when they fire; the reconciliation exceptions they raise |
//!
//! # Data flow
//!
//! ```text
//! PaymentInitiated ─► state_machine::initiate (→ INITIATED) ─► pending::drain
//! auth/settlement/capture/void/refund/chargeback ─► key check ─► seen? ─► can apply? ─► state_machine::apply ─► pending::drain
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
//! mod.rs ─► upgrade.rs ─► callbacks.rs ─► pending.rs ─► state_machine.rs ─► movements.rs ─► transitions.rs ─► settlement_check.rs ─► stored.rs ─► model.rs ─► money.rs
//! ```
//!
//! (each file may also import any file to its right; `pending/format.rs`, which
//! `stored.rs` imports, imports none of them). The state machine does not drain the pending buffer itself: its callers do,
//! after a transition (`mod.rs` once a payment is created or an event applied,
//! `pending::drain` as it goes).

use paystream_runtime::serde::AvroSerde;
use paystream_runtime::{Input, Sink};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, ChargebackReported, InputEvent,
    PaymentCaptured, PaymentInitiated, PaymentStatusChanged, ReconciliationException, RefundIssued,
    SettlementReported,
};

use crate::metrics::{Counting, OutputCounts, PaymentMetrics};
use crate::names::{sinks, topics};
use crate::serdes::{EventDeserializer, JournalEntrySerializer};
use crate::timers::{self, DueTimer, TimerClock, TimerIndex, TimerKind};
use crate::{
    DeadLetterReason, Origin, Output, Processor, ProcessorContext, Record, Result, StoreSpec,
    Stream, stores,
};

/// The positions of the lifecycle's inputs in [`Processor::inputs`] (for
/// [`ProcessorContext::partition_time_ms`]).
pub mod inputs {
    /// The deduplicated payments (`<app>-payments-by-id`).
    pub const PAYMENTS_BY_ID: usize = 0;
    pub const AUTH_SUCCESS: usize = 1;
    pub const AUTH_FAILURE: usize = 2;
    pub const SETTLEMENT: usize = 3;
    pub const CAPTURE: usize = 4;
    pub const VOID: usize = 5;
    pub const REFUND: usize = 6;
    pub const CHARGEBACK: usize = 7;
}

mod callbacks;
pub mod lookup;
mod model;
pub mod money;
mod movements;
pub mod pending;
#[cfg(test)]
mod properties;
mod settlement_check;
mod state_machine;
pub mod stored;
#[cfg(test)]
mod test_support;
mod transitions;
mod upgrade;

pub use model::{
    EVENT_TIME_SKEW_MAX_MS, LifecycleSettings, MOVEMENT_REORDER_WAIT_MS, PaymentState,
};
pub use pending::{PENDING_EVENTS_PER_PAYMENT_MAX, PENDING_VALUE_BYTES_MAX};
use state_machine::{apply, initiate};
use stored::Loaded;
pub use transitions::{IllegalTransition, LEGAL_TRANSITIONS, transition};
use upgrade::TimerMigration;

/// At most this many timers fire per punctuation (per task and commit); the rest fire at
/// the next one, so one commit's transaction stays bounded.
pub const TIMERS_PER_PUNCTUATION_MAX: usize = 1_000;

/// Pages of the timer index's rebuild read per punctuation after a task starts
/// ([`stored::IndexScan`]; 1,024 payments a page, about 4 ms): a task of 167k payments
/// has its index in about 40 punctuations, 2 s at the reorder wait's 10 punctuations
/// a second and one per commit.
pub const INDEX_SCAN_PAGES_PER_PUNCTUATION: usize = 4;

/// How often the stuck-payment timers are checked on wall-clock time, milliseconds.
pub const WALL_CLOCK_PUNCTUATION_INTERVAL_MS: u64 = 1_000;

/// The wall-clock punctuation's interval while the reorder wait of money movements is
/// on: a tenth of [`LifecycleSettings::movement_reorder_wait_ms`], within these bounds,
/// milliseconds.
const REORDER_PUNCTUATION_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=1_000;

/// The payment lifecycle processor over the `payments` and `reconciliation` stores (and
/// the `seen_events`, `pending` and `timers` stores of earlier releases, which
/// `upgrade.rs` migrates).
#[derive(Debug, Clone)]
pub struct LifecycleProcessor {
    settings: LifecycleSettings,
    /// How long an event id is remembered in the `seen_events` store of earlier
    /// releases, milliseconds of stream time (its keys expire after it).
    event_id_retention_ms: i64,
    /// The due timers of the task's payments (rebuilt after `init` by `index_scan`).
    timers: TimerIndex,
    /// The rebuild of `timers` from the stores, a few pages per punctuation.
    index_scan: stored::IndexScan,
    /// How far the `timers` store of earlier releases has been moved into the values
    /// (a page per punctuation, never read on an event).
    timer_migration: TimerMigration,
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
            index_scan: stored::IndexScan::default(),
            timer_migration: TimerMigration::default(),
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

    /// Fires one due timer: takes it out of its payment's value and runs its callback. A
    /// timer the payment's value no longer holds (set by an aborted transaction) is
    /// skipped.
    fn fire(&mut self, timer: timers::Timer, ctx: &mut dyn ProcessorContext) -> Result<()> {
        let mut loaded = Loaded::load(ctx, &timer.payment_id)?;
        let due = DueTimer {
            kind: timer.kind,
            due_ms: timer.due_ms,
        };
        if !loaded.payment.timers.contains(&due) {
            return Ok(());
        }
        loaded.payment.timers.retain(|t| *t != due);
        match timer.kind {
            TimerKind::Orphan => callbacks::on_orphan_timeout(&loaded, &timer, ctx)?,
            TimerKind::SettlementWindow => {
                callbacks::on_settlement_window_closed(&loaded, &timer, ctx)?
            }
            TimerKind::PendingExpiry => callbacks::on_pending_expired(
                &mut loaded,
                &timer,
                self.settings.pending_retention_ms,
                ctx,
            )?,
            TimerKind::StuckPayment => {
                callbacks::on_stuck_payment(&loaded, &timer, &self.settings, ctx)?
            }
            // The task has not been reading for the whole wait (it started since: the
            // movements waited while it was down or on another instance; or its stream
            // thread stalled, the process paused): what happened before them may be among
            // the records it has yet to read. Wait on.
            TimerKind::MovementReorder
                if ctx.wall_clock_ms()
                    < ctx
                        .running_since_ms()
                        .saturating_add(self.settings.movement_reorder_wait_ms) =>
            {
                loaded.payment.timers.push(DueTimer {
                    kind: TimerKind::MovementReorder,
                    due_ms: ctx
                        .running_since_ms()
                        .saturating_add(self.settings.movement_reorder_wait_ms),
                });
            }
            // The reorder wait is over: the movements apply, in event-time order (those
            // of a payment not seen yet wait for it, as any event does).
            TimerKind::MovementReorder if loaded.payment.state.is_some() => {
                let status_before = loaded.status();
                pending::drain(&mut loaded, ctx, &self.settings)?;
                if loaded.status() != status_before {
                    watch_for_stuck(&mut loaded, &*ctx, &self.settings);
                }
            }
            TimerKind::MovementReorder => {}
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
                EventDeserializer::<AuthFailed, InputEvent>::new(skew_ms)
                    .counting_cleaned_in(self.metrics.as_ref()),
            ),
            Input::new(
                topics::SETTLEMENT,
                EventDeserializer::<SettlementReported, InputEvent>::new(skew_ms),
            ),
            Input::new(
                topics::CAPTURE,
                EventDeserializer::<PaymentCaptured, InputEvent>::new(skew_ms),
            ),
            Input::new(
                topics::VOID,
                EventDeserializer::<AuthorizationVoided, InputEvent>::new(skew_ms)
                    .counting_cleaned_in(self.metrics.as_ref()),
            ),
            Input::new(
                topics::REFUND,
                EventDeserializer::<RefundIssued, InputEvent>::new(skew_ms)
                    .counting_cleaned_in(self.metrics.as_ref()),
            ),
            Input::new(
                topics::CHARGEBACK,
                EventDeserializer::<ChargebackReported, InputEvent>::new(skew_ms),
            ),
        ]
    }

    /// `payments` and `reconciliation`, and the three stores of earlier releases, kept
    /// so that their changelogs are restored after an upgrade and migrated
    /// (`upgrade.rs`, which says when they can go).
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

    /// Moves the `pending` store of earlier releases into the payments' values
    /// (`upgrade.rs`; its writes join the open transaction), then starts the rebuild of
    /// the timer index from the restored stores: a scan of `payments`, reading only the
    /// timers at the start of each value, [`INDEX_SCAN_PAGES_PER_PUNCTUATION`] pages per
    /// punctuation ([`stored::IndexScan`]), so the task runs at once. The `timers` store
    /// of earlier releases is moved from the first punctuation on.
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.timers = TimerIndex::new();
        upgrade::migrate_pending(ctx, &mut self.timers)?;
        self.timer_migration = TimerMigration::default();
        self.index_scan = stored::IndexScan::start();
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<InputEvent>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        self.counting(ctx, |lifecycle, ctx| match record.value {
            InputEvent::PaymentInitiated(event) => {
                on_initiated(event, record.origin, ctx, lifecycle)
            }
            event => on_payment_event(event, record.origin, ctx, lifecycle),
        })
    }

    /// Fires the timers due on their streams' partition times (at most
    /// [`TIMERS_PER_PUNCTUATION_MAX`] of each kind).
    fn punctuate(&mut self, _stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.counting(ctx, |lifecycle, ctx| lifecycle.punctuate_timers(ctx))
    }

    /// Wall-clock punctuation every second while a stuck-payment check is on, and every
    /// tenth of the reorder wait while that is on.
    fn wall_clock_punctuation_interval_ms(&self) -> Option<u64> {
        let settings = &self.settings;
        let stuck = (settings.stuck_payment_timeout_ms > 0
            || settings.uncaptured_authorization_timeout_ms > 0)
            .then_some(WALL_CLOCK_PUNCTUATION_INTERVAL_MS);
        let reorder = (settings.movement_reorder_wait_ms > 0).then(|| {
            (settings.movement_reorder_wait_ms as u64 / 10).clamp(
                *REORDER_PUNCTUATION_INTERVAL_MS.start(),
                *REORDER_PUNCTUATION_INTERVAL_MS.end(),
            )
        });
        match (stuck, reorder) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the stuck-payment and reorder-wait timers due at `wall_clock_ms` (at most
    /// [`TIMERS_PER_PUNCTUATION_MAX`] of each kind).
    fn punctuate_wall_clock(
        &mut self,
        wall_clock_ms: i64,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        self.counting(ctx, |lifecycle, ctx| {
            lifecycle.scan_index(ctx)?;
            lifecycle.fire_due(TimerClock::WallClock, wall_clock_ms, ctx)
        })
    }

    /// True while money movements wait for the reorder wait, and while the timer index
    /// is being rebuilt (its pages come with the wall-clock punctuations too).
    fn awaits_wall_clock(&self) -> bool {
        self.index_scan.in_progress() || self.timers.holds(TimerKind::MovementReorder)
    }

    fn committed(&mut self) {
        self.timers.committed();
        self.timer_migration.committed();
        let counts = std::mem::take(&mut self.counts);
        if let Some(metrics) = &self.metrics {
            metrics.publish(&counts);
        }
    }

    fn aborted(&mut self) {
        self.timers.aborted();
        self.timer_migration.aborted();
        self.counts = OutputCounts::default();
    }
}

impl LifecycleProcessor {
    /// Runs `work` with `ctx` wrapped so that what it forwards is counted in the open
    /// transaction's [`OutputCounts`] (published when it commits).
    fn counting<T>(
        &mut self,
        ctx: &mut dyn ProcessorContext,
        work: impl FnOnce(&mut Self, &mut dyn ProcessorContext) -> Result<T>,
    ) -> Result<T> {
        let mut counts = std::mem::take(&mut self.counts);
        let result = work(
            self,
            &mut Counting {
                inner: ctx,
                counts: &mut counts,
            },
        );
        self.counts = counts;
        result
    }

    /// See [`Processor::punctuate`]; first moves a page of the `timers` store of
    /// earlier releases into the values and the index, while it holds keys.
    fn punctuate_timers(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.scan_index(ctx)?;
        self.timer_migration.migrate_page(ctx, &mut self.timers)?;
        for stream in Stream::ALL {
            let now_ms = ctx.partition_time_ms(stream.input());
            self.fire_due(TimerClock::Stream(stream), now_ms, ctx)?;
        }
        Ok(())
    }

    /// Reads the next pages of the timer index's rebuild, while it runs.
    fn scan_index(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        self.index_scan
            .scan(ctx, &mut self.timers, INDEX_SCAN_PAGES_PER_PUNCTUATION)
    }

    /// Fires the timers of the kinds on `clock` due at `now_ms` (at most
    /// [`TIMERS_PER_PUNCTUATION_MAX`] of each kind).
    fn fire_due(
        &mut self,
        clock: TimerClock,
        now_ms: i64,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        for kind in TimerKind::ALL.into_iter().filter(|k| k.clock() == clock) {
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

/// Creates the payment, then applies the events that waited for it.
fn on_initiated(
    event: PaymentInitiated,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
    lifecycle: &mut LifecycleProcessor,
) -> Result<()> {
    let mut loaded = Loaded::load(ctx, &event.payment_id)?;
    if initiate(&mut loaded, event, origin, ctx)? {
        // The payment appeared: the events that waited for it no longer time out.
        loaded.payment.cancel_timers(TimerKind::Orphan);
        loaded.payment.cancel_timers(TimerKind::PendingExpiry);
        pending::drain(&mut loaded, ctx, &lifecycle.settings)?;
        watch_for_stuck(&mut loaded, &*ctx, &lifecycle.settings);
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
    let mut loaded = Loaded::load(ctx, event.payment_id())?;
    let status_before = loaded.status();
    if loaded.has_seen(ctx, &event)? {
        ctx.forward(Output::DuplicateDropped);
        return Ok(());
    }
    let reorder_wait_ms = lifecycle.settings.movement_reorder_wait_ms;
    // A payment not seen yet: the first event to wait for it sets its orphan timers.
    let orphan_timers = loaded
        .payment
        .state
        .is_none()
        .then_some(&lifecycle.settings);
    let changed = match &loaded.payment.state {
        // A money movement or settlement waits for those of its payment that happened
        // before it but are read after it: until none arrived for the reorder wait.
        _ if pending::joins_reorder_wait(&event) && reorder_wait_ms > 0 => {
            let waits = pending::buffer(&mut loaded, event, origin, ctx, orphan_timers)?;
            if waits {
                loaded.payment.cancel_timers(TimerKind::MovementReorder);
                loaded.payment.timers.push(DueTimer {
                    kind: TimerKind::MovementReorder,
                    due_ms: ctx.wall_clock_ms().saturating_add(reorder_wait_ms),
                });
            }
            waits
        }
        Some(state) if !pending::waits_for_auth(state, &event) => {
            let applied = apply(&mut loaded, event, origin, ctx, &lifecycle.settings)?;
            // An auth may release a settlement that waited for it.
            let drained = pending::drain(&mut loaded, ctx, &lifecycle.settings)?;
            applied || drained
        }
        Some(_) => pending::buffer(&mut loaded, event, origin, ctx, None)?,
        None => pending::buffer(&mut loaded, event, origin, ctx, orphan_timers)?,
    };
    if changed {
        if loaded.status() != status_before {
            watch_for_stuck(&mut loaded, &*ctx, &lifecycle.settings);
        }
        loaded.save(ctx, &mut lifecycle.timers)?;
    }
    Ok(())
}

/// Sets the stuck-payment timer for the status the payment just entered, if it is one
/// that waits on wall-clock time ([`callbacks::stuck_timeout_ms`]): INITIATED waits for
/// its auth outcome, AUTHORIZED under manual capture for its first capture or a void.
/// A timer of the status it left is cancelled.
fn watch_for_stuck(loaded: &mut Loaded, ctx: &dyn ProcessorContext, settings: &LifecycleSettings) {
    loaded.payment.cancel_timers(TimerKind::StuckPayment);
    let timeout_ms = loaded
        .payment
        .state
        .as_ref()
        .and_then(|state| callbacks::stuck_timeout_ms(state, settings));
    if let Some(timeout_ms) = timeout_ms {
        loaded.payment.timers.push(DueTimer {
            kind: TimerKind::StuckPayment,
            due_ms: ctx.wall_clock_ms().saturating_add(timeout_ms),
        });
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
