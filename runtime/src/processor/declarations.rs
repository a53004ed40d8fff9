//! What a processor declares about itself: the topics it reads with their
//! deserializers ([`Input`]), the state stores it owns ([`StoreSpec`]) and the sinks it
//! forwards to with their serializers ([`Sink`]).

use std::sync::Arc;

pub use paystream_common::topics::TopicRef;

use crate::serde::{Deserializer, ErasedDeserializer, ErasedSerializer, Serializer};

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
    /// The name the processor forwards to ([`Forward::To`](super::Forward::To)).
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
