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

    /// A record arrived for task `id`, which is restoring: its partitions are paused
    /// (records already fetched are dropped; the task reads them again from its committed
    /// offsets once it runs).
    pub(super) fn pause_restoring(&mut self, id: TaskId) -> Result<()> {
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
            self.paused.remove(&id);
            let partitions = self.partition_list(id)?;
            self.consumer
                .resume(&partitions)
                .map_err(|e| Error::kafka("resuming a restored task's partitions", e))?;
            self.seek_to_committed(partitions, "resuming a restored task")?;
        }
        Ok(())
    }
}
