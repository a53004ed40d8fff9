//! The record collector (Kafka Streams' `RecordCollector`): turns what a processor
//! forwards into Kafka records — the value by its sink's serializer, whatever its type;
//! keys, headers, timestamps — and sends them in the open transaction of the [`crate::eos_producer::ExactlyOnceProducer`]
//! it shares. It keeps each send's delivery report with the input record it was made
//! for (so a refused output names its input, see [`crate::poison`]) and counts what the
//! transaction did, for metrics published only once it commits.
//!
//! A failure caused by the record's data (an output its serializer refuses, one that
//! librdkafka refuses at once) is not an error here: the
//! collector notes it ([`RecordCollector::fail`]) and the stream thread aborts the
//! transaction and poisons the record. Only failures of the environment are errors.

use std::time::Duration;

use backon::Retryable;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub use crate::counts::TransactionCounts;
use crate::dead_letter::dead_letter_record_at;
use crate::origin::origin_headers_of;
use crate::poison::{Poisoned, refused_for_data};
use crate::processor::{DeadLetterReason, Forward, Origin, SinkFormat, Stage};
use crate::serde::{ErasedSerializer, SerdeContext, SerdeError};
use crate::source::registry_retry_policy;
use crate::topology::SubTopology;
use crate::{Error, Result};

/// Most attempts to produce one record while librdkafka's queue is full.
const QUEUE_FULL_ATTEMPTS_MAX: u32 = 1_000;

/// Sends the outputs of the open transaction.
pub struct RecordCollector {
    producer: FutureProducer,
    serde: SerdeContext,
    application_id: String,
    /// What the open transaction did.
    pub counts: TransactionCounts,
    /// Delivery reports of the open transaction's outputs, with the index of the input
    /// record (in the stream thread's list of the transaction's inputs) each was made for.
    deliveries: Vec<(Option<usize>, DeliveryFuture)>,
    /// The input record being processed (`None` during punctuation).
    current: Option<usize>,
    /// How the input record being processed failed, if it did.
    failed: Option<Poisoned>,
    /// The open transaction cannot commit: abort it.
    must_abort: bool,
}

impl RecordCollector {
    /// A collector sending with `producer` (the exactly-once producer's).
    pub fn new(producer: FutureProducer, serde: SerdeContext, application_id: String) -> Self {
        RecordCollector {
            producer,
            serde,
            application_id,
            counts: TransactionCounts::default(),
            deliveries: Vec::new(),
            current: None,
            failed: None,
            must_abort: false,
        }
    }

    /// Sends with `producer` from now on (the exactly-once producer replaced its own,
    /// [`crate::eos_producer::ExactlyOnceProducer::reset`]).
    pub fn set_producer(&mut self, producer: FutureProducer) {
        self.producer = producer;
    }

    /// Outputs sent from now on are made for input record `index`.
    pub fn begin_record(&mut self, index: usize) {
        self.current = Some(index);
        self.failed = None;
    }

    /// The input record is done; returns how it failed, if it did.
    pub fn end_record(&mut self) -> Option<Poisoned> {
        self.current = None;
        self.failed.take()
    }

    /// True when the open transaction must be aborted.
    pub fn must_abort(&self) -> bool {
        self.must_abort
    }

    /// The delivery reports of the open transaction (for an abort, see
    /// [`crate::poison::PoisonRecords::find_refused`]).
    pub fn take_deliveries(&mut self) -> Vec<(Option<usize>, DeliveryFuture)> {
        std::mem::take(&mut self.deliveries)
    }

    /// Forgets the open transaction: after it committed (`counts` were taken) or was
    /// aborted (its counts are dropped: the records will be processed again).
    pub fn reset(&mut self) {
        self.deliveries.clear();
        self.counts = TransactionCounts::default();
        self.current = None;
        self.failed = None;
        self.must_abort = false;
    }

