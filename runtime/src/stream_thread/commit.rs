//! The commit phase: punctuation, the changelog records of the stores' open writes, the
//! consumed offsets sent with the group metadata (KIP-447) and the commit through the
//! exactly-once producer, then the store writes, the checkpoints and the counts; or,
//! when the transaction cannot commit, the abort and the rewind to the committed
//! offsets (docs/architecture.md, "Exactly once").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::transaction::CommitOutcome;
use super::{Pipeline, now_ms};
use crate::metrics::COMMIT_PHASES;
use crate::task::TaskId;
use crate::{Error, Result};

/// How often consumed records of the repartition topic are deleted.
const REPARTITION_PURGE_INTERVAL: Duration = Duration::from_secs(30);

impl Pipeline {
    /// Punctuation: due timers fire; their outputs join the open transaction.
    ///
    /// # Errors
    /// [`Error::FailedOutsideRecord`] when a processor's punctuation panicked: no input
    /// record caused it, so there is none to dead-letter, and the instance stops (the
    /// open transaction is never committed).
    async fn punctuate(&mut self) -> Result<()> {
        let punctuated = self.tasks.punctuate()?;
        self.emit_punctuated(punctuated).await
    }

    /// Wall-clock punctuation of the tasks whose interval has passed
    /// ([`crate::Processor::punctuate_wall_clock`]). What it forwards and writes joins
    /// the open transaction, which then commits even if no record is read into it.
    ///
    /// # Errors
    /// As [`Self::punctuate`].
    pub(super) async fn punctuate_wall_clock(&mut self) -> Result<()> {
        let (punctuated, wrote) = self
            .tasks
            .punctuate_wall_clock(Instant::now(), super::now_ms())?;
        if wrote || !punctuated.outputs.is_empty() {
            self.transaction.hold_punctuation_work();
        }
        self.emit_punctuated(punctuated).await
    }

    /// Sends what a punctuation forwarded into the open transaction.
    async fn emit_punctuated(&mut self, punctuated: crate::task_manager::Punctuated) -> Result<()> {
        let topology = self.topology.clone();
        if let Some((task_id, message)) = punctuated.failed.into_iter().next() {
            return Err(Error::FailedOutsideRecord {
                stage: crate::processor::Stage::Process,
                reason: crate::processor::DeadLetterReason::PROCESSING_FAILED,
                message: format!("task {task_id}: {message}"),
            });
        }
        for (task_id, output, timestamp_ms) in punctuated.outputs {
            let sub = topology.sub_topology(task_id.sub_topology);
            self.transaction
                .collector
                .emit(output, sub, None, timestamp_ms)
                .await?;
        }
        Ok(())
    }

