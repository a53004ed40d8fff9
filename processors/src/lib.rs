//! paystream's payments application: the payment logic as processors on the stream
//! runtime (`paystream-runtime`), testable without Kafka.
//!
//! A processor is a small struct with one required method, `process`; the runtime's
//! [`ProcessorContext`] hands it state stores, stream time and a forwarder for its
//! [`Output`]s, which become records of the sinks it declares. A test driver
//! (`driver.rs`, test builds only) runs processors in memory. [`topology::payments_topology`] registers them.
//!
//! - [`dedupe::DedupeProcessor`]: drops retried `payment_initiated` records by
//!   `(merchant_id, idempotency_key)`, dead-letters conflicting reuse, re-keys by payment id.
//! - [`lifecycle::LifecycleProcessor`]: the payment state machine, its balanced
//!   journal entries, stream-time timers ([`timers`]) and reconciliation exceptions
//!   ([`reconciliation`]).

pub mod config;
pub mod dead_letter;
pub mod dedupe;
pub mod defaults;
#[cfg(test)]
pub(crate) mod driver;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod names;
pub mod reconciliation;
pub mod records;
pub mod serdes;
pub mod timers;
pub mod topology;

use paystream_runtime::Forward;
use paystream_schemas::{
    JournalEntry, PaymentInitiated, PaymentStatusChanged, ReconciliationException,
};

pub use config::PaymentsConfig;
pub use dead_letter::DeadLetterReason;
pub use paystream_runtime::processor::{
    Origin, Processor, ProcessorContext, ProcessorError, Record, Result, Sink, Stage, StoreSpec,
};
pub use serdes::FromInputEvent;

use crate::names::sinks;

/// What the payment processors emit; each variant is forwarded to one sink
/// ([`names::sinks`]), keyed by payment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// To the internal repartition topic `<app>-payments-by-id`, keyed by payment id.
    Repartition(PaymentInitiated),
    /// To `payment_status`, keyed by payment id.
    PaymentStatus(PaymentStatusChanged),
    /// To `ledger_entries`, keyed by payment id.
    JournalEntry(JournalEntry),
    /// To `reconciliation_exceptions`, keyed by payment id.
    ReconciliationException(ReconciliationException),
    /// The record at `origin` goes to `<origin topic>.dlq` with this reason.
    DeadLetter {
        origin: Origin,
        reason: DeadLetterReason,
        message: String,
    },
    /// The record was a duplicate and was dropped (counted, not forwarded).
    DuplicateDropped,
}

impl From<Output> for Forward {
    fn from(output: Output) -> Forward {
        fn to<T: Send + Sync + 'static>(sink: &'static str, key: Vec<u8>, value: T) -> Forward {
            Forward::To {
                sink,
                key,
                value: Box::new(value),
            }
        }
        let key = |payment_id: &str| payment_id.as_bytes().to_vec();
        match output {
            Output::Repartition(e) => to(sinks::REPARTITION, key(&e.payment_id), e),
            Output::PaymentStatus(s) => to(sinks::PAYMENT_STATUS, key(&s.payment_id), s),
            Output::JournalEntry(j) => to(sinks::JOURNAL_ENTRY, key(&j.payment_id), j),
            Output::ReconciliationException(x) => {
                to(sinks::RECONCILIATION_EXCEPTION, key(&x.payment_id), x)
            }
            Output::DeadLetter {
                origin,
                reason,
                message,
            } => Forward::DeadLetter {
                origin,
                reason: reason.into(),
                message,
            },
            Output::DuplicateDropped => Forward::DuplicateDropped,
        }
    }
}

