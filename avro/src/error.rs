//! Why a value does not decode ([`DecodeError`], in the terms of the dead-letter
//! reasons) and why a registry call or an encoding failed ([`CodecError`]).

use crate::wire::FramingError;

/// Why a record value could not be decoded, in the terms of the dead-letter reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Empty, truncated, or not valid Avro for its schema.
    Undecodable,
    /// The first byte is not the Confluent magic byte 0.
    BadMagicByte,
    /// The schema id is not in the registry, or names a record this topic does not carry.
    UnknownSchema,
    /// The registry could not be reached: retry, do not dead-letter.
    RegistryUnavailable,
}

/// A record value that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub message: String,
}

impl DecodeError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: DecodeErrorKind, message: impl Into<String>) -> Self {
        DecodeError {
            kind,
            message: message.into(),
        }
    }

    /// True when the same record may decode later (the registry was unreachable).
    pub fn is_retriable(&self) -> bool {
        self.kind == DecodeErrorKind::RegistryUnavailable
    }
}

impl From<FramingError> for DecodeError {
    fn from(e: FramingError) -> Self {
        let kind = match e {
            FramingError::BadMagicByte { .. } => DecodeErrorKind::BadMagicByte,
            FramingError::Empty | FramingError::Truncated { .. } => DecodeErrorKind::Undecodable,
        };
        DecodeError::new(kind, e.to_string())
    }
}

/// Errors of registry calls and encoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The registry rejected a call or could not be reached.
    #[error("schema registry at {url}: {message}")]
    Registry {
        url: String,
        message: String,
        retriable: bool,
    },
    /// A record could not be encoded with its schema (a bug: our types match our schemas).
    #[error("encoding {record} for topic {topic}: {message}")]
    Encode {
        record: &'static str,
        topic: String,
        message: String,
    },
}

impl CodecError {
    /// True when the same call may succeed later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            CodecError::Registry {
                retriable: true,
                ..
            }
        )
    }
}
