//! Persistent stream-time timers (punctuation) in the `timers` state store.
//!
//! A timer is a key `kind (1 byte) · due_ms (8 bytes, big-endian) · payment_id`, so a
//! range scan from the kind's first key returns its timers in due order and a page stops
//! at the first timer not yet due. Timers are ordinary store entries: they are written in
//! the open transaction, reach the store's changelog with everything else of the commit,
//! and survive restarts and moves between instances by changelog restore.
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

use crate::{ProcessorContext, Result, Stream, stores};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Events wait in `pending` for a payment that has not appeared (orphan timeout).
    Orphan = 1,
    /// A payment was authorized and must be settled within the settlement window.
    SettlementWindow = 2,
    /// Events wait in `pending` for a payment that has not appeared (pending retention).
    PendingExpiry = 3,
}

impl TimerKind {
    /// Every kind.
    pub const ALL: [TimerKind; 3] = [
        TimerKind::Orphan,
        TimerKind::SettlementWindow,
        TimerKind::PendingExpiry,
    ];

    /// The stream whose partition time the timer runs on.
    pub fn clock(self) -> Stream {
        match self {
            TimerKind::Orphan | TimerKind::PendingExpiry => Stream::Payments,
            TimerKind::SettlementWindow => Stream::Settlements,
        }
    }

    fn from_byte(byte: u8) -> Option<TimerKind> {
        match byte {
            1 => Some(TimerKind::Orphan),
            2 => Some(TimerKind::SettlementWindow),
            3 => Some(TimerKind::PendingExpiry),
            _ => None,
        }
    }
}

/// A timer that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Stream time it was due at, milliseconds since the Unix epoch.
    pub due_ms: i64,
    pub kind: TimerKind,
    pub payment_id: String,
}

fn key(due_ms: i64, kind: TimerKind, payment_id: &str) -> Vec<u8> {
    let mut key = vec![kind as u8];
    // Negative times (before 1970) sort first, as due at once.
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(payment_id.as_bytes());
    key
}

fn parse(key: &[u8]) -> Option<Timer> {
    let (kind, rest) = key.split_first()?;
    let (due, payment_id) = rest.split_first_chunk::<8>()?;
    Some(Timer {
        due_ms: u64::from_be_bytes(*due) as i64,
        kind: TimerKind::from_byte(*kind)?,
        payment_id: String::from_utf8(payment_id.to_vec()).ok()?,
    })
}

/// Schedules a `kind` timer for `payment_id` at stream time `due_ms`.
///
/// # Errors
/// [`crate::ProcessorError::Store`] when the `timers` store fails.
pub fn schedule(
    ctx: &mut dyn ProcessorContext,
    due_ms: i64,
    kind: TimerKind,
    payment_id: &str,
) -> Result<()> {
    ctx.store(stores::TIMERS)?
        .put(&key(due_ms, kind, payment_id), b"")?;
    Ok(())
}

/// Timers read from the store per page while looking for due ones.
const TIMERS_PER_PAGE: usize = 32;

/// Removes and returns up to `limit` timers of `kind` due at or before the partition
/// time of the kind's [`TimerKind::clock`], earliest first. Timers left over (more than
/// `limit` due) fire at the next punctuation.
///
/// # Errors
/// [`crate::ProcessorError::Store`] when the `timers` store fails.
pub fn take_due(
    ctx: &mut dyn ProcessorContext,
    kind: TimerKind,
    limit: usize,
) -> Result<Vec<Timer>> {
    let now_ms = ctx.partition_time_ms(kind.clock());
    let store = ctx.store(stores::TIMERS)?;
    let mut due = Vec::new();
    let mut from = vec![kind as u8];
    // Small pages: most punctuations find the first timer not yet due and stop there.
    'pages: while due.len() < limit {
        let page = store.range(&from, TIMERS_PER_PAGE.min(limit - due.len()))?;
        let Some((last, _)) = page.last() else { break };
        from = paystream_state::key_after(last);
        let full = page.len() == TIMERS_PER_PAGE.min(limit - due.len());
        for (key, _) in page {
            match parse(&key) {
                Some(timer) if timer.kind != kind || timer.due_ms > now_ms => break 'pages,
                Some(timer) => {
                    store.delete(&key)?;
                    due.push(timer);
                }
                // Not a key this module wrote: drop it rather than block every later timer.
                None => store.delete(&key)?,
            }
        }
        if !full {
            break;
        }
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_time_and_round_trip() {
        let early = key(5, TimerKind::Orphan, "b");
        let late = key(1_000, TimerKind::Orphan, "a");
        assert!(early < late);
        assert!(
            late < key(0, TimerKind::SettlementWindow, "a"),
            "grouped by kind"
        );
        assert_eq!(
            parse(&late),
            Some(Timer {
                due_ms: 1_000,
                kind: TimerKind::Orphan,
                payment_id: "a".into()
            })
        );
        assert_eq!(parse(b"short"), None);
    }
}
