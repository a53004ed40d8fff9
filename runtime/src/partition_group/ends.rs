//! The ends of the input partitions as last listed (every commit interval, see
//! [`crate::lag::KnownEnds`]), with the consumer's positions at the last commit (which
//! step over transaction markers): a partition whose end lies beyond both has records on
//! their way.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::TopicPartition;

#[derive(Debug, Default)]
pub(super) struct InputEnds {
    ends: FxHashMap<TopicPartition, i64>,
    positions: FxHashMap<TopicPartition, i64>,
}

impl InputEnds {
    pub fn new(
        ends: HashMap<TopicPartition, i64>,
        positions: HashMap<TopicPartition, i64>,
    ) -> Self {
        InputEnds {
            ends: ends.into_iter().collect(),
            positions: positions.into_iter().collect(),
        }
    }

    /// `partition` is read again from an earlier offset: its position counts no more.
    pub fn forget_position(&mut self, partition: &TopicPartition) {
        self.positions.remove(partition);
    }

    /// True when `partition`'s end lies beyond `next_offset` (the offset after the last
    /// record received) and the consumer's position.
    pub fn beyond(&self, partition: &TopicPartition, next_offset: i64) -> bool {
        let read = next_offset.max(self.positions.get(partition).copied().unwrap_or(0));
        self.ends.get(partition).is_some_and(|end| *end > read)
    }
}
