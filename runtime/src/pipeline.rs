//! The processing loop: consume → process → produce → commit, once per commit interval,
//! in one Kafka transaction (docs/architecture.md, "Exactly once").
//!
//! Per record: route to its task, decode (dead-letter on failure), validate, run the
//! processor, produce its outputs. Per commit: produce the changelog records of every
//! store's open writes, send the consumed offsets with the consumer group metadata
//! (KIP-447), commit the transaction, then apply the store writes to RocksDB. A commit
//! that must abort discards the store writes and rewinds the consumer to the last
//! committed offsets, so the same records are processed again in a new transaction.
//!
//! No single record stops the pipeline (docs/architecture.md, "Bad input"). A record
//! whose data fails a stage is dead-lettered with the stage in its headers:
//! - decode and validate: at once, before any processor sees it;
//! - process: a processor that panics on a record has made partial store writes, so the
//!   transaction is aborted and the record is dead-lettered when it is read again;
//! - produce: an output that cannot be encoded, or that the broker refuses for its data
//!   (too large, a timestamp out of the topic's window), makes the transaction abortable.
//!   The input records whose outputs were refused are found from the delivery reports.
//!   A single one is dead-lettered when read again; several (a refused batch fails all
//!   its records) become suspects, each processed in a transaction of its own, so the
//!   one that fails alone is known exactly (Kafka Streams' production exception
//!   handler is the model).
//!
//! Only the environment (broker, registry, state stores, fencing) stops or retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use paystream_processors::Stream;
use paystream_processors::{DeadLetterReason, Stage};
use paystream_schemas::Codec;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::eos_producer::ExactlyOnceProducer;
use crate::health::Health;
use crate::kafka::partition_count;
use crate::kafka::{client_config, read_committed_consumer_config};
use crate::lag::{LagTracker, RebalanceListener, STATISTICS_INTERVAL_MS, caught_up};
use crate::metrics::Metrics;
use crate::poison::{PoisonRecords, RecordId};
use crate::record_collector::{RecordCollector, origin_headers_of};
use crate::source::Source;
use crate::task::{SubTopology, TaskId};
use crate::task_manager::TaskManager;
use crate::topics::{TopicNames, check_topics};
use crate::{Error, Result};

/// How often consumed records of the repartition topic are deleted.
const REPARTITION_PURGE_INTERVAL: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Counts of one run, for the summary `paystream run` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from the four input topics.
    pub input_records: u64,
    /// Records dropped as duplicates (idempotency key retries and repeated event ids).
    pub duplicates_dropped: u64,
    /// Records written to dead-letter queues, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Input records on another partition than their key's murmur2 partition (auths and
    /// settlements among them were rerouted to their payment's task).
    pub misrouted: u64,
    /// Status changes produced to `payment_status`.
    pub status_changes: u64,
    /// Journal entries produced to `ledger_entries`.
    pub journal_entries: u64,
    /// Reconciliation exceptions produced, by kind.
    pub exceptions: BTreeMap<String, u64>,
    /// Committed transactions.
    pub commits: u64,
    /// From the first record read to the last commit, milliseconds.
    pub processing_ms: u64,
}

