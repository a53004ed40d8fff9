//! The stream thread's side of the restoring phase (docs/architecture.md, "Restore"):
//! a restoring task's partitions are paused while its stores restore on their own
//! thread, and resumed from their committed offsets once it runs.

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;

use super::Pipeline;
use crate::task::TaskId;
use crate::{Error, Result};

impl Pipeline {
    /// The partitions of task `id` as a list for the consumer.
    fn partition_list(&self, id: TaskId) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in self.tasks.partitions_of(id) {
            list.add_partition(&topic, partition);
        }
        Ok(list)
    }

    /// A record (`topic`, `partition`, `offset`) arrived for task `id`, which is
    /// restoring: it is dropped, and the task's partitions are paused (librdkafka purges
    /// what it had fetched for them); the task reads them again from its committed
    /// offsets once it runs. Until a dropped offset is read again, the instance is not
    /// caught up, whatever the consumer's position says.
    pub(super) fn pause_restoring(
        &mut self,
        id: TaskId,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        let dropped = self
            .dropped_while_restoring
            .entry((topic.to_string(), partition))
            .or_insert(offset);
        *dropped = (*dropped).max(offset);
        if self.paused.insert(id) {
            let partitions = self.partition_list(id)?;
            self.consumer
                .pause(&partitions)
                .map_err(|e| Error::kafka("pausing a restoring task's partitions", e))?;
        }
        Ok(())
    }

    /// Tasks whose restore finished start running: their partitions are resumed from
    /// their committed offsets (nothing of theirs is in the open transaction).
    pub(super) fn resume_restored_tasks(&mut self) -> Result<()> {
        for id in self.tasks.finish_restores()? {
            // Never paused: no record of it was dropped, and the consumer goes on from
            // where it fetched, its committed offsets.
            if !self.paused.remove(&id) {
                continue;
            }
            let partitions = self.partition_list(id)?;
            // Seek while paused, then resume: resuming fetches from the application's
            // offset, which the seek resets (librdkafka's documented way to rewind a
            // paused partition).
            self.seek_to_committed(partitions.clone(), "resuming a restored task")?;
            self.consumer
                .resume(&partitions)
                .map_err(|e| Error::kafka("resuming a restored task's partitions", e))?;
        }
        Ok(())
    }

    /// Forgets a dropped offset once its partition has been read up to it again.
    pub(super) fn read_again(&mut self, topic: &str, partition: i32, offset: i64) {
        if self.dropped_while_restoring.is_empty() {
            return;
        }
        let key = (topic.to_string(), partition);
        if self
            .dropped_while_restoring
            .get(&key)
            .is_some_and(|dropped| offset >= *dropped)
        {
            self.dropped_while_restoring.remove(&key);
        }
    }
}
