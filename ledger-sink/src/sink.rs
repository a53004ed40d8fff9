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
use paystream_processors::records::{self, PaymentRecord};
use paystream_processors::topology::PaymentTopics;
use paystream_processors::{DeadLetterReason, Origin, Stage};
use paystream_runtime::Config;
use paystream_runtime::dead_letter::{DeadLetterRecord, dead_letter_record, headers};
use paystream_runtime::health::Health;
use paystream_runtime::kafka::partition_count;
use paystream_runtime::kafka::{client_config, read_committed_consumer_config};
use paystream_runtime::lag::{EndOffsets, offsets};
use paystream_runtime::metrics::Metrics;
use paystream_runtime::topics::TopicNames;
use paystream_schemas::{Codec, DecodeError, DecodeErrorKind};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::service::{Batch, BatchOutcome, BatchRecord, Content, LedgerDatabase, Rejection};
use crate::{Result, SinkError};

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
    names: PaymentTopics,
    codec: Arc<Codec>,
    database: LedgerDatabase,
    /// Produces the sink's dead letters (idempotent, not transactional: the PostgreSQL
    /// transaction is the commit point).
    producer: FutureProducer,
    health: Arc<Health>,
    metrics: Metrics,
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
    /// [`SinkError::Kafka`] / [`SinkError::Runtime`] for Kafka and missing topics.
    pub async fn new(
        config: Config,
        codec: Arc<Codec>,
        health: Arc<Health>,
        metrics: Metrics,
    ) -> Result<Self> {
        // PostgreSQL may be restarting: retry the first connection, bounded and logged.
        let database = (|| LedgerDatabase::connect(&config.sink, 4))
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
                paystream_runtime::topics::PRODUCER_RECORD_BYTES_MAX,
            )
            .create()
            .map_err(|source| SinkError::Kafka {
                context: "creating the sink's dead-letter producer".into(),
                source,
            })?;
        let stored = database.load_offsets().await?;
        let shared = Shared {
            config,
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

impl SinkTask {
    /// Creates the task's consumer and end-offsets client and assigns it every partition
    /// of `topics` at its offset in `stored` (the beginning when none is stored).
    ///
    /// # Errors
    /// [`SinkError::Kafka`] / [`SinkError::Runtime`] for Kafka, a missing topic or a
    /// dead-letter topic with fewer partitions than its source.
    fn new(
        shared: &Shared,
        name: &'static str,
        topics: &[&str],
        stored: &HashMap<(String, i32), i64>,
    ) -> Result<Self> {
        let config = &shared.config;
        let metrics = &shared.metrics;
        let group = format!("{}-ledger-sink", config.application_id);
        let consumer: StreamConsumer = read_committed_consumer_config(config, &group)
            .create()
            .map_err(|source| SinkError::Kafka {
                context: "creating the sink consumer".into(),
                source,
            })?;
        let end_offsets = EndOffsets::new(config, &group).map_err(|source| SinkError::Kafka {
            context: "creating the sink's end-offsets client".into(),
            source,
        })?;
        let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
        let mut assignment = TopicPartitionList::new();
        let mut next_offsets = HashMap::new();
        for &topic in topics {
            // Series start at 0, so that the first dead letter shows as an increase.
            metrics
                .sink_dead_lettered
                .with_label_values(&[topic, DeadLetterReason::SinkRejected.as_str()]);
            let partitions =
                tokio::task::block_in_place(|| partition_count(&consumer, topic, timeout))?;
            // A dead letter goes to its source's partition number.
            let dead_letter_topic = TopicNames::dead_letter(topic);
            let dead_letter_partitions = tokio::task::block_in_place(|| {
                partition_count(&consumer, &dead_letter_topic, timeout)
            })?;
            if dead_letter_partitions < partitions {
                return Err(paystream_runtime::Error::TooFewPartitions {
                    topic: dead_letter_topic,
                    found: dead_letter_partitions,
                    needed: partitions,
                }
                .into());
            }
            for partition in 0..partitions {
                let offset = stored
                    .get(&(topic.to_string(), partition))
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(|source| SinkError::Kafka {
                        context: "building the sink assignment".into(),
                        source,
                    })?;
                if let Offset::Offset(o) = offset {
                    next_offsets.insert((topic.to_string(), partition), o);
                }
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|source| SinkError::Kafka {
                context: "assigning the sink partitions".into(),
                source,
            })?;
        info!(
            task = name,
            ?topics,
            partitions = assignment.count(),
            resumed_from_stored_offsets = next_offsets.len(),
            "sink task started"
        );
        Ok(SinkTask {
            name,
            consumer,
            next_offsets,
            end_offsets,
            last_lag_update: Instant::now(),
        })
    }

    /// Runs the task until `shutdown` turns true, or until `upstream_done` is true and every
    /// assigned partition has been written up to its end.
    ///
    /// # Errors
    /// A non-retriable [`SinkError`], or a retriable one that outlasted the retries.
    async fn run(
        mut self,
        shared: &Shared,
        mut shutdown: watch::Receiver<bool>,
        upstream_done: watch::Receiver<bool>,
    ) -> Result<SinkSummary> {
        let mut summary = SinkSummary::default();
        let linger = Duration::from_millis(shared.config.sink.batch_linger_ms);
        loop {
            let mut batch = Batch::default();
            // Until the first record: wake up now and then to check lag and the end.
            let mut deadline = tokio::time::Instant::now() + IDLE_WAKE;
            while batch.len() < shared.config.sink.batch_rows_max {
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            shared.write(self.name, &batch, &mut summary).await?;
                            return Ok(summary);
                        }
                    }
                    received = tokio::time::timeout_at(deadline, self.consumer.recv()) => {
                        match received {
                            Ok(Ok(message)) => {
                                if batch.is_empty() {
                                    deadline = tokio::time::Instant::now() + linger;
                                }
                                shared.add(&mut batch, &message).await?;
                            }
                            Ok(Err(e)) => warn!(error = %e, "sink consumer error (librdkafka retries)"),
                            Err(_linger_elapsed) => break,
                        }
                    }
                }
            }
            let wrote_records = !batch.is_empty();
            for (key, offset) in &batch.next_offsets {
                self.next_offsets.insert(key.clone(), *offset);
            }
            shared.write(self.name, &batch, &mut summary).await?;
            if self.last_lag_update.elapsed() >= LAG_UPDATE_INTERVAL {
                self.caught_up(shared)?;
            }
            if !wrote_records && *upstream_done.borrow() && self.caught_up(shared)? {
                info!(task = self.name, ?summary, "sink task caught up");
                return Ok(summary);
            }
        }
    }

    /// True when every assigned partition has been read to its high watermark; sets the
    /// sink lag per partition on the way.
    fn caught_up(&mut self, shared: &Shared) -> Result<bool> {
        self.last_lag_update = Instant::now();
        let timeout = Duration::from_millis(shared.config.kafka.request_timeout_ms);
        let kafka = |context: &str| {
            let context = context.to_string();
            move |source| SinkError::Kafka { context, source }
        };
        let positions = offsets(
            &self
                .consumer
                .position()
                .map_err(kafka("reading sink positions"))?,
        );
        let assigned: Vec<(String, i32)> = self
            .consumer
            .assignment()
            .map_err(kafka("reading the sink's assignment"))?
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // One ListOffsets request on a client of its own (see `EndOffsets`).
        let ends = self
            .end_offsets
            .ends(&assigned, timeout)
            .map_err(kafka("listing the ends of the sink's partitions"))?;
        // Not read in this run and never written: from the first offset retention kept.
        let unread: Vec<(String, i32)> = assigned
            .iter()
            .filter(|key| !positions.contains_key(*key) && !self.next_offsets.contains_key(*key))
            .cloned()
            .collect();
        let starts = if unread.is_empty() {
            HashMap::new()
        } else {
            self.end_offsets
                .starts(&unread, timeout)
                .map_err(kafka("listing the starts of the sink's partitions"))?
        };
        let mut all = true;
        for key in &assigned {
            let high = ends.get(key).copied().unwrap_or(0);
            // librdkafka's position moves past transaction markers; our own record of
            // written offsets covers partitions not read in this run.
            let position = positions
                .get(key)
                .copied()
                .into_iter()
                .chain(self.next_offsets.get(key).copied())
                .chain(starts.get(key).copied())
                .max()
                .unwrap_or(0);
            shared
                .metrics
                .sink_lag
                .with_label_values(&[&key.0, &key.1.to_string()])
                .set((high - position).max(0));
            if position < high {
                all = false;
            }
        }
        Ok(all)
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
            self.metrics.sink_errors.inc();
            warn!(error = %e, ?delay, "ledger write failed, retrying");
        })
        .await
        .inspect_err(|_| self.metrics.sink_errors.inc())?;
        self.health.set_database_reachable(task, true);
        for (table, rows) in [
            ("journal_entries", outcome.entries_written),
            ("postings", outcome.postings_written),
            ("payments", outcome.statuses_written),
            ("reconciliation_exceptions", outcome.exceptions_written),
        ] {
            self.metrics
                .sink_rows_written
                .with_label_values(&[table])
                .inc_by(rows);
        }
        for rejection in &rejections {
            let origin = &batch.records[rejection.index].origin;
            self.metrics
                .sink_dead_lettered
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

    /// Produces the dead letter of each rejected record of `batch` to `<source
    /// topic>.dlq` (same partition, original key and bytes, headers of
    /// [`dead_letter_record`] with stage `sink`) and waits for every delivery.
    ///
    /// # Errors
    /// [`SinkError::Kafka`] when a dead letter is not delivered.
    async fn produce_dead_letters(&self, batch: &Batch, rejections: &[Rejection]) -> Result<()> {
        for rejection in rejections {
            let origin = &batch.records[rejection.index].origin;
            let record = sink_dead_letter(origin, rejection, &self.config.application_id);
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                });
            }
            let mut kafka_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic)
                .partition(record.partition)
                .timestamp(record.timestamp_ms)
                .headers(headers);
            if let Some(key) = record.key.as_deref() {
                kafka_record = kafka_record.key(key);
            }
            if let Some(value) = record.value.as_deref() {
                kafka_record = kafka_record.payload(value);
            }
            self.producer
                .send(kafka_record, rdkafka::util::Timeout::Never)
                .await
                .map_err(|(source, _)| SinkError::Kafka {
                    context: format!(
                        "producing the dead letter of {}/{}@{} to {}",
                        origin.topic, origin.partition, origin.offset, record.topic
                    ),
                    source,
                })?;
        }
        Ok(())
    }
}

