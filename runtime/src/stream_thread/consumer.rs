//! The stream thread's side of the consumer: taking what it fetched into the partition
//! queues, waiting for a record, resuming and seeking partitions, serving a rebalance
//! (the open transaction is dropped, the tasks whose partitions left are closed) and
//! leaving the group at shutdown.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{CLOSE_REVOKE_TIMEOUT, POLL_IDLE_MAX, POLL_RECORDS_MAX, Pipeline};
use crate::task::TaskId;
use crate::{Error, Result};

impl Pipeline {
    /// Waits until a record arrives (it joins its partition's queue) or `until`; true when
    /// shutdown was requested meanwhile.
    ///
    /// # Errors
    /// A rebalance this instance cannot follow, or a record it cannot queue.
    pub(super) async fn wait_for_record(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        until: tokio::time::Instant,
    ) -> Result<bool> {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                Ok(changed.is_err() || *shutdown.borrow())
            }
            received = tokio::time::timeout_at(until, self.consumer.recv()) => {
                let received = received.map(|r| r.map(|m| m.detach()));
                self.check_rebalance()?;
                match received {
                    Ok(Ok(message)) => self.enqueue(message)?,
                    Ok(Err(e)) => self.consumer_error(e)?,
                    Err(_elapsed) => {}
                }
                Ok(false)
            }
        }
    }

    /// Moves what the consumer has already fetched into the queues, without waiting:
    /// at most [`POLL_RECORDS_MAX`] records.
    pub(super) async fn poll_now(&mut self) -> Result<()> {
        let mut idle_polls = 0;
        for _ in 0..POLL_RECORDS_MAX {
            let Some(received) = self.consumer.recv().now_or_never() else {
                // Not ready: the queue is empty, or the poll served an event (a
                // rebalance, statistics) rather than a record; look again a few times.
                idle_polls += 1;
                if idle_polls >= POLL_IDLE_MAX {
                    break;
                }
                continue;
            };
            idle_polls = 0;
            let received = received.map(|m| m.detach());
            self.check_rebalance()?;
            match received {
                Ok(message) => self.enqueue(message)?,
                Err(e) => self.consumer_error(e)?,
            }
        }
        self.check_rebalance()
    }

    /// A consumer error: logged, as librdkafka retries; one the consumer cannot recover
    /// from (it was fenced out of the group) stops the instance.
    fn consumer_error(&self, error: KafkaError) -> Result<()> {
        if let Some((_, message)) = self.consumer.client().fatal_error() {
            return Err(Error::ConsumerFatal { message });
        }
        warn!(error = %error, "consumer error (librdkafka retries)");
        Ok(())
    }

    /// Serves a rebalance the consumer went through since the last check.
    pub(super) fn check_rebalance(&mut self) -> Result<()> {
        if self.rebalances.load(Ordering::SeqCst) != self.rebalances_seen {
            self.on_rebalance()?;
        }
        Ok(())
    }

    /// Resumes `partition` of `topic`, paused because its queue was full, and seeks it
    /// to the offset after its last record received: librdkafka's resume does not wake
    /// the broker thread, which may sleep up to a second when every partition was paused
    /// (nothing fetched meanwhile); a seek to an absolute offset does.
    pub(super) fn resume_partition(&self, topic: &str, partition: i32) -> Result<()> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        self.consumer
            .resume(&list)
            .map_err(|e| Error::kafka("resuming a partition whose queue has room", e))?;
        if let Some(next) = self.queues.next_offset(&(topic.to_string(), partition))
            && next > 0
        {
            self.consumer
                .seek(topic, partition, Offset::Offset(next), Duration::ZERO)
                .map_err(|e| Error::kafka("seeking a resumed partition", e))?;
        }
        Ok(())
    }

    /// Moves the consumer of `partitions` back to their committed offsets (the beginning
    /// where none is committed), for `what` (in errors). librdkafka refuses to seek a
    /// partition whose fetcher has not started yet (just assigned) or that is no longer
    /// assigned (a rebalance is under way), with `Local: Erroneous state`: the first is
    /// tried again for about 2.5 s ([`seek_state_retry`]), the second skipped — the
    /// revocation that follows closes the partition's task.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the offsets cannot be read or the seek fails.
    pub(super) fn seek_to_committed(
        &self,
        partitions: TopicPartitionList,
        what: &str,
    ) -> Result<()> {
        let committed = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(partitions, self.timeout)
        })
        .map_err(|e| Error::kafka(&format!("{what}: reading committed offsets"), e))?;
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            let (topic, partition) = (element.topic(), element.partition());
            let seek = || self.consumer.seek(topic, partition, offset, self.timeout);
            let result = tokio::task::block_in_place(|| {
                seek.retry(seek_state_retry())
                    .when(|e| is_erroneous_state(e) && self.is_assigned(topic, partition))
                    .call()
            });
            match result {
                Ok(()) => {}
                Err(e) if is_erroneous_state(&e) && !self.is_assigned(topic, partition) => {
                    info!(
                        topic,
                        partition, "{what}: not sought, no longer assigned (a rebalance)"
                    );
                }
                Err(e) => return Err(Error::kafka(&format!("{what}: seeking"), e)),
            }
        }
        Ok(())
    }

    /// True when `topic`/`partition` is in the consumer's assignment.
    fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.consumer.assignment().is_ok_and(|assignment| {
            assignment
                .elements_for_topic(topic)
                .iter()
                .any(|element| element.partition() == partition)
        })
    }

    /// Leaves the group: aborts what is left of the open transaction, unsubscribes, and
    /// serves the resulting revocation here, before the consumer is dropped. A rebalance
    /// callback that runs inside librdkafka's consumer close can block in
    /// `rd_kafka_assign` forever (confluentinc/librdkafka#4884; it hung a CI run), so the
    /// consumer is closed only once it holds no partitions, or after
    /// [`CLOSE_REVOKE_TIMEOUT`] with a warning.
    pub(super) async fn close(&mut self) {
        self.health.set_running(false);
        self.transaction.abort_at_shutdown();
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
        let tasks = self.tasks.len();
        self.tasks.close_all();
        info!(tasks, "pipeline stopped");
    }

    /// After a rebalance: instances that left the group are fenced (their open
    /// transactions aborted, `fencing.rs`); the open transaction may hold records of
    /// partitions this instance no longer owns, so it is aborted and its store writes
    /// dropped; the consumer resumes every newly assigned partition from its committed
    /// offset (eager rebalancing), and tasks whose partitions left are closed. Their local
    /// stores and checkpoints stay on disk for a later return.
    fn on_rebalance(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        self.rebalances_seen = self.rebalances.load(Ordering::SeqCst);
        for instance_id in self
            .group_members
            .departed(&self.consumer, &self.config, self.timeout)
        {
            crate::fencing::fence_in_background(&self.config, instance_id);
        }
        let fenced = started.elapsed();
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| Error::kafka("reading the assignment", e))?;
        warn!(
            records_discarded = self.transaction.records(),
            partitions = assignment.count(),
            "rebalance: aborting the open transaction; processing resumes from committed offsets"
        );
        // Every partition is read again from its committed offset: nothing to rewind.
        self.transaction
            .abort("aborting the transaction at a rebalance")?;
        self.metrics.rebalances.inc();
        // Eager rebalancing re-assigns every partition from its committed offset; queued
        // records are read again. Every assigned partition is resumed: librdkafka keeps a
        // partition the application paused (a full queue, a restoring task) paused
        // through a rebalance that gives it back to the same consumer, and a partition
        // left paused here was never fetched again — the failover tests found partitions
        // kept through two quick rebalances that stopped for good. A task still restoring
        // pauses its partitions again at its next record.
        self.queues.aborted();
        self.queues.clear_all();
        if assignment.count() > 0 {
            self.consumer
                .resume(&assignment)
                .map_err(|e| Error::kafka("resuming partitions after a rebalance", e))?;
        }
        self.paused.clear();
        self.dropped_while_restoring.clear();
        let aborted = started.elapsed();
        self.tasks.keep_assigned(&assignment)?;
        let closed = started.elapsed();
        // Running (for /readyz) once the group has given this instance its partitions.
        self.health.set_running(true);
        let assigned: BTreeSet<TaskId> = assignment
            .elements()
            .iter()
            .filter_map(|element| {
                self.topology.reader_of(element.topic()).map(|sub| TaskId {
                    sub_topology: sub.id,
                    partition: element.partition(),
                })
            })
            .collect();
        // The standbys let go of the assigned tasks (their stores, a few records behind,
        // are what the restores start from) and follow the tasks closed above. Not at
        // the empty assignment between the two halves of an eager rebalance: the
        // standbys would open every task only to let most go again a moment later.
        if !assigned.is_empty() {
            self.tasks.follow_standbys(&assigned)?;
        }
        debug!(
            fence_ms = fenced.as_millis() as u64,
            abort_ms = (aborted - fenced).as_millis() as u64,
            close_ms = (closed - aborted).as_millis() as u64,
            standbys_ms = (started.elapsed() - closed).as_millis() as u64,
            "rebalance handled"
        );
        // Every assigned task starts restoring now, not at its first record: /readyz
        // answers "restoring" until the instance can process what it was given, and the
        // first records do not wait for a restore that could have run already.
        for id in assigned {
            self.tasks.running(id)?;
        }
        Ok(())
    }
}

/// How a seek refused with `Local: Erroneous state` is tried again while its partition
/// is assigned: from 10 ms, doubling to 200 ms, 15 times (about 2.5 s in all).
fn seek_state_retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(200))
        .with_max_times(15)
}

/// True for librdkafka's `RD_KAFKA_RESP_ERR__STATE` as rust-rdkafka reports a seek's.
fn is_erroneous_state(error: &KafkaError) -> bool {
    match error {
        KafkaError::Seek(message) => message == &RDKafkaErrorCode::State.to_string(),
        other => other.rdkafka_error_code() == Some(RDKafkaErrorCode::State),
    }
}
