//! Stream-time timers (punctuation) of the lifecycle.
//!
//! A timer belongs to one payment and lives in that payment's value in the `payments`
//! store (`lifecycle/stored.rs`): it is written in the open transaction with everything
//! else of the payment, reaches the store's changelog in the same record, and survives
//! restarts and moves between instances by changelog restore. To find the due ones
//! without reading every payment, each task keeps a [`TimerIndex`] in memory: built
//! after task start by a scan of the restored store, a few pages per punctuation
//! (`lifecycle::stored::IndexScan`), and kept in step with every write of a payment's
//! timers and with the transaction (what an abort undoes is put back).
//!
//! Each kind runs on the clock of the stream whose progress it waits for (its partition
//! time, the largest record timestamp seen on the task's partition of that stream), never
//! on wall-clock time:
//! - an orphan timeout and a pending expiry wait for a payment, so they run on the
//!   [`Stream::Payments`] clock: they fire once payments `orphan_timeout_ms` (or
//!   `pending_retention_ms`) younger than the waiting event have arrived and its payment
//!   was not among them;
//! - a settlement window waits for a settlement, so it runs on the
//!   [`Stream::Settlements`] clock.
//!
//! A backlog on one topic therefore cannot fire timers early, and a replay of the same
//! input fires the same timers at the same points of their streams.
//!
//! One kind runs on wall-clock time instead, because what it waits for is that nothing
//! happens: a stuck payment (no auth outcome `stuck_payment_timeout_ms` of wall-clock
//! time after the lifecycle applied it) is found by the runtime's wall-clock
//! punctuation, which runs when no record arrives — exactly when a payment is stuck.
//! The reorder wait of money movements runs on it too: a payment's movements and
//! settlement wait until none arrived for `movement_reorder_wait_ms`, and must then apply even if traffic
//! stopped.
//!
//! Earlier releases kept timers in a `timers` store of their own, one key
//! `kind (1 byte) · due_ms (8 bytes, big-endian) · payment_id` each ([`legacy_key`],
//! [`parse_legacy_key`]). After an upgrade the lifecycle's store migration
//! (`lifecycle/upgrade.rs`) moves those keys into their payments' values, a page of each
//! kind per punctuation before the due timers fire; the index only ever holds timers
//! that are in a payment's value.

use std::collections::BTreeSet;

use crate::Stream;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Events wait for a payment that has not appeared (orphan timeout).
    Orphan = 1,
    /// A payment was authorized and must be settled within the settlement window.
    SettlementWindow = 2,
    /// Events wait for a payment that has not appeared (pending retention).
    PendingExpiry = 3,
    /// A payment waits for its auth outcome; on wall-clock time.
    StuckPayment = 4,
    /// A payment's money movements wait for those that happened before them; on
    /// wall-clock time.
    MovementReorder = 5,
}

/// The clock a timer runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerClock {
    /// The partition time of a stream: the largest record timestamp seen on the task's
    /// partition of it. Moves only with that stream's records.
    Stream(Stream),
    /// Wall-clock time (the runtime's wall-clock punctuation), which moves when no
    /// record arrives.
    WallClock,
}

impl TimerKind {
    /// Every kind.
    pub const ALL: [TimerKind; 5] = [
        TimerKind::Orphan,
        TimerKind::SettlementWindow,
        TimerKind::PendingExpiry,
        TimerKind::StuckPayment,
        TimerKind::MovementReorder,
    ];

    /// The clock the timer runs on.
    pub fn clock(self) -> TimerClock {
        match self {
            TimerKind::Orphan | TimerKind::PendingExpiry => TimerClock::Stream(Stream::Payments),
            TimerKind::SettlementWindow => TimerClock::Stream(Stream::Settlements),
            TimerKind::StuckPayment | TimerKind::MovementReorder => TimerClock::WallClock,
        }
    }

