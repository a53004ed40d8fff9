//! What a processor declares about itself — the topics it reads with their
//! deserializers ([`Input`]), the state stores it owns ([`StoreSpec`]), the sinks it
//! forwards to with their serializers ([`Sink`]) — and the names a dead letter carries
//! ([`DeadLetterReason`], [`Stage`]).

use std::sync::Arc;

use crate::serde::{Deserializer, ErasedDeserializer, ErasedSerializer, Serializer};

/// The stage of the pipeline at which a record failed, written as the
/// `paystream.dlq.stage` header (Kafka Streams' deserialization, processing and
/// production exception handlers are the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Reading the record: size, framing, the schema, decoding.
    Decode,
    /// Checking the decoded values against the record's contract.
    Validate,
    /// A processor handling the record (or its punctuation).
    Process,
    /// Encoding or producing an output or changelog record of it.
    Produce,
    /// Writing it to an external system (a sink connector such as a database writer).
    Sink,
}

impl Stage {
    /// The snake_case name written in headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Process => "process",
            Stage::Produce => "produce",
            Stage::Sink => "sink",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was dead-lettered: a snake_case name (the `paystream.dlq.reason` header
/// and a bounded metric label) and the stage at which records usually get it. The
/// runtime names its own reasons here; an application adds its own with
/// [`DeadLetterReason::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeadLetterReason {
    name: &'static str,
    stage: Stage,
}

impl DeadLetterReason {
    /// Empty, truncated or not valid for its schema.
    pub const UNDECODABLE: DeadLetterReason = DeadLetterReason::new("undecodable", Stage::Decode);
    /// The schema id is unknown to the registry or not this topic's record.
    pub const UNKNOWN_SCHEMA: DeadLetterReason =
        DeadLetterReason::new("unknown_schema", Stage::Decode);
    /// The first byte is not the Confluent magic byte 0.
    pub const BAD_MAGIC_BYTE: DeadLetterReason =
        DeadLetterReason::new("bad_magic_byte", Stage::Decode);
    /// The record is larger than the runtime carries through its state stores and
    /// changelogs, or the broker refused an output of it as too large.
    pub const RECORD_TOO_LARGE: DeadLetterReason =
        DeadLetterReason::new("record_too_large", Stage::Process);
    /// A processor, a serializer or the broker failed on this record's data (Kafka
    /// Streams' processing exception handler, KIP-1033).
    pub const PROCESSING_FAILED: DeadLetterReason =
        DeadLetterReason::new("processing_failed", Stage::Process);

    /// A reason named `name` (snake_case, bounded: a metric label), given at `stage` when
    /// a processor dead-letters a record with it.
    pub const fn new(name: &'static str, stage: Stage) -> Self {
        DeadLetterReason { name, stage }
    }

    /// The snake_case name written in headers and metric labels.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// The stage at which records get this reason when a processor emits it (the runtime
    /// names the stage itself for what it dead-letters).
    pub fn default_stage(self) -> Stage {
        self.stage
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A topic by its logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicRef {
    /// A topic shared with other teams (ingress producers, downstream consumers):
    /// `<topics.prefix><name>`.
    External(&'static str),
    /// A topic this application owns: `<application_id>-<name>`, e.g. a repartition
    /// topic.
    Internal(&'static str),
}

/// A topic a processor reads, with the deserializer of its record values.
pub struct Input<T> {
    pub topic: TopicRef,
    pub deserializer: Arc<dyn ErasedDeserializer>,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T: Send + Sync + 'static> Input<T> {
    /// `topic`, whose values `deserializer` turns into the processor's input type.
    pub fn new<D: Deserializer<Value = T>>(topic: TopicRef, deserializer: D) -> Self {
        Input {
            topic,
            deserializer: Arc::new(deserializer),
            _value: std::marker::PhantomData,
        }
    }
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

    /// The changelog topic of the store, before the application id prefix.
    pub fn changelog(&self) -> String {
        format!("{}-changelog", self.name)
    }
}

/// How a sink turns forwarded values into record values.
#[derive(Clone)]
pub enum SinkFormat {
    /// With a serializer.
    Serialized(Arc<dyn ErasedSerializer>),
    /// The input record being processed, byte for byte, with its origin in headers (a
    /// repartition: the record is re-keyed, not re-encoded). The forwarded value is not
    /// written; only a record being processed can be forwarded so, not a punctuation.
    PassThrough,
}

/// A named place a processor forwards records to: a topic and its format.
#[derive(Clone)]
pub struct Sink {
    /// The name the processor forwards to ([`Forward::To`]).
    pub name: &'static str,
    pub topic: TopicRef,
    pub format: SinkFormat,
}

impl Sink {
    /// Sink `name` writing to `topic` with `serializer`.
    pub fn new<S: Serializer>(name: &'static str, topic: TopicRef, serializer: S) -> Self {
        Sink {
            name,
            topic,
            format: SinkFormat::Serialized(Arc::new(serializer)),
        }
    }

    /// Sink `name` writing the input records to `topic` unchanged, re-keyed (see
    /// [`SinkFormat::PassThrough`]).
    pub fn pass_through(name: &'static str, topic: TopicRef) -> Self {
        Sink {
            name,
            topic,
            format: SinkFormat::PassThrough,
        }
    }
}
