//! The migration of the lifecycle's stores of earlier releases into the `payments`
//! store's values (docs/architecture.md, "State layout"), as Kafka Streams'
//! `RocksDBTimestampedStore` upgrades its own format: the lifecycle's processing only
//! ever sees a [`super::stored::StoredPayment`].
//!
//! Earlier releases kept a payment's parts in four stores. After an upgrade their
//! changelogs are restored (the stores stay declared) and:
//!
//! | store | what happens | when |
//! |---|---|---|
//! | `payments`, JSON state | read as the state alone, rewritten in version 1 by the payment's next change (`stored/format.rs`) | on read |
//! | `pending`: payment id → waiting events | each value's events join the end of that payment's value; the key is deleted | all of it in the processor's `init` ([`migrate_pending`]), before the task's first record |
//! | `timers`: one key per timer | each key becomes a [`DueTimer`] in its payment's value (and the task's timer index); the key is deleted | at each punctuation, before timers fire: per kind the [`LEGACY_TIMERS_PER_PUNCTUATION_MAX`] keys due first ([`TimerMigration`]) |
//! | `seen_events`: event id → applied or buffered | not migrated: its keys do not name their payment. Read only for an auth or settlement whose payment's state, first written as JSON, says one was applied but not which (`stored.rs`, `Loaded::has_seen`); never written | until its keys expire |
//!
//! **Why `pending` at `init` and `timers` in pages.** Every event of a payment needs its
//! waiting events (to recognise a retry, to apply them when the payment appears), so
//! they are in the values before the first record. A timer only matters when it fires,
//! and each callback checks the payment's state then, so a timer that joins its value a
//! few punctuations after an event changed the payment does what it would have done
//! (an orphan timeout finds the payment there, a settlement window finds it settled).
//! Keys of each kind are moved in due order, so a timer fires at the punctuation it was
//! due unless more than [`LEGACY_TIMERS_PER_PUNCTUATION_MAX`] of its kind came due at
//! once (then at a following one, as [`super::TIMERS_PER_PUNCTUATION_MAX`] does).
//!
//! **Why it is safe.** Every write goes through `ctx.store(...)` into the task's open
//! transaction: the values, the tombstones of the moved keys and their changelog records
//! commit together with the records processed in it, or not at all. After a crash the
//! restored stores are as of the last commit, and `init` moves what is left. An abort
//! drops the open writes: the runtime runs `init` again when the transaction it aborted
//! held `init`'s writes (no commit since `init`, see `Task::abort_stores` in
//! `runtime/src/task.rs`), and [`TimerMigration::aborted`] goes back to the last
//! committed page. Moving is idempotent: an event or timer the value already holds is
//! not added twice.
//!
//! **What bounds a transaction.** A page of timers is at most
//! 3 × [`LEGACY_TIMERS_PER_PUNCTUATION_MAX`] keys, so at most 6,000 changelog records
//! (a payment value and a tombstone each) on top of the commit's own — a full commit
//! (`processing.transaction_records_max`, 20,000 records) logs about 12,000. The
//! `timers` store is the large one: a settlement window for every authorized payment
//! not yet settled (up to 3 days of authorizations), so paging keeps its migration to
//! minutes of commits however many it holds. `pending` is migrated whole in the first
//! transaction: one value write and one tombstone per payment with waiting events
//! (at most [`super::PENDING_EVENTS_PER_PAYMENT_MAX`] events each). Those are the
//! payments whose events were in flight at the upgrade (the payment behind its auth on
//! the repartition topic, seconds of traffic) and orphans within the pending retention:
//! the benchmark's mix logged 0.00 `pending` changelog records per input event
//! (docs/benchmarks.md, "State layout").
//!
//! **When it can go.** `pending` and `timers` are empty once every task has committed
//! after the upgrade (timers: one page per kind per commit); `seen_events` once its last
//! key expired, `state.idempotency_retention_ms` (72 h) of stream time after it. A
//! release that no longer upgrades from the layout before the single value drops this
//! file, the three stores' `StoreSpec`s and the `seen_events` read of `Loaded::has_seen`
//! (a retry of an event applied before the upgrade is then dead-lettered as
//! `illegal_transition`, as earlier releases did once `seen_events` forgot it).

