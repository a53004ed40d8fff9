//! Consuming, batching, retrying and dead-lettering. A batch closes at
//! `sink.batch_rows_max` records or `sink.batch_linger_ms` after its first record,
//! whichever comes first (the pipeline's outputs arrive in bursts, one per committed
//! transaction, so a short linger takes a whole burst and adds little latency; under
//! load the records that arrive while a batch is written fill the next one);
//! it is written with its offsets in one database transaction. Retriable errors are
//! retried with exponential backoff (bounded); a record's bad data never stops the sink:
//! [`crate::service`] sets the record aside and this module produces its dead letter to
//! `<source topic>.dlq` before the transaction commits — at least once: a failure between
//! the produce and the commit writes the batch, and its dead letters, again. Any other
//! error stops the sink.
//!
//! The sink runs as two sink tasks (as a Kafka Connect sink splits its partitions into
//! tasks), each with its own consumer, batches and PostgreSQL transactions: one for
//! `ledger_entries` and one for `payment_status` and `reconciliation_exceptions`. The
//! two write disjoint rows (only the first takes account locks), and each stores the
//! offsets of its own partitions with its rows, so each is exactly-once on its own and
//! neither waits for the other's batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use paystream_common::Config;
use paystream_common::dead_letter::{DeadLetterRecord, dead_letter_record_at};
use paystream_common::health::Health;
use paystream_common::kafka::partition_count;
use paystream_common::kafka::{client_config, read_committed_consumer_config};
use paystream_common::offsets::{EndOffsets, offsets};
use paystream_common::topics::TopicNames;
use paystream_processors::names::PaymentTopics;
use paystream_processors::records::{self, PaymentRecord};
use paystream_processors::{DeadLetterReason, Origin, Stage};
use paystream_schemas::{Codec, DecodeError, DecodeErrorKind};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::SinkConfig;
use crate::metrics::SinkMetrics;
use crate::service::{Batch, BatchOutcome, BatchRecord, Content, LedgerDatabase, Rejection};
use crate::{Result, SinkError};

mod dead_letters;
mod task;

pub use dead_letters::sink_dead_letter;

/// What the sink wrote in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkSummary {
    pub batches: u64,
    pub records: u64,
    pub entries_written: u64,
    pub entries_skipped: u64,
    pub postings_written: u64,
    pub statuses_written: u64,
    /// Reconciliation exceptions inserted.
    pub exceptions_written: u64,
    /// Records dead-lettered to `<source topic>.dlq` instead of written.
    pub dead_lettered: u64,
    /// When the last batch that wrote rows committed, milliseconds since the Unix epoch
    /// (the end of the end-to-end figure `paystream run` prints).
    pub last_write_commit_unix_ms: Option<i64>,
}

/// The ledger sink of one process: its sink tasks and what they share.
pub struct LedgerSink {
    shared: Shared,
    tasks: [SinkTask; 2],
}

/// What a process's sink tasks share: decoding, the database pool, dead letters, health.
struct Shared {
    config: Config,
    sink: SinkConfig,
    names: PaymentTopics,
    codec: Arc<Codec>,
    database: LedgerDatabase,
    /// Produces the sink's dead letters (idempotent, not transactional: the PostgreSQL
    /// transaction is the commit point).
    producer: FutureProducer,
    health: Arc<Health>,
    metrics: SinkMetrics,
}

/// One sink task: a consumer assigned every partition of its topics, whose batches it
/// writes one at a time, each in one PostgreSQL transaction with their offsets.
struct SinkTask {
    /// `ledger_entries` or `statuses` (log field).
    name: &'static str,
    consumer: StreamConsumer,
    /// Next offset to read per assigned partition, as stored or as written since.
    next_offsets: HashMap<(String, i32), i64>,
    /// Partition ends for the lag and the caught-up check, asked without waiting behind
    /// the consumer's fetch long poll.
    end_offsets: EndOffsets,
    last_lag_update: Instant,
}

/// How often the sink's lag is measured while it runs.
const LAG_UPDATE_INTERVAL: Duration = Duration::from_secs(5);

/// How long the sink waits for a first record before it checks lag and whether the
/// pipeline has finished.
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// How long one dead letter may take to be delivered, milliseconds, before the batch
/// fails (and is retried).
const DEAD_LETTER_DELIVERY_TIMEOUT_MS: &str = "30000";

