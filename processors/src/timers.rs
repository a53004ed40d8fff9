//! Persistent stream-time timers (punctuation) in the `timers` state store.
//!
//! A timer is a key `due_ms (8 bytes, big-endian) · kind (1 byte) · payment_id`, so a
//! range scan from the empty key returns timers in due order and a page stops at the
//! first timer not yet due. Timers are ordinary store entries: they are written in the
//! open transaction, reach the store's changelog with everything else of the commit, and
//! survive restarts and moves between instances by changelog restore. They fire when the
//! task's stream time (the largest record timestamp it has seen) reaches `due_ms`, never
//! by wall-clock time, so a replay of the same input fires the same timers at the same
//! points.

use crate::{ProcessorContext, Result, stores};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Events wait in `pending` for a payment that has not appeared (orphan timeout).
    Orphan = 1,
    /// A payment was authorized and must be settled within the settlement window.
    SettlementWindow = 2,
}

impl TimerKind {
    fn from_byte(byte: u8) -> Option<TimerKind> {
        match byte {
            1 => Some(TimerKind::Orphan),
            2 => Some(TimerKind::SettlementWindow),
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
    // Negative times (before 1970) sort first, as due at once.
    let mut key = (due_ms.max(0) as u64).to_be_bytes().to_vec();
    key.push(kind as u8);
    key.extend_from_slice(payment_id.as_bytes());
    key
}

fn parse(key: &[u8]) -> Option<Timer> {
    let (due, rest) = key.split_first_chunk::<8>()?;
    let (kind, payment_id) = rest.split_first()?;
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

/// Removes and returns up to `limit` timers due at or before `stream_time_ms`, earliest
/// first. Timers left over (more than `limit` due) fire at the next punctuation.
///
/// # Errors
/// [`crate::ProcessorError::Store`] when the `timers` store fails.
pub fn take_due(
    ctx: &mut dyn ProcessorContext,
    stream_time_ms: i64,
    limit: usize,
) -> Result<Vec<Timer>> {
    let store = ctx.store(stores::TIMERS)?;
    let mut due = Vec::new();
    for (key, _) in store.range(&[], limit)? {
        match parse(&key) {
            Some(timer) if timer.due_ms > stream_time_ms => break,
            Some(timer) => {
                store.delete(&key)?;
                due.push(timer);
            }
            // Not a key this module wrote: drop it rather than block every later timer.
            None => store.delete(&key)?,
        }
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_time_and_round_trip() {
        let early = key(5, TimerKind::SettlementWindow, "b");
        let late = key(1_000, TimerKind::Orphan, "a");
        assert!(early < late);
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
