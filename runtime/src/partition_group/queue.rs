//! One partition's record queue (Kafka Streams' `RecordQueue`), and the timestamps of
//! the records this instance wrote to a repartition partition and has not read back.

use std::collections::VecDeque;

use rdkafka::message::{Message, OwnedMessage};

/// One partition's queue.
#[derive(Debug)]
pub(super) struct RecordQueue {
    /// True for a repartition (internal) source.
    pub internal: bool,
    pub records: VecDeque<OwnedMessage>,
    /// Timestamp of the last record received, milliseconds (`i64::MIN` before any).
    pub received_time_ms: i64,
    /// The offset after the last record received.
    pub next_offset: i64,
    /// Paused because the queue was full.
    pub paused_for_capacity: bool,
    /// Resumed after a capacity pause, no record received since.
    pub awaiting_refill: bool,
    /// For a repartition source: the timestamps of the records this instance wrote to
    /// the partition in committed transactions and has not read back yet.
    pub unread: Unread,
    /// The same for the open transaction (dropped when it aborts).
    pub unread_open: Unread,
}

impl RecordQueue {
    /// An empty queue that has received nothing.
    pub fn new(internal: bool) -> Self {
        RecordQueue {
            internal,
            records: VecDeque::new(),
            received_time_ms: i64::MIN,
            next_offset: 0,
            paused_for_capacity: false,
            awaiting_refill: false,
            unread: Unread::default(),
            unread_open: Unread::default(),
        }
    }

    /// Queues `message`, stamped `timestamp_ms`. Returns true when the queue just became
    /// full (`capacity` records): the caller pauses its partition.
    pub fn push(&mut self, message: OwnedMessage, timestamp_ms: i64, capacity: usize) -> bool {
        self.received_time_ms = self.received_time_ms.max(timestamp_ms);
        self.next_offset = self.next_offset.max(message.offset() + 1);
        self.awaiting_refill = false;
        self.records.push_back(message);
        if self.records.len() >= capacity && !self.paused_for_capacity {
            self.paused_for_capacity = true;
            return true;
        }
        false
    }

    /// Takes the head. Returns it, and true when the queue was paused for capacity and
    /// is down to a quarter of `capacity`: the caller resumes its partition.
    pub fn pop(&mut self, capacity: usize) -> Option<(OwnedMessage, bool)> {
        let message = self.records.pop_front()?;
        let resume = self.paused_for_capacity && self.records.len() <= capacity / 4;
        if resume {
            self.paused_for_capacity = false;
            self.awaiting_refill = true;
        }
        Some((message, resume))
    }

    /// Drops the queued records; what it received counts no more (the partition is read
    /// again from an earlier offset). Returns how many it dropped and whether it was
    /// paused for capacity.
    pub fn clear(&mut self) -> (usize, bool) {
        let dropped = self.records.len();
        self.records.clear();
        self.awaiting_refill = false;
        self.received_time_ms = i64::MIN;
        self.next_offset = 0;
        (dropped, std::mem::take(&mut self.paused_for_capacity))
    }

    /// The head's timestamp, milliseconds.
    pub fn head_time_ms(&self) -> Option<i64> {
        self.records.front().map(timestamp_of)
    }
}

/// Timestamps of records written to one repartition partition and not read back yet,
/// in write order, with their minimum kept as a monotonic queue.
#[derive(Debug, Default)]
pub(super) struct Unread {
    written: VecDeque<i64>,
    /// Non-decreasing: the minimum of `written` and of each of its suffixes.
    minima: VecDeque<i64>,
}

impl Unread {
    pub fn push(&mut self, timestamp_ms: i64) {
        while self.minima.back().is_some_and(|m| *m > timestamp_ms) {
            self.minima.pop_back();
        }
        self.minima.push_back(timestamp_ms);
        self.written.push_back(timestamp_ms);
    }

    /// A record stamped `timestamp_ms` was read: the oldest write, if it matches.
    pub fn read_back(&mut self, timestamp_ms: i64) {
        if self.written.front() == Some(&timestamp_ms) {
            self.written.pop_front();
            if self.minima.front() == Some(&timestamp_ms) {
                self.minima.pop_front();
            }
        }
    }

    /// The lowest timestamp written and not read back.
    pub fn oldest(&self) -> Option<i64> {
        self.minima.front().copied()
    }

    /// Moves every write of `other` after this one's.
    pub fn append(&mut self, other: Unread) {
        for timestamp_ms in other.written {
            self.push(timestamp_ms);
        }
    }
}

/// The record's broker timestamp, milliseconds (0 when it has none).
pub(super) fn timestamp_of(message: &OwnedMessage) -> i64 {
    message.timestamp().to_millis().unwrap_or(0)
}
