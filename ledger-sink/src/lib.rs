//! The PostgreSQL ledger sink: reads `ledger_entries` and `payment_status`
//! (`isolation.level=read_committed`) and writes journal entries, postings, account
//! balances and payment statuses, together with the consumed offsets, in one database
//! transaction per batch. On start it resumes from the offsets stored in `sink_offsets`,
//! so every record is written exactly once (PRODUCT.md, Exactly-once).
//!
//! Roles, as in vector's sinks: [`service`] talks to PostgreSQL (migrations, batch
//! writes); [`sink`] consumes, batches and decides what to retry; [`verify`] checks the
//! ledger's invariants afterwards (`paystream ledger verify`). Migrations are in
//! `ledger-sink/migrations/`.

pub mod balance;
pub mod service;
pub mod sink;
pub mod verify;

pub use balance::{AccountBalance, account_balance};
pub use service::LedgerDatabase;
pub use sink::{LedgerSink, SinkSummary};
pub use verify::{VerifyReport, verify};

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// PostgreSQL failed or could not be reached.
    #[error("postgresql: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Migrations could not be applied.
    #[error("postgresql: applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Kafka failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A record on an output topic does not decode: a foreign writer or a bug. Stops the
    /// sink; nothing is skipped silently.
    #[error("record {topic}/{partition}@{offset} does not decode: {message}")]
    Undecodable {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    /// A journal entry does not balance per currency: refused, never written.
    #[error("journal entry {id} from {topic}/{partition}@{offset} does not balance per currency")]
    Unbalanced {
        id: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error(transparent)]
    Runtime(#[from] paystream_runtime::Error),
}

impl SinkError {
    /// True when the failed operation may succeed if tried again (a lost connection, a
    /// pool timeout, a serialization failure).
    pub fn is_retriable(&self) -> bool {
        match self {
            SinkError::Database { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(db) => {
                    // 40001 serialization_failure, 40P01 deadlock_detected, 57P0x the server
                    // is shutting down or starting up, 08xxx connection exceptions.
                    matches!(
                        db.code().as_deref(),
                        Some(
                            "40001"
                                | "40P01"
                                | "57P01"
                                | "57P02"
                                | "57P03"
                                | "08000"
                                | "08001"
                                | "08003"
                                | "08004"
                                | "08006"
                        )
                    )
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// `Result` with [`SinkError`].
pub type Result<T> = std::result::Result<T, SinkError>;

pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SinkError {
    move |source| SinkError::Database { context, source }
}