    /// The kind's code in stored values and keys (its discriminant).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a stored code.
    pub fn from_code(code: u8) -> Option<TimerKind> {
        match code {
            1 => Some(TimerKind::Orphan),
            2 => Some(TimerKind::SettlementWindow),
            3 => Some(TimerKind::PendingExpiry),
            4 => Some(TimerKind::StuckPayment),
            5 => Some(TimerKind::MovementReorder),
            _ => None,
        }
    }
}

/// A timer of one payment, as its stored value keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DueTimer {
    pub kind: TimerKind,
    /// Time it is due at on its kind's clock ([`TimerKind::clock`]), milliseconds since
    /// the Unix epoch.
    pub due_ms: i64,
}

/// A timer that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Time it was due at on its kind's clock, milliseconds since the Unix epoch.
    pub due_ms: i64,
    pub kind: TimerKind,
    pub payment_id: String,
}

type IndexKey = (TimerKind, i64, String);

/// The due timers of one task's payments, in memory, ordered by kind and due time.
///
/// The index follows the open transaction: an entry removed in it (fired or cancelled)
/// is put back by [`Self::aborted`], because the stored value that still holds the timer
/// is what the abort restores. An entry inserted by an aborted transaction stays; it no
/// longer matches its payment's value, and the lifecycle skips it when it comes due.
#[derive(Debug, Clone, Default)]
pub struct TimerIndex {
    due: BTreeSet<IndexKey>,
    removed_in_transaction: Vec<IndexKey>,
}

impl TimerIndex {
    /// An empty index.
    pub fn new() -> Self {
        TimerIndex::default()
    }

    /// Adds `payment_id`'s `timer` (set in its value).
    pub fn insert(&mut self, payment_id: &str, timer: DueTimer) {
        self.due
            .insert((timer.kind, timer.due_ms, payment_id.to_string()));
    }

    /// Removes `payment_id`'s `timer` (cancelled in the open transaction). An abort
    /// puts it back even when the index did not hold it: while the index is rebuilt
    /// after a task starts it may not have reached the payment yet, and the abort brings
    /// the timer back in the payment's value (if the aborted transaction had set it, the
    /// entry is one that no longer matches and is skipped when due).
    pub fn remove(&mut self, payment_id: &str, timer: DueTimer) {
        let key = (timer.kind, timer.due_ms, payment_id.to_string());
        self.due.remove(&key);
        self.removed_in_transaction.push(key);
    }

    /// True when the index holds a timer of `kind`.
    pub fn holds(&self, kind: TimerKind) -> bool {
        self.due
            .range((kind, i64::MIN, String::new())..)
            .next()
            .is_some_and(|(k, _, _)| *k == kind)
    }

    /// Removes and returns up to `limit` timers of `kind` due at or before `now_ms`,
    /// earliest first. Timers left over (more than `limit` due) come at the next call.
    pub fn take_due(&mut self, kind: TimerKind, now_ms: i64, limit: usize) -> Vec<Timer> {
        let keys: Vec<IndexKey> = self
            .due
            .range((kind, i64::MIN, String::new())..)
            .take_while(|(k, due_ms, _)| *k == kind && *due_ms <= now_ms)
            .take(limit)
            .cloned()
            .collect();
        keys.into_iter()
            .map(|key| {
                self.due.remove(&key);
                let timer = Timer {
                    kind: key.0,
                    due_ms: key.1,
                    payment_id: key.2.clone(),
                };
                self.removed_in_transaction.push(key);
                timer
            })
            .collect()
    }

    /// The open transaction committed: its removals are final.
    pub fn committed(&mut self) {
        self.removed_in_transaction.clear();
    }

    /// The open transaction aborted: the timers it removed are due again.
    pub fn aborted(&mut self) {
        for key in self.removed_in_transaction.drain(..) {
            self.due.insert(key);
        }
    }