    /// The input record being processed failed a stage by its data: noted for the stream
    /// thread, which aborts the transaction (it may hold part of the record's effects) and
    /// dead-letters the record when it is read again.
    ///
    /// # Errors
    /// [`Error::FailedOutsideRecord`] when no input record is being processed (punctuation): there is
    /// no record to dead-letter, so the failure stops the instance.
    pub fn fail(&mut self, reason: DeadLetterReason, stage: Stage, message: String) -> Result<()> {
        if self.current.is_none() {
            return Err(Error::FailedOutsideRecord {
                stage,
                reason,
                message,
            });
        }
        self.failed.get_or_insert(Poisoned {
            reason,
            stage,
            message,
        });
        self.must_abort = true;
        Ok(())
    }

    /// Dead-letters the record at `origin` (the one being processed) in the open
    /// transaction.
    pub async fn dead_letter(
        &mut self,
        origin: &Origin,
        reason: DeadLetterReason,
        stage: Stage,
        error: &str,
    ) -> Result<()> {
        let record = dead_letter_record_at(origin, reason, stage, error, &self.application_id);
        // One line per record at debug; each commit logs a summary at warn.
        tracing::debug!(
            topic = %origin.topic,
            partition = origin.partition,
            offset = origin.offset,
            reason = %reason,
            stage = %stage,
            "record dead-lettered"
        );
        *self
            .counts
            .dead_lettered
            .entry((origin.topic.clone(), reason.as_str()))
            .or_insert(0) += 1;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        self.send(
            &record.topic,
            Some(record.partition),
            record.key.as_deref(),
            record.value.as_deref(),
            Some(headers),
            record.timestamp_ms,
        )
        .await
    }

    /// Writes what sub-topology `sub`'s processor forwarded into the open transaction:
    /// a record to the topic of the sink it names, serialized by that sink's serializer
    /// (or the input record passed through), stamped `timestamp_ms`; a dead letter; a
    /// dropped duplicate, counted. `message` is the input record being processed
    /// (`None` for punctuation). A record that its sink refuses, or that names no sink of
    /// the processor, fails its input record ([`Self::fail`]).
    ///
    /// # Errors
    /// [`Error::Serde`] when the registry stays unreachable; as [`Self::send`].
    pub async fn emit(
        &mut self,
        forward: Forward,
        sub: &SubTopology,
        message: Option<&OwnedMessage>,
        timestamp_ms: i64,
    ) -> Result<()> {
        let (sink_name, key, value) = match forward {
            Forward::To { sink, key, value } => (sink, key, value),
            Forward::DeadLetter {
                origin,
                reason,
                message: error,
            } => {
                return self
                    .dead_letter(&origin, reason, reason.default_stage(), &error)
                    .await;
            }
            Forward::DuplicateDropped => {
                let topic = message.map_or("", |m| m.topic());
                *self.counts.duplicates.entry(topic.to_string()).or_insert(0) += 1;
                return Ok(());
            }
        };
        let Some(sink) = sub.sink(sink_name) else {
            return self.fail(
                DeadLetterReason::PROCESSING_FAILED,
                Stage::Process,
                format!(
                    "processor {} forwarded to sink {sink_name}, which it does not declare",
                    sub.processor
                ),
            );
        };
        match &sink.format {
            SinkFormat::PassThrough => {
                let Some(message) = message else {
                    return self.fail(
                        DeadLetterReason::PROCESSING_FAILED,
                        Stage::Process,
                        format!(
                            "processor {} forwarded to pass-through sink {sink_name} outside \
                             of any input record",
                            sub.processor
                        ),
                    );
                };
                let headers = origin_headers_of(message);
                // The value is passed through byte for byte: same schema id, same body.
                self.send(
                    &sink.topic,
                    None,
                    Some(&key),
                    message.payload(),
                    Some(headers),
                    timestamp_ms,
                )
                .await
            }
            SinkFormat::Serialized(serializer) => {
                let Some(bytes) = self
                    .serialize(serializer.as_ref(), &sink.topic, &*value)
                    .await?
                else {
                    return Ok(());
                };
                self.send(
                    &sink.topic,
                    None,
                    Some(&key),
                    Some(&bytes),
                    None,
                    timestamp_ms,
                )
                .await
            }
        }
    }

