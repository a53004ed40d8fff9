//! What a processor declares about itself: the topics it reads (and the event each
//! carries), the state stores it owns, and where each kind of its outputs goes
//! (docs/architecture.md, "Topology").
//!
//! These declarations are the only description of the topology. The runtime derives
//! from them the routing of records to tasks, the opening and restoring of stores, topic
//! creation, the co-partitioning checks and `paystream topology`; adding a processor
//! with a store touches the processor and its one registration, nothing else.
//!
//! Topics are named logically ([`TopicRef`]): the runtime resolves them with the
//! configured `topics.prefix` and `application_id`, as Kafka Streams names internal
//! topics `<application.id>-<name>`.

use paystream_schemas::{
    AuthFailed, AuthSucceeded, InputEvent, PaymentInitiated, SettlementReported,
};

use crate::Output;

/// A topic by its logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicRef {
    /// A topic shared with other teams (ingress producers, downstream consumers):
    /// `<topics.prefix><name>`, e.g. `payment_initiated`.
    External(&'static str),
    /// A topic this application owns: `<application_id>-<name>`, e.g. the repartition
    /// topic `payments-by-id`.
    Internal(&'static str),
}

/// The Avro record a source topic carries (Confluent wire format; the subject is
/// `<topic>-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    PaymentInitiated,
    AuthSucceeded,
    AuthFailed,
    SettlementReported,
}

impl EventType {
    /// The type of a decoded event.
    pub fn of(event: &InputEvent) -> EventType {
        match event {
            InputEvent::PaymentInitiated(_) => EventType::PaymentInitiated,
            InputEvent::AuthSucceeded(_) => EventType::AuthSucceeded,
            InputEvent::AuthFailed(_) => EventType::AuthFailed,
            InputEvent::SettlementReported(_) => EventType::SettlementReported,
        }
    }

    /// The event's Avro record name, for descriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentInitiated => "PaymentInitiated",
            EventType::AuthSucceeded => "AuthSucceeded",
            EventType::AuthFailed => "AuthFailed",
            EventType::SettlementReported => "SettlementReported",
        }
    }
}

/// A topic a processor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    pub topic: TopicRef,
    /// What its records decode to.
    pub event: EventType,
}

/// A state store a processor owns. Each task of the processor has its own instance
/// (RocksDB under the task's directory), made durable by its changelog topic
/// `<application_id>-<name>-changelog` (compacted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSpec {
    /// The store's name: its directory and its changelog's middle part.
    pub name: &'static str,
    /// Time to live of its keys, milliseconds of stream time (`None`: kept until
    /// deleted). Expired keys are deleted in the open transaction at commit.
    pub ttl_ms: Option<i64>,
}

impl StoreSpec {
    /// A store whose keys are kept until deleted.
    pub const fn kept(name: &'static str) -> Self {
        StoreSpec { name, ttl_ms: None }
    }

    /// A store whose keys expire `ttl_ms` milliseconds of stream time after their write.
    pub const fn expiring(name: &'static str, ttl_ms: i64) -> Self {
        StoreSpec {
            name,
            ttl_ms: Some(ttl_ms),
        }
    }

    /// The changelog topic of the store.
    pub fn changelog(&self) -> String {
        format!("{}-changelog", self.name)
    }
}

/// The kinds of [`Output`] that go to a topic (dead letters go to the dead-letter queue
/// of the record's origin, duplicates nowhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKind {
    Repartition,
    PaymentStatus,
    JournalEntry,
    ReconciliationException,
}

impl OutputKind {
    /// The kind of `output`, `None` for dead letters and dropped duplicates.
    pub fn of(output: &Output) -> Option<OutputKind> {
        match output {
            Output::Repartition(_) => Some(OutputKind::Repartition),
            Output::PaymentStatus(_) => Some(OutputKind::PaymentStatus),
            Output::JournalEntry(_) => Some(OutputKind::JournalEntry),
            Output::ReconciliationException(_) => Some(OutputKind::ReconciliationException),
            Output::DeadLetter { .. } | Output::DuplicateDropped => None,
        }
    }
}

/// Where a processor's outputs of one kind go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    pub topic: TopicRef,
}

/// Record types a processor can take, converted from the decoded [`InputEvent`].
pub trait FromInputEvent: Sized {
    /// The record, or `None` when the event is of another type.
    fn from_input_event(event: InputEvent) -> Option<Self>;
}

impl FromInputEvent for InputEvent {
    fn from_input_event(event: InputEvent) -> Option<Self> {
        Some(event)
    }
}

macro_rules! from_input_event {
    ($($variant:ident),*) => {$(
        impl FromInputEvent for $variant {
            fn from_input_event(event: InputEvent) -> Option<Self> {
                match event {
                    InputEvent::$variant(value) => Some(value),
                    _ => None,
                }
            }
        }
    )*};
}

from_input_event!(
    PaymentInitiated,
    AuthSucceeded,
    AuthFailed,
    SettlementReported
);
