//! The paystream stream runtime: consume → process → produce → commit, exactly once.
//!
//! One Kafka consumer (group `application_id`, `isolation.level=read_committed`) reads
//! the four input topics and the internal repartition topic; records are routed to
//! tasks — one per sub-topology and input partition — that own their RocksDB state
//! stores. Outputs, changelog records and the consumed offsets of one commit interval go
//! in one Kafka transaction (KIP-98; offsets with the consumer group metadata, KIP-447
//! "exactly_once_v2"). Store writes reach RocksDB only after that transaction committed.
//!
//! ```text
//! sub-topology 0 (task 0_p):  payment_initiated[p] → dedupe ─────► <app>-payments-by-id
//! sub-topology 1 (task 1_p):  <app>-payments-by-id[p], auth_success[p], auth_failure[p],
//!                             settlement[p] → lifecycle → payment_status, ledger_entries
//! any task:                   bad input → <source topic>.dlq
//! ```
//!
//! See `docs/architecture.md` for the whole picture.

pub mod config;
pub mod config_error;
pub mod dead_letter;
pub mod dlq_depth;
pub mod eos_producer;
pub mod health;
pub mod kafka;
pub mod lag;
pub mod metrics;
pub mod pipeline;
pub mod poison;
pub mod record_collector;
pub mod security;
pub mod source;
pub mod state_manager;
pub mod task;
pub mod task_manager;
pub mod topics;
pub mod topology;

use rdkafka::error::KafkaError;

pub use config::{Config, ConfigError};
pub use pipeline::{Pipeline, RunSummary};

/// Errors of the runtime. Each says whether retrying the same operation can succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// Topics are missing or not co-partitioned.
    #[error("topology: {0}")]
    Topology(String),
    #[error(transparent)]
    Store(#[from] paystream_state::StoreError),
    #[error(transparent)]
    Processor(#[from] paystream_processors::ProcessorError),
    #[error(transparent)]
    Codec(#[from] paystream_schemas::codec::CodecError),
    /// A task directory or checkpoint could not be written or removed.
    #[error("state directory {path}: {source}")]
    StateDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The transactional producer cannot go on, typically because another instance
    /// with the same transactional id took over (zombie fencing, KIP-98/KIP-447).
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

    /// True when the failed operation may succeed if tried again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => source
                .rdkafka_error_code()
                .is_some_and(kafka::is_retriable_code),
            Error::Codec(e) => e.is_retriable(),
            _ => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
