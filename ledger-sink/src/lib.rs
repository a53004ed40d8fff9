//! The PostgreSQL ledger sink: reads `ledger_entries` and `payment_status`
//! (`isolation.level=read_committed`) and writes journal entries, postings, account
//! balances and payment statuses, together with the consumed offsets, in one database
//! transaction per batch. On start it resumes from the offsets stored in `sink_offsets`,
//! so every record is written exactly once (docs/architecture.md, "Exactly once").
//!
//! Roles, as in vector's sinks: [`service`] talks to PostgreSQL (migrations, batch
//! writes, isolating the records PostgreSQL refuses); [`sink`] consumes, batches, decides
//! what to retry and produces the sink's dead letters; [`policy`] is the one place that
//! decides what a failure means (retry, dead-letter the record, stop); [`verify`](mod@verify) checks
//! the ledger's invariants afterwards (`paystream ledger verify`). Migrations are in
//! `ledger-sink/migrations/`.
//!
//! One record's data never stops the sink: a record that does not decode, a journal
//! entry that does not balance, a journal entry whose id is already in the ledger with
//! different content ([`SinkError::Conflict`]), and a record whose rows PostgreSQL
//! refuses for a data reason are dead-lettered to `<source topic>.dlq` and recorded in `sink_dead_letters`,
//! in the same transaction as the rest of their batch (docs/architecture.md, "Dead
//! letters").

pub mod balance;
pub mod config;
pub mod history;
pub mod metrics;
pub mod nodelay;
pub mod policy;
pub mod service;
pub mod sink;
pub mod verify;

pub use balance::{AccountBalance, account_balance};
pub use config::SinkConfig;
pub use history::{PaymentHistory, payment_history};
pub use metrics::SinkMetrics;
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
    /// A record on an output topic does not decode (a foreign writer or a bug), or an id
    /// in it is not a UUID. Never returned by the sink: the record is dead-lettered with
    /// this message as its error and the sink goes on.
    #[error("record {topic}/{partition}@{offset} does not decode: {message}")]
    Undecodable {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    /// A journal entry does not balance per currency (or has no postings, or a posting
    /// whose amount is not positive): refused, never written. Never returned by the sink:
    /// the record is dead-lettered with this message as its error.
    #[error("journal entry {id} from {topic}/{partition}@{offset} does not balance per currency")]
    Unbalanced {
        id: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A journal entry's id is already in the ledger with different content (payment
    /// id, kind, or a posting's account, side, amount or currency): the same
    /// deterministic id stands for two different entries, which means a bug in the
    /// processors or a ledger changed behind the sink's back (TigerBeetle's "exists with
    /// different content"). The stored entry stays; this one is not written. Never
    /// returned by the sink: the record is dead-lettered (`sink_rejected`) with this
    /// message as its error, so one record never stops the sink, and `paystream ledger
    /// verify` and the dead-letter alert show it.
    #[error(
        "journal entry {id} from {topic}/{partition}@{offset} is already in the ledger with different content: {difference}"
    )]
    Conflict {
        id: String,
        topic: String,
        partition: i32,
        offset: i64,
        difference: String,
    },
    /// The Schema Registry could not be reached to decode a record, after retries.
    /// Retriable: the record is read again when the sink restarts.
    #[error("schema registry unavailable decoding {topic}/{partition}@{offset}: {message}")]
    RegistryUnavailable {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    /// A shared client failed (topic metadata, partition ends, a dead-letter topic with
    /// too few partitions).
    #[error(transparent)]
    Common(#[from] paystream_common::Error),
}

impl SinkError {
    /// True when the failed operation may succeed if tried again: a lost connection, a
    /// pool timeout, a serialization failure or deadlock, a server restarting
    /// ([`policy::SqlStateClass::Transient`]), a Kafka error that clears up on its own.
    pub fn is_retriable(&self) -> bool {
        match self {
            SinkError::Database { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(_) => {
                    self.sqlstate_class() == Some(policy::SqlStateClass::Transient)
                }
                _ => false,
            },
            SinkError::Kafka { source, .. } => source
                .rdkafka_error_code()
                .is_some_and(paystream_common::kafka::is_retriable_code),
            SinkError::RegistryUnavailable { .. } => true,
            SinkError::Common(error) => error.is_retriable(),
            _ => false,
        }
    }

    /// The SQLSTATE of a PostgreSQL error, e.g. `22021`; `None` for any other error.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            SinkError::Database {
                source: sqlx::Error::Database(db),
                ..
            } => db.code().map(|code| code.into_owned()),
            _ => None,
        }
    }

    /// What PostgreSQL's SQLSTATE says about the failure ([`policy::classify_sqlstate`]);
    /// `None` when this is not an error PostgreSQL returned.
    pub fn sqlstate_class(&self) -> Option<policy::SqlStateClass> {
        self.sqlstate().map(|code| policy::classify_sqlstate(&code))
    }
}

/// `Result` with [`SinkError`].
pub type Result<T> = std::result::Result<T, SinkError>;

pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> SinkError {
    move |source| SinkError::Database { context, source }
}
