//! The record queues of the stream thread's tasks (Kafka Streams' `PartitionGroup` and
//! `RecordQueue`): what order consumed records are processed in
//! (docs/architecture.md, "Processing order").
//!
//! The consumer hands over records in fetch order, one queue for every partition, so a
//! payment's `payment_initiated` record — read back from the repartition topic only after
//! the transaction that wrote it committed — used to arrive long after its auth and
//! settlement, which then took the `pending` path. Here every consumed record waits in
//! the queue of its partition, and the stream thread takes, among all tasks, the record
//! with the lowest timestamp (the broker timestamp, which outputs carry on from their
//! input). A task **holds back** its records while a partition it depends on — its own,
//! those of the tasks writing its repartition source, and for a writing task those of
//! its siblings (so writes reach each repartition partition in timestamp order) — is
//! known to bring an earlier record:
//! - a repartition partition this instance wrote a record to, stamped earlier, in the
//!   open transaction or one committed since, and has not read back yet;
//! - an input partition with an empty queue whose end (listed every commit interval, see
//!   [`crate::lag::KnownEnds`]) lies beyond what was read;
//! - a partition paused because its queue was full, until its first record after the
//!   resume arrives.
//!
//! A task holds back at most `processing.max_task_idle_ms` (as Kafka Streams'
//! `max.task.idle.ms`); after that it processes in timestamp order what it has until
//! it no longer needs to hold back. Ordering is best effort — record timestamps need
//! not rise within a partition — so a processor whose outcome depends on the order of
//! its inputs orders them itself (the payments lifecycle waits in its pending buffer and
//! applies in event-time order, docs/architecture.md "Order of money movements").
//!
//! A queue holds at most `processing.buffered_records_per_partition` records; then its
//! partition is paused (librdkafka drops what it had prefetched for it and fetches again
//! from the position after the last record handed over) and resumed once the queue is
//! down to a quarter; the stream thread then seeks it to its next offset, which wakes
//! librdkafka's broker thread (a resume alone does not).
//!
//! Each task keeps its own [`PartitionGroup`] (`group.rs`): the queues of its partitions
//! ([`RecordQueue`], `queue.rs`) and since when it has held back. [`PartitionGroups`]
//! chooses across the tasks of the instance; the writes to a repartition partition not
//! read back yet are kept in that partition's queue, with the task that reads it.

mod ends;
mod group;
mod queue;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};
use rustc_hash::FxHashMap;

use crate::task::TaskId;
use ends::InputEnds;
use group::PartitionGroup;
use queue::{RecordQueue, timestamp_of};

/// A partition: topic and partition number.
pub type TopicPartition = (String, i32);

/// What the stream thread does next.
#[derive(Debug)]
pub enum Next {
    /// Process this record of `task`. `enforced` when the task had held back for
    /// `max_task_idle_ms` and processes anyway; `resume` names a partition to resume
    /// (its queue went down to a quarter after a capacity pause).
    Record {
        task: TaskId,
        message: OwnedMessage,
        enforced: bool,
        resume: Option<TopicPartition>,
    },
    /// Every task with records holds back; the earliest stops holding back at `until`.
    HoldBack { until: Instant },
    /// No record is queued.
    Empty,
}

/// The partition groups of every running task of the instance, and the choice of the
/// next record across them.
#[derive(Debug)]
pub struct PartitionGroups {
    tasks: BTreeMap<TaskId, PartitionGroup>,
    /// The task each queued partition belongs to.
    owners: FxHashMap<TopicPartition, TaskId>,
    /// Records queued, over all partitions.
    buffered: usize,
    capacity: usize,
    max_task_idle: Duration,
    /// The ends of the input partitions as last listed (`ends.rs`).
    ends: InputEnds,
    /// Per sub-topology, the sub-topologies writing its repartition source: a task also
    /// waits for their partitions, whose records may become its own.
    upstream: HashMap<u8, Vec<u8>>,
    /// The sub-topologies writing a repartition topic.
    writers: HashSet<u8>,
    /// Scratch space of [`Self::next`]: per task with records, its lowest head's
    /// timestamp, that head's queue (index in its group) and whether it holds back.
    candidates: Vec<(TaskId, i64, usize, bool)>,
}

impl PartitionGroups {
    /// Queues of at most `capacity` records per partition; a task holds back at most
    /// `max_task_idle`. `upstream` names, per sub-topology, the sub-topologies writing
    /// its repartition source.
    pub fn new(capacity: usize, max_task_idle: Duration, upstream: HashMap<u8, Vec<u8>>) -> Self {
        PartitionGroups {
            tasks: BTreeMap::new(),
            owners: FxHashMap::default(),
            buffered: 0,
            capacity: capacity.max(4),
            max_task_idle,
            ends: InputEnds::default(),
            writers: upstream.values().flatten().copied().collect(),
            upstream,
            candidates: Vec::new(),
        }
    }