impl Output {
    /// The output a [`Forward`] of the payment processors was made from (the test
    /// driver's view of what they forwarded); `None` for one they never make.
    pub fn from_forward(forward: Forward) -> Option<Output> {
        match forward {
            Forward::To { sink, value, .. } => match sink {
                sinks::REPARTITION => value
                    .downcast::<PaymentInitiated>()
                    .ok()
                    .map(|v| Output::Repartition(*v)),
                sinks::PAYMENT_STATUS => value
                    .downcast::<PaymentStatusChanged>()
                    .ok()
                    .map(|v| Output::PaymentStatus(*v)),
                sinks::JOURNAL_ENTRY => value
                    .downcast::<JournalEntry>()
                    .ok()
                    .map(|v| Output::JournalEntry(*v)),
                sinks::RECONCILIATION_EXCEPTION => value
                    .downcast::<ReconciliationException>()
                    .ok()
                    .map(|v| Output::ReconciliationException(*v)),
                _ => None,
            },
            Forward::DeadLetter {
                origin,
                reason,
                message,
            } => DeadLetterReason::from_name(reason.as_str()).map(|reason| Output::DeadLetter {
                origin,
                reason,
                message,
            }),
            Forward::DuplicateDropped => Some(Output::DuplicateDropped),
        }
    }
}

/// The input streams of a lifecycle task (one partition of each, co-partitioned), each
/// with its clock (partition time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Deduplicated payments, from the repartition topic.
    Payments = 0,
    /// `auth_success` and `auth_failure`.
    Auths = 1,
    /// `settlement`.
    Settlements = 2,
    /// `capture`.
    Captures = 3,
    /// `void`.
    Voids = 4,
    /// `refund`.
    Refunds = 5,
    /// `chargeback`.
    Chargebacks = 6,
}

impl Stream {
    /// Every stream.
    pub const ALL: [Stream; 7] = [
        Stream::Payments,
        Stream::Auths,
        Stream::Settlements,
        Stream::Captures,
        Stream::Voids,
        Stream::Refunds,
        Stream::Chargebacks,
    ];

    /// The stream an event arrives on.
    pub fn of(event: &paystream_schemas::InputEvent) -> Stream {
        use paystream_schemas::InputEvent;
        match event {
            InputEvent::PaymentInitiated(_) => Stream::Payments,
            InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_) => Stream::Auths,
            InputEvent::SettlementReported(_) => Stream::Settlements,
            InputEvent::PaymentCaptured(_) => Stream::Captures,
            InputEvent::AuthorizationVoided(_) => Stream::Voids,
            InputEvent::RefundIssued(_) => Stream::Refunds,
            InputEvent::ChargebackReported(_) => Stream::Chargebacks,
        }
    }

    /// The lifecycle's input whose partition time is this stream's clock (its position
    /// in the lifecycle's inputs, [`lifecycle::inputs`]); auths run on `auth_success`'s.
    pub fn input(self) -> usize {
        match self {
            Stream::Payments => lifecycle::inputs::PAYMENTS_BY_ID,
            Stream::Auths => lifecycle::inputs::AUTH_SUCCESS,
            Stream::Settlements => lifecycle::inputs::SETTLEMENT,
            Stream::Captures => lifecycle::inputs::CAPTURE,
            Stream::Voids => lifecycle::inputs::VOID,
            Stream::Refunds => lifecycle::inputs::REFUND,
            Stream::Chargebacks => lifecycle::inputs::CHARGEBACK,
        }
    }
}

/// Names of the state stores, used for RocksDB directories and changelog topics
/// (`<app>-<store>-changelog`).
pub mod stores {
    /// `merchant_id:idempotency_key` → first request's fingerprint (dedupe).
    pub const IDEMPOTENCY: &str = "idempotency";
    /// `payment_id` → everything the lifecycle keeps about the payment: its state, the
    /// ids of the events applied to it, the events waiting for it and its timers (one
    /// value, see `lifecycle/stored.rs`).
    pub const PAYMENTS: &str = "payments";
    /// Earlier releases: `event_id` → seen marker for auth and settlement events.
    /// Read after an upgrade until its last key expires; never written.
    pub const SEEN_EVENTS: &str = "seen_events";
    /// Earlier releases: `payment_id` → events waiting for their payment. Read after an
    /// upgrade, each key deleted once its events moved into the payment's value.
    pub const PENDING: &str = "pending";
    /// Earlier releases: one key per stream-time timer (see [`crate::timers`]). Read
    /// after an upgrade, each key deleted once it fired.
    pub const TIMERS: &str = "timers";
    /// `payment_id:kind` → marker of a reconciliation exception already raised
    /// (lifecycle, see [`crate::reconciliation`]).
    pub const RECONCILIATION: &str = "reconciliation";
}