use super::pending::format as pending_format;
use super::stored::{self, Loaded};
use crate::timers::{self, DueTimer, TimerIndex, TimerKind};
use crate::{ProcessorContext, Result, stores};

/// Keys of the `pending` store of earlier releases read per page at `init`.
const PENDING_PAGE_KEYS: usize = 256;

/// At most this many keys of the `timers` store of earlier releases are moved per kind
/// and punctuation.
pub const LEGACY_TIMERS_PER_PUNCTUATION_MAX: usize = 1_000;

/// Moves every value of the `pending` store of earlier releases into its payment's
/// value (its events after those the value holds, except those it already holds) and
/// deletes the key. Returns how many keys it moved. Timers are not touched: `index` is
/// only kept in step.
///
/// # Errors
/// [`crate::ProcessorError::CorruptState`] for a key that is not UTF-8, or a value that
/// does not decode (`pending/format.rs`) or whose payment's value does not; store errors.
pub(super) fn migrate_pending(
    ctx: &mut dyn ProcessorContext,
    index: &mut TimerIndex,
) -> Result<usize> {
    let mut moved = 0;
    let mut from = Vec::new();
    loop {
        let page = ctx
            .store(stores::PENDING)?
            .range(&from, PENDING_PAGE_KEYS)?;
        for (key, value) in &page {
            let payment_id = stored::utf8_key(stores::PENDING, key)?;
            let mut loaded = Loaded::load(ctx, payment_id)?;
            for waiting in pending_format::decode(payment_id, value)? {
                if !loaded.payment.has_seen(waiting.event.event_id()) {
                    loaded.payment.pending.push(waiting);
                }
            }
            loaded.save(ctx, index)?;
            ctx.store(stores::PENDING)?.delete(key)?;
            moved += 1;
        }
        match page.last() {
            Some((last, _)) if page.len() == PENDING_PAGE_KEYS => {
                from = paystream_state::key_after(last)
            }
            _ => return Ok(moved),
        }
    }
}

/// The timer kinds earlier releases kept in their `timers` store.
const LEGACY_KINDS: [TimerKind; 3] = [
    TimerKind::Orphan,
    TimerKind::SettlementWindow,
    TimerKind::PendingExpiry,
];

/// Where the migration of the `timers` store of earlier releases has got to: per kind,
/// the key to read from next, `None` once the kind is done; then a last pass over the
/// whole store for keys that are not timers (deleted, as earlier releases never wrote
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursors {
    kinds: [Option<Vec<u8>>; LEGACY_KINDS.len()],
    rest: Option<Vec<u8>>,
}

impl Cursors {
    fn start() -> Cursors {
        Cursors {
            kinds: LEGACY_KINDS.map(|kind| Some(vec![kind.code()])),
            rest: Some(Vec::new()),
        }
    }
}

/// The migration of the `timers` store of earlier releases, a page per kind at each
/// punctuation, following the task's transactions. Once every kind and the last pass
/// are done it reads nothing more.
#[derive(Debug, Clone)]
pub(super) struct TimerMigration {
    open: Cursors,
    committed: Cursors,
}

impl Default for TimerMigration {
    fn default() -> Self {
        TimerMigration {
            open: Cursors::start(),
            committed: Cursors::start(),
        }
    }
}

