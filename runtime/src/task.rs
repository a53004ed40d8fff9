//! The stream task: the unit of work and state. A task is one sub-topology on one
//! partition; it owns an instance of the sub-topology's processor, its state stores —
//! each `Metered(Ttl(Transactional(RocksDb)))`, see [`TaskStore`] — under
//! `<state.dir>/<application_id>/<task_id>/<store>`, its stream and partition times, and
//! its checkpoint (see [`crate::state_manager`]). A task runs once its restore
//! (`restore.rs`) has finished.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use paystream_state::{
    KeyValueStore, MeteredStore, PendingWrite, RocksDbStore, StoreMetrics, StoreReader,
    TransactionalStore, TtlStore,
};

use tracing::warn;

use crate::Result;
use crate::poison::panic_message;
use crate::processor::{
    Forward, Origin, ProcessorContext, ProcessorError, Result as ProcessorResult, TaskProcessor,
    Value,
};
use crate::state_manager::{
    CHECKPOINT_RECORDS_MIN, NotedCheckpoint, RestoredStores, TaskCheckpoint,
};
use crate::topology::SubTopology;

/// A task's state store: metering over time-to-live over the transactional write buffer
/// (whose writes are the changelog) over RocksDB.
pub type TaskStore = MeteredStore<TtlStore<TransactionalStore<RocksDbStore>>>;

/// Keys examined per TTL store at each commit when purging expired keys.
const PURGE_KEYS_PER_COMMIT: usize = 500;

pub use crate::topology::TaskId;

/// A running task: its processor, stores, stream time and checkpoint.
pub struct Task {
    pub id: TaskId,
    pub stores: BTreeMap<&'static str, TaskStore>,
    /// Readers of the stores' RocksDB instances, for interactive queries.
    readers: Vec<StoreReader>,
    /// Stores whose keys expire.
    ttl_stores: Vec<&'static str>,
    processor: Box<dyn TaskProcessor>,
    /// Largest record timestamp processed, milliseconds since the Unix epoch.
    pub stream_time_ms: i64,
    /// Largest record timestamp per input (partition time, by position in the
    /// sub-topology's sources), milliseconds since the Unix epoch; `i64::MIN` before the
    /// input's first record.
    pub partition_time_ms: Vec<i64>,
    /// For an input that is a repartition topic written by another sub-topology: the
    /// largest timestamp seen from each of the writer's input partitions, by input. That
    /// input's partition time is their minimum — a watermark — so one upstream task
    /// running ahead of another (a backlog) cannot fire the timers on it early.
    upstream_time_ms: Vec<Vec<i64>>,
    checkpoint: TaskCheckpoint,
    /// The offsets noted when the stores' flush in the background was requested: the
    /// checkpoint to write once that flush has completed.
    flushing: Option<NotedCheckpoint>,
    /// A transaction committed since the processor's `init`, and with it what `init`
    /// wrote. Until then an abort drops those writes, so [`Self::abort_stores`] runs
    /// `init` again.
    init_committed: bool,
    /// The processor's wall-clock punctuation: its interval and when it is next due.
    wall_clock: Option<WallClockSchedule>,
    /// Wall-clock time since when it has been reading without a break, milliseconds
    /// since the Unix epoch ([`ProcessorContext::running_since_ms`]).
    running_since_ms: i64,
}

/// When a task's wall-clock punctuation runs.
#[derive(Debug, Clone, Copy)]
struct WallClockSchedule {
    interval: Duration,
    next_at: Instant,
}

