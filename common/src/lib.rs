//! What paystream's stream runtime and its ledger sink share, and nothing of either:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the configuration file and `PAYSTREAM_*` variables: loading, defaults, validation, the sections applications own |
//! | [`security`] | TLS and SASL settings, secrets from files, URLs with their password redacted |
//! | [`kafka`] | librdkafka client settings, the connection check at start-up, partition counts, reading a topic to its end |
//! | [`offsets`] | partition ends and a group's committed offsets, on a client of their own |
//! | [`topics`] | topic names and roles, the settings of dead-letter topics |
//! | [`dead_letter`] | the dead-letter format: headers, masking, the error sanitizer ([`Origin`], [`Stage`], [`DeadLetterReason`]) |
//! | [`health`] | `/healthz`, `/readyz` and `/metrics` over HTTP, from one Prometheus registry |
//!
//! See `docs/architecture.md`, "Crates".

pub mod config;
mod config_error;
pub mod dead_letter;
mod failure;
pub mod health;
pub mod kafka;
pub mod offsets;
pub mod security;
pub mod topics;

use rdkafka::error::KafkaError;

pub use config::{Config, ConfigError};
pub use failure::{DeadLetterReason, Origin, Stage};

/// Errors of the shared clients. Each says whether retrying the same operation can
/// succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kafka client call failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    /// A service cannot be connected to: a rejected password or certificate, or nothing
    /// answering after bounded retries. Start-up stops with this.
    #[error("{target}: {problem}: {reason}; {fix}")]
    Connection {
        /// What was connected to, e.g. `kafka 10.0.0.1:9093 (SASL_SSL)`.
        target: String,
        problem: &'static str,
        /// The client library's reason.
        reason: String,
        fix: &'static str,
    },
    /// A changelog or dead-letter topic has fewer partitions than the topic it mirrors.
    #[error(
        "topic {topic} has {found} partitions but its source has {needed}; add partitions \
         to it (kafka-topics --alter --partitions {needed})"
    )]
    TooFewPartitions {
        topic: String,
        found: i32,
        needed: i32,
    },
    /// A topic that is needed does not exist.
    #[error("topic {topic} does not exist; run `paystream topics create` first")]
    TopicMissing { topic: String },
    /// Reading a topic to its end took longer than allowed, e.g. an open transaction of a
    /// previous owner holds the last stable offset back.
    #[error(
        "{what}: end offset {end} not reached in {waited_ms} ms (at {position}); is a \
         transaction of a previous owner still open?"
    )]
    EndNotReached {
        what: String,
        end: i64,
        position: i64,
        waited_ms: u64,
    },
}

impl Error {
    /// A Kafka client call for `context` failed with `source`.
    pub fn kafka(context: &str, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.to_string(),
            source,
        }
    }

    /// True when the failed operation may succeed if tried again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => source
                .rdkafka_error_code()
                .is_some_and(kafka::is_retriable_code),
            Error::EndNotReached { .. } => true,
            Error::Connection { .. }
            | Error::TopicMissing { .. }
            | Error::TooFewPartitions { .. } => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
