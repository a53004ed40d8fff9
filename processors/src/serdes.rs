//! How the payments application's records are read and written (docs/architecture.md,
//! "Writing a processor"): an input event is read in the Confluent wire format with the
//! runtime's Avro serde and validated ([`paystream_schemas::validate`]) before a
//! processor sees it ([`EventDeserializer`]); a journal entry is written only once it
//! balances ([`JournalEntrySerializer`]).

use std::marker::PhantomData;

use paystream_runtime::serde::{AvroSerde, Deserializer, RawRecord, SerdeContext, SerdeError};
use paystream_runtime::{Serializer, Stage};
use paystream_schemas::validate::{Violation, check_event_time, clean_event_free_text, validate};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, AvroRecord, ChargebackReported, InputEvent,
    JournalEntry, PaymentCaptured, PaymentInitiated, RefundIssued, SettlementReported,
};
use serde::de::DeserializeOwned;

use prometheus::IntCounterVec;

use crate::DeadLetterReason;
use crate::metrics::PaymentMetrics;

/// Types a processor can take, converted from a decoded [`InputEvent`].
pub trait FromInputEvent: Sized {
    /// The value, or `None` when the event is of another type.
    fn from_input_event(event: InputEvent) -> Option<Self>;
}

impl FromInputEvent for InputEvent {
    fn from_input_event(event: InputEvent) -> Option<Self> {
        Some(event)
    }
}

impl FromInputEvent for PaymentInitiated {
    fn from_input_event(event: InputEvent) -> Option<Self> {
        match event {
            InputEvent::PaymentInitiated(value) => Some(value),
            _ => None,
        }
    }
}

/// An input event type: its Avro record and how it becomes an [`InputEvent`].
pub trait Event: AvroRecord + DeserializeOwned + Send + Sync + 'static {
    /// The event as an [`InputEvent`].
    fn into_input_event(self) -> InputEvent;
}

macro_rules! event {
    ($($variant:ident),*) => {$(
        impl Event for $variant {
            fn into_input_event(self) -> InputEvent {
                InputEvent::$variant(self)
            }
        }
    )*};
}

event!(
    PaymentInitiated,
    AuthSucceeded,
    AuthFailed,
    SettlementReported,
    PaymentCaptured,
    AuthorizationVoided,
    RefundIssued,
    ChargebackReported
);

/// Reads events of type `E` (Avro, Confluent wire format), cleans their free text (a
/// PSP's reason text is informational: [`clean_event_free_text`]), validates them — the
/// event's contract, then its event time against the record's broker timestamp — and
/// hands them to the processor as `O` (the event itself or an [`InputEvent`]). A
/// violation is the record's data: it is dead-lettered with its reason at the `validate`
/// stage.
pub struct EventDeserializer<E, O> {
    event_time_skew_max_ms: i64,
    /// `paystream_free_text_cleaned_total{topic,field}`, when counted.
    free_text_cleaned: Option<IntCounterVec>,
    _types: PhantomData<fn() -> (E, O)>,
}

impl<E, O> EventDeserializer<E, O> {
    /// Events at most `event_time_skew_max_ms` ahead of their record's timestamp pass.
    pub fn new(event_time_skew_max_ms: i64) -> Self {
        EventDeserializer {
            event_time_skew_max_ms,
            free_text_cleaned: None,
            _types: PhantomData,
        }
    }

    /// Counts the events whose free text was cleaned in `metrics` (none: not counted).
    pub fn counting_cleaned_in(mut self, metrics: Option<&PaymentMetrics>) -> Self {
        self.free_text_cleaned = metrics.map(|m| m.free_text_cleaned.clone());
        self
    }
}

impl<E: Event, O: FromInputEvent + Send + Sync + 'static> Deserializer for EventDeserializer<E, O> {
    type Value = O;

    fn type_name(&self) -> &'static str {
        Deserializer::type_name(&AvroSerde::<E>::new())
    }

    async fn deserialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> Result<O, SerdeError> {
        let mut event = AvroSerde::<E>::decode(ctx, record.value)
            .await?
            .into_input_event();
        for (field, _) in clean_event_free_text(&mut event) {
            if let Some(counter) = &self.free_text_cleaned {
                counter.with_label_values(&[record.topic, field]).inc();
            }
        }
        validate(&event)
            .and_then(|()| {
                check_event_time(
                    event.event_time_ms(),
                    record.timestamp_ms,
                    self.event_time_skew_max_ms,
                )
            })
            .map_err(violation)?;
        O::from_input_event(event).ok_or_else(|| SerdeError::Record {
            reason: DeadLetterReason::ProcessingFailed.into(),
            stage: Stage::Decode,
            message: format!(
                "{} is not what the processor reading {} takes",
                E::FULL_NAME,
                record.topic
            ),
        })
    }
}

/// The dead letter of a violation: its reason at the `validate` stage.
fn violation(violation: Violation) -> SerdeError {
    let reason = match &violation {
        Violation::InvalidValue(_) => DeadLetterReason::InvalidValue,
        Violation::PanDetected { .. } => DeadLetterReason::PanDetected,
        Violation::SecretDetected { .. } => DeadLetterReason::SecretDetected,
        Violation::ValueOutOfRange(_) => DeadLetterReason::ValueOutOfRange,
        Violation::EventTimeInFuture { .. } => DeadLetterReason::EventTimeInFuture,
    };
    SerdeError::Record {
        reason: reason.into(),
        stage: Stage::Validate,
        message: violation.to_string(),
    }
}

/// Writes journal entries (Avro, Confluent wire format) once they balance per currency;
/// one that does not fails the record that caused it (`processing_failed`), so an
/// unbalanced entry never reaches `ledger_entries`.
#[derive(Debug, Default)]
pub struct JournalEntrySerializer;

impl Serializer for JournalEntrySerializer {
    type Value = JournalEntry;

    async fn serialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        entry: &'a JournalEntry,
    ) -> Result<Vec<u8>, SerdeError> {
        if !entry.is_balanced() {
            return Err(SerdeError::Record {
                reason: DeadLetterReason::ProcessingFailed.into(),
                stage: Stage::Process,
                message: format!("journal entry {} does not balance per currency", entry.id),
            });
        }
        AVRO_JOURNAL_ENTRY.serialize(ctx, topic, entry).await
    }
}

/// The Avro serde of journal entries.
static AVRO_JOURNAL_ENTRY: AvroSerde<JournalEntry> = AvroSerde::new();
