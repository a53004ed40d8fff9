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
//! it no longer needs to hold back. Ordering is an optimisation only: the processors are
//! correct in any order (the lifecycle's `pending` store), so a wrong guess costs work,
//! never correctness.
//!
//! A queue holds at most `processing.buffered_records_per_partition` records; then its
//! partition is paused (librdkafka drops what it had prefetched for it and fetches again
//! from the position after the last record handed over) and resumed once the queue is
//! down to a quarter; the stream thread then seeks it to its next offset, which wakes
//! librdkafka's broker thread (a resume alone does not).

use std::collections::{BTreeMap, HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};

use crate::task::TaskId;

/// A partition: topic and partition number.
pub type TopicPartition = (String, i32);

/// One partition's queue.
#[derive(Debug)]
struct RecordQueue {
    /// The sub-topology of the task it belongs to.
    sub_topology: u8,
    /// True for a repartition (internal) source.
    internal: bool,
    records: VecDeque<OwnedMessage>,
    /// Timestamp of the last record received, milliseconds (`i64::MIN` before any).
    received_time_ms: i64,
    /// The offset after the last record received.
    next_offset: i64,
    /// Paused because the queue was full.
    paused_for_capacity: bool,
    /// Resumed after a capacity pause, no record received since.
    awaiting_refill: bool,
}

/// Timestamps of records written to one repartition partition and not read back yet,
/// in write order, with their minimum kept as a monotonic queue.
#[derive(Debug, Default)]
struct Unread {
    written: VecDeque<i64>,
    /// Non-decreasing: the minimum of `written` and of each of its suffixes.
    minima: VecDeque<i64>,
}

impl Unread {
    fn push(&mut self, timestamp_ms: i64) {
        while self.minima.back().is_some_and(|m| *m > timestamp_ms) {
            self.minima.pop_back();
        }
        self.minima.push_back(timestamp_ms);
        self.written.push_back(timestamp_ms);
    }

    /// A record stamped `timestamp_ms` was read: the oldest write, if it matches.
    fn read_back(&mut self, timestamp_ms: i64) {
        if self.written.front() == Some(&timestamp_ms) {
            self.written.pop_front();
            if self.minima.front() == Some(&timestamp_ms) {
                self.minima.pop_front();
            }
        }
    }

    fn oldest(&self) -> Option<i64> {
        self.minima.front().copied()
    }

    fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

/// A task's view of its partitions.
#[derive(Debug, Default)]
struct TaskQueues {
    partitions: Vec<TopicPartition>,
    /// Since when the task has held back its records.
    idle_since: Option<Instant>,
}

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

/// The record queues of every running task of the instance.
#[derive(Debug)]
pub struct PartitionGroups {
    queues: FxHashMap<TopicPartition, RecordQueue>,
    tasks: BTreeMap<TaskId, TaskQueues>,
    /// Records queued, over all partitions.
    buffered: usize,
    capacity: usize,
    max_task_idle: Duration,
    /// Per repartition partition, the timestamps of the records this instance wrote
    /// there in committed transactions and has not read back yet, in write order.
    unread: FxHashMap<TopicPartition, Unread>,
    /// The same for the open transaction (dropped when it aborts).
    unread_open: FxHashMap<TopicPartition, Unread>,
    /// The end of each input partition as last listed, with the consumer's position at
    /// the last commit (which steps over transaction markers): a partition whose end is
    /// beyond both has records on their way.
    known_ends: FxHashMap<TopicPartition, i64>,
    positions: FxHashMap<TopicPartition, i64>,
    /// Per sub-topology, the sub-topologies writing its repartition source: a task also
    /// waits for their partitions, whose records may become its own.
    upstream: HashMap<u8, Vec<u8>>,
    /// The sub-topologies writing a repartition topic.
    writers: std::collections::HashSet<u8>,
    /// Scratch space of [`Self::next`]: per task with records, its lowest head's
    /// timestamp, that head's partition (index in the task's list) and whether it holds
    /// back.
    candidates: Vec<(TaskId, i64, usize, bool)>,
}

impl PartitionGroups {
    /// Queues of at most `capacity` records per partition; a task holds back at most
    /// `max_task_idle`. `upstream` names, per sub-topology, the sub-topologies writing
    /// its repartition source.
    pub fn new(capacity: usize, max_task_idle: Duration, upstream: HashMap<u8, Vec<u8>>) -> Self {
        PartitionGroups {
            known_ends: FxHashMap::default(),
            positions: FxHashMap::default(),
            writers: upstream.values().flatten().copied().collect(),
            candidates: Vec::new(),
            upstream,
            queues: FxHashMap::default(),
            tasks: BTreeMap::new(),
            buffered: 0,
            capacity: capacity.max(4),
            max_task_idle,
            unread: FxHashMap::default(),
            unread_open: FxHashMap::default(),
        }
    }