    /// True when no record is queued.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    fn queue(&self, partition: &TopicPartition) -> Option<&RecordQueue> {
        let task = self.owners.get(partition)?;
        self.tasks
            .get(task)?
            .queues
            .iter()
            .find(|(key, _)| key == partition)
            .map(|(_, queue)| queue)
    }

    fn queue_mut(&mut self, partition: &TopicPartition) -> Option<&mut RecordQueue> {
        let task = self.owners.get(partition)?;
        self.tasks
            .get_mut(task)?
            .queue_mut(&partition.0, partition.1)
    }

    /// The queue of `key`, a partition of `task`, created empty if it is new.
    fn queue_or_insert(
        &mut self,
        task: TaskId,
        internal: bool,
        key: &TopicPartition,
    ) -> &mut RecordQueue {
        self.owners.entry(key.clone()).or_insert(task);
        self.tasks
            .entry(task)
            .or_default()
            .queue_or_insert(key, internal)
    }

    /// True when `partition` has queued records (the next offset to commit for it is
    /// then its first queued record's, not the consumer's position).
    pub fn has_queued(&self, partition: &TopicPartition) -> bool {
        self.queue(partition).is_some_and(|q| !q.records.is_empty())
    }

    /// Queues `message`, a record of running task `task` (`internal`: of its
    /// repartition source). Returns the partition when its queue just became full: the
    /// caller pauses it.
    pub fn push(
        &mut self,
        task: TaskId,
        internal: bool,
        message: OwnedMessage,
    ) -> Option<TopicPartition> {
        let timestamp_ms = timestamp_of(&message);
        self.buffered += 1;
        let capacity = self.capacity;
        let queue = match self
            .tasks
            .get_mut(&task)
            .and_then(|group| group.queue_mut(message.topic(), message.partition()))
        {
            Some(queue) => queue,
            None => {
                let key = (message.topic().to_string(), message.partition());
                self.queue_or_insert(task, internal, &key)
            }
        };
        if internal {
            // Records of one producer are read in the order written: this one is ours
            // when it is stamped as our oldest unread write.
            queue.unread.read_back(timestamp_ms);
        }
        let partition = message.partition();
        if queue.push(message, timestamp_ms, capacity) {
            let topic = queue.records.back().map(|m| m.topic().to_string());
            return topic.map(|topic| (topic, partition));
        }
        None
    }

    /// Puts a record taken with [`Self::next`] back at the head of its queue (a suspect
    /// that waits for the commit before it).
    pub fn push_front(&mut self, message: OwnedMessage) {
        let key = (message.topic().to_string(), message.partition());
        if let Some(queue) = self.queue_mut(&key) {
            queue.records.push_front(message);
            self.buffered += 1;
        }
    }

    /// The offset after the last record received from `partition`.
    pub fn next_offset(&self, partition: &TopicPartition) -> Option<i64> {
        self.queue(partition).map(|q| q.next_offset)
    }

    /// Takes the head of `partition`'s queue if it is the record at `offset` (one put
    /// back with [`Self::push_front`]).
    pub fn take_head(&mut self, partition: &TopicPartition, offset: i64) -> Option<OwnedMessage> {
        let queue = self.queue_mut(partition)?;
        if queue.records.front()?.offset() != offset {
            return None;
        }
        let head = queue.records.pop_front();
        self.buffered -= 1;
        head
    }

    /// Drops the queued records of `partition` (it was sought back). Returns true when
    /// it was paused for capacity: the caller resumes it after the seek.
    pub fn clear(&mut self, partition: &TopicPartition) -> bool {
        self.ends.forget_position(partition);
        let Some(queue) = self.queue_mut(partition) else {
            return false;
        };
        let (dropped, paused) = queue.clear();
        self.buffered -= dropped;
        paused
    }

    /// Drops every queue (a rebalance: every partition is read again from its
    /// committed offset). Returns the partitions that were paused for capacity.
    pub fn clear_all(&mut self) -> Vec<TopicPartition> {
        let paused = self
            .tasks
            .values()
            .flat_map(|group| &group.queues)
            .filter(|(_, q)| q.paused_for_capacity)
            .map(|(k, _)| k.clone())
            .collect();
        self.tasks.clear();
        self.owners.clear();
        self.buffered = 0;
        paused
    }

    /// This instance wrote a record stamped `timestamp_ms` to repartition `partition`, a
    /// source of `task`, in the open transaction.
    pub fn wrote(&mut self, task: TaskId, partition: TopicPartition, timestamp_ms: i64) {
        self.queue_or_insert(task, true, &partition)
            .unread_open
            .push(timestamp_ms);
    }

    /// The open transaction committed: what it wrote will be read back.
    pub fn committed(&mut self) {
        for group in self.tasks.values_mut() {
            for (_, queue) in &mut group.queues {
                let open = std::mem::take(&mut queue.unread_open);
                queue.unread.append(open);
            }
        }
    }

    /// The open transaction aborted: what it wrote will never be read.
    pub fn aborted(&mut self) {
        for group in self.tasks.values_mut() {
            for (_, queue) in &mut group.queues {
                queue.unread_open = Default::default();
            }
        }
    }

    /// The ends of the input partitions as last listed, and the consumer's positions.
    pub fn set_known_ends(
        &mut self,
        ends: HashMap<TopicPartition, i64>,
        positions: HashMap<TopicPartition, i64>,
    ) {
        self.ends = InputEnds::new(ends, positions);
    }

    /// True when `queue` (of `partition`) is empty but known to bring a record earlier
    /// than `timestamp_ms`: it was resumed and not refilled yet; or, for a repartition
    /// source, this instance wrote there what it has not read back; or, for an input, its
    /// end lies beyond what was read.
    fn brings_earlier(
        &self,
        partition: &TopicPartition,
        queue: &RecordQueue,
        timestamp_ms: i64,
    ) -> bool {
        if queue.internal {
            // Records of several writers interleave: one of ours stamped earlier may
            // still come after later ones already queued.
            return [&queue.unread, &queue.unread_open]
                .into_iter()
                .any(|unread| unread.oldest().is_some_and(|t| t < timestamp_ms))
                || (queue.awaiting_refill
                    && queue.records.is_empty()
                    && queue.received_time_ms < timestamp_ms);
        }
        if !queue.records.is_empty() || queue.received_time_ms >= timestamp_ms {
            return false;
        }
        if queue.awaiting_refill {
            return true;
        }
        self.ends.beyond(partition, queue.next_offset)
    }

    /// True when `task`, whose lowest head is stamped `timestamp_ms`, holds back: one of
    /// its partitions brings an earlier record; or, besides its own, one of the
    /// partitions of the tasks writing its repartition source, or for a writing task
    /// one of its siblings' (their writes then reach each repartition partition in
    /// timestamp order, which is the order its reader takes them in).
    fn holds_back(&self, task: TaskId, group: &PartitionGroup, timestamp_ms: i64) -> bool {
        let waits = |group: &PartitionGroup| {
            group
                .queues
                .iter()
                .any(|(p, q)| self.brings_earlier(p, q, timestamp_ms))
        };
        if waits(group) {
            return true;
        }
        let upstream = self.upstream.get(&task.sub_topology);
        let writes = self.writers.contains(&task.sub_topology);
        if upstream.is_none() && !writes {
            return false;
        }
        self.tasks.iter().any(|(other, group)| {
            let feeds = upstream.is_some_and(|w| w.contains(&other.sub_topology))
                || (writes && other.sub_topology == task.sub_topology && *other != task);
            feeds && waits(group)
        })
    }

    /// Takes the next record to process: among tasks that do not hold back, the queued
    /// record with the lowest timestamp (ties: the lowest task, then partition order).
    pub fn next(&mut self, now: Instant) -> Next {
        if self.buffered == 0 {
            return Next::Empty;
        }
        // Reused between calls: this runs once per record.
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for (task, group) in &self.tasks {
            if let Some((timestamp_ms, index)) = group.lowest_head() {
                let holds = self.holds_back(*task, group, timestamp_ms);
                candidates.push((*task, timestamp_ms, index, holds));
            }
        }
        let mut best: Option<(i64, TaskId, usize, bool)> = None;
        let mut hold_until: Option<Instant> = None;
        for &(task, timestamp_ms, index, holds) in &candidates {
            // Candidates are made from `self.tasks` above.
            let Some(group) = self.tasks.get_mut(&task) else {
                continue;
            };
            let mut enforced = false;
            if holds {
                let since = *group.idle_since.get_or_insert(now);
                let until = since + self.max_task_idle;
                if now < until {
                    hold_until = Some(hold_until.map_or(until, |h| h.min(until)));
                    continue;
                }
                enforced = true;
                // What it waited for did not come (a record stamped otherwise than
                // written, e.g. under LogAppendTime): forget it rather than wait again.
                for (_, queue) in &mut group.queues {
                    queue.unread = Default::default();
                }
            } else {
                group.idle_since = None;
            }
            if best.as_ref().is_none_or(|(t, ..)| timestamp_ms < *t) {
                best = Some((timestamp_ms, task, index, enforced));
            }
        }
        self.candidates = candidates;
        let Some((_, task, index, enforced)) = best else {
            return match hold_until {
                Some(until) => Next::HoldBack { until },
                None => Next::Empty,
            };
        };
        // The chosen queue is a candidate's: it exists and has a head.
        let capacity = self.capacity;
        let Some((key, queue)) = self
            .tasks
            .get_mut(&task)
            .and_then(|group| group.queues.get_mut(index))
        else {
            return Next::Empty;
        };
        let Some((message, resume)) = queue.pop(capacity) else {
            return Next::Empty;
        };
        self.buffered -= 1;
        Next::Record {
            task,
            message,
            enforced,
            resume: resume.then(|| key.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
