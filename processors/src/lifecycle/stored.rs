//! The value of the `payments` store: everything the lifecycle keeps about one payment,
//! in one value under its payment id (docs/architecture.md, "State layout") —
//! its state once it exists, the ids of the events applied to it, the events waiting
//! for it and its due timers ([`StoredPayment`]) — and [`Loaded`], the one way the
//! lifecycle reads and writes it. Its byte format is in [`mod@format`].
//!
//! One value per payment means one changelog record per payment and commit, however
//! many of those parts an event changed, and one read per event. Earlier releases kept
//! the parts in four stores (`payments` as JSON, `seen_events`, `pending`, `timers`),
//! each written, and logged, on its own.
//!
//! The store migrates the formats of earlier releases itself, so the lifecycle sees
//! [`StoredPayment`] only:
//! - a JSON value is read as the state alone ([`decode`], on read) and rewritten in
//!   version 1 by the payment's next change;
//! - the `pending` and `timers` stores are moved into the values by `upgrade.rs`, at
//!   task start and at punctuation, never on an event;
//! - `seen_events` stays, read-only, for the one thing a JSON state does not say: the
//!   id of an auth or settlement it applied ([`Loaded::has_seen`]).

pub mod format;

pub use format::{FORMAT_LEGACY_JSON, FORMAT_VERSION_1, decode, decode_timers, encode};

use paystream_schemas::{InputEvent, PaymentStatus};

use super::model::PaymentState;
use super::pending::format::PendingEvent;
use crate::timers::{DueTimer, TimerIndex, TimerKind};
use crate::{ProcessorContext, ProcessorError, Result, stores};

/// Keys read per page when the timer index is rebuilt at task start.
const INDEX_SCAN_PAGE_KEYS: usize = 1_024;

/// Everything the lifecycle keeps about one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredPayment {
    /// The payment, once its `PaymentInitiated` was applied.
    pub state: Option<PaymentState>,
    /// Events waiting for the state they need, in arrival order.
    pub pending: Vec<PendingEvent>,
    /// The payment's timers, in the order they were set.
    pub timers: Vec<DueTimer>,
}

impl StoredPayment {
    /// True when there is nothing to keep: no state, no waiting event, no timer.
    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.pending.is_empty() && self.timers.is_empty()
    }

    /// True when an event with `event_id` (an auth, settlement, capture, void, refund or
    /// chargeback) was applied to the payment or waits for it.
    pub fn has_seen(&self, event_id: &str) -> bool {
        let applied = self.state.as_ref().is_some_and(|state| {
            state.auth_event_id.as_deref() == Some(event_id)
                || state.settlement_event_id.as_deref() == Some(event_id)
                || state
                    .money
                    .as_ref()
                    .is_some_and(|money| money.applied.iter().any(|a| a.event_id == event_id))
        });
        applied
            || self
                .pending
                .iter()
                .any(|waiting| waiting.event.event_id() == event_id)
    }

    /// True when the state says an event of `event`'s kind was applied but not which:
    /// an auth past INITIATED, or a settlement at SETTLED, without its event id. Only a
    /// state first written as JSON by an earlier release can be so; this release records
    /// the id with every transition.
    pub fn applied_id_unknown(&self, event: &InputEvent) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        match event {
            InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_) => {
                state.status != PaymentStatus::Initiated && state.auth_event_id.is_none()
            }
            InputEvent::SettlementReported(_) => {
                state.status == PaymentStatus::Settled && state.settlement_event_id.is_none()
            }
            // Captures, voids, refunds and chargebacks came after the JSON releases.
            InputEvent::PaymentInitiated(_)
            | InputEvent::PaymentCaptured(_)
            | InputEvent::AuthorizationVoided(_)
            | InputEvent::RefundIssued(_)
            | InputEvent::ChargebackReported(_) => false,
        }
    }

    /// True while the payment's money movements wait for the reorder wait (a
    /// `MovementReorder` timer is set).
    pub fn in_reorder_wait(&self) -> bool {
        self.timers
            .iter()
            .any(|timer| timer.kind == TimerKind::MovementReorder)
    }

    /// Removes every timer of `kind`.
    pub fn cancel_timers(&mut self, kind: TimerKind) {
        self.timers.retain(|timer| timer.kind != kind);
    }
}

/// One payment's value, loaded to handle one event or timer, with what writing it back
/// needs to know.
#[derive(Debug)]
pub struct Loaded {
    pub payment_id: String,
    pub payment: StoredPayment,
    /// The timers as loaded: [`Loaded::save`] tells the index what changed.
    timers_at_load: Vec<DueTimer>,
    /// The store held a value for the payment.
    stored: bool,
}

impl Loaded {
    /// Loads `payment_id`'s value (empty when the store has none).
    ///
    /// # Errors
    /// [`ProcessorError::CorruptState`] as [`decode`]; store errors.
    pub fn load(ctx: &mut dyn ProcessorContext, payment_id: &str) -> Result<Loaded> {
        let bytes = ctx.store(stores::PAYMENTS)?.get(payment_id.as_bytes())?;
        let stored = bytes.is_some();
        let payment = match bytes {
            None => StoredPayment::default(),
            Some(bytes) => decode(payment_id, &bytes)?,
        };
        Ok(Loaded {
            payment_id: payment_id.to_string(),
            timers_at_load: payment.timers.clone(),
            payment,
            stored,
        })
    }