    /// True when no record is queued.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// True when `partition` has queued records (the next offset to commit for it is
    /// then its first queued record's, not the consumer's position).
    pub fn has_queued(&self, partition: &TopicPartition) -> bool {
        self.queues
            .get(partition)
            .is_some_and(|q| !q.records.is_empty())
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
        let key = (message.topic().to_string(), message.partition());
        let timestamp_ms = timestamp_of(&message);
        self.buffered += 1;
        if internal && let Some(unread) = self.unread.get_mut(&key) {
            // Records of one producer are read in the order written: this one is ours
            // when it is stamped as our oldest unread write.
            unread.read_back(timestamp_ms);
            if unread.is_empty() {
                self.unread.remove(&key);
            }
        }
        let capacity = self.capacity;
        let queue = self.queue(task, internal, &key);
        queue.received_time_ms = queue.received_time_ms.max(timestamp_ms);
        queue.next_offset = queue.next_offset.max(message.offset() + 1);
        queue.awaiting_refill = false;
        queue.records.push_back(message);
        if queue.records.len() >= capacity && !queue.paused_for_capacity {
            queue.paused_for_capacity = true;
            return Some(key);
        }
        None
    }

    /// The queue of `key`, a partition of `task`, created empty if it is new.
    fn queue(&mut self, task: TaskId, internal: bool, key: &TopicPartition) -> &mut RecordQueue {
        self.queues.entry(key.clone()).or_insert_with(|| {
            self.tasks
                .entry(task)
                .or_default()
                .partitions
                .push(key.clone());
            RecordQueue {
                sub_topology: task.sub_topology,
                internal,
                records: VecDeque::new(),
                received_time_ms: i64::MIN,
                next_offset: 0,
                paused_for_capacity: false,
                awaiting_refill: false,
            }
        })
    }

    /// Puts a record taken with [`Self::next`] back at the head of its queue (a suspect
    /// that waits for the commit before it).
    pub fn push_front(&mut self, message: OwnedMessage) {
        let key = (message.topic().to_string(), message.partition());
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.records.push_front(message);
            self.buffered += 1;
        }
    }

    /// The offset after the last record received from `partition`.
    pub fn next_offset(&self, partition: &TopicPartition) -> Option<i64> {
        self.queues.get(partition).map(|q| q.next_offset)
    }

    /// Takes the head of `partition`'s queue if it is the record at `offset` (one put
    /// back with [`Self::push_front`]).
    pub fn take_head(&mut self, partition: &TopicPartition, offset: i64) -> Option<OwnedMessage> {
        let queue = self.queues.get_mut(partition)?;
        if queue.records.front()?.offset() != offset {
            return None;
        }
        self.buffered -= 1;
        queue.records.pop_front()
    }

    /// Drops the queued records of `partition` (it was sought back). Returns true when
    /// it was paused for capacity: the caller resumes it after the seek.
    pub fn clear(&mut self, partition: &TopicPartition) -> bool {
        let Some(queue) = self.queues.get_mut(partition) else {
            return false;
        };
        self.buffered -= queue.records.len();
        queue.records.clear();
        queue.awaiting_refill = false;
        // Read again from an earlier offset: what it had received counts no more.
        queue.received_time_ms = i64::MIN;
        queue.next_offset = 0;
        self.positions.remove(partition);
        std::mem::take(&mut queue.paused_for_capacity)
    }

    /// Drops every queue (a rebalance: every partition is read again from its
    /// committed offset). Returns the partitions that were paused for capacity.
    pub fn clear_all(&mut self) -> Vec<TopicPartition> {
        let paused = self
            .queues
            .iter()
            .filter(|(_, q)| q.paused_for_capacity)
            .map(|(k, _)| k.clone())
            .collect();
        self.queues.clear();
        self.tasks.clear();
        self.buffered = 0;
        self.unread.clear();
        self.unread_open.clear();
        paused
    }