impl TimerMigration {
    /// Moves, per kind, the next [`LEGACY_TIMERS_PER_PUNCTUATION_MAX`] keys (the ones
    /// due first) into their payments' values and `index`, and deletes them; once every
    /// kind is done, deletes a page of the keys left, which are not timers. Returns how
    /// many keys it moved or deleted.
    ///
    /// # Errors
    /// [`crate::ProcessorError::CorruptState`] as [`Loaded::load`]; store errors.
    pub(super) fn migrate_page(
        &mut self,
        ctx: &mut dyn ProcessorContext,
        index: &mut TimerIndex,
    ) -> Result<usize> {
        let mut moved = 0;
        for (kind, cursor) in LEGACY_KINDS.into_iter().zip(&mut self.open.kinds) {
            if let Some(from) = cursor.take() {
                let (n, next) = migrate_keys(ctx, index, &from, Some(kind))?;
                moved += n;
                *cursor = next;
            }
        }
        if self.open.kinds.iter().all(Option::is_none)
            && let Some(from) = self.open.rest.take()
        {
            let (n, next) = migrate_keys(ctx, index, &from, None)?;
            moved += n;
            self.open.rest = next;
        }
        Ok(moved)
    }

    /// The open transaction committed: the pages it moved are final.
    pub(super) fn committed(&mut self) {
        self.committed = self.open.clone();
    }

    /// The open transaction aborted: its pages are moved again.
    pub(super) fn aborted(&mut self) {
        self.open = self.committed.clone();
    }
}

/// Moves up to [`LEGACY_TIMERS_PER_PUNCTUATION_MAX`] keys of the `timers` store from
/// `from` on — of `kind` only, or any key when `None` — and returns how many and where
/// to go on from (`None`: nothing left there).
fn migrate_keys(
    ctx: &mut dyn ProcessorContext,
    index: &mut TimerIndex,
    from: &[u8],
    kind: Option<TimerKind>,
) -> Result<(usize, Option<Vec<u8>>)> {
    let page = ctx
        .store(stores::TIMERS)?
        .range(from, LEGACY_TIMERS_PER_PUNCTUATION_MAX)?;
    let full = page.len() == LEGACY_TIMERS_PER_PUNCTUATION_MAX;
    let mut moved = 0;
    for (key, _) in &page {
        if kind.is_some_and(|kind| key.first() != Some(&kind.code())) {
            return Ok((moved, None));
        }
        if let Some((payment_id, timer)) = timers::parse_legacy_key(key) {
            add_timer(ctx, index, &payment_id, timer)?;
        }
        ctx.store(stores::TIMERS)?.delete(key)?;
        moved += 1;
    }
    let next = match page.last() {
        Some((last, _)) if full => Some(paystream_state::key_after(last)),
        _ => None,
    };
    Ok((moved, next))
}

/// Adds `timer` to `payment_id`'s value and `index`, unless the value holds it.
fn add_timer(
    ctx: &mut dyn ProcessorContext,
    index: &mut TimerIndex,
    payment_id: &str,
    timer: DueTimer,
) -> Result<()> {
    let mut loaded = Loaded::load(ctx, payment_id)?;
    if loaded.payment.timers.contains(&timer) {
        return Ok(());
    }
    loaded.payment.timers.push(timer);
    loaded.save(ctx, index)
}

#[cfg(test)]
mod tests {
    use paystream_schemas::{PaymentStatus, ReconciliationExceptionKind};

    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::test_support::*;
    use crate::lifecycle::{LifecycleProcessor, pending};
    use crate::{DeadLetterReason, Output};

    const MINUTE_MS: i64 = 60_000;
    const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

    /// The JSON state of earlier releases of an AUTHORIZED payment (no applied event ids).
    fn authorized_json(payment_id: &str) -> String {
        format!(
            concat!(
                r#"{{"payment_id":"{0}","merchant_id":"m1","psp":"adyen","amount_minor":1000,"#,
                r#""currency":"EUR","status":"AUTHORIZED","initiated_event_id":"init-{0}","#,
                r#""authorized_amount_minor":1000,"authorized_currency":"EUR"}}"#
            ),
            payment_id
        )
    }