    /// Commits the open transaction: punctuation, changelog records, offsets and EndTxn
    /// ([`Transaction::commit`]), then the stores' writes, the checkpoints and the
    /// metrics. A transaction that cannot commit is aborted and its partitions rewound
    /// ([`Self::recover_from_failed_transaction`]).
    ///
    /// # Errors
    /// Environment failures: the broker, the stores, fencing.
    pub(super) async fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        if self.transaction.collector.must_abort() {
            return self.recover_from_failed_transaction(None).await;
        }
        // Punctuation: due timers fire and expired keys of TTL stores are deleted, all in
        // this transaction.
        self.punctuate().await?;
        self.tasks.purge_expired()?;
        let punctuated = Instant::now();
        let changelog_deliveries = self.produce_changelog().await?;
        if self.transaction.collector.must_abort() {
            return self.recover_from_failed_transaction(None).await;
        }
        let changelog_produced = Instant::now();
        // The consumer's position steps over transaction markers that follow the last
        // record read; committing it (as Kafka Streams does) keeps consumer lag at 0. A
        // partition with queued records commits up to its first queued record.
        let positions = self
            .consumer
            .position()
            .map_err(|e| Error::kafka("reading positions", e))?;
        if let Some(known_ends) = &self.known_ends {
            self.queues
                .set_known_ends(known_ends.snapshot(), crate::lag::offsets(&positions));
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or(Error::GroupMetadataMissing)?;
        let positions_read = Instant::now();
        let queues = &self.queues;
        let committed = match self.transaction.commit(
            &positions,
            |partition| queues.has_queued(partition),
            &group,
        )? {
            CommitOutcome::Committed(committed) => committed,
            CommitOutcome::Refused(e) => {
                return self.recover_from_failed_transaction(Some(e)).await;
            }
        };
        let transaction_committed = Instant::now();
        self.queues.committed();
        self.tasks.commit_stores()?;
        let stores_written = Instant::now();
        self.checkpoint(changelog_deliveries).await?;
        let times = committed.times;
        let phases = [
            punctuated - started,
            changelog_produced - punctuated,
            (positions_read - changelog_produced) + times.offsets,
            times.deliveries,
            times.end_txn,
            stores_written - transaction_committed,
            stores_written.elapsed(),
        ];
        for (phase, took) in COMMIT_PHASES.iter().zip(phases) {
            self.metrics
                .commit_phase_seconds
                .with_label_values(&[phase])
                .observe(took.as_secs_f64());
        }
        self.lag.record_commit(&committed.offsets);
        // Poisoned and suspect records the group has committed past are done.
        self.poison
            .forget_committed(self.transaction.committed_offsets());
        committed.counts.publish(&self.metrics, &mut self.summary);
        self.tasks.publish_store_metrics();
        let now_ms = now_ms();
        for timestamp_ms in committed.timestamps_ms {
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
        Ok(())
    }

    /// Sends the changelog records of the stores' open writes in the open transaction.
    /// Returns, per task and store, the delivery of its last record: records of one
    /// partition get their offsets in the order they were produced, so it gives the
    /// checkpoint.
    async fn produce_changelog(
        &mut self,
    ) -> Result<BTreeMap<(TaskId, &'static str), DeliveryFuture>> {
        let changelog = self.tasks.changelog_writes();
        let changelog_time_ms = now_ms();
        let mut deliveries = BTreeMap::new();
        let topology = self.topology.clone();
        for (task_id, store, key, value) in &changelog {
            let topic = topology.changelog_of(task_id.sub_topology, store);
            let delivery = self
                .transaction
                .collector
                .produce(
                    topic,
                    Some(task_id.partition),
                    Some(key),
                    value.as_deref(),
                    None,
                    changelog_time_ms,
                )
                .await?;
            if let Some(delivery) = delivery {
                deliveries.insert((*task_id, *store), delivery);
            }
        }
        Ok(deliveries)
    }

    /// Deletes the records of the repartition topic that every consumer of it has
    /// committed past (DeleteRecords, KIP-107), as Kafka Streams does: the topic has no
    /// time retention, so this is what keeps it small. Failures are logged, not fatal.
    pub(super) async fn purge_repartition_topic(&mut self) {
        self.last_purge_at = Instant::now();
        let mut purge = TopicPartitionList::new();
        let repartition_topics = self.topology.internal_topics();
        for ((topic, partition), offset) in self.transaction.committed_offsets() {
            if repartition_topics.contains(topic)
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
        deliveries: BTreeMap<(TaskId, &'static str), DeliveryFuture>,
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

    /// After a commit the broker refused (not fatally: [`Transaction::commit`] stops the
    /// instance when it was fenced), or a record that failed a stage: aborts (the next
    /// transaction begins), finds the input records whose outputs the broker refused for
    /// their data (one: poisoned; several: suspects, each processed alone next time),
    /// drops the stores' open writes and rewinds the aborted transaction's partitions to
    /// their committed offsets.
    ///
    /// [`Transaction::commit`]: super::transaction::Transaction::commit
    pub(super) async fn recover_from_failed_transaction(
        &mut self,
        error: Option<KafkaError>,
    ) -> Result<()> {
        match &error {
            Some(error) => {
                warn!(error = %error, "commit failed; aborting the transaction and reprocessing")
            }
            None => warn!(
                poisoned = self.poison.len(),
                "a record failed; aborting the transaction and reprocessing without it"
            ),
        }
        let aborted = self.transaction.abort("aborting a failed transaction")?;
        self.poison
            .find_refused(aborted.deliveries, &aborted.inputs)
            .await;
        self.tasks.abort_stores()?;
        self.queues.aborted();
        let mut partitions = TopicPartitionList::new();
        let mut full = TopicPartitionList::new();
        for key in &aborted.rewind {
            partitions.add_partition(&key.0, key.1);
            // Their queued records follow the rewound ones: they are read again.
            if self.queues.clear(key) {
                full.add_partition(&key.0, key.1);
            }
        }
        // Resumed, then sought: a resume alone does not wake librdkafka's broker thread,
        // a seek does; what the resumed partition fetches before the seek is discarded
        // (the seek's version barrier).
        if full.count() > 0 {
            self.consumer
                .resume(&full)
                .map_err(|e| Error::kafka("resuming rewound partitions", e))?;
        }
        self.seek_to_committed(partitions, "rewinding after an abort")
    }
}