    /// This instance wrote a record stamped `timestamp_ms` to repartition `partition`, a
    /// source of `task`, in the open transaction.
    pub fn wrote(&mut self, task: TaskId, partition: TopicPartition, timestamp_ms: i64) {
        self.queue(task, true, &partition);
        self.unread_open
            .entry(partition)
            .or_default()
            .push(timestamp_ms);
    }

    /// The open transaction committed: what it wrote will be read back.
    pub fn committed(&mut self) {
        for (partition, open) in self.unread_open.drain() {
            let unread = self.unread.entry(partition).or_default();
            for timestamp_ms in open.written {
                unread.push(timestamp_ms);
            }
        }
    }

    /// The ends of the input partitions as last listed, and the consumer's positions.
    pub fn set_known_ends(
        &mut self,
        ends: HashMap<TopicPartition, i64>,
        positions: HashMap<TopicPartition, i64>,
    ) {
        self.known_ends = ends.into_iter().collect();
        self.positions = positions.into_iter().collect();
    }

    /// The open transaction aborted: what it wrote will never be read.
    pub fn aborted(&mut self) {
        self.unread_open.clear();
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

            let written = [self.unread.get(partition), self.unread_open.get(partition)];
            return written
                .into_iter()
                .flatten()
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
        let read = queue
            .next_offset
            .max(self.positions.get(partition).copied().unwrap_or(0));
        self.known_ends
            .get(partition)
            .is_some_and(|end| *end > read)
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
        for (task, queues) in &self.tasks {
            let Some((timestamp_ms, partition)) = lowest_head(&self.queues, &queues.partitions)
            else {
                continue;
            };
            let waits_for = |p: &TopicPartition| {
                self.queues
                    .get(p)
                    .is_some_and(|q| self.brings_earlier(p, q, timestamp_ms))
            };
            // Besides its own partitions, a task waits for the partitions of the tasks
            // writing its repartition source, and a writing task for those of its
            // siblings: their writes then reach each repartition partition in timestamp
            // order, which is the order its reader takes them in.
            let upstream = self.upstream.get(&task.sub_topology);
            let writes = self.writers.contains(&task.sub_topology);
            let holds = queues.partitions.iter().any(waits_for)
                || ((upstream.is_some() || writes)
                    && self.queues.iter().any(|(p, q)| {
                        let feeds = upstream.is_some_and(|w| w.contains(&q.sub_topology))
                            || (writes && q.sub_topology == task.sub_topology);
                        feeds && self.brings_earlier(p, q, timestamp_ms)
                    }));
            candidates.push((*task, timestamp_ms, partition, holds));
        }
        let mut best: Option<(i64, TaskId, usize, bool)> = None;
        let mut hold_until: Option<Instant> = None;
        for &(task, timestamp_ms, partition, holds) in &candidates {
            // Candidates are made from `self.tasks` above.
            let Some(queues) = self.tasks.get_mut(&task) else {
                continue;
            };
            let mut enforced = false;
            if holds {
                let since = *queues.idle_since.get_or_insert(now);
                let until = since + self.max_task_idle;
                if now < until {
                    hold_until = Some(hold_until.map_or(until, |h| h.min(until)));
                    continue;
                }
                enforced = true;
                // What it waited for did not come (a record stamped otherwise than
                // written, e.g. under LogAppendTime): forget it rather than wait again.
                for p in &queues.partitions {
                    self.unread.remove(p);
                }
            } else {
                queues.idle_since = None;
            }
            if best.as_ref().is_none_or(|(t, ..)| timestamp_ms < *t) {
                best = Some((timestamp_ms, task, partition, enforced));
            }
        }
        self.candidates = candidates;
        let Some((_, task, partition, enforced)) = best else {
            return match hold_until {
                Some(until) => Next::HoldBack { until },
                None => Next::Empty,
            };
        };
        // The chosen queue is a candidate's: it exists and has a head.
        let Some(key) = self
            .tasks
            .get(&task)
            .and_then(|queues| queues.partitions.get(partition))
        else {
            return Next::Empty;
        };
        let Some(queue) = self.queues.get_mut(key) else {
            return Next::Empty;
        };
        let Some(message) = queue.records.pop_front() else {
            return Next::Empty;
        };
        self.buffered -= 1;
        let resume =
            (queue.paused_for_capacity && queue.records.len() <= self.capacity / 4).then(|| {
                queue.paused_for_capacity = false;
                queue.awaiting_refill = true;
                key.clone()
            });
        Next::Record {
            task,
            message,
            enforced,
            resume,
        }
    }
}

