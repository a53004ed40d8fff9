//! paystream processors: the payment logic as plain code over state stores, testable
//! without Kafka.
//!
//! A processor is a small struct with one required method, [`Processor::process`]; the
//! [`ProcessorContext`] hands it state stores, stream time and a forwarder for its
//! [`Output`]s. The runtime (`paystream-runtime`) turns outputs into Kafka records inside
//! the open transaction; [`driver::TestDriver`] runs processors in memory for tests.
//!
//! - [`dedupe::DedupeProcessor`]: drops retried `payment_initiated` records by
//!   `(merchant_id, idempotency_key)`, dead-letters conflicting reuse, re-keys by payment id.
//! - [`lifecycle::LifecycleProcessor`]: the payment state machine, its balanced
//!   journal entries, stream-time timers ([`timers`]) and reconciliation exceptions
//!   ([`reconciliation`]).

pub mod dead_letter;
pub mod dedupe;
pub mod driver;
pub mod ledger;
pub mod lifecycle;
pub mod reconciliation;
pub mod timers;
pub mod topology;

use paystream_schemas::{
    InputEvent, JournalEntry, PaymentInitiated, PaymentStatusChanged, ReconciliationException,
};
use paystream_state::{KeyValueStore, StoreError};
use serde::{Deserialize, Serialize};

pub use dead_letter::{DeadLetterReason, Stage};
pub use topology::{EventType, FromInputEvent, Input, OutputKind, OutputSpec, StoreSpec, TopicRef};

/// Errors that stop a task (never bad input: bad input is dead-lettered).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value in a state store does not decode: the store is corrupt and must be restored.
    #[error("state store {store}: corrupt value for key {key}: {message}")]
    CorruptState {
        store: &'static str,
        key: String,
        message: String,
    },
    /// The processor asked for a store the task does not have (a topology bug).
    #[error("processor asked for unknown state store {0}")]
    UnknownStore(String),
    /// The processor was handed an event it does not take: one of its declared inputs
    /// carries another event type (a topology bug).
    #[error("processor {processor} does not take {event} events; check its inputs()")]
    UnexpectedInput {
        processor: &'static str,
        event: &'static str,
    },
}

impl ProcessorError {
    /// Processor errors are not retried in place; the task is closed and restored.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// `Result` with [`ProcessorError`].
pub type Result<T> = std::result::Result<T, ProcessorError>;

/// Where a record came from, with its original bytes: what a dead letter carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A decoded record handed to a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    pub value: T,
    pub origin: Origin,
}

/// What a processor emits; the runtime maps each variant to a sink topic.
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

/// What a processor can reach while it runs.
pub trait ProcessorContext {
    /// The task's state store `name`.
    ///
    /// # Errors
    /// [`ProcessorError::UnknownStore`] when the task has no such store.
    fn store(&mut self, name: &str) -> Result<&mut dyn KeyValueStore>;

    /// Emits an output; it is written in the open transaction.
    fn forward(&mut self, output: Output);

    /// Stream time of the task: the largest record timestamp seen, milliseconds since the
    /// Unix epoch.
    fn stream_time_ms(&self) -> i64;

    /// Partition time of one of the task's input streams: the largest record timestamp
    /// seen on it, milliseconds since the Unix epoch (`i64::MIN` before its first record).
    /// Unlike stream time it does not depend on how the streams' records interleave, so
    /// timers on it fire at the same point of their stream in every replay.
    fn partition_time_ms(&self, stream: Stream) -> i64;
}

/// The input streams of a lifecycle task (one partition of each, co-partitioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Deduplicated payments, from the repartition topic.
    Payments = 0,
    /// `auth_success` and `auth_failure`.
    Auths = 1,
    /// `settlement`.
    Settlements = 2,
}

impl Stream {
    /// Every stream.
    pub const ALL: [Stream; 3] = [Stream::Payments, Stream::Auths, Stream::Settlements];

    /// The stream an event arrives on.
    pub fn of(event: &paystream_schemas::InputEvent) -> Stream {
        use paystream_schemas::InputEvent;
        match event {
            InputEvent::PaymentInitiated(_) => Stream::Payments,
            InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_) => Stream::Auths,
            InputEvent::SettlementReported(_) => Stream::Settlements,
        }
    }
}