impl LedgerSink {
    /// Connects to PostgreSQL (applying migrations), checks that the sink's dead-letter
    /// topics exist, and assigns each sink task its topics' partitions at the offsets
    /// stored in `sink_offsets` (the beginning when none is stored).
    ///
    /// # Errors
    /// [`SinkError::Database`] / [`SinkError::Migrate`] for PostgreSQL,
    /// [`SinkError::Kafka`] / [`SinkError::Common`] for Kafka, missing topics and
    /// dead-letter topics with too few partitions.
    pub async fn new(
        config: Config,
        sink: SinkConfig,
        codec: Arc<Codec>,
        health: Arc<Health>,
        metrics: SinkMetrics,
    ) -> Result<Self> {
        // PostgreSQL may be restarting: retry the first connection, bounded and logged.
        let database = (|| LedgerDatabase::connect(&sink, 4))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(10),
            )
            .when(SinkError::is_retriable)
            .notify(|e, delay| warn!(error = %e, ?delay, "cannot reach PostgreSQL, retrying"))
            .await?;
        let names = PaymentTopics::new(&config);
        let producer: FutureProducer = client_config(&config)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", DEAD_LETTER_DELIVERY_TIMEOUT_MS)
            .set(
                "message.max.bytes",
                paystream_common::topics::PRODUCER_RECORD_BYTES_MAX,
            )
            .create()
            .map_err(|source| SinkError::Kafka {
                context: "creating the sink's dead-letter producer".into(),
                source,
            })?;
        let stored = database.load_offsets().await?;
        let shared = Shared {
            config,
            sink,
            names,
            codec,
            database,
            producer,
            health,
            metrics,
        };
        let tasks = [
            SinkTask::new(
                &shared,
                "ledger_entries",
                &[&shared.names.ledger_entries],
                &stored,
            )?,
            SinkTask::new(
                &shared,
                "statuses",
                &[
                    &shared.names.payment_status,
                    &shared.names.reconciliation_exceptions,
                ],
                &stored,
            )?,
        ];
        Ok(LedgerSink { shared, tasks })
    }

    /// Runs the sink tasks until `shutdown` turns true, or until `upstream_done` is true
    /// and every assigned partition has been written up to its end; returns what they
    /// wrote together.
    ///
    /// # Errors
    /// A non-retriable [`SinkError`], or a retriable one that outlasted the retries, of
    /// either task (the other then stops where it is: its open transaction rolls back).
    pub async fn run(
        self,
        shutdown: watch::Receiver<bool>,
        upstream_done: watch::Receiver<bool>,
    ) -> Result<SinkSummary> {
        let LedgerSink {
            shared,
            tasks: [ledger_entries, statuses],
        } = self;
        let (first, second) = tokio::try_join!(
            ledger_entries.run(&shared, shutdown.clone(), upstream_done.clone()),
            statuses.run(&shared, shutdown, upstream_done),
        )?;
        let summary = first.merged(second);
        info!(?summary, "ledger sink stopped");
        Ok(summary)
    }
}

impl SinkSummary {
    /// The sum of two tasks' summaries; the later last commit.
    fn merged(self, other: SinkSummary) -> SinkSummary {
        SinkSummary {
            batches: self.batches + other.batches,
            records: self.records + other.records,
            entries_written: self.entries_written + other.entries_written,
            entries_skipped: self.entries_skipped + other.entries_skipped,
            postings_written: self.postings_written + other.postings_written,
            statuses_written: self.statuses_written + other.statuses_written,
            exceptions_written: self.exceptions_written + other.exceptions_written,
            dead_lettered: self.dead_lettered + other.dead_lettered,
            last_write_commit_unix_ms: self
                .last_write_commit_unix_ms
                .max(other.last_write_commit_unix_ms),
        }
    }
}