/// The record's broker timestamp, milliseconds (0 when it has none).
fn timestamp_of(message: &OwnedMessage) -> i64 {
    message.timestamp().to_millis().unwrap_or(0)
}

/// The head with the lowest timestamp among `partitions`' queues, with its index in
/// `partitions`.
fn lowest_head(
    queues: &FxHashMap<TopicPartition, RecordQueue>,
    partitions: &[TopicPartition],
) -> Option<(i64, usize)> {
    let mut lowest: Option<(i64, usize)> = None;
    for (index, partition) in partitions.iter().enumerate() {
        let Some(head) = queues.get(partition).and_then(|q| q.records.front()) else {
            continue;
        };
        let timestamp_ms = timestamp_of(head);
        if lowest.is_none_or(|(t, _)| timestamp_ms < t) {
            lowest = Some((timestamp_ms, index));
        }
    }
    lowest
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    const LIFECYCLE: TaskId = TaskId {
        sub_topology: 1,
        partition: 0,
    };
    const DEDUPE: TaskId = TaskId {
        sub_topology: 0,
        partition: 0,
    };

    fn upstream() -> HashMap<u8, Vec<u8>> {
        HashMap::from([(1, vec![0])])
    }

    fn record(topic: &str, offset: i64, timestamp_ms: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(vec![1]),
            Some(b"k".to_vec()),
            topic.to_string(),
            Timestamp::CreateTime(timestamp_ms),
            0,
            offset,
            None,
        )
    }

    fn take(groups: &mut PartitionGroups, now: Instant) -> Option<(String, i64, bool)> {
        match groups.next(now) {
            Next::Record {
                message, enforced, ..
            } => Some((message.topic().to_string(), message.offset(), enforced)),
            _ => None,
        }
    }

    #[test]
    fn the_lowest_timestamp_goes_first_across_partitions_and_tasks() {
        let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
        groups.push(LIFECYCLE, false, record("auth", 0, 30));
        groups.push(LIFECYCLE, false, record("auth", 1, 50));
        groups.push(LIFECYCLE, true, record("repartition", 0, 40));
        groups.push(DEDUPE, false, record("initiated", 0, 10));
        let now = Instant::now();
        let order: Vec<_> = std::iter::from_fn(|| take(&mut groups, now))
            .map(|(t, o, _)| (t, o))
            .collect();
        assert_eq!(
            order,
            [
                ("initiated".to_string(), 0),
                ("auth".to_string(), 0),
                ("repartition".to_string(), 0),
                ("auth".to_string(), 1)
            ]
        );
        assert!(groups.is_empty());
    }

    #[test]
    fn a_task_holds_back_for_records_it_wrote_to_its_repartition_partition() {
        let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
        let repartition = ("repartition".to_string(), 0);
        // The repartition partition is known (one record read), then empty.
        groups.push(LIFECYCLE, true, record("repartition", 0, 5));
        let now = Instant::now();
        assert!(take(&mut groups, now).is_some());
        // The dedupe wrote a payment stamped 20; an auth stamped 30 arrives.
        groups.wrote(LIFECYCLE, repartition.clone(), 20);
        groups.push(LIFECYCLE, false, record("auth", 0, 30));
        assert!(matches!(groups.next(now), Next::HoldBack { .. }));
        // Committed, still not read back: still held.
        groups.committed();
        assert!(matches!(groups.next(now), Next::HoldBack { .. }));
        // The payment arrives: it goes first, then the auth, unforced.
        groups.push(LIFECYCLE, true, record("repartition", 1, 20));
        assert_eq!(
            take(&mut groups, now),
            Some(("repartition".into(), 1, false))
        );
        assert_eq!(take(&mut groups, now), Some(("auth".into(), 0, false)));
    }

    #[test]
    fn holding_back_ends_after_max_task_idle_and_when_the_write_aborted() {
        let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
        groups.push(LIFECYCLE, true, record("repartition", 0, 5));
        let start = Instant::now();
        take(&mut groups, start);
        groups.wrote(LIFECYCLE, ("repartition".into(), 0), 20);
        groups.push(LIFECYCLE, false, record("auth", 0, 30));
        groups.push(LIFECYCLE, false, record("auth", 1, 31));
        let Next::HoldBack { until } = groups.next(start) else {
            panic!("expected to hold back");
        };
        assert_eq!(until, start + Duration::from_millis(500));
        assert_eq!(
            take(&mut groups, until),
            Some(("auth".into(), 0, true)),
            "processed, enforced, once max_task_idle has passed"
        );
        // Aborted: nothing is awaited from the open transaction any more.
        groups.aborted();
        assert_eq!(take(&mut groups, until), Some(("auth".into(), 1, false)));
    }

    #[test]
    fn a_full_queue_pauses_its_partition_and_resumes_at_a_quarter() {
        let mut groups = PartitionGroups::new(8, Duration::from_millis(500), upstream());
        let mut paused = None;
        for offset in 0..8 {
            paused = paused.or(groups.push(DEDUPE, false, record("initiated", offset, offset)));
        }
        assert_eq!(paused, Some(("initiated".to_string(), 0)));
        let now = Instant::now();
        let mut resumed = None;
        for _ in 0..6 {
            if let Next::Record { resume, .. } = groups.next(now) {
                resumed = resumed.or(resume);
            }
        }
        assert_eq!(resumed, Some(("initiated".to_string(), 0)));
        assert_eq!(groups.buffered, 2);
    }

    #[test]
    fn after_a_resume_the_task_waits_for_the_refill_of_earlier_records() {
        let mut groups = PartitionGroups::new(4, Duration::from_millis(500), upstream());
        for offset in 0..4 {
            groups.push(LIFECYCLE, false, record("auth", offset, offset));
        }
        groups.push(LIFECYCLE, false, record("settlement", 0, 1_000));
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(take(&mut groups, now).map(|(t, ..)| t), Some("auth".into()));
        }
        // auth was resumed and is empty: the settlement (later) waits for its refill.
        assert!(matches!(groups.next(now), Next::HoldBack { .. }));
        groups.push(LIFECYCLE, false, record("auth", 4, 4));
        assert_eq!(take(&mut groups, now), Some(("auth".into(), 4, false)));
        assert_eq!(
            take(&mut groups, now),
            Some(("settlement".into(), 0, false))
        );
    }

    #[test]
    fn a_task_waits_for_an_upstream_partition_whose_end_is_beyond_what_was_read() {
        let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
        let initiated = ("initiated".to_string(), 0);
        groups.push(DEDUPE, false, record("initiated", 0, 10));
        groups.push(LIFECYCLE, false, record("auth", 0, 30));
        let now = Instant::now();
        assert_eq!(take(&mut groups, now), Some(("initiated".into(), 0, false)));
        // The broker holds more of `initiated` than was read: the auth waits for it.
        groups.set_known_ends(
            HashMap::from([(initiated.clone(), 5)]),
            HashMap::from([(initiated.clone(), 1)]),
        );
        assert!(matches!(groups.next(now), Next::HoldBack { .. }));
        groups.push(DEDUPE, false, record("initiated", 1, 20));
        assert_eq!(take(&mut groups, now), Some(("initiated".into(), 1, false)));
        // Read up to its end: nothing earlier is coming.
        groups.set_known_ends(HashMap::from([(initiated.clone(), 2)]), HashMap::new());
        assert_eq!(take(&mut groups, now), Some(("auth".into(), 0, false)));
    }

    #[test]
    fn writing_tasks_wait_for_their_siblings() {
        let sibling = TaskId {
            sub_topology: 0,
            partition: 1,
        };
        let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
        groups.push(DEDUPE, false, record("initiated", 0, 10));
        groups.push(sibling, false, record("initiated-1", 0, 5));
        let now = Instant::now();
        assert_eq!(
            take(&mut groups, now),
            Some(("initiated-1".into(), 0, false))
        );
        groups.set_known_ends(
            HashMap::from([(("initiated-1".into(), 0), 9)]),
            HashMap::new(),
        );
        // Its sibling has more on the broker, stamped perhaps before 10: wait.
        assert!(matches!(groups.next(now), Next::HoldBack { .. }));
    }

    #[test]
    fn clearing_a_partition_drops_its_records_and_reports_a_capacity_pause() {
        let mut groups = PartitionGroups::new(4, Duration::from_millis(500), upstream());
        for offset in 0..4 {
            groups.push(DEDUPE, false, record("initiated", offset, offset));
        }
        groups.push(LIFECYCLE, false, record("auth", 0, 0));
        assert!(groups.has_queued(&("initiated".into(), 0)));
        assert!(groups.clear(&("initiated".into(), 0)));
        assert!(!groups.has_queued(&("initiated".into(), 0)));
        assert_eq!(groups.buffered, 1);
        assert!(groups.clear_all().is_empty());
        assert!(groups.is_empty());
    }
}
