//! A record's path through its stream task: the task it belongs to (from the
//! topology), known poison, size, partition, its input's deserializer (the source), the
//! processor, and what it forwards (the record collector). Stream time and partition
//! time move forward here.

use std::time::Instant;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tracing::warn;

use super::{Pipeline, now_ms};
use crate::origin::origin_headers_of;
use crate::poison::RecordId;
use crate::processor::{DeadLetterReason, Forward, Stage};
use crate::source::{Source, murmur2_partition};
use crate::task::TaskId;
use crate::{Error, Result};

impl Pipeline {
    /// A consumed record joins its partition's queue; a record of a restoring task is
    /// dropped instead (and its task's partitions paused), a record of a topic no
    /// processor reads is skipped.
    pub(super) fn enqueue(&mut self, message: OwnedMessage) -> Result<()> {
        let Some(sub) = self.topology.reader_of(message.topic()) else {
            warn!(
                topic = message.topic(),
                "record of a topic no processor reads; skipped"
            );
            return Ok(());
        };
        let internal = sub.internal_source() == Some(message.topic());
        let task_id = TaskId {
            sub_topology: sub.id,
            partition: message.partition(),
        };
        if self.tasks.running(task_id)?.is_none() {
            return self.pause_restoring(
                task_id,
                message.topic(),
                message.partition(),
                message.offset(),
            );
        }
        if let Some((topic, partition)) = self.queues.push(task_id, internal, message) {
            let mut list = rdkafka::TopicPartitionList::new();
            list.add_partition(&topic, partition);
            self.consumer
                .pause(&list)
                .map_err(|e| Error::kafka("pausing a partition whose queue is full", e))?;
        }
        Ok(())
    }