/// A stream processor: it declares its place in the topology ([`Self::name`],
/// [`Self::inputs`], [`Self::stores`], [`Self::outputs`]) and handles records in
/// [`Self::process`]; `init`, `punctuate`, `committed`, `aborted` and `close` have no-op
/// defaults. The runtime
/// creates one instance per task.
pub trait Processor {
    /// The decoded record type the processor takes.
    type Input: FromInputEvent;

    /// The processor's name in the topology, e.g. `dedupe`.
    fn name(&self) -> &'static str;

    /// The topics it reads. One task per partition reads the same partition of each, so
    /// when there are several they must be co-partitioned (same partition count, keyed
    /// alike); the runtime checks this at start-up.
    fn inputs(&self) -> Vec<Input>;

    /// The state stores it owns, each with its changelog.
    fn stores(&self) -> Vec<StoreSpec>;

    /// Where each kind of its [`Output`]s goes.
    fn outputs(&self) -> Vec<OutputSpec>;

    /// Called once when a task starts, after its stores are restored, before its first
    /// record.
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn init(&mut self, _ctx: &mut dyn ProcessorContext) -> Result<()> {
        Ok(())
    }

    /// Handles one record.
    ///
    /// # Errors
    /// [`ProcessorError`] when a store fails; bad input is dead-lettered, never an error.
    fn process(
        &mut self,
        record: Record<Self::Input>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()>;

    /// Timer callback when stream time advances (punctuation).
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate(&mut self, _stream_time_ms: i64, _ctx: &mut dyn ProcessorContext) -> Result<()> {
        Ok(())
    }

    /// Called after the task's open transaction committed: its store writes are now in
    /// the stores. A processor that keeps something in memory beside its stores (an
    /// index, a cache) makes that part final here.
    fn committed(&mut self) {}

    /// Called after the task's open transaction aborted: its store writes were dropped.
    /// A processor that keeps something in memory beside its stores puts it back as it
    /// was at the last commit.
    fn aborted(&mut self) {}

    /// Called once when the task closes.
    fn close(&mut self) {}
}

/// A [`Processor`] as the runtime holds it: object-safe, taking the decoded
/// [`InputEvent`] of any of its inputs. Every `Processor + Send` is one.
pub trait TaskProcessor: Send {
    /// See [`Processor::name`].
    fn name(&self) -> &'static str;
    /// See [`Processor::inputs`].
    fn inputs(&self) -> Vec<Input>;
    /// See [`Processor::stores`].
    fn stores(&self) -> Vec<StoreSpec>;
    /// See [`Processor::outputs`].
    fn outputs(&self) -> Vec<OutputSpec>;
    /// See [`Processor::init`].
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()>;
    /// Converts `event` to the processor's input type and processes it.
    ///
    /// # Errors
    /// [`ProcessorError::UnexpectedInput`] when the event is not of that type; otherwise
    /// as [`Processor::process`].
    fn process_event(
        &mut self,
        event: InputEvent,
        origin: Origin,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()>;
    /// See [`Processor::punctuate`].
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate(&mut self, stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()>;
    /// See [`Processor::committed`].
    fn committed(&mut self);
    /// See [`Processor::aborted`].
    fn aborted(&mut self);
    /// See [`Processor::close`].
    fn close(&mut self);
}

impl<P: Processor + Send> TaskProcessor for P {
    fn name(&self) -> &'static str {
        Processor::name(self)
    }
    fn inputs(&self) -> Vec<Input> {
        Processor::inputs(self)
    }
    fn stores(&self) -> Vec<StoreSpec> {
        Processor::stores(self)
    }
    fn outputs(&self) -> Vec<OutputSpec> {
        Processor::outputs(self)
    }
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        Processor::init(self, ctx)
    }
    fn process_event(
        &mut self,
        event: InputEvent,
        origin: Origin,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        let event_name = EventType::of(&event).as_str();
        let value =
            P::Input::from_input_event(event).ok_or_else(|| ProcessorError::UnexpectedInput {
                processor: Processor::name(self),
                event: event_name,
            })?;
        Processor::process(self, Record { value, origin }, ctx)
    }
    fn punctuate(&mut self, stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()> {
        Processor::punctuate(self, stream_time_ms, ctx)
    }
    fn committed(&mut self) {
        Processor::committed(self)
    }
    fn aborted(&mut self) {
        Processor::aborted(self)
    }
    fn close(&mut self) {
        Processor::close(self)
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