    /// Serializes a forwarded value for `topic`, retrying while the registry is
    /// unreachable. `None` when the value's data does not serialize: its input record
    /// has failed ([`Self::fail`]).
    ///
    /// # Errors
    /// [`Error::Serde`] when the registry stays unreachable;
    /// [`Error::FailedOutsideRecord`] when a punctuation's output does not serialize.
    pub async fn serialize(
        &mut self,
        serializer: &dyn ErasedSerializer,
        topic: &str,
        value: &(dyn std::any::Any + Send + Sync),
    ) -> Result<Option<Vec<u8>>> {
        let serde = &self.serde;
        // One attempt first: only a registry outage pays for the retry machinery.
        let serialized = match serializer.serialize_value(serde, topic, value).await {
            Err(e) if e.is_retriable() => {
                (|| serializer.serialize_value(serde, topic, value))
                    .retry(registry_retry_policy())
                    .when(SerdeError::is_retriable)
                    .notify(|e, delay| {
                        tracing::warn!(error = %e, ?delay, "schema registry unavailable, retrying")
                    })
                    .await
            }
            first => first,
        };
        match serialized {
            Ok(bytes) => Ok(Some(bytes)),
            Err(SerdeError::Record {
                reason,
                stage,
                message,
            }) => {
                self.fail(reason, stage, message)?;
                Ok(None)
            }
            Err(source @ SerdeError::Environment { .. }) => Err(Error::Serde {
                topic: topic.to_string(),
                source,
            }),
        }
    }

    /// Enqueues one output record in the open transaction; its delivery report is kept
    /// with the input record being processed, to find the culprit if the broker refuses it.
    /// A record librdkafka refuses at once for its data fails that input record
    /// ([`Self::fail`]); a transaction already in an abortable state is aborted
    /// after this record.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the producer fails for another reason; [`Error::ProducerQueueFull`]
    /// when its queue stays full.
    pub async fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        timestamp_ms: i64,
    ) -> Result<()> {
        let current = self.current;
        let delivery = self
            .produce(topic, partition, key, value, headers, timestamp_ms)
            .await?;
        if let Some(delivery) = delivery {
            self.deliveries.push((current, delivery));
        }
        Ok(())
    }

    /// Enqueues one record in the open transaction and returns its delivery report
    /// (`None` when it was refused before sending, see [`Self::send`]).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        timestamp_ms: i64,
    ) -> Result<Option<DeliveryFuture>> {
        for _ in 0..QUEUE_FULL_ATTEMPTS_MAX {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).timestamp(timestamp_ms);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(value) = value {
                record = record.payload(value);
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    // No topic name allocated per record once the topic is counted.
                    match self.counts.produced.get_mut(topic) {
                        Some(produced) => *produced += 1,
                        None => {
                            self.counts.produced.insert(topic.to_string(), 1);
                        }
                    }
                    return Ok(Some(delivery));
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((KafkaError::MessageProduction(code), _))
                    if refused_for_data(code).is_some() =>
                {
                    let reason =
                        refused_for_data(code).unwrap_or(DeadLetterReason::PROCESSING_FAILED);
                    self.fail(
                        reason,
                        Stage::Produce,
                        format!("producing to {topic}: {code}"),
                    )?;
                    return Ok(None);
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::State),
                    _,
                )) => {
                    // An earlier delivery failed and the transaction must be aborted; the
                    // delivery reports tell which record it was.
                    self.must_abort = true;
                    return Ok(None);
                }
                Err((
                    KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::Fatal
                        | rdkafka::types::RDKafkaErrorCode::Fenced,
                    ),
                    _,
                )) => {
                    // The producer is in a fatal state (its transaction timed out at the
                    // coordinator, or it was fenced): the abort replaces it
                    // (`ExactlyOnceProducer::reset`).
                    self.must_abort = true;
                    return Ok(None);
                }
                Err((e, _)) => return Err(Error::kafka(&format!("producing to {topic}"), e)),
            }
        }
        Err(Error::ProducerQueueFull {
            topic: topic.to_string(),
        })
    }
}
