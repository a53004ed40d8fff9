//! The payments application's dead-letter reasons (docs/architecture.md, "Bad input"):
//! the runtime's own and those of payment events. A reason is written as the
//! `paystream.dlq.reason` header and its stage as `paystream.dlq.stage`; both are
//! bounded metric labels.

pub use paystream_runtime::processor::Stage;

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Empty, truncated or not valid Avro.
    Undecodable,
    /// The schema id is unknown to the registry or not this topic's record.
    UnknownSchema,
    /// The first byte is not the Confluent magic byte 0.
    BadMagicByte,
    /// A value breaks the event's contract (amount ≤ 0, bad currency, net ≠ gross − fee).
    InvalidValue,
    /// The record key does not match its value: `merchant_id:idempotency_key` for
    /// `payment_initiated`, the `payment_id` for auth and settlement topics.
    KeyMismatch,
    /// The idempotency key was reused for a different request.
    IdempotencyKeyReused,
    /// The event asks for a lifecycle transition that is not legal from the current state.
    IllegalTransition,
    /// A string field looked like a card number.
    PanDetected,
    /// A string field looked like it held a credential (`password=…`).
    SecretDetected,
    /// Too many events are already waiting for this payment to appear.
    PendingBufferFull,
    /// The event waited for its payment longer than the pending retention; it can be
    /// redriven once the payment exists.
    OrphanExpired,
    /// A value is outside its documented bounds: an amount above
    /// `paystream_schemas::validate::AMOUNT_MINOR_MAX`, an identifier or a free-text field
    /// longer than its maximum.
    ValueOutOfRange,
    /// The record is larger than the runtime can carry through its state stores and
    /// changelogs, or the broker refused an output of it as too large.
    RecordTooLarge,
    /// The event time is further ahead of the record's broker timestamp than
    /// `processing.event_time_skew_max_ms` allows (a producer clock running fast).
    EventTimeInFuture,
    /// A processor or an encoder failed on this record's data (Kafka Streams'
    /// processing exception handler, KIP-1033).
    ProcessingFailed,
    /// PostgreSQL refused the record's rows for a data reason (e.g. a NUL byte or an
    /// over-long key); the ledger sink wrote the rest of its batch.
    SinkRejected,
    /// A capture above what is left of the payment's authorization.
    CaptureExceedsAuthorization,
    /// A refund above what was captured minus what was refunded or charged back.
    RefundExceedsCaptured,
    /// A chargeback above what was captured minus what was refunded or charged back.
    ChargebackExceedsCaptured,
}

impl DeadLetterReason {
    /// Every reason, for metrics and docs.
    pub const ALL: [DeadLetterReason; 19] = [
        DeadLetterReason::Undecodable,
        DeadLetterReason::UnknownSchema,
        DeadLetterReason::BadMagicByte,
        DeadLetterReason::InvalidValue,
        DeadLetterReason::KeyMismatch,
        DeadLetterReason::IdempotencyKeyReused,
        DeadLetterReason::IllegalTransition,
        DeadLetterReason::PanDetected,
        DeadLetterReason::SecretDetected,
        DeadLetterReason::PendingBufferFull,
        DeadLetterReason::OrphanExpired,
        DeadLetterReason::ValueOutOfRange,
        DeadLetterReason::RecordTooLarge,
        DeadLetterReason::EventTimeInFuture,
        DeadLetterReason::ProcessingFailed,
        DeadLetterReason::SinkRejected,
        DeadLetterReason::CaptureExceedsAuthorization,
        DeadLetterReason::RefundExceedsCaptured,
        DeadLetterReason::ChargebackExceedsCaptured,
    ];

    /// The snake_case name written in headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::UnknownSchema => "unknown_schema",
            DeadLetterReason::BadMagicByte => "bad_magic_byte",
            DeadLetterReason::InvalidValue => "invalid_value",
            DeadLetterReason::KeyMismatch => "key_mismatch",
            DeadLetterReason::IdempotencyKeyReused => "idempotency_key_reused",
            DeadLetterReason::IllegalTransition => "illegal_transition",
            DeadLetterReason::PanDetected => "pan_detected",
            DeadLetterReason::SecretDetected => "secret_detected",
            DeadLetterReason::PendingBufferFull => "pending_buffer_full",
            DeadLetterReason::OrphanExpired => "orphan_expired",
            DeadLetterReason::ValueOutOfRange => "value_out_of_range",
            DeadLetterReason::RecordTooLarge => "record_too_large",
            DeadLetterReason::EventTimeInFuture => "event_time_in_future",
            DeadLetterReason::ProcessingFailed => "processing_failed",
            DeadLetterReason::SinkRejected => "sink_rejected",
            DeadLetterReason::CaptureExceedsAuthorization => "capture_exceeds_authorization",
            DeadLetterReason::RefundExceedsCaptured => "refund_exceeds_captured",
            DeadLetterReason::ChargebackExceedsCaptured => "chargeback_exceeds_captured",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeadLetterReason {
    /// The stage at which records get this reason when a processor emits it (the runtime
    /// names the stage itself for what it dead-letters, e.g. `record_too_large` at
    /// `decode` for a value over its size limit).
    pub fn default_stage(self) -> Stage {
        match self {
            DeadLetterReason::Undecodable
            | DeadLetterReason::UnknownSchema
            | DeadLetterReason::BadMagicByte => Stage::Decode,
            DeadLetterReason::InvalidValue
            | DeadLetterReason::PanDetected
            | DeadLetterReason::SecretDetected
            | DeadLetterReason::ValueOutOfRange
            | DeadLetterReason::EventTimeInFuture => Stage::Validate,
            DeadLetterReason::KeyMismatch
            | DeadLetterReason::IdempotencyKeyReused
            | DeadLetterReason::IllegalTransition
            | DeadLetterReason::PendingBufferFull
            | DeadLetterReason::OrphanExpired
            | DeadLetterReason::ProcessingFailed
            | DeadLetterReason::RecordTooLarge
            | DeadLetterReason::CaptureExceedsAuthorization
            | DeadLetterReason::RefundExceedsCaptured
            | DeadLetterReason::ChargebackExceedsCaptured => Stage::Process,
            DeadLetterReason::SinkRejected => Stage::Sink,
        }
    }
}

impl DeadLetterReason {
    /// The reason named `name` (as [`Self::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<DeadLetterReason> {
        DeadLetterReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }
}

impl From<DeadLetterReason> for paystream_runtime::DeadLetterReason {
    fn from(reason: DeadLetterReason) -> Self {
        paystream_runtime::DeadLetterReason::new(reason.as_str(), reason.default_stage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_names_its_reasons_as_the_application_does() {
        for (ours, runtime) in [
            (
                DeadLetterReason::Undecodable,
                paystream_runtime::DeadLetterReason::UNDECODABLE,
            ),
            (
                DeadLetterReason::UnknownSchema,
                paystream_runtime::DeadLetterReason::UNKNOWN_SCHEMA,
            ),
            (
                DeadLetterReason::BadMagicByte,
                paystream_runtime::DeadLetterReason::BAD_MAGIC_BYTE,
            ),
            (
                DeadLetterReason::RecordTooLarge,
                paystream_runtime::DeadLetterReason::RECORD_TOO_LARGE,
            ),
            (
                DeadLetterReason::ProcessingFailed,
                paystream_runtime::DeadLetterReason::PROCESSING_FAILED,
            ),
        ] {
            assert_eq!(paystream_runtime::DeadLetterReason::from(ours), runtime);
        }
        for reason in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::from_name(reason.as_str()), Some(reason));
        }
    }
}
