//! The stream runtime: consume → process → produce → commit, exactly once, for any
//! topology of processors ([`processor`]); it knows no application's record types.
//!
//! One Kafka consumer (group `application_id`, `isolation.level=read_committed`) reads
//! the topology's source topics; records are routed to tasks — one per sub-topology and
//! input partition — that own their RocksDB state stores. A record's value is turned
//! into the processor's input type by its topic's deserializer ([`serde`]) and what the
//! processor forwards into record values by its sink's serializer. Outputs, changelog
//! records and the consumed offsets of one commit interval go in one Kafka transaction
//! (KIP-98; offsets with the consumer group metadata, KIP-447 "exactly_once_v2"). Store
//! writes reach RocksDB only after that transaction committed.
//!
//! See `docs/architecture.md` for the whole picture.

// What other crates use is public; the engine's inner roles are not.
mod background;
mod counts;
mod dead_letter_policy;
mod dlq_depth;
mod eos_producer;
mod fencing;
pub mod interactive_queries;
mod lag;
mod liveness;
pub mod metrics;
mod origin;
mod partition_group;
mod poison;
pub mod processor;
mod record_collector;
pub mod restore;
pub mod serde;
mod source;
mod standby;
pub mod state_manager;
mod stream_thread;
pub mod task;
mod task_manager;
pub mod topic_admin;
pub mod topology;

// What the runtime shares with the ledger sink (`common/`), under the names the
// runtime's modules use.
use paystream_common::{config, dead_letter, health, kafka, topics};

use rdkafka::error::KafkaError;

pub use counts::RunSummary;
pub use paystream_common::{Config, ConfigError};
pub use processor::{
    DeadLetterReason, Forward, Input, Origin, Processor, ProcessorContext, ProcessorError, Record,
    Sink, Stage, StoreSpec, TopicRef,
};
pub use serde::{AvroSerde, Deserializer, RawRecord, SerdeContext, SerdeError, Serializer};
pub use stream_thread::{Pipeline, STREAM_THREAD_STALL_MS};