    /// The stores as the release before the single-value layout wrote them: the state as
    /// JSON, event ids in `seen_events`, waiting events in `pending`, one key per timer.
    fn restore_earlier_release(ctx: &mut dyn ProcessorContext) {
        let mut put = |store: &str, key: &[u8], value: &[u8]| {
            ctx.store(store).unwrap().put(key, value).unwrap();
        };
        put(stores::PAYMENTS, b"p1", authorized_json("p1").as_bytes());
        put(stores::SEEN_EVENTS, b"a1", b"");
        let waiting = rec(auth_ok("p2", "a2"));
        let pending = pending::encode(&[pending::PendingEvent {
            event: waiting.value,
            origin: waiting.origin,
        }]);
        put(stores::PENDING, b"p2", &pending);
        put(stores::SEEN_EVENTS, b"a2", b"");
        for (kind, due_ms, payment_id) in [
            (TimerKind::SettlementWindow, 3 * DAY_MS, "p1"),
            (TimerKind::Orphan, 10 * MINUTE_MS, "p2"),
            (TimerKind::PendingExpiry, 72 * 60 * MINUTE_MS, "p2"),
        ] {
            put(
                stores::TIMERS,
                &timers::legacy_key(kind, due_ms, payment_id),
                b"",
            );
        }
    }

    fn timer(kind: TimerKind, due_ms: i64) -> DueTimer {
        DueTimer { kind, due_ms }
    }

    /// What the stores hold once the migration is through, before any event.
    fn assert_migrated(d: &TestDriver<LifecycleProcessor>) {
        assert_eq!(d.store_len(stores::PENDING), 0);
        assert_eq!(d.store_len(stores::TIMERS), 0);
        let p2 = stored_payment(d, "p2");
        assert_eq!(p2.pending.len(), 1, "the waiting auth joined p2's value");
        assert_eq!(
            p2.timers,
            vec![
                timer(TimerKind::Orphan, 10 * MINUTE_MS),
                timer(TimerKind::PendingExpiry, 72 * 60 * MINUTE_MS)
            ]
        );
        let p1 = stored_payment(d, "p1");
        assert_eq!(
            p1.timers,
            vec![timer(TimerKind::SettlementWindow, 3 * DAY_MS)]
        );
        assert_eq!(p1.state.unwrap().status, PaymentStatus::Authorized);
        assert_eq!(d.store_len(stores::SEEN_EVENTS), 2, "read, never written");
    }

    #[test]
    fn pending_moves_at_init_and_timers_at_the_first_punctuation() {
        let mut d =
            TestDriver::with_restored(LifecycleProcessor::default(), restore_earlier_release);
        assert_eq!(d.store_len(stores::PENDING), 0, "moved by init");
        assert_eq!(stored_payment(&d, "p2").pending.len(), 1);
        assert_eq!(
            d.store_len(stores::TIMERS),
            3,
            "moved from the first punctuation"
        );
        assert!(d.advance_stream_time_ms(0).is_empty());
        assert_migrated(&d);
    }

