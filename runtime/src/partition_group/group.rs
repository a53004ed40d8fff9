//! One task's partition group (Kafka Streams' `PartitionGroup`): the queues of the
//! partitions the task reads, its lowest head, and since when it has held back.

use std::time::Instant;

use super::TopicPartition;
use super::queue::RecordQueue;

/// The queues of one task's partitions (a handful: its inputs and its repartition
/// source), in the order they were first seen.
#[derive(Debug, Default)]
pub(super) struct PartitionGroup {
    pub queues: Vec<(TopicPartition, RecordQueue)>,
    /// Since when the task has held back its records.
    pub idle_since: Option<Instant>,
}

impl PartitionGroup {
    /// The queue of `topic`'s `partition`, if the task has one.
    pub fn queue_mut(&mut self, topic: &str, partition: i32) -> Option<&mut RecordQueue> {
        self.queues
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
            .map(|(_, queue)| queue)
    }

    /// The queue of `key`, created empty if it is new.
    pub fn queue_or_insert(&mut self, key: &TopicPartition, internal: bool) -> &mut RecordQueue {
        let index = match self.queues.iter().position(|(k, _)| k == key) {
            Some(index) => index,
            None => {
                self.queues.push((key.clone(), RecordQueue::new(internal)));
                self.queues.len() - 1
            }
        };
        &mut self.queues[index].1
    }

    /// The head with the lowest timestamp among the task's queues, with its queue's
    /// index (ties: the first queue).
    pub fn lowest_head(&self) -> Option<(i64, usize)> {
        let mut lowest: Option<(i64, usize)> = None;
        for (index, (_, queue)) in self.queues.iter().enumerate() {
            let Some(timestamp_ms) = queue.head_time_ms() else {
                continue;
            };
            if lowest.is_none_or(|(t, _)| timestamp_ms < t) {
                lowest = Some((timestamp_ms, index));
            }
        }
        lowest
    }
}