impl Shared {
    /// Decodes `message` into the batch. A record that does not decode joins the batch
    /// as [`Content::Undecodable`] (it is dead-lettered when the batch is written).
    ///
    /// # Errors
    /// [`SinkError::RegistryUnavailable`] when the Schema Registry stays unreachable.
    async fn add(&self, batch: &mut Batch, message: &BorrowedMessage<'_>) -> Result<()> {
        let origin = Origin {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
        };
        let content = match self.decode(&origin.topic, message.payload()).await {
            Ok(PaymentRecord::JournalEntry(entry)) => Content::Entry(entry),
            Ok(PaymentRecord::Exception(exception)) => Content::Exception(exception),
            Ok(PaymentRecord::Status(status)) => Content::Status(status),
            Ok(PaymentRecord::Event(_)) => Content::Undecodable(format!(
                "{}: the ledger sink does not read input events",
                DeadLetterReason::UnknownSchema
            )),
            Err(e) if e.is_retriable() => {
                return Err(SinkError::RegistryUnavailable {
                    topic: origin.topic,
                    partition: origin.partition,
                    offset: origin.offset,
                    message: e.message,
                });
            }
            Err(e) => {
                let reason = match e.kind {
                    DecodeErrorKind::BadMagicByte => DeadLetterReason::BadMagicByte,
                    DecodeErrorKind::UnknownSchema => DeadLetterReason::UnknownSchema,
                    DecodeErrorKind::Undecodable | DecodeErrorKind::RegistryUnavailable => {
                        DeadLetterReason::Undecodable
                    }
                };
                Content::Undecodable(format!("{reason}: {}", e.message))
            }
        };
        batch
            .next_offsets
            .insert((origin.topic.clone(), origin.partition), origin.offset + 1);
        batch.records.push(BatchRecord { origin, content });
        Ok(())
    }

    /// Decodes a value of `topic` (a topic the sink reads), retrying (bounded) while
    /// the Schema Registry is unreachable.
    async fn decode(
        &self,
        topic: &str,
        payload: Option<&[u8]>,
    ) -> std::result::Result<PaymentRecord, DecodeError> {
        let record_type = self.names.record_type(topic).map_err(|unknown| {
            DecodeError::new(DecodeErrorKind::UnknownSchema, unknown.to_string())
        })?;
        (|| records::decode(&self.codec, record_type, payload))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(8),
            )
            .when(DecodeError::is_retriable)
            .notify(|e, delay| {
                warn!(error = %e.message, ?delay, "schema registry unavailable, retrying")
            })
            .await
    }

    /// Writes `batch` of sink task `task`: rows, dead-letter rows and offsets in one
    /// PostgreSQL transaction; the dead letters are produced to Kafka before it commits.
    /// The task's database reachability (`/readyz`) follows the outcome.
    async fn write(&self, task: &str, batch: &Batch, summary: &mut SinkSummary) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (outcome, rejections): (BatchOutcome, Vec<Rejection>) = (|| async move {
            let staged = self.database.stage_batch(batch).await?;
            self.produce_dead_letters(batch, &staged.rejections).await?;
            staged.commit().await
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(12),
        )
        .when(SinkError::is_retriable)
        .notify(|e, delay| {
            if matches!(e, SinkError::Database { .. }) {
                self.health.set_database_reachable(task, false);
            }
            self.metrics.errors.inc();
            warn!(error = %e, ?delay, "ledger write failed, retrying");
        })
        .await
        .inspect_err(|_| self.metrics.errors.inc())?;
        self.health.set_database_reachable(task, true);
        for (table, rows) in [
            ("journal_entries", outcome.entries_written),
            ("postings", outcome.postings_written),
            ("payments", outcome.statuses_written),
            ("reconciliation_exceptions", outcome.exceptions_written),
        ] {
            self.metrics
                .rows_written
                .with_label_values(&[table])
                .inc_by(rows);
        }
        for rejection in &rejections {
            let origin = &batch.records[rejection.index].origin;
            self.metrics
                .dead_lettered
                .with_label_values(&[&origin.topic, rejection.reason.as_str()])
                .inc();
            warn!(
                topic = %origin.topic,
                partition = origin.partition,
                offset = origin.offset,
                reason = %rejection.reason,
                sqlstate = rejection.sqlstate.as_deref().unwrap_or(""),
                error = %rejection.error,
                "record dead-lettered by the ledger sink"
            );
        }
        summary.batches += 1;
        summary.records += batch.len() as u64;
        summary.entries_written += outcome.entries_written;
        summary.entries_skipped += outcome.entries_skipped;
        summary.postings_written += outcome.postings_written;
        summary.statuses_written += outcome.statuses_written;
        summary.exceptions_written += outcome.exceptions_written;
        summary.dead_lettered += outcome.dead_lettered;
        summary.last_write_commit_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64);
        tracing::debug!(
            records = batch.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ledger batch written"
        );
        Ok(())
    }
}