    /// One record of running task `task_id`, taken from its queue: counted in the open
    /// transaction and processed.
    pub(super) async fn handle(
        &mut self,
        task_id: TaskId,
        mut message: OwnedMessage,
    ) -> Result<()> {
        let sub_topology = task_id.sub_topology;
        self.read_again(message.topic(), message.partition(), message.offset());
        let id = RecordId::of(&message);
        if self.poison.is_suspect(&id) && !self.transaction.is_empty() {
            // A suspect gets a transaction of its own: commit what came before it.
            let generation = self.transaction.generation();
            // The record waits at the head of its queue while the commit runs: the offset
            // committed for its partition stops before it.
            self.queues.push_front(message);
            let committed = self.commit().await;
            committed?;
            // That commit failed when the generation moved: the partitions of the
            // transaction were rewound to their committed offsets and their queues
            // dropped; this record comes again either way (its queue was kept when its
            // partition had no records in the transaction).
            if self.transaction.generation() != generation {
                return Ok(());
            }
            // Taken back from the head of its queue, where it waited.
            match self
                .queues
                .take_head(&(id.topic.clone(), id.partition), id.offset)
            {
                Some(again) => message = again,
                None => return Ok(()),
            }
        }
        if self.first_record_at.is_none() {
            self.first_record_at = Some(Instant::now());
            self.summary.first_record_unix_ms = Some(super::now_ms());
        }
        let topic = message.topic().to_string();
        let partition = message.partition();
        let index = self
            .transaction
            .read((topic.clone(), partition), id.clone());
        let internal = self.topology.sub_topology(sub_topology).internal_source() == Some(&topic);
        *self
            .transaction
            .collector
            .counts
            .consumed
            .entry(topic)
            .or_insert(0) += 1;
        if !internal {
            self.transaction.collector.counts.input_records += 1;
        }
        if self.poison.is_suspect(&id) {
            self.transaction.request_commit();
        }
        self.transaction.collector.begin_record(index);
        let result = self.handle_record(task_id, &id, &message).await;
        if let Some(failure) = self.transaction.collector.end_record() {
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

    /// The stages of one record of running task `task_id`: known poison, size, routing,
    /// decode, validation, the processor, its outputs.
    async fn handle_record(
        &mut self,
        task_id: TaskId,
        id: &RecordId,
        message: &OwnedMessage,
    ) -> Result<()> {
        let topic = message.topic();
        let mut origin = self.source.origin_of(message);
        if origin.timestamp_ms <= 0 {
            origin.timestamp_ms = now_ms();
        }
        // Outputs carry the input record's timestamp, which the broker accepted once
        // already (as Kafka Streams does), never a time from the payload.
        let timestamp_ms = origin.timestamp_ms;
        if let Some(poisoned) = self.poison.poisoned(id).cloned() {
            return self
                .transaction
                .collector
                .dead_letter(&origin, poisoned.reason, poisoned.stage, &poisoned.message)
                .await;
        }
        if let Some(error) = Source::too_large(message) {
            return self
                .transaction
                .collector
                .dead_letter(
                    &origin,
                    DeadLetterReason::RECORD_TOO_LARGE,
                    Stage::Decode,
                    &error,
                )
                .await;
        }
        if self.reroute_if_misrouted(message).await? {
            return Ok(());
        }
        let topology = self.topology.clone();
        let sub = topology.sub_topology(task_id.sub_topology);
        // A record of a repartition topic is decoded as the input it came from when this
        // sub-topology reads that input too (a rerouted record), else as the topic's.
        let Some(input) = Source::input_of(sub, topic, &origin.topic) else {
            return self
                .transaction
                .collector
                .dead_letter(
                    &origin,
                    DeadLetterReason::PROCESSING_FAILED,
                    Stage::Decode,
                    &format!("no processor of sub-topology {} reads {topic}", sub.id),
                )
                .await;
        };
        let value = match self
            .source
            .decode(
                sub,
                input,
                message.key(),
                message.payload(),
                origin.timestamp_ms,
            )
            .await?
        {
            Err((reason, stage, error)) => {
                return self
                    .transaction
                    .collector
                    .dead_letter(&origin, reason, stage, &error)
                    .await;
            }
            Ok(value) => value,
        };
        if !topology.feeds_another(sub) {
            self.transaction.observe_latency_of(origin.timestamp_ms);
        }
        // A repartitioned record from the sub-topology writing the repartition topic (not
        // one rerouted from this sub-topology's own inputs) moves that input's watermark.
        let upstream = (sub.internal_source() == Some(topic))
            .then(|| topology.reader_of(&origin.topic))
            .flatten()
            .filter(|writer| writer.id != sub.id)
            .map(|writer| self.source.partitions(writer.id) as usize);
        let task = self.tasks.task(task_id);
        match upstream {
            Some(upstream_partitions) => {
                task.advance_stream_time(None, origin.timestamp_ms);
                task.advance_upstream_time(
                    input,
                    origin.partition,
                    upstream_partitions,
                    origin.timestamp_ms,
                );
            }
            // A repartition input's time moves only with its writer's watermark.
            None if sub.sources[input].internal => {
                task.advance_stream_time(None, origin.timestamp_ms)
            }
            None => task.advance_stream_time(Some(input), origin.timestamp_ms),
        }
        let outputs = match self.tasks.process(task_id, value, origin)? {
            Ok(outputs) => outputs,
            Err(message) => {
                // Its store writes are in the open transaction: abort, and dead-letter the
                // record when it is read again.
                self.transaction.collector.fail(
                    DeadLetterReason::PROCESSING_FAILED,
                    Stage::Process,
                    message,
                )?;
                return Ok(());
            }
        };
        for output in outputs {
            if self.transaction.collector.must_abort() {
                break;
            }
            if let Forward::To { sink, key, .. } = &output
                && let Some(sink) = sub.sink(sink)
                && sink.repartition
            {
                self.wrote_to_repartition(&sink.topic, key, timestamp_ms);
            }
            self.transaction
                .collector
                .emit(output, sub, Some(message), timestamp_ms)
                .await?;
        }
        Ok(())
    }

    /// Forwards an input record that is not on its key's murmur2 partition to its key's
    /// task through its sub-topology's repartition topic, byte for byte with its origin
    /// in headers ([`Source::misrouted`]). Returns true when it was.
    async fn reroute_if_misrouted(&mut self, message: &OwnedMessage) -> Result<bool> {
        let Some(misrouted) = self.source.misrouted(message) else {
            return Ok(false);
        };
        *self
            .transaction
            .collector
            .counts
            .misrouted
            .entry(message.topic().to_string())
            .or_insert(0) += 1;
        let Some((repartition_topic, partition)) = misrouted.reroute_to else {
            return Ok(false);
        };
        let timestamp_ms = message.timestamp().to_millis().unwrap_or_else(now_ms);
        self.transaction
            .collector
            .send(
                &repartition_topic,
                Some(partition),
                message.key(),
                message.payload(),
                Some(origin_headers_of(message)),
                timestamp_ms,
            )
            .await?;
        if let Some(reader) = self.topology.reader_of(&repartition_topic) {
            let task = TaskId {
                sub_topology: reader.id,
                partition,
            };
            self.queues
                .wrote(task, (repartition_topic, partition), timestamp_ms);
        }
        Ok(true)
    }

    /// Notes a record keyed `key`, stamped `timestamp_ms`, written to repartition topic
    /// `topic` in the open transaction: the task reading its partition (Kafka's default
    /// partitioner, as the producer's) may hold back later records until it is read back.
    fn wrote_to_repartition(&mut self, topic: &str, key: &[u8], timestamp_ms: i64) {
        let Some(reader) = self.topology.reader_of(topic) else {
            return;
        };
        let partition = murmur2_partition(key, self.source.partitions(reader.id));
        let task = TaskId {
            sub_topology: reader.id,
            partition,
        };
        self.queues
            .wrote(task, (topic.to_string(), partition), timestamp_ms);
    }
}