    #[test]
    fn state_of_the_earlier_layout_is_read_and_moves_into_one_value_per_payment() {
        let mut d = TestDriver::with_restored(in_read_order(), restore_earlier_release);
        assert_eq!(
            d.pipe(rec(auth_ok("p1", "a1"))),
            vec![Output::DuplicateDropped],
            "an applied auth, known from seen_events"
        );
        assert_eq!(
            d.pipe(rec(auth_ok("p2", "a2"))),
            vec![Output::DuplicateDropped],
            "a waiting auth, moved from pending"
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
        assert!(
            is_dead_letter(
                &d.pipe(rec(auth_ok("p1", "a9"))),
                DeadLetterReason::IllegalTransition
            ),
            "another auth of the settled payment is not a duplicate"
        );
        // The timers of the earlier release fire once: p2 appeared and p1 settled, so
        // they raise nothing. p2's settlement window, set by this release, raises the
        // one exception.
        let out = d.advance_stream_time_ms(4 * DAY_MS);
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
        assert!(stored_payment(&d, "p1").timers.is_empty());
        assert!(stored_payment(&d, "p2").timers.is_empty());
    }

    #[test]
    fn a_waiting_event_of_the_earlier_layout_expires_to_the_dead_letter_queue() {
        let mut d =
            TestDriver::with_restored(LifecycleProcessor::default(), restore_earlier_release);
        let out = d.advance_stream_time_ms(11 * MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::OrphanEvent, None, Some(1000))]
        );
        let out = d.advance_stream_time_ms(72 * 60 * MINUTE_MS);
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
        assert_eq!(stored_payment(&d, "p2"), stored::StoredPayment::default());
        // Its key in seen_events is left to expire: the payment's state will know its
        // events' ids, so a redrive once the payment exists applies.
        d.pipe(rec(initiated("p2")));
        assert_eq!(
            statuses(&d.pipe(rec(auth_ok("p2", "a2")))),
            vec![(Some(PaymentStatus::Initiated), PaymentStatus::Authorized)]
        );
    }

    #[test]
    fn the_migration_runs_again_after_an_abort_and_a_restart_and_moves_nothing_twice() {
        let mut d = TestDriver::with_restored_and_aborted_init(
            LifecycleProcessor::default(),
            restore_earlier_release,
        );
        assert_eq!(
            d.store_len(stores::PENDING),
            0,
            "init ran again after the abort"
        );
        d.advance_stream_time_ms_and_abort(0);
        assert_eq!(d.store_len(stores::TIMERS), 3, "the aborted page is back");
        assert!(d.advance_stream_time_ms(0).is_empty());
        assert_migrated(&d);
        // A restart over the migrated stores (restored from their changelogs) finds
        // nothing to move and the timers in the values.
        d.restart(LifecycleProcessor::default());
        assert!(d.advance_stream_time_ms(0).is_empty());
        assert_migrated(&d);
        let out = d.advance_stream_time_ms(11 * MINUTE_MS);
        assert_eq!(
            exceptions(&out),
            vec![(ReconciliationExceptionKind::OrphanEvent, None, Some(1000))],
            "the orphan timeout fires once"
        );
        let out = d.pipe(rec(initiated("p2")));
        assert_eq!(statuses(&out).len(), 2, "the waiting auth applies once");
    }

    #[test]
    fn many_legacy_timers_move_a_page_per_kind_and_punctuation_in_due_order() {
        let payments = 2 * LEGACY_TIMERS_PER_PUNCTUATION_MAX + 500;
        let mut d = TestDriver::with_restored(LifecycleProcessor::default(), |ctx| {
            for n in 0..payments {
                let payment_id = format!("p{n:05}");
                let mut put = |store: &str, key: &[u8], value: &[u8]| {
                    ctx.store(store).unwrap().put(key, value).unwrap();
                };
                put(
                    stores::PAYMENTS,
                    payment_id.as_bytes(),
                    authorized_json(&payment_id).as_bytes(),
                );
                // Due in the reverse order of the payment ids.
                let due_ms = DAY_MS + (payments - n) as i64;
                let key = timers::legacy_key(TimerKind::SettlementWindow, due_ms, &payment_id);
                put(stores::TIMERS, &key, b"");
            }
        });
        let left = |d: &TestDriver<LifecycleProcessor>| d.store_len(stores::TIMERS) as usize;
        assert!(d.advance_stream_time_ms(0).is_empty());
        assert_eq!(left(&d), payments - LEGACY_TIMERS_PER_PUNCTUATION_MAX);
        let first = format!("p{:05}", payments - 1);
        assert_eq!(
            stored_payment(&d, &first).timers.len(),
            1,
            "the one due first"
        );
        assert!(stored_payment(&d, "p00000").timers.is_empty(), "due last");
        d.advance_stream_time_ms_and_abort(0);
        assert_eq!(left(&d), payments - LEGACY_TIMERS_PER_PUNCTUATION_MAX);
        d.advance_stream_time_ms(0);
        d.advance_stream_time_ms(0);
        assert_eq!(left(&d), 0);
        // Every settlement window fires once, up to the punctuation's limit each time.
        let mut raised = 0;
        for _ in 0..4 {
            raised += exceptions(&d.advance_stream_time_ms(DAY_MS)).len();
        }
        assert_eq!(raised, payments);
    }
}