    /// Number of timers in the index.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// True when no timer is in the index.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// The key of a timer in the `timers` store of earlier releases. Negative times (before
/// 1970) were stored as 0, due at once. This release writes none: tests use it to write
/// that store as earlier releases did.
pub fn legacy_key(kind: TimerKind, due_ms: i64, payment_id: &str) -> Vec<u8> {
    let mut key = vec![kind.code()];
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(payment_id.as_bytes());
    key
}

/// The timer of a key of the `timers` store of earlier releases; `None` for a key that
/// is not one. Read by the migration of that store (`lifecycle/upgrade.rs`).
pub fn parse_legacy_key(key: &[u8]) -> Option<(String, DueTimer)> {
    let (kind, rest) = key.split_first()?;
    let (due, payment_id) = rest.split_first_chunk::<8>()?;
    Some((
        String::from_utf8(payment_id.to_vec()).ok()?,
        DueTimer {
            kind: TimerKind::from_code(*kind)?,
            due_ms: u64::from_be_bytes(*due) as i64,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(kind: TimerKind, due_ms: i64) -> DueTimer {
        DueTimer { kind, due_ms }
    }

    #[test]
    fn an_abort_puts_back_a_cancelled_timer_the_index_had_not_reached_yet() {
        let mut index = TimerIndex::new();
        // Cancelled before the rebuild read its payment: the index did not hold it.
        index.remove("p", timer(TimerKind::SettlementWindow, 50));
        assert!(index.is_empty());
        index.aborted();
        assert_eq!(
            index.take_due(TimerKind::SettlementWindow, 50, 10)[0].payment_id,
            "p",
            "the abort brought it back in the value, and in the index"
        );
        index.committed();
        index.remove("q", timer(TimerKind::Orphan, 1));
        index.committed();
        assert!(index.is_empty(), "a committed cancellation is final");
    }

    #[test]
    fn due_timers_come_by_kind_in_due_order_up_to_the_limit() {
        let mut index = TimerIndex::new();
        index.insert("b", timer(TimerKind::Orphan, 20));
        index.insert("a", timer(TimerKind::Orphan, 10));
        index.insert("c", timer(TimerKind::Orphan, 30));
        index.insert("a", timer(TimerKind::SettlementWindow, 5));
        let due = index.take_due(TimerKind::Orphan, 25, 1);
        assert_eq!(
            due.iter()
                .map(|t| t.payment_id.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        let due = index.take_due(TimerKind::Orphan, 25, 10);
        assert_eq!(
            due.iter()
                .map(|t| (t.payment_id.as_str(), t.due_ms))
                .collect::<Vec<_>>(),
            [("b", 20)],
            "not the one due at 30, nor another kind"
        );
        assert_eq!(index.len(), 2);
        let due = index.take_due(TimerKind::Orphan, 30, 10);
        assert_eq!(due[0].payment_id, "c");
    }

    #[test]
    fn an_abort_puts_back_what_the_transaction_removed() {
        let mut index = TimerIndex::new();
        index.insert("a", timer(TimerKind::Orphan, 10));
        index.insert("b", timer(TimerKind::SettlementWindow, 10));
        index.committed();
        assert_eq!(index.take_due(TimerKind::Orphan, 10, 10).len(), 1);
        index.remove("b", timer(TimerKind::SettlementWindow, 10));
        assert!(index.is_empty());
        index.aborted();
        assert_eq!(index.len(), 2, "both are due again");
        assert_eq!(index.take_due(TimerKind::Orphan, 10, 10).len(), 1);
        index.committed();
        index.aborted();
        assert_eq!(index.len(), 1, "a committed removal stays");
    }

    #[test]
    fn legacy_keys_sort_by_due_time_and_round_trip() {
        let early = legacy_key(TimerKind::Orphan, 5, "b");
        let late = legacy_key(TimerKind::Orphan, 1_000, "a");
        assert!(early < late);
        assert_eq!(
            parse_legacy_key(&late),
            Some(("a".to_string(), timer(TimerKind::Orphan, 1_000)))
        );
        assert_eq!(parse_legacy_key(b"short"), None);
        assert_eq!(
            parse_legacy_key(&legacy_key(TimerKind::PendingExpiry, -5, "p"))
                .unwrap()
                .1
                .due_ms,
            0
        );
    }
}