/// Errors of the runtime. Each says whether retrying the same operation can succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A shared client failed (connection check, topic metadata, reading to the end).
    #[error(transparent)]
    Common(#[from] paystream_common::Error),
    /// A Kafka client call failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    /// Creating a topic failed.
    #[error("creating topic {topic}: {code}")]
    TopicCreation {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// Topics keyed by payment id have different partition counts.
    #[error(
        "topics keyed by payment id must have equal partition counts (co-partitioning), \
         found {counts}; recreate them with the same count"
    )]
    NotCoPartitioned {
        /// `topic=count` pairs.
        counts: String,
    },
    /// The Schema Registry did not answer after bounded retries.
    #[error("schema registry {url} unreachable after retries: {message}")]
    RegistryUnreachable { url: String, message: String },
    /// The consumer has no group metadata to commit offsets with (not in the group yet).
    #[error("the consumer has no consumer group metadata (not a group member yet)")]
    GroupMetadataMissing,
    /// librdkafka's producer queue stayed full while producing (the broker is not
    /// taking records).
    #[error("producer queue stayed full while producing to {topic}")]
    ProducerQueueFull { topic: String },
    /// A stage failed while no input record was being processed (punctuation), so there
    /// is no record to dead-letter.
    #[error("{stage} failed outside of any input record ({reason}): {message}")]
    FailedOutsideRecord {
        stage: processor::Stage,
        reason: processor::DeadLetterReason,
        message: String,
    },
    /// A restore was stopped because its task was closed (its partitions moved away, or
    /// the instance stops); not a failure.
    #[error("restore of {changelog}/{partition} cancelled: the task was closed")]
    RestoreCancelled { changelog: String, partition: i32 },
    /// A restore thread panicked (a bug, not the data of a record).
    #[error("restore of task {task} panicked: {message}")]
    RestorePanicked { task: String, message: String },
    /// The pipeline's consumer failed for good: typically another member took this
    /// instance's `group.instance.id` — the others took it over after it sent no
    /// heartbeat for `processing.peer_timeout_ms` (it was paused or cut off), or another
    /// instance runs with the same `instance_id`. Starting again rejoins the group.
    #[error(
        "the consumer failed for good: {message}; if this instance was paused or cut off \
         from the brokers for longer than processing.peer_timeout_ms, the others took its \
         partitions over and it must start again; if another instance runs with the same \
         instance_id, give each a distinct one"
    )]
    ConsumerFatal { message: String },
    /// A background thread could not be started.
    #[error("starting {what}: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] paystream_state::StoreError),
    #[error(transparent)]
    Processor(#[from] processor::ProcessorError),
    /// A serde failed by the environment (the Schema Registry), not by a record's data.
    #[error("serializing for {topic}: {source}")]
    Serde {
        topic: String,
        #[source]
        source: serde::SerdeError,
    },
    /// A task directory or checkpoint could not be written or removed.
    #[error("state directory {path}: {source}")]
    StateDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The transactional producer cannot go on: it was replaced after a fatal error
    /// several times in a row without a commit in between, typically because another
    /// instance with the same transactional id keeps taking over (zombie fencing,
    /// KIP-98/KIP-447).
    #[error(
        "transactional id {transactional_id}: fatal transaction error: {message}; \
         if another instance runs with the same instance_id, give each a distinct one"
    )]
    TransactionFatal {
        transactional_id: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn kafka(context: &str, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.to_string(),
            source,
        }
    }

    /// True when the failed operation may succeed if tried again. The runtime retries
    /// in place where it can — registry look-ups (`source.rs`, `record_collector.rs`),
    /// transaction commits (`eos_producer.rs`), the broker's transient errors — so an
    /// error that stops [`Pipeline::run`] has outlasted those retries; this tells the
    /// caller whether starting the instance again may succeed (`paystream run` exits
    /// with 75, EX_TEMPFAIL, when it may).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => source
                .rdkafka_error_code()
                .is_some_and(paystream_common::kafka::is_retriable_code),
            Error::Serde { source, .. } => source.is_retriable(),
            Error::Common(error) => error.is_retriable(),
            Error::TopicCreation { code, .. } => paystream_common::kafka::is_retriable_code(*code),
            Error::RegistryUnreachable { .. }
            | Error::GroupMetadataMissing
            | Error::ProducerQueueFull { .. }
            | Error::RestoreCancelled { .. }
            | Error::ConsumerFatal { .. } => true,
            Error::Config(_)
            | Error::NotCoPartitioned { .. }
            | Error::FailedOutsideRecord { .. }
            | Error::Thread { .. }
            | Error::RestorePanicked { .. }
            | Error::Store(_)
            | Error::Processor(_)
            | Error::StateDirectory { .. }
            | Error::TransactionFatal { .. } => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_whether_a_retry_can_succeed() {
        let retriable = [
            Error::GroupMetadataMissing,
            Error::ProducerQueueFull { topic: "t".into() },
            Error::RegistryUnreachable {
                url: "u".into(),
                message: "m".into(),
            },
            Error::Common(paystream_common::Error::EndNotReached {
                what: "restoring c/0".into(),
                end: 10,
                position: 3,
                waited_ms: 60_000,
            }),
            Error::RestoreCancelled {
                changelog: "c".into(),
                partition: 0,
            },
            Error::TopicCreation {
                topic: "t".into(),
                code: rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
            },
        ];
        for error in &retriable {
            assert!(error.is_retriable(), "{error}");
        }
        let final_ = [
            Error::Common(paystream_common::Error::TopicMissing { topic: "t".into() }),
            Error::Common(paystream_common::Error::TooFewPartitions {
                topic: "t.dlq".into(),
                found: 1,
                needed: 3,
            }),
            Error::NotCoPartitioned {
                counts: "a=3, b=6".into(),
            },
            Error::TopicCreation {
                topic: "t".into(),
                code: rdkafka::types::RDKafkaErrorCode::PolicyViolation,
            },
        ];
        for error in &final_ {
            assert!(!error.is_retriable(), "{error}");
        }
        assert!(
            final_[1]
                .to_string()
                .contains("kafka-topics --alter --partitions 3"),
            "the error names the fix"
        );
    }
}
