//! The dead-letter policy (KIP-1034, Kafka Streams' `DeserializationExceptionHandler`;
//! docs/architecture.md, "Bad input"): one function decides what happens to a record
//! whose value a deserializer refused. The dead-letter record itself is built by
//! [`paystream_common::dead_letter`].

use crate::serde::SerdeError;
use paystream_common::{DeadLetterReason, Stage};

/// What to do with a record that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Write it to the dead-letter queue with this reason, failed at this stage, and go
    /// on.
    DeadLetter(DeadLetterReason, Stage),
    /// Try the same record again later (a dependency is down).
    Retry,
}

/// The policy for records whose value a deserializer refused: the record's data is
/// dead-lettered, the environment's failure retried.
pub fn on_serde_error(error: &SerdeError) -> FailureAction {
    match error {
        SerdeError::Record { reason, stage, .. } => FailureAction::DeadLetter(*reason, *stage),
        SerdeError::Environment { .. } => FailureAction::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_map_to_reasons_and_registry_outages_retry() {
        use paystream_avro::{DecodeError, DecodeErrorKind};

        let err = |kind| SerdeError::from(DecodeError::new(kind, ""));
        assert_eq!(
            on_serde_error(&err(DecodeErrorKind::BadMagicByte)),
            FailureAction::DeadLetter(DeadLetterReason::BAD_MAGIC_BYTE, Stage::Decode)
        );
        assert_eq!(
            on_serde_error(&err(DecodeErrorKind::RegistryUnavailable)),
            FailureAction::Retry
        );
    }
}