impl Task {
    /// A running task of `sub` over stores its restore brought up to date: a new
    /// instance of the sub-topology's processor, initialised (its `init` writes join the
    /// open transaction; an abort before that transaction commits runs `init` again, see
    /// [`Self::abort_stores`]).
    ///
    /// # Errors
    /// A processor error from `init`.
    pub fn new(id: TaskId, sub: &SubTopology, restored: RestoredStores) -> Result<Task> {
        let mut stores = BTreeMap::new();
        let mut ttl_stores = Vec::new();
        let mut readers = Vec::new();
        for (name, rocks) in restored.stores {
            readers.push(rocks.reader());
            let ttl_ms = sub
                .stores
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.ttl_ms);
            if ttl_ms.is_some() {
                ttl_stores.push(name);
            }
            let store = TtlStore::new(TransactionalStore::new(rocks), ttl_ms.unwrap_or(i64::MAX));
            stores.insert(name, MeteredStore::new(store));
        }
        let mut task = Task {
            id,
            stores,
            readers,
            ttl_stores,
            processor: sub.processor(),
            stream_time_ms: i64::MIN,
            partition_time_ms: vec![i64::MIN; sub.sources.len()],
            upstream_time_ms: vec![Vec::new(); sub.sources.len()],
            checkpoint: restored.checkpoint,
            flushing: None,
            init_committed: false,
            wall_clock: None,
            running_since_ms: wall_clock_ms(),
        };
        task.wall_clock = task
            .processor
            .wall_clock_punctuation_interval_ms()
            .map(|interval_ms| {
                let interval = Duration::from_millis(interval_ms.max(1));
                WallClockSchedule {
                    interval,
                    next_at: Instant::now() + interval,
                }
            });
        task.init_processor()?;
        Ok(task)
    }

    /// Runs the processor's `init` over the task's stores; its writes join the open
    /// transaction, what it forwards is dropped.
    fn init_processor(&mut self) -> Result<()> {
        let mut outputs = Vec::new();
        let mut context = TaskContext {
            stores: &mut self.stores,
            outputs: &mut outputs,
            stream_time_ms: self.stream_time_ms,
            partition_time_ms: &self.partition_time_ms,
            running_since_ms: self.running_since_ms,
        };
        self.processor.init(&mut context)?;
        Ok(())
    }

    /// Runs the processor on one decoded record. `Ok(Err(message))` when the processor
    /// panicked on it or was handed a value of a type it does not take: its store writes
    /// may be partial, so the caller aborts the transaction and dead-letters the record.
    ///
    /// # Errors
    /// A processor error (a state store failing): the environment, not the record.
    pub fn process(
        &mut self,
        value: Value,
        origin: Origin,
    ) -> Result<std::result::Result<Vec<Forward>, String>> {
        let mut outputs = Vec::new();
        let mut context = TaskContext {
            stores: &mut self.stores,
            outputs: &mut outputs,
            stream_time_ms: self.stream_time_ms,
            partition_time_ms: &self.partition_time_ms,
            running_since_ms: self.running_since_ms,
        };
        let processor = &mut self.processor;
        let processed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            processor.process_value(value, origin, &mut context)
        }));
        match processed {
            // A value of another type than the processor takes can only come from a
            // record's data (a repartitioned record's origin header): the record fails,
            // the task goes on.
            Ok(Err(e @ ProcessorError::UnexpectedInput { .. })) => Ok(Err(e.to_string())),
            Ok(result) => {
                result?;
                Ok(Ok(outputs))
            }
            Err(panic) => Ok(Err(format!("processor failed: {}", panic_message(&*panic)))),
        }
    }

    /// Punctuation at the task's stream time (nothing before its first record): the
    /// processor's due timers fire. Returns what they forwarded, or `Ok(Err(message))`
    /// when the processor panicked: its store writes may be partial, so the caller
    /// aborts the open transaction, and the task goes on.
    ///
    /// # Errors
    /// A processor error (a state store failing).
    pub fn punctuate(&mut self) -> Result<std::result::Result<Vec<Forward>, String>> {
        if self.stream_time_ms == i64::MIN {
            return Ok(Ok(Vec::new()));
        }
        let stream_time_ms = self.stream_time_ms;
        self.run_punctuation(|processor, context| processor.punctuate(stream_time_ms, context))
    }

    /// See [`crate::Processor::awaits_wall_clock`].
    pub fn awaits_wall_clock(&self) -> bool {
        self.processor.awaits_wall_clock()
    }

    /// When the processor's next wall-clock punctuation is due; `None` when it asked for
    /// none.
    pub fn next_wall_clock_punctuation(&self) -> Option<Instant> {
        self.wall_clock.map(|schedule| schedule.next_at)
    }

    /// Wall-clock punctuation, when it is due at `now` (`wall_clock_ms`, milliseconds
    /// since the Unix epoch, is the same instant): the processor's
    /// [`TaskProcessor::punctuate_wall_clock`] runs and the next one is due an interval
    /// later. Returns `Ok(Ok(None))` when it was not due, else as [`Self::punctuate`].
    ///
    /// # Errors
    /// A processor error (a state store failing).
    pub fn punctuate_wall_clock(
        &mut self,
        now: Instant,
        wall_clock_ms: i64,
    ) -> Result<std::result::Result<Option<Vec<Forward>>, String>> {
        let Some(schedule) = self.wall_clock.as_mut() else {
            return Ok(Ok(None));
        };
        if now < schedule.next_at {
            return Ok(Ok(None));
        }
        // The next one is an interval from now: a stream thread that was busy for
        // several intervals punctuates once, not once per missed interval.
        schedule.next_at = now + schedule.interval;
        Ok(self
            .run_punctuation(|processor, context| {
                processor.punctuate_wall_clock(wall_clock_ms, context)
            })?
            .map(Some))
    }

    /// Runs one punctuation of the processor over the task's stores, catching a panic
    /// (`Ok(Err(message))`).
    fn run_punctuation(
        &mut self,
        punctuation: impl FnOnce(&mut dyn TaskProcessor, &mut TaskContext<'_>) -> ProcessorResult<()>,
    ) -> Result<std::result::Result<Vec<Forward>, String>> {
        let mut outputs = Vec::new();
        let mut context = TaskContext {
            stores: &mut self.stores,
            outputs: &mut outputs,
            stream_time_ms: self.stream_time_ms,
            partition_time_ms: &self.partition_time_ms,
            running_since_ms: self.running_since_ms,
        };
        let processor = &mut *self.processor;
        let punctuated =
            std::panic::catch_unwind(AssertUnwindSafe(|| punctuation(processor, &mut context)));
        match punctuated {
            Ok(result) => {
                result?;
                Ok(Ok(outputs))
            }
            Err(panic) => Ok(Err(format!(
                "punctuation failed: {}",
                panic_message(&*panic)
            ))),
        }
    }

    /// Readers of the task's stores from other threads (interactive queries): they
    /// see what committed transactions wrote.
    pub fn store_readers(&self) -> Vec<StoreReader> {
        self.readers.clone()
    }

    /// True when the open transaction holds a write to one of the task's stores.
    pub fn has_pending_writes(&self) -> bool {
        self.pending_writes().next().is_some()
    }

    /// Closes the task: drops the open transaction's writes, flushes the stores and
    /// writes the checkpoint (so a return restores only what it missed), then the
    /// processor's `close`; the stores close when dropped. A failed flush or checkpoint is
    /// logged: the previous checkpoint stays, which is still safe to restore from.
    pub fn close(mut self) {
        self.drop_open_writes();
        if self.checkpoint.unwritten_records() > 0
            && let Err(error) = self.flush_and_checkpoint()
        {
            warn!(task = %self.id, %error, "checkpoint at close failed; the previous one stays");
        }
        self.processor.close();
    }

    /// Notes that the local stores now reflect their changelogs up to `next_offsets`
    /// (store → next changelog offset), after a commit's writes reached RocksDB. Once
    /// [`CHECKPOINT_RECORDS_MIN`] records have accumulated, asks the stores to flush in
    /// the background and keeps the offsets noted at that moment; at a later commit that
    /// finds the flush completed, writes those offsets as the checkpoint
    /// (docs/architecture.md, "State: changelogs, checkpoints, restore"). The commit
    /// never waits for a flush; the checkpoint trails the stores by at most one flush.
    ///
    /// # Errors
    /// [`crate::Error::StateDirectory`] when the checkpoint cannot be written; the
    /// previous one stays, which is still safe to restore from. A store error when a
    /// flush fails.
    pub fn checkpoint(&mut self, next_offsets: &BTreeMap<&'static str, i64>) -> Result<()> {
        self.checkpoint
            .note(next_offsets.iter().map(|(store, offset)| (*store, *offset)));
        if self.flushing.is_some() && self.stores_flushed()? {
            let flushed = self.flushing.take().expect("checked above");
            self.checkpoint.write(&flushed)?;
        }
        if self.flushing.is_none() && self.checkpoint.unwritten_records() >= CHECKPOINT_RECORDS_MIN
        {
            // Noted before the flush is requested: every write it covers is sealed in
            // the memtables the flush writes out.
            let noted = self.checkpoint.noted();
            for store in self.stores.values() {
                store.inner().inner().inner().flush_in_background()?;
            }
            self.flushing = Some(noted);
        }
        Ok(())
    }

    /// True when no store has a memtable still waiting for its flush.
    fn stores_flushed(&self) -> Result<bool> {
        for store in self.stores.values() {
            if !store.inner().inner().inner().flushed()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Flushes every store's memtables to disk and waits, then writes the noted
    /// checkpoint (a flush in the background still pending is overtaken by this one).
    fn flush_and_checkpoint(&mut self) -> Result<()> {
        for store in self.stores.values() {
            store.inner().inner().inner().flush()?;
        }
        self.flushing = None;
        self.checkpoint.write_noted()
    }

    /// Records a record of input `input` — a repartition topic written by another
    /// sub-topology — that came from the writer's input partition `upstream_partition`
    /// (of `upstream_partitions`) with `timestamp_ms`, and moves that input's partition
    /// time to the minimum over all upstream partitions (`i64::MIN` until each has been
    /// seen).
    pub fn advance_upstream_time(
        &mut self,
        input: usize,
        upstream_partition: i32,
        upstream_partitions: usize,
        timestamp_ms: i64,
    ) {
        let Some(upstream) = self.upstream_time_ms.get_mut(input) else {
            return;
        };
        if upstream.len() != upstream_partitions {
            upstream.resize(upstream_partitions, i64::MIN);
        }
        if let Some(time) = upstream.get_mut(upstream_partition as usize) {
            *time = (*time).max(timestamp_ms);
        }
        self.partition_time_ms[input] = upstream.iter().copied().min().unwrap_or(i64::MIN);
    }

    /// Moves the task's stream time forward to `timestamp_ms` (never backward), and input
    /// `input`'s partition time too unless it is a watermark
    /// ([`Self::advance_upstream_time`]); TTL stores expire by stream time, timers by
    /// partition times.
    pub fn advance_stream_time(&mut self, input: Option<usize>, timestamp_ms: i64) {
        if let Some(partition_time) = input.and_then(|i| self.partition_time_ms.get_mut(i)) {
            *partition_time = (*partition_time).max(timestamp_ms);
        }
        self.stream_time_ms = self.stream_time_ms.max(timestamp_ms);
        for store in self.stores.values_mut() {
            store.inner_mut().advance_stream_time(self.stream_time_ms);
        }
    }

    /// Punctuation at commit: deletes a page of expired keys in each TTL store (they
    /// become changelog tombstones in the open transaction). Returns how many.
    ///
    /// # Errors
    /// [`paystream_state::StoreError`] from the stores.
    pub fn purge_expired(&mut self) -> paystream_state::Result<u64> {
        let mut deleted = 0;
        for name in &self.ttl_stores {
            if let Some(store) = self.stores.get_mut(name) {
                deleted += store.inner_mut().purge_expired(PURGE_KEYS_PER_COMMIT)?;
            }
        }
        Ok(deleted)
    }

    /// The writes of the open transaction per store: what goes to the changelogs.
    pub fn pending_writes(&self) -> impl Iterator<Item = (&'static str, PendingWrite<'_>)> {
        self.stores
            .iter()
            .flat_map(|(name, store)| store.inner().inner().pending().map(move |w| (*name, w)))
    }

    /// Each store's estimated key count.
    pub fn store_keys(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.stores
            .iter()
            .map(|(name, store)| (*name, store.approximate_len()))
    }

    /// Each store's operation counters, for metrics.
    pub fn store_metrics(
        &self,
    ) -> impl Iterator<Item = (&'static str, std::sync::Arc<StoreMetrics>)> {
        self.stores
            .iter()
            .map(|(name, store)| (*name, store.metrics()))
    }

    /// Applies every store's open-transaction writes to RocksDB (after the Kafka commit).
    ///
    /// # Errors
    /// [`paystream_state::StoreError`] from RocksDB.
    pub fn commit_stores(&mut self) -> paystream_state::Result<()> {
        for store in self.stores.values_mut() {
            store.inner_mut().inner_mut().commit()?;
        }
        self.init_committed = true;
        self.processor.committed();
        Ok(())
    }

    /// Discards every store's open-transaction writes (after a Kafka abort). When no
    /// transaction has committed since the processor's `init`, the writes `init` made
    /// (a processor migrating its stores' formats of earlier releases, for one) were
    /// among them: `init` runs again, on this thread, over the stores as last committed
    /// — as Kafka Streams initialises a task again after an aborted exactly-once
    /// transaction — so they are in the next transaction.
    ///
    /// # Errors
    /// A processor error from that `init`.
    pub fn abort_stores(&mut self) -> Result<()> {
        self.drop_open_writes();
        if !self.init_committed {
            self.init_processor()?;
        }
        Ok(())
    }

    /// Its stream thread goes on after a break ([`crate::STREAM_THREAD_STALL_MS`]): it
    /// has been reading without a break since now.
    pub fn went_on_after_stall(&mut self) {
        self.running_since_ms = wall_clock_ms();
    }

    /// Drops every store's open-transaction writes and tells the processor.
    fn drop_open_writes(&mut self) {
        for store in self.stores.values_mut() {
            store.inner_mut().inner_mut().abort();
        }
        self.processor.aborted();
    }
}

/// The system clock, milliseconds since the Unix epoch.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// [`ProcessorContext`] over one task's stores.
pub struct TaskContext<'a> {
    stores: &'a mut BTreeMap<&'static str, TaskStore>,
    outputs: &'a mut Vec<Forward>,
    stream_time_ms: i64,
    partition_time_ms: &'a [i64],
    running_since_ms: i64,
}

impl ProcessorContext for TaskContext<'_> {
    fn store(&mut self, name: &str) -> ProcessorResult<&mut dyn KeyValueStore> {
        self.stores
            .get_mut(name)
            .map(|s| s as &mut dyn KeyValueStore)
            .ok_or_else(|| ProcessorError::UnknownStore(name.to_string()))
    }

    fn forward_record(&mut self, forward: Forward) {
        self.outputs.push(forward);
    }

    fn stream_time_ms(&self) -> i64 {
        self.stream_time_ms
    }

    fn wall_clock_ms(&self) -> i64 {
        wall_clock_ms()
    }

    fn running_since_ms(&self) -> i64 {
        self.running_since_ms
    }

    fn partition_time_ms(&self, input: usize) -> i64 {
        self.partition_time_ms
            .get(input)
            .copied()
            .unwrap_or(i64::MIN)
    }
}
