//! Consuming, batching and retrying. A batch closes at `sink.batch_rows_max` records or
//! after `sink.batch_linger_ms`, whichever comes first; it is written with its offsets
//! in one database transaction. Retriable database errors are retried with exponential
//! backoff (bounded); anything else stops the sink with the error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use paystream_runtime::Config;
use paystream_runtime::health::Health;
use paystream_runtime::kafka::read_committed_consumer_config;
use paystream_runtime::metrics::Metrics;
use paystream_runtime::topics::{TopicNames, partition_count};
use paystream_schemas::{Codec, JournalEntry, PaymentStatusChanged, ReconciliationException};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::service::{Batch, BatchOutcome, LedgerDatabase, Source};
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
}

/// The ledger sink of one process.
pub struct LedgerSink {
    config: Config,
    names: TopicNames,
    codec: Arc<Codec>,
    database: LedgerDatabase,
    consumer: StreamConsumer,
    health: Arc<Health>,
    metrics: Metrics,
    /// Next offset to read per assigned partition, as stored or as written since.
    next_offsets: HashMap<(String, i32), i64>,
    last_lag_update: Instant,
}

/// How often the sink's lag is measured while it runs.
const LAG_UPDATE_INTERVAL: Duration = Duration::from_secs(5);

impl LedgerSink {
    /// Connects to PostgreSQL (applying migrations) and assigns the output partitions at
    /// the offsets stored in `sink_offsets` (the beginning when none is stored).
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
        let names = TopicNames::new(&config);
        let consumer: StreamConsumer = read_committed_consumer_config(
            &config,
            &format!("{}-ledger-sink", config.application_id),
        )
        .create()
        .map_err(|source| SinkError::Kafka {
            context: "creating the sink consumer".into(),
            source,
        })?;
        let stored = database.load_offsets().await?;
        let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
        let mut assignment = TopicPartitionList::new();
        let mut next_offsets = HashMap::new();
        for topic in [
            &names.ledger_entries,
            &names.payment_status,
            &names.reconciliation_exceptions,
        ] {
            let partitions =
                tokio::task::block_in_place(|| partition_count(&consumer, topic, timeout))?;
            for partition in 0..partitions {
                let offset = stored
                    .get(&(topic.clone(), partition))
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(|source| SinkError::Kafka {
                        context: "building the sink assignment".into(),
                        source,
                    })?;
                if let Offset::Offset(o) = offset {
                    next_offsets.insert((topic.clone(), partition), o);
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
            partitions = assignment.count(),
            resumed_from_stored_offsets = stored.len(),
            "ledger sink started"
        );
        Ok(LedgerSink {
            config,
            names,
            codec,
            database,
            consumer,
            health,
            metrics,
            next_offsets,
            last_lag_update: Instant::now(),
        })
    }

    /// Runs until `shutdown` turns true, or until `upstream_done` is true and every
    /// assigned partition has been written up to its end.
    ///
    /// # Errors
    /// A non-retriable [`SinkError`], or a retriable one that outlasted the retries.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        upstream_done: watch::Receiver<bool>,
    ) -> Result<SinkSummary> {
        let mut summary = SinkSummary::default();
        let linger = Duration::from_millis(self.config.sink.batch_linger_ms);
        loop {
            let mut batch = Batch::default();
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < self.config.sink.batch_rows_max {
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            self.write(&batch, &mut summary).await?;
                            return Ok(summary);
                        }
                    }
                    received = tokio::time::timeout_at(deadline, self.consumer.recv()) => {
                        match received {
                            Ok(Ok(message)) => self.add(&mut batch, &message).await?,
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
            self.write(&batch, &mut summary).await?;
            if self.last_lag_update.elapsed() >= LAG_UPDATE_INTERVAL {
                self.caught_up()?;
            }
            if !wrote_records && *upstream_done.borrow() && self.caught_up()? {
                info!(?summary, "ledger sink caught up");
                return Ok(summary);
            }
        }
    }

    async fn add(&self, batch: &mut Batch, message: &BorrowedMessage<'_>) -> Result<()> {
        let source = Source {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let undecodable = |e: paystream_schemas::DecodeError| SinkError::Undecodable {
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
            message: e.message,
        };
        if source.topic == self.names.ledger_entries {
            let entry: JournalEntry = self
                .codec
                .decode(message.payload())
                .await
                .map_err(undecodable)?;
            batch.entries.push((entry, source.clone()));
        } else if source.topic == self.names.reconciliation_exceptions {
            let exception: ReconciliationException = self
                .codec
                .decode(message.payload())
                .await
                .map_err(undecodable)?;
            batch.exceptions.push((exception, source.clone()));
        } else {
            let status: PaymentStatusChanged = self
                .codec
                .decode(message.payload())
                .await
                .map_err(undecodable)?;
            batch.statuses.push(status);
        }
        batch
            .next_offsets
            .insert((source.topic, source.partition), source.offset + 1);
        Ok(())
    }

    async fn write(&self, batch: &Batch, summary: &mut SinkSummary) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let outcome: BatchOutcome = (|| self.database.write_batch(batch))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(12),
            )
            .when(SinkError::is_retriable)
            .notify(|e, delay| {
                self.health.set_database_reachable(false);
                self.metrics.sink_errors.inc();
                warn!(error = %e, ?delay, "ledger write failed, retrying");
            })
            .await
            .inspect_err(|_| self.metrics.sink_errors.inc())?;
        self.health.set_database_reachable(true);
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
        summary.batches += 1;
        summary.records += batch.len() as u64;
        summary.entries_written += outcome.entries_written;
        summary.entries_skipped += outcome.entries_skipped;
        summary.postings_written += outcome.postings_written;
        summary.statuses_written += outcome.statuses_written;
        summary.exceptions_written += outcome.exceptions_written;
        tracing::debug!(
            records = batch.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ledger batch written"
        );
        Ok(())
    }

    /// True when every assigned partition has been read to its high watermark; sets the
    /// sink lag per partition on the way.
    fn caught_up(&mut self) -> Result<bool> {
        self.last_lag_update = Instant::now();
        let mut all = true;
        let timeout = Duration::from_millis(self.config.kafka.request_timeout_ms);
        let positions = self
            .consumer
            .position()
            .map_err(|source| SinkError::Kafka {
                context: "reading sink positions".into(),
                source,
            })?;
        for element in positions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = tokio::task::block_in_place(|| {
                self.consumer.fetch_watermarks(topic, partition, timeout)
            })
            .map_err(|source| SinkError::Kafka {
                context: format!("fetching watermarks of {topic}/{partition}"),
                source,
            })?;
            // librdkafka's position moves past transaction markers; our own record of
            // written offsets covers partitions not read in this run.
            let consumed = match element.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            let written = self
                .next_offsets
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or(low);
            let position = consumed.max(written);
            self.metrics
                .sink_lag
                .with_label_values(&[topic, &partition.to_string()])
                .set((high - position).max(0));
            if position < high {
                all = false;
            }
        }
        Ok(all)
    }
}
