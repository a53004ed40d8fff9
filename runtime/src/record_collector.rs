//! The record collector (Kafka Streams' `RecordCollector`): turns a processor's outputs
//! into Kafka records — Avro in the Confluent wire format, keys, headers, timestamps — and
//! sends them in the open transaction of the [`crate::eos_producer::ExactlyOnceProducer`]
//! it shares. It keeps each send's delivery report with the input record it was made
//! for (so a refused output names its input, see [`crate::poison`]) and counts what the
//! transaction did, for metrics published only once it commits.
//!
//! A failure caused by the record's data (an output that does not encode, that
//! librdkafka refuses at once, an unbalanced journal entry) is not an error here: the
//! collector notes it ([`RecordCollector::fail`]) and the stream thread aborts the
//! transaction and poisons the record. Only failures of the environment are errors.

use std::sync::Arc;
use std::time::Duration;

use paystream_processors::{DeadLetterReason, Origin, Output, OutputKind, Stage};
use paystream_schemas::Codec;
use paystream_schemas::codec::CodecError;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub use crate::counts::TransactionCounts;
use crate::dead_letter::dead_letter_record_at;
use crate::origin::origin_headers_of;
use crate::poison::{Poisoned, refused_for_data};
use crate::topology::SubTopology;
use crate::{Error, Result};

/// Most attempts to produce one record while librdkafka's queue is full.
const QUEUE_FULL_ATTEMPTS_MAX: u32 = 1_000;

/// Sends the outputs of the open transaction.
pub struct RecordCollector {
    producer: FutureProducer,
    codec: Arc<Codec>,
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
    pub fn new(producer: FutureProducer, codec: Arc<Codec>, application_id: String) -> Self {
        RecordCollector {
            producer,
            codec,
            application_id,
            counts: TransactionCounts::default(),
            deliveries: Vec::new(),
            current: None,
            failed: None,
            must_abort: false,
        }
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

    /// Writes one output of sub-topology `sub`'s processor into the open transaction, to
    /// the topic the processor declares for its kind, stamped `timestamp_ms`; `message`
    /// is the input record being processed (`None` for outputs of punctuation). An output
    /// that cannot be encoded or is not balanced fails its input record
    /// ([`Self::fail`]).
    pub async fn emit(
        &mut self,
        output: Output,
        sub: &SubTopology,
        message: Option<&OwnedMessage>,
        timestamp_ms: i64,
    ) -> Result<()> {
        let sink = OutputKind::of(&output).map(|kind| (kind, sub.sink(kind)));
        let topic = match sink {
            Some((_, Some(topic))) => topic.to_string(),
            Some((kind, None)) => {
                return self.fail(
                    DeadLetterReason::ProcessingFailed,
                    Stage::Process,
                    format!(
                        "processor {} emitted a {kind:?} output but declares no topic for it",
                        sub.processor
                    ),
                );
            }
            None => String::new(),
        };
        match output {
            Output::Repartition(event) => {
                let message = message.expect("repartitioning happens while processing a record");
                let headers = origin_headers_of(message);
                // The value is passed through byte for byte: same schema id, same body.
                self.send(
                    &topic,
                    None,
                    Some(event.payment_id.as_bytes()),
                    message.payload(),
                    Some(headers),
                    timestamp_ms,
                )
                .await
            }
            Output::PaymentStatus(status) => {
                if !self
                    .send_keyed(&topic, &status, &status.payment_id, timestamp_ms)
                    .await?
                {
                    return Ok(());
                }
                self.counts.status_changes += 1;
                let status_name = status.status.as_str();
                *self.counts.payments.entry(status_name).or_insert(0) += 1;
                // Amounts are bounded at the door; the metric saturates rather than wraps.
                let amount = self
                    .counts
                    .amounts_minor
                    .entry((status_name, status.currency.clone()))
                    .or_insert(0);
                *amount = amount.saturating_add(status.amount_minor.max(0) as u64);
                Ok(())
            }
            Output::JournalEntry(entry) => {
                if !entry.is_balanced() {
                    return self.fail(
                        DeadLetterReason::ProcessingFailed,
                        Stage::Process,
                        format!("journal entry {} does not balance per currency", entry.id),
                    );
                }
                if self
                    .send_keyed(&topic, &entry, &entry.payment_id, timestamp_ms)
                    .await?
                {
                    self.counts.journal_entries += 1;
                }
                Ok(())
            }
            Output::ReconciliationException(exception) => {
                if self
                    .send_keyed(&topic, &exception, &exception.payment_id, timestamp_ms)
                    .await?
                {
                    *self
                        .counts
                        .exceptions
                        .entry(exception.kind.as_str())
                        .or_insert(0) += 1;
                }
                Ok(())
            }
            Output::DeadLetter {
                origin,
                reason,
                message: error,
            } => {
                self.dead_letter(&origin, reason, reason.default_stage(), &error)
                    .await
            }
            Output::DuplicateDropped => {
                let topic = message.map_or("", |m| m.topic());
                *self.counts.duplicates.entry(topic.to_string()).or_insert(0) += 1;
                Ok(())
            }
        }
    }

    /// Encodes `record` for output `topic` and sends it keyed by `payment_id`, stamped
    /// `timestamp_ms`. False when it could not be encoded (its input record has failed,
    /// see [`Self::fail`]).
    ///
    /// # Errors
    /// As [`Self::encode`] and [`Self::send`].
    async fn send_keyed<T: paystream_schemas::AvroRecord + serde::Serialize>(
        &mut self,
        topic: &str,
        record: &T,
        payment_id: &str,
        timestamp_ms: i64,
    ) -> Result<bool> {
        let Some(value) = self.encode(topic, record).await? else {
            return Ok(false);
        };
        self.send(
            topic,
            None,
            Some(payment_id.as_bytes()),
            Some(&value),
            None,
            timestamp_ms,
        )
        .await?;
        Ok(true)
    }

    /// Encodes an output for `topic`. `None` when the record's data does not fit the
    /// schema: its input record has failed ([`Self::fail`]).
    ///
    /// # Errors
    /// [`Error::Codec`] when the registry cannot be reached.
    pub async fn encode<T: paystream_schemas::AvroRecord + serde::Serialize>(
        &mut self,
        topic: &str,
        record: &T,
    ) -> Result<Option<Vec<u8>>> {
        match self.codec.encode(topic, record).await {
            Ok(value) => Ok(Some(value)),
            Err(e @ CodecError::Encode { .. }) => {
                self.fail(
                    DeadLetterReason::ProcessingFailed,
                    Stage::Produce,
                    e.to_string(),
                )?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
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
                    let reason = refused_for_data(code).expect("matched above");
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
                Err((e, _)) => return Err(Error::kafka(&format!("producing to {topic}"), e)),
            }
        }
        Err(Error::ProducerQueueFull {
            topic: topic.to_string(),
        })
    }
}
