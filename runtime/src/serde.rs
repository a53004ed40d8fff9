//! Serdes (Kafka Streams' `Serde`): how a topic's record values become a processor's
//! input type and how forwarded values become record values (docs/architecture.md,
//! "Serdes"). The topology says which serde each topic has; the runtime calls them
//! without knowing their types.
//!
//! [`AvroSerde`] is the one the runtime offers: Avro in the Confluent wire format, with
//! schemas in a Confluent-compatible Schema Registry (`paystream-avro`). An application
//! wraps it to validate what it decodes.
//!
//! A serde fails in one of two ways ([`SerdeError`]): by the record's data — the record
//! is dead-lettered with the reason and stage given — or by the environment (the
//! registry unreachable) — retried with back-off, then the instance stops.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use paystream_avro::{AvroRecord, Codec, CodecError, DecodeError, DecodeErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use paystream_common::{DeadLetterReason, Stage};

/// A record value whose type only its processor and its serde know.
pub type Value = Box<dyn Any + Send + Sync>;

/// What a serde may use besides the record: the Schema Registry's codec.
#[derive(Debug, Clone)]
pub struct SerdeContext {
    pub registry: Arc<Codec>,
}

/// A record as a deserializer sees it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The topic whose format the value is in: for a record of a repartition topic, the
    /// input it came from when its reader reads that input too.
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record's broker timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Why a value could not be (de)serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerdeError {
    /// The record's data: it is dead-lettered with `reason` at `stage`.
    #[error("{message}")]
    Record {
        reason: DeadLetterReason,
        stage: Stage,
        message: String,
    },
    /// The environment (the Schema Registry) failed; `retriable` when the same call may
    /// succeed later.
    #[error("{message}")]
    Environment { message: String, retriable: bool },
}

impl SerdeError {
    /// True when the same call may succeed later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            SerdeError::Environment {
                retriable: true,
                ..
            }
        )
    }
}

impl From<DecodeError> for SerdeError {
    fn from(e: DecodeError) -> Self {
        let reason = match e.kind {
            DecodeErrorKind::Undecodable => DeadLetterReason::UNDECODABLE,
            DecodeErrorKind::BadMagicByte => DeadLetterReason::BAD_MAGIC_BYTE,
            DecodeErrorKind::UnknownSchema => DeadLetterReason::UNKNOWN_SCHEMA,
            DecodeErrorKind::RegistryUnavailable => {
                return SerdeError::Environment {
                    message: e.message,
                    retriable: true,
                };
            }
        };
        SerdeError::Record {
            reason,
            stage: Stage::Decode,
            message: e.message,
        }
    }
}

impl From<CodecError> for SerdeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Encode { .. } => SerdeError::Record {
                reason: DeadLetterReason::PROCESSING_FAILED,
                stage: Stage::Produce,
                message: e.to_string(),
            },
            other => SerdeError::Environment {
                retriable: other.is_retriable(),
                message: other.to_string(),
            },
        }
    }
}

/// Turns a topic's record values into values of one type.
pub trait Deserializer: Send + Sync + 'static {
    /// What it makes.
    type Value: Send + Sync + 'static;

    /// The name of what it makes, for `paystream topology`.
    fn type_name(&self) -> &'static str;

    /// Decodes `record`'s value.
    ///
    /// # Errors
    /// [`SerdeError::Record`] when the record's data does not decode or breaks the
    /// type's contract; [`SerdeError::Environment`] when the registry fails.
    fn deserialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> impl Future<Output = Result<Self::Value, SerdeError>> + Send + 'a;
}

/// Turns values of one type into record values of a topic.
pub trait Serializer: Send + Sync + 'static {
    /// What it takes.
    type Value: Send + Sync + 'static;

    /// Encodes `value` for `topic`.
    ///
    /// # Errors
    /// [`SerdeError::Record`] when the value does not encode (or breaks an invariant the
    /// serializer checks); [`SerdeError::Environment`] when the registry fails.
    fn serialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        value: &'a Self::Value,
    ) -> impl Future<Output = Result<Vec<u8>, SerdeError>> + Send + 'a;
}

/// A [`Deserializer`] as the runtime holds it, making a [`Value`]. Every deserializer is
/// one.
pub trait ErasedDeserializer: Send + Sync {
    /// See [`Deserializer::type_name`].
    fn type_name(&self) -> &'static str;
    /// See [`Deserializer::deserialize`].
    fn deserialize_value<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> BoxFuture<'a, Result<Value, SerdeError>>;
}

impl<D: Deserializer> ErasedDeserializer for D {
    fn type_name(&self) -> &'static str {
        Deserializer::type_name(self)
    }

    fn deserialize_value<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> BoxFuture<'a, Result<Value, SerdeError>> {
        Box::pin(async move {
            self.deserialize(ctx, record)
                .await
                .map(|value| Box::new(value) as Value)
        })
    }
}

/// A [`Serializer`] as the runtime holds it, taking a value of any type.
pub trait ErasedSerializer: Send + Sync {
    /// See [`Serializer::serialize`]; a value of another type than the serializer takes
    /// fails the record (`processing_failed` at `produce`).
    fn serialize_value<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        value: &'a (dyn Any + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<u8>, SerdeError>>;
}

impl<S: Serializer> ErasedSerializer for S {
    fn serialize_value<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        value: &'a (dyn Any + Send + Sync),
    ) -> BoxFuture<'a, Result<Vec<u8>, SerdeError>> {
        match value.downcast_ref::<S::Value>() {
            Some(value) => Box::pin(self.serialize(ctx, topic, value)),
            None => Box::pin(std::future::ready(Err(SerdeError::Record {
                reason: DeadLetterReason::PROCESSING_FAILED,
                stage: Stage::Produce,
                message: format!(
                    "the serializer of {topic} takes {}, it was handed another type",
                    std::any::type_name::<S::Value>()
                ),
            }))),
        }
    }
}

/// Avro in the Confluent wire format for `T`, its schema registered under the topic's
/// `<topic>-value` subject (Confluent's `TopicNameStrategy`) on first use.
pub struct AvroSerde<T>(PhantomData<fn() -> T>);

impl<T> AvroSerde<T> {
    /// The serde of `T`.
    pub const fn new() -> Self {
        AvroSerde(PhantomData)
    }
}

impl<T> Default for AvroSerde<T> {
    fn default() -> Self {
        AvroSerde::new()
    }
}

impl<T> AvroSerde<T>
where
    T: AvroRecord + DeserializeOwned + Send + Sync + 'static,
{
    /// Decodes a Confluent-framed value into `T`.
    ///
    /// # Errors
    /// As [`Deserializer::deserialize`].
    pub async fn decode(ctx: &SerdeContext, value: Option<&[u8]>) -> Result<T, SerdeError> {
        Ok(ctx.registry.decode::<T>(value).await?)
    }
}

impl<T> Deserializer for AvroSerde<T>
where
    T: AvroRecord + DeserializeOwned + Send + Sync + 'static,
{
    type Value = T;

    fn type_name(&self) -> &'static str {
        T::FULL_NAME
            .rsplit_once('.')
            .map_or(T::FULL_NAME, |(_, name)| name)
    }

    fn deserialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> impl Future<Output = Result<T, SerdeError>> + Send + 'a {
        Self::decode(ctx, record.value)
    }
}

impl<T> Serializer for AvroSerde<T>
where
    T: AvroRecord + Serialize + Send + Sync + 'static,
{
    type Value = T;

    async fn serialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        value: &'a T,
    ) -> Result<Vec<u8>, SerdeError> {
        Ok(ctx.registry.encode(topic, value).await?)
    }
}