/// How long [`Pipeline::close`] serves the revocation of its partitions after
/// unsubscribing before it closes the consumer anyway.
const CLOSE_REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running pipeline of one instance.
pub struct Pipeline {
    config: Config,
    names: TopicNames,
    consumer: StreamConsumer<RebalanceListener>,
    rebalances: Arc<AtomicU64>,
    rebalances_seen: u64,
    health: Arc<Health>,
    producer: ExactlyOnceProducer,
    admin: AdminClient<DefaultClientContext>,
    last_purge_at: Instant,
    metrics: Metrics,
    /// The tasks and their processors.
    tasks: TaskManager,
    /// Next offset to commit per partition, for records of the open transaction.
    pending_offsets: HashMap<(String, i32), i64>,
    /// Next offset committed per partition, for rewinding after an abort.
    committed_offsets: HashMap<(String, i32), i64>,
    records_in_transaction: usize,
    /// Sends outputs in the open transaction and counts what it did.
    collector: RecordCollector,
    /// Partitions of `payment_initiated` (the dedupe tasks writing the repartition topic).
    upstream_partitions: usize,
    /// Size, routing, decoding and validation of consumed records.
    source: Source,
    /// Records found to fail a stage by their data, and suspects.
    poison: PoisonRecords,
    /// Input records of the open transaction, in the order they were read.
    transaction_inputs: Vec<RecordId>,
    /// Commit after the record just processed (a suspect processed alone).
    commit_requested: bool,
    /// Bumped at every abort: a record read before it was rewound and is dropped.
    generation: u64,
    timeout: Duration,
    summary: RunSummary,
    first_record_at: Option<Instant>,
    last_commit_at: Option<Instant>,
    /// Timestamps of the lifecycle records in the open transaction, for the end-to-end
    /// latency observed at commit.
    transaction_timestamps_ms: Vec<i64>,
    /// Committed offsets shared with the consumer's statistics callback (consumer lag).
    lag: LagTracker,
}