    /// The payment's status; `None` before its `PaymentInitiated` was applied.
    pub fn status(&self) -> Option<PaymentStatus> {
        self.payment.state.as_ref().map(|state| state.status)
    }

    /// The payment's state. Panics when it has none: call only where it was checked.
    pub fn state(&self) -> &PaymentState {
        self.payment
            .state
            .as_ref()
            .expect("called for a payment that exists")
    }

    /// True when the auth or settlement `event` was applied to the payment or waits for
    /// it ([`StoredPayment::has_seen`]).
    ///
    /// A state the JSON of an earlier release wrote does not carry the ids of the events
    /// it applied; that release kept them in the `seen_events` store for the idempotency
    /// retention (72 h of stream time). For such a state, and only for an event of the
    /// kind whose id it lacks ([`StoredPayment::applied_id_unknown`]) — an event that
    /// would otherwise be dead-lettered as `illegal_transition` — the answer comes from
    /// that store, so a retry of an event applied before the upgrade is still dropped
    /// as a duplicate. Any other event reads nothing beyond the loaded value.
    ///
    /// # Errors
    /// Store errors.
    pub fn has_seen(&self, ctx: &mut dyn ProcessorContext, event: &InputEvent) -> Result<bool> {
        let event_id = event.event_id();
        if self.payment.has_seen(event_id) {
            return Ok(true);
        }
        if !self.payment.applied_id_unknown(event) {
            return Ok(false);
        }
        Ok(ctx
            .store(stores::SEEN_EVENTS)?
            .get(event_id.as_bytes())?
            .is_some())
    }

    /// Writes the value back in the current format (deletes its key when nothing is left
    /// to keep) and tells `index` which timers were set or cancelled.
    ///
    /// # Errors
    /// Store errors.
    pub fn save(self, ctx: &mut dyn ProcessorContext, index: &mut TimerIndex) -> Result<()> {
        let key = self.payment_id.as_bytes();
        if !self.payment.is_empty() {
            ctx.store(stores::PAYMENTS)?
                .put(key, &encode(&self.payment))?;
        } else if self.stored {
            ctx.store(stores::PAYMENTS)?.delete(key)?;
        }
        for timer in &self.timers_at_load {
            if !self.payment.timers.contains(timer) {
                index.remove(&self.payment_id, *timer);
            }
        }
        for timer in &self.payment.timers {
            if !self.timers_at_load.contains(timer) {
                index.insert(&self.payment_id, *timer);
            }
        }
        Ok(())
    }
}

/// The rebuild of the timer index from the payments' values after a task starts, a few
/// pages per punctuation instead of all at once in `init`: a task that moves (a
/// failover, a deploy) runs as soon as its stores are there, not after a scan of all its
/// payments (about 0.6 s for 167k of them; docs/benchmarks.md, "Failover").
///
/// Until the scan is done, a due timer of a payment it has not reached yet fires a
/// little later, once it does. The index stays right meanwhile: a payment an event
/// changes before the scan reaches it tells the index what it set and cancelled
/// ([`Loaded::save`]), and the scan adds what its value holds then. An entry that no
/// longer matches the value is skipped when it comes due. A page read inside a
/// transaction that aborts needs no second read: a timer that transaction cancelled on a
/// payment of the page comes back in the value, and the index puts back every timer an
/// aborted transaction cancelled, held or not ([`TimerIndex::remove`]). (The first
/// version started the scan over at every abort; a dead letter aborts a transaction, and
/// under traffic with one every second a scan of 167k payments never finished.)
#[derive(Debug, Clone, Default)]
pub struct IndexScan {
    /// Where the next page starts; `None` once the scan is done.
    from: Option<Vec<u8>>,
}

impl IndexScan {
    /// A scan from the first key.
    pub fn start() -> Self {
        IndexScan {
            from: Some(Vec::new()),
        }
    }

    /// True until every value has been read.
    pub fn in_progress(&self) -> bool {
        self.from.is_some()
    }

    /// Adds the timers of up to `pages` pages of values to `index`.
    ///
    /// # Errors
    /// [`ProcessorError::CorruptState`] for a key that is not UTF-8 or a value as
    /// [`decode_timers`]; store errors.
    pub fn scan(
        &mut self,
        ctx: &mut dyn ProcessorContext,
        index: &mut TimerIndex,
        pages: usize,
    ) -> Result<()> {
        for _ in 0..pages {
            let Some(from) = &self.from else {
                return Ok(());
            };
            let page = ctx
                .store(stores::PAYMENTS)?
                .range(from, INDEX_SCAN_PAGE_KEYS)?;
            for (key, value) in &page {
                let payment_id = utf8_key(stores::PAYMENTS, key)?;
                for timer in decode_timers(payment_id, value)? {
                    index.insert(payment_id, timer);
                }
            }
            self.from = match page.last() {
                Some((last, _)) if page.len() == INDEX_SCAN_PAGE_KEYS => {
                    Some(paystream_state::key_after(last))
                }
                _ => None,
            };
        }
        Ok(())
    }
}

/// `key` of `store` as the payment id it is.
///
/// # Errors
/// [`ProcessorError::CorruptState`] when it is not UTF-8.
pub(super) fn utf8_key<'k>(store: &'static str, key: &'k [u8]) -> Result<&'k str> {
    std::str::from_utf8(key).map_err(|_| ProcessorError::CorruptState {
        store,
        key: String::from_utf8_lossy(key).into_owned(),
        message: "key is not UTF-8".to_string(),
    })
}