/// The dead letter of a record the sink rejected: [`dead_letter_record`] with the
/// rejection's reason and error, and one `paystream.dlq.stage` header, `sink`.
pub fn sink_dead_letter(
    origin: &Origin,
    rejection: &Rejection,
    application_id: &str,
) -> DeadLetterRecord {
    let mut record = dead_letter_record(
        origin,
        rejection.reason.into(),
        &rejection.error,
        application_id,
    );
    record.headers.retain(|(name, _)| *name != headers::STAGE);
    record
        .headers
        .push((headers::STAGE, Stage::Sink.as_str().to_string()));
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_dead_letter_keeps_the_bytes_and_says_sink_rejected_at_stage_sink() {
        let origin = Origin {
            topic: "t1.ledger_entries".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"pay-1".to_vec()),
            value: Some(b"\x00\x00\x00\x00\x07entry".to_vec()),
        };
        let rejection = Rejection {
            index: 0,
            reason: DeadLetterReason::SinkRejected,
            sqlstate: Some("22021".into()),
            error: "invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)".into(),
        };
        let record = sink_dead_letter(&origin, &rejection, "app");
        assert_eq!(record.topic, "t1.ledger_entries.dlq");
        assert_eq!(record.partition, 2);
        assert_eq!(record.key, origin.key);
        assert_eq!(record.value, origin.value);
        let header = |name: &str| -> Vec<&str> {
            record
                .headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(header(headers::REASON), ["sink_rejected"]);
        assert_eq!(header(headers::STAGE), ["sink"]);
        assert_eq!(header(headers::SOURCE_TOPIC), ["t1.ledger_entries"]);
        assert_eq!(header(headers::SOURCE_PARTITION), ["2"]);
        assert_eq!(header(headers::SOURCE_OFFSET), ["41"]);
        assert!(header(headers::ERROR)[0].contains("22021"));
    }
}
