//! The fixed set of dead-letter reasons (PRODUCT.md "Bad input"; issue #4). A reason is
//! written as the `paystream.dlq.reason` header and is a bounded metric label.

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
}

impl DeadLetterReason {
    /// Every reason, for metrics and docs.
    pub const ALL: [DeadLetterReason; 11] = [
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
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