impl Pipeline {
    /// Connects to Kafka, checks the topics, and initialises the transactional producer
    /// (which fences any earlier incarnation with the same transactional id).
    ///
    /// # Errors
    /// [`Error::Kafka`] when a client cannot be created or the broker does not answer;
    /// [`Error::TopicMissing`], [`Error::TooFewPartitions`] or [`Error::NotCoPartitioned`]
    /// when the topics do not fit the topology.
    pub async fn new(
        config: Config,
        codec: Arc<Codec>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Result<Self> {
        let names = TopicNames::new(&config);
        let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
        let rebalances = Arc::new(AtomicU64::new(0));
        let lag = LagTracker {
            committed: Arc::default(),
            gauge: metrics.consumer_lag.clone(),
        };
        let consumer: StreamConsumer<RebalanceListener> =
            read_committed_consumer_config(&config, &config.application_id)
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                // The range assignor gives one member the same partition numbers of every
                // co-partitioned topic, so a lifecycle task sees all events of its payments.
                .set("partition.assignment.strategy", "range")
                .set(
                    "group.instance.id",
                    format!("{}-{}", config.application_id, config.instance_id),
                )
                .set(
                    "session.timeout.ms",
                    config.processing.session_timeout_ms.to_string(),
                )
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
                .create_with_context(RebalanceListener {
                    rebalances: rebalances.clone(),
                    lag: lag.clone(),
                })
                .map_err(|e| Error::kafka("creating the consumer", e))?;
        tokio::task::block_in_place(|| check_topics(&config, &consumer))?;
        let upstream_partitions = tokio::task::block_in_place(|| {
            partition_count(&consumer, &names.payment_initiated, timeout)
        })? as usize;
        let lifecycle_partitions = tokio::task::block_in_place(|| {
            partition_count(&consumer, &names.payments_by_id, timeout)
        })?;
        let producer = ExactlyOnceProducer::new(&config)?;
        let admin: AdminClient<DefaultClientContext> = client_config(&config)
            .create()
            .map_err(|e| Error::kafka("creating the admin client", e))?;
        let inputs: Vec<&str> = names
            .inputs()
            .into_iter()
            .chain([names.payments_by_id.as_str()])
            .collect();
        consumer
            .subscribe(&inputs)
            .map_err(|e| Error::kafka("subscribing to the input topics", e))?;
        info!(
            application_id = %config.application_id,
            transactional_id = %producer.transactional_id(),
            topics = ?inputs,
            "pipeline started"
        );
        let collector = RecordCollector::new(
            producer.producer().clone(),
            names.clone(),
            codec.clone(),
            config.application_id.clone(),
        );
        let tasks = TaskManager::new(
            config.clone(),
            names.clone(),
            metrics.clone(),
            health.clone(),
        );
        let source = Source::new(
            names.clone(),
            codec.clone(),
            config.schema_registry.url.clone(),
            config.processing.event_time_skew_max_ms,
            upstream_partitions as i32,
            lifecycle_partitions,
        );
        Ok(Pipeline {
            names,
            consumer,
            rebalances,
            rebalances_seen: 0,
            health,
            producer,
            admin,
            last_purge_at: Instant::now(),
            metrics,
            tasks,
            pending_offsets: HashMap::new(),
            committed_offsets: HashMap::new(),
            records_in_transaction: 0,
            collector,
            upstream_partitions,
            source,
            poison: PoisonRecords::default(),
            transaction_inputs: Vec::new(),
            commit_requested: false,
            generation: 0,
            timeout,
            summary: RunSummary::default(),
            first_record_at: None,
            last_commit_at: None,
            transaction_timestamps_ms: Vec::new(),
            lag,
            config,
        })
    }

    /// Runs until `shutdown` turns true, or — with `stop_when_caught_up` — until every
    /// assigned partition has been consumed to its end and committed.
    ///
    /// # Errors
    /// Any non-retriable [`Error`]; the open transaction is then left to abort (the broker
    /// aborts it, or the next incarnation's `init_transactions` does).
    pub async fn run(
        mut self,
        shutdown: watch::Receiver<bool>,
        stop_when_caught_up: bool,
    ) -> Result<RunSummary> {
        let result = self.process(shutdown, stop_when_caught_up).await;
        // On errors too: dropping a consumer that still holds partitions can hang.
        self.close().await;
        result.map(|()| self.summary())
    }

    async fn process(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
        stop_when_caught_up: bool,
    ) -> Result<()> {
        self.producer.begin()?;
        self.health.set_running(true);
        // Stopped when dropped at the end of the run.
        let _dlq_depth = crate::dlq_depth::spawn(&self.config, self.metrics.clone())?;
        let interval = Duration::from_millis(self.config.processing.commit_interval_ms);
        let mut next_commit = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        info!("shutdown requested");
                        break;
                    }
                }
                received = tokio::time::timeout_at(next_commit, self.consumer.recv()) => {
                    let received = received.map(|r| r.map(|m| m.detach()));
                    if self.rebalances.load(Ordering::SeqCst) != self.rebalances_seen {
                        self.on_rebalance()?;
                    }
                    match received {
                        Ok(Ok(message)) => {
                            self.handle(message).await?;
                            if self.collector.must_abort() {
                                self.recover_from_failed_transaction(None).await?;
                            }
                        }
                        Ok(Err(e)) => warn!(error = %e, "consumer error (librdkafka retries)"),
                        Err(_interval_elapsed) => {}
                    }
                }
            }
            let due = tokio::time::Instant::now() >= next_commit;
            if due
                || self.commit_requested
                || self.records_in_transaction >= self.config.processing.transaction_records_max
            {
                self.commit_requested = false;
                if self.records_in_transaction > 0 {
                    self.commit().await?;
                } else if due
                    && stop_when_caught_up
                    && tokio::task::block_in_place(|| {
                        caught_up(
                            &self.consumer,
                            &self.names,
                            self.records_in_transaction,
                            self.timeout,
                        )
                    })?
                {
                    info!("caught up: every assigned partition consumed and committed");
                    break;
                }
                next_commit = tokio::time::Instant::now() + interval;
            }
        }
        if self.records_in_transaction > 0 {
            self.commit().await?;
        }
        self.purge_repartition_topic().await;
        Ok(())
    }

    fn summary(&self) -> RunSummary {
        let mut summary = self.summary.clone();
        summary.commits = self.metrics.commits.get();
        summary.processing_ms = match (self.first_record_at, self.last_commit_at) {
            (Some(first), Some(last)) if last > first => (last - first).as_millis() as u64,
            _ => 0,
        };
        summary
    }

    /// Leaves the group: aborts what is left of the open transaction, unsubscribes, and
    /// serves the resulting revocation here, before the consumer is dropped. A rebalance
    /// callback that runs inside librdkafka's consumer close can block in
    /// `rd_kafka_assign` forever (confluentinc/librdkafka#4884; it hung a CI run), so the
    /// consumer is closed only once it holds no partitions, or after
    /// [`CLOSE_REVOKE_TIMEOUT`] with a warning.
    async fn close(&mut self) {
        self.health.set_running(false);
        let _ = self.producer.abort("aborting at shutdown");
        self.consumer.unsubscribe();
        let deadline = tokio::time::Instant::now() + CLOSE_REVOKE_TIMEOUT;
        loop {
            let assigned = self.consumer.assignment().map_or(0, |a| a.count());
            if assigned == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    partitions = assigned,
                    timeout_ms = CLOSE_REVOKE_TIMEOUT.as_millis() as u64,
                    "partitions still assigned after unsubscribing; closing the consumer anyway"
                );
                break;
            }
            // Records fetched before the unsubscribe are discarded: their offsets were not
            // committed, so the next owner reads them again.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.consumer.recv()).await;
        }
        info!(tasks = self.tasks.len(), "pipeline stopped");
    }

    async fn handle(&mut self, message: OwnedMessage) -> Result<()> {
        let id = RecordId::of(&message);
        if self.poison.is_suspect(&id) && self.records_in_transaction > 0 {
            // A suspect gets a transaction of its own: commit what came before it.
            let generation = self.generation;
            self.commit().await?;
            if self.generation != generation {
                // That commit failed and the consumer was rewound: this record comes again.
                return Ok(());
            }
        }
        self.first_record_at.get_or_insert_with(Instant::now);
        let topic = message.topic().to_string();
        let partition = message.partition();
        self.pending_offsets
            .insert((topic.clone(), partition), message.offset() + 1);
        self.records_in_transaction += 1;
        *self
            .collector
            .counts
            .consumed
            .entry(topic.clone())
            .or_insert(0) += 1;
        if topic != self.names.payments_by_id {
            self.collector.counts.input_records += 1;
        }
        if self.poison.is_suspect(&id) {
            self.commit_requested = true;
        }
        self.collector.begin_record(self.transaction_inputs.len());
        self.transaction_inputs.push(id.clone());
        let result = self.handle_record(&id, &message).await;
        if let Some(failure) = self.collector.end_record() {
            warn!(
                topic = %id.topic,
                partition = id.partition,
                offset = id.offset,
                reason = %failure.reason,
                stage = %failure.stage,
                "record failed; aborting the transaction to dead-letter it"
            );
            self.poison.poison(id, failure);
        }
        result
    }

    /// The stages of one record: known poison, size, routing, decode, validation, the
    /// processor, its outputs.
    async fn handle_record(&mut self, id: &RecordId, message: &OwnedMessage) -> Result<()> {
        let topic = message.topic();
        let partition = message.partition();
        let mut origin = self.source.origin_of(message);
        if origin.timestamp_ms <= 0 {
            origin.timestamp_ms = now_ms();
        }
        // Outputs carry the input record's timestamp, which the broker accepted once
        // already (as Kafka Streams does), never a time from the payload.
        let timestamp_ms = origin.timestamp_ms;
        if let Some(poisoned) = self.poison.poisoned(id).cloned() {
            return self
                .collector
                .dead_letter(&origin, poisoned.reason, poisoned.stage, &poisoned.message)
                .await;
        }
        if let Some(error) = Source::too_large(message) {
            return self
                .collector
                .dead_letter(
                    &origin,
                    DeadLetterReason::RecordTooLarge,
                    Stage::Decode,
                    &error,
                )
                .await;
        }
        if self.reroute_if_misrouted(message).await? {
            return Ok(());
        }
        let sub_topology = if topic == self.names.payment_initiated {
            SubTopology::Dedupe
        } else {
            SubTopology::Lifecycle
        };
        let task_id = TaskId {
            sub_topology,
            partition,
        };
        self.tasks.task(task_id)?;
        // A record of the repartition topic is decoded as the input it came from.
        let event = match self
            .source
            .decode(&origin.topic, message.payload(), origin.timestamp_ms)
            .await?
        {
            Err((reason, stage, error)) => {
                return self
                    .collector
                    .dead_letter(&origin, reason, stage, &error)
                    .await;
            }
            Ok(event) => event,
        };
        if sub_topology == SubTopology::Lifecycle {
            self.transaction_timestamps_ms.push(origin.timestamp_ms);
        }
        let task = self.tasks.task(task_id)?;
        task.advance_stream_time(Stream::of(&event), origin.timestamp_ms);
        if topic == self.names.payments_by_id && origin.topic == self.names.payment_initiated {
            // The origin is the payment_initiated record it was re-keyed from.
            task.advance_payments_time(
                origin.partition,
                self.upstream_partitions,
                origin.timestamp_ms,
            );
        }
        let outputs = match self.tasks.process(task_id, event, origin)? {
            Ok(outputs) => outputs,
            Err(message) => {
                // Its store writes are in the open transaction: abort, and dead-letter the
                // record when it is read again.
                self.collector
                    .fail(DeadLetterReason::ProcessingFailed, Stage::Process, message)?;
                return Ok(());
            }
        };
        for output in outputs {
            if self.collector.must_abort() {
                break;
            }
            self.collector
                .emit(output, Some(message), timestamp_ms)
                .await?;
        }
        Ok(())
    }

    /// Forwards an auth or settlement record that is not on its key's murmur2 partition
    /// to its payment's task through the repartition topic, byte for byte with its origin
    /// in headers ([`Source::misrouted`]). Returns true when it was.
    async fn reroute_if_misrouted(&mut self, message: &OwnedMessage) -> Result<bool> {
        let Some(misrouted) = self.source.misrouted(message) else {
            return Ok(false);
        };
        *self
            .collector
            .counts
            .misrouted
            .entry(message.topic().to_string())
            .or_insert(0) += 1;
        let Some(partition) = misrouted.reroute_to else {
            return Ok(false);
        };
        let repartition_topic = self.names.payments_by_id.clone();
        let timestamp_ms = message.timestamp().to_millis().unwrap_or_else(now_ms);
        self.collector
            .send(
                &repartition_topic,
                Some(partition),
                message.key(),
                message.payload(),
                Some(origin_headers_of(message)),
                timestamp_ms,
            )
            .await?;
        Ok(true)
    }

    /// Punctuation: due timers fire; their outputs join the open transaction.
    async fn punctuate(&mut self) -> Result<()> {
        for (output, timestamp_ms) in self.tasks.punctuate()? {
            self.collector.emit(output, None, timestamp_ms).await?;
        }
        Ok(())
    }

    /// Commits the open transaction: changelog records, offsets, commit, then stores.
    async fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        if self.collector.must_abort() {
            return self.recover_from_failed_transaction(None).await;
        }
        // Punctuation: due timers fire and expired keys of TTL stores are deleted, all in
        // this transaction.
        self.punctuate().await?;
        self.tasks.purge_expired()?;
        let changelog = self.tasks.changelog_writes();
        let changelog_time_ms = now_ms();
        let mut changelog_deliveries = Vec::with_capacity(changelog.len());
        for (task_id, store, key, value) in &changelog {
            let topic = self.names.changelog(store);
            let delivery = self
                .collector
                .produce(
                    &topic,
                    Some(task_id.partition),
                    Some(key),
                    value.as_deref(),
                    None,
                    changelog_time_ms,
                )
                .await?;
            if let Some(delivery) = delivery {
                changelog_deliveries.push(((*task_id, *store), delivery));
            }
        }
        if self.collector.must_abort() {
            return self.recover_from_failed_transaction(None).await;
        }
        // The consumer's position steps over transaction markers that follow the last
        // record read; committing it (as Kafka Streams does) keeps consumer lag at 0.
        let positions = self
            .consumer
            .position()
            .map_err(|e| Error::kafka("reading positions", e))?;
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in self.pending_offsets.iter_mut() {
            if let Some(Offset::Offset(position)) = positions
                .find_partition(topic, *partition)
                .map(|e| e.offset())
            {
                *offset = (*offset).max(position);
            }
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| Error::kafka("building the offsets to commit", e))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or(Error::GroupMetadataMissing)?;
        let result = tokio::task::block_in_place(|| self.producer.commit(&offsets, &group));
        match result {
            Ok(()) => {
                self.transaction_inputs.clear();
                self.tasks.commit_stores()?;
                self.checkpoint(changelog_deliveries).await?;
                self.lag.record_commit(&self.pending_offsets);
                self.committed_offsets.extend(self.pending_offsets.drain());
                // Poisoned and suspect records the group has committed past are done.
                self.poison.forget_committed(&self.committed_offsets);
                self.publish_counts();
                self.tasks.publish_store_metrics();
                let now_ms = now_ms();
                for timestamp_ms in self.transaction_timestamps_ms.drain(..) {
                    self.metrics
                        .end_to_end_latency_seconds
                        .observe((now_ms - timestamp_ms).max(0) as f64 / 1000.0);
                }
                self.metrics.commits.inc();
                self.metrics
                    .commit_latency_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.last_commit_at = Some(Instant::now());
                if self.last_purge_at.elapsed() >= REPARTITION_PURGE_INTERVAL {
                    self.purge_repartition_topic().await;
                }
            }
            Err(e) => return self.recover_from_failed_transaction(Some(e)).await,
        }
        self.records_in_transaction = 0;
        self.producer.begin()
    }

    /// Deletes the records of the repartition topic that every consumer of it has
    /// committed past (DeleteRecords, KIP-107), as Kafka Streams does: the topic has no
    /// time retention, so this is what keeps it small. Failures are logged, not fatal.
    async fn purge_repartition_topic(&mut self) {
        self.last_purge_at = Instant::now();
        let mut purge = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.committed_offsets {
            if *topic == self.names.payments_by_id
                && purge
                    .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .is_err()
            {
                return;
            }
        }
        if purge.count() == 0 {
            return;
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        match self.admin.delete_records(&purge, &options).await {
            Ok(_) => tracing::debug!(partitions = purge.count(), "repartition topic purged"),
            Err(e) => warn!(error = %e, "purging the repartition topic failed; retrying later"),
        }
    }

    /// After a commit whose store writes reached RocksDB: records in each task's
    /// checkpoint the changelog offset after its last changelog record.
    async fn checkpoint(
        &mut self,
        deliveries: Vec<((TaskId, &'static str), DeliveryFuture)>,
    ) -> Result<()> {
        let mut next: BTreeMap<TaskId, BTreeMap<&'static str, i64>> = BTreeMap::new();
        for ((task_id, store), delivery) in deliveries {
            // The transaction committed, so every report is in and successful.
            if let Ok(Ok(delivered)) = delivery.await {
                let offset = next.entry(task_id).or_default().entry(store).or_insert(0);
                *offset = (*offset).max(delivered.offset + 1);
            }
        }
        self.tasks.checkpoint(next)
    }

    /// After a failed commit, or a record that failed a stage: fatal errors (fencing) stop
    /// the instance; otherwise abort, find the input records whose outputs the broker
    /// refused for their data (one: poisoned; several: suspects, each processed alone
    /// next time), drop the stores' open writes, rewind to the last committed offsets and
    /// begin a new transaction.
    async fn recover_from_failed_transaction(&mut self, error: Option<KafkaError>) -> Result<()> {
        if let Some(fatal) = error.as_ref().and_then(|e| self.producer.fatal(e)) {
            return Err(fatal);
        }
        match &error {
            Some(error) => {
                warn!(error = %error, "commit failed; aborting the transaction and reprocessing")
            }
            None => warn!(
                poisoned = self.poison.len(),
                "a record failed; aborting the transaction and reprocessing without it"
            ),
        }
        tokio::task::block_in_place(|| self.producer.abort("aborting a failed transaction"))?;
        self.metrics.transaction_aborts.inc();
        let deliveries = self.collector.take_deliveries();
        self.poison
            .find_refused(deliveries, &self.transaction_inputs)
            .await;
        self.commit_requested = false;
        self.generation += 1;
        self.transaction_inputs.clear();
        // The aborted records will be read and counted again.
        self.collector.reset();
        self.transaction_timestamps_ms.clear();
        self.tasks.abort_stores();
        let rewind: Vec<(String, i32)> = self.pending_offsets.drain().map(|(k, _)| k).collect();
        self.records_in_transaction = 0;
        let mut committed = TopicPartitionList::new();
        for (topic, partition) in &rewind {
            committed.add_partition(topic, *partition);
        }
        let committed = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(committed, self.timeout)
        })
        .map_err(|e| Error::kafka("reading committed offsets to rewind", e))?;
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            self.consumer
                .seek(element.topic(), element.partition(), offset, self.timeout)
                .map_err(|e| Error::kafka("rewinding after an abort", e))?;
        }
        self.producer.begin()
    }

    /// After a rebalance: the open transaction may hold records of partitions this
    /// instance no longer owns, so it is aborted and its store writes dropped; the
    /// consumer resumes every newly assigned partition from its committed offset (eager
    /// rebalancing), and tasks whose partitions left are closed. Their local stores and
    /// checkpoints stay on disk for a later return.
    fn on_rebalance(&mut self) -> Result<()> {
        self.rebalances_seen = self.rebalances.load(Ordering::SeqCst);
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| Error::kafka("reading the assignment", e))?;
        warn!(
            records_discarded = self.records_in_transaction,
            partitions = assignment.count(),
            "rebalance: aborting the open transaction; processing resumes from committed offsets"
        );
        tokio::task::block_in_place(|| {
            self.producer
                .abort("aborting the transaction at a rebalance")
        })?;
        self.metrics.transaction_aborts.inc();
        self.producer.begin()?;
        self.pending_offsets.clear();
        self.collector.reset();
        self.transaction_timestamps_ms.clear();
        self.transaction_inputs.clear();
        self.commit_requested = false;
        self.generation += 1;
        self.metrics.rebalances.inc();
        self.records_in_transaction = 0;
        self.tasks.keep_assigned(&assignment);
        Ok(())
    }

    /// Adds the committed transaction's counts to the metrics and the run summary.
    fn publish_counts(&mut self) {
        let counts = std::mem::take(&mut self.collector.counts);
        self.collector.reset();
        if !counts.dead_lettered.is_empty() {
            let by_reason: Vec<String> = counts
                .dead_lettered
                .iter()
                .map(|((topic, reason), n)| format!("{topic}/{reason}={n}"))
                .collect();
            warn!(
                records = counts.dead_lettered.values().sum::<u64>(),
                by_topic_and_reason = %by_reason.join(","),
                "dead-lettered in the committed transaction"
            );
        }
        for (topic, n) in &counts.consumed {
            self.metrics
                .records_consumed
                .with_label_values(&[topic])
                .inc_by(*n);
        }
        for (topic, n) in &counts.duplicates {
            self.metrics
                .duplicates_dropped
                .with_label_values(&[topic])
                .inc_by(*n);
            self.summary.duplicates_dropped += n;
        }
        for ((topic, reason), n) in &counts.dead_lettered {
            self.metrics
                .dead_lettered
                .with_label_values(&[topic.as_str(), reason])
                .inc_by(*n);
            *self
                .summary
                .dead_lettered
                .entry(reason.to_string())
                .or_insert(0) += n;
        }
        for (topic, n) in &counts.produced {
            self.metrics
                .records_produced
                .with_label_values(&[topic])
                .inc_by(*n);
        }
        for (topic, n) in &counts.misrouted {
            self.metrics
                .records_misrouted
                .with_label_values(&[topic])
                .inc_by(*n);
            self.summary.misrouted += n;
        }
        for (status, n) in &counts.payments {
            self.metrics
                .payments
                .with_label_values(&[status])
                .inc_by(*n);
        }
        for ((status, currency), amount_minor) in &counts.amounts_minor {
            self.metrics
                .payment_amount_minor
                .with_label_values(&[status, currency.as_str()])
                .inc_by(*amount_minor);
        }
        for (kind, n) in &counts.exceptions {
            self.metrics
                .reconciliation_exceptions
                .with_label_values(&[kind])
                .inc_by(*n);
            *self.summary.exceptions.entry(kind.to_string()).or_insert(0) += n;
        }
        self.summary.input_records += counts.input_records;
        self.summary.status_changes += counts.status_changes;
        self.summary.journal_entries += counts.journal_entries;
    }
}
