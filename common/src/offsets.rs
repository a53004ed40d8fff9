//! Partition ends and a group's committed offsets, read on a client of their own: the
//! stream runtime's caught-up checks and processing order, and the ledger sink's lag.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka::read_committed_consumer_config;

/// Reads partition ends and the group's committed offsets for the caught-up checks, on a
/// client of its own. The processing consumer's requests to a broker queue behind its
/// fetch long poll (`fetch.wait.max.ms`, 500 ms), so a check that asked it for the
/// watermarks of 15 partitions one by one took seconds and stopped processing meanwhile;
/// this client asks for every end in one ListOffsets request (timestamp -1: the latest
/// offset, the last stable offset for `read_committed`) and answers in milliseconds.
/// It uses the application's group id to read the group's committed offsets, and never
/// subscribes, so it never joins the group.
pub struct EndOffsets {
    client: BaseConsumer,
}

impl EndOffsets {
    /// A client for `group_id` (the application id for the pipeline).
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn new(config: &Config, group_id: &str) -> KafkaResult<Self> {
        let client = read_committed_consumer_config(config, group_id).create()?;
        Ok(EndOffsets { client })
    }

    /// The end of each partition of `partitions` (for `read_committed` readers: the last
    /// stable offset), by topic and partition.
    ///
    /// # Errors
    /// When the broker does not answer within `timeout`.
    pub fn ends(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> KafkaResult<HashMap<(String, i32), i64>> {
        self.list_offsets(partitions, Offset::End, timeout)
    }

    /// The first offset still held (the low watermark) of each partition of
    /// `partitions`, by topic and partition.
    ///
    /// # Errors
    /// When the broker does not answer within `timeout`.
    pub fn starts(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> KafkaResult<HashMap<(String, i32), i64>> {
        self.list_offsets(partitions, Offset::Beginning, timeout)
    }

    /// One ListOffsets request for `partitions` at `which` (`End`: timestamp -1, the
    /// latest offset; `Beginning`: -2, the earliest).
    fn list_offsets(
        &self,
        partitions: &[(String, i32)],
        which: Offset,
        timeout: Duration,
    ) -> KafkaResult<HashMap<(String, i32), i64>> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition_offset(topic, *partition, which)?;
        }
        let listed = tokio::task::block_in_place(|| self.client.offsets_for_times(list, timeout))?;
        Ok(offsets(&listed))
    }

    /// The group's committed offset of each partition of `partitions` that has one.
    ///
    /// # Errors
    /// When the group coordinator does not answer within `timeout`.
    pub fn committed(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> KafkaResult<HashMap<(String, i32), i64>> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        let committed =
            tokio::task::block_in_place(|| self.client.committed_offsets(list, timeout))?;
        Ok(offsets(&committed))
    }
}

/// The concrete offsets of `list`, by topic and partition.
pub fn offsets(list: &TopicPartitionList) -> HashMap<(String, i32), i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}
