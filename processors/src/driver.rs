//! An in-memory test driver for processors (Kafka Streams' `TopologyTestDriver`): state
//! stores are [`InMemoryStore`]s behind the runtime's [`TransactionalStore`], stream
//! time is advanced by the records piped in or by hand, and a manual wall clock by hand
//! ([`TestDriver::advance_wall_clock_ms`], which runs the wall-clock punctuation);
//! punctuation runs after every record and clock move and then the transaction commits (as the runtime's does at every
//! commit), and every call returns what the processor forwarded. An abort can be asked
//! for ([`TestDriver::advance_stream_time_ms_and_abort`],
//! [`TestDriver::with_restored_and_aborted_init`]), and a restart over the committed
//! stores ([`TestDriver::restart`]).

use std::collections::HashMap;

use paystream_state::{InMemoryStore, KeyValueStore, TransactionalStore};

use paystream_schemas::{InputEvent, PaymentInitiated};

use paystream_runtime::Forward;

use crate::{Origin, Output, Processor, ProcessorContext, ProcessorError, Record, Result, Stream};

/// Where the driver's manual wall clock starts: 2026-01-01T00:00:00Z, milliseconds since
/// the Unix epoch.
pub const WALL_CLOCK_START_MS: i64 = 1_767_225_600_000;

/// Runs one processor over in-memory stores with a manual clock.
pub struct TestDriver<P: Processor> {
    processor: P,
    context: MemoryContext,
}

struct MemoryContext {
    stores: HashMap<String, TransactionalStore<InMemoryStore>>,
    outputs: Vec<Forward>,
    stream_time_ms: i64,
    /// By input position.
    partition_time_ms: Vec<i64>,
    /// The manual wall clock, milliseconds since the Unix epoch.
    wall_clock_ms: i64,
    /// On the manual wall clock: when the processor was (re)started, or the last stall
    /// ended ([`TestDriver::stall_ms`]).
    running_since_ms: i64,
}

impl ProcessorContext for MemoryContext {
    fn store(&mut self, name: &str) -> Result<&mut dyn KeyValueStore> {
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
        self.wall_clock_ms
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

impl MemoryContext {
    fn commit(&mut self) {
        for store in self.stores.values_mut() {
            store.commit().expect("in-memory stores never fail");
        }
    }

    fn abort(&mut self) {
        for store in self.stores.values_mut() {
            store.abort();
        }
        self.outputs.clear();
    }
}

impl<P: Processor> TestDriver<P> {
    /// A driver with the processor's stores, empty, at stream time 0.
    pub fn new(processor: P) -> Self {
        TestDriver::with_restored(processor, |_| {})
    }

    /// A driver whose stores hold what `restore` writes before the processor's `init`
    /// runs, as stores restored from their changelogs do; `init`'s writes commit.
    pub fn with_restored(processor: P, restore: impl FnOnce(&mut dyn ProcessorContext)) -> Self {
        let mut driver = TestDriver::restored(processor, restore);
        driver.init_and_commit();
        driver
    }

    /// As [`Self::with_restored`], but the transaction holding `init`'s writes aborts
    /// first and `init` runs again over the restored stores, as the runtime does when
    /// it aborts a transaction before a task's first commit.
    pub fn with_restored_and_aborted_init(
        processor: P,
        restore: impl FnOnce(&mut dyn ProcessorContext),
    ) -> Self {
        let mut driver = TestDriver::restored(processor, restore);
        driver
            .processor
            .init(&mut driver.context)
            .expect("processor init in the test driver");
        driver.context.abort();
        driver.processor.aborted();
        driver.init_and_commit();
        driver
    }

    /// Replaces the processor by `processor` over the committed stores, as a restart
    /// restores them from their changelogs, and runs its `init`.
    pub fn restart(&mut self, processor: P) {
        self.context.abort();
        self.processor = processor;
        self.init_and_commit();
    }

    fn restored(processor: P, restore: impl FnOnce(&mut dyn ProcessorContext)) -> Self {
        let mut context = MemoryContext {
            stores: processor
                .stores()
                .iter()
                .map(|spec| {
                    let store = TransactionalStore::new(InMemoryStore::new(spec.name));
                    (spec.name.to_string(), store)
                })
                .collect(),
            outputs: Vec::new(),
            stream_time_ms: 0,
            partition_time_ms: vec![0; processor.inputs().len()],
            wall_clock_ms: WALL_CLOCK_START_MS,
            running_since_ms: WALL_CLOCK_START_MS,
        };
        restore(&mut context);
        context.commit();
        TestDriver { processor, context }
    }

    fn init_and_commit(&mut self) {
        self.context.running_since_ms = self.context.wall_clock_ms;
        self.processor
            .init(&mut self.context)
            .expect("processor init in the test driver");
        self.context.commit();
        self.processor.committed();
        self.context.outputs.clear();
    }

    /// Processes one record (advancing stream time, and the partition time of the
    /// record's [`Stream`] when `P::Input` is an input event, to its timestamp if later)
    /// and returns what the processor forwarded.
    ///
    /// # Panics
    /// When the processor returns an error: in-memory stores never fail.
    pub fn pipe(&mut self, record: Record<P::Input>) -> Vec<Output>
    where
        P::Input: StreamOf,
    {
        self.context.stream_time_ms = self.context.stream_time_ms.max(record.origin.timestamp_ms);
        if let Some(time) = record
            .value
            .stream()
            .and_then(|stream| self.context.partition_time_ms.get_mut(stream.input()))
        {
            *time = (*time).max(record.origin.timestamp_ms);
        }
        self.processor
            .process(record, &mut self.context)
            .expect("processor error in the test driver");
        self.punctuate()
    }

    /// Moves stream time forward by `delta_ms`, punctuates, and returns what the timers
    /// that fired forwarded.
    pub fn advance_stream_time_ms(&mut self, delta_ms: i64) -> Vec<Output> {
        self.context.stream_time_ms += delta_ms;
        for time in &mut self.context.partition_time_ms {
            *time += delta_ms;
        }
        self.punctuate()
    }

    /// As [`Self::advance_stream_time_ms`], but the transaction then aborts: the stores
    /// and the processor go back to the last commit (the clocks stay moved, as the
    /// runtime's do). Nothing is returned: what the transaction forwarded is dropped.
    pub fn advance_stream_time_ms_and_abort(&mut self, delta_ms: i64) {
        self.context.stream_time_ms += delta_ms;
        for time in &mut self.context.partition_time_ms {
            *time += delta_ms;
        }
        let now = self.context.stream_time_ms;
        self.processor
            .punctuate(now, &mut self.context)
            .expect("processor error in the test driver");
        self.context.abort();
        self.processor.aborted();
    }

    /// Moves the manual wall clock forward by `delta_ms` without punctuating: time that
    /// passes while the instance is down (then [`Self::restart`]).
    pub fn pass_wall_clock_ms(&mut self, delta_ms: i64) {
        self.context.wall_clock_ms += delta_ms;
    }

    /// Moves the manual wall clock forward by `delta_ms` without punctuating, as a pause
    /// of the instance (SIGSTOP), after which the runtime finds its stream thread
    /// stalled: the processor has been running only since now
    /// ([`ProcessorContext::running_since_ms`]).
    pub fn stall_ms(&mut self, delta_ms: i64) {
        self.context.wall_clock_ms += delta_ms;
        self.context.running_since_ms = self.context.wall_clock_ms;
    }

    /// Moves the manual wall clock forward by `delta_ms`, runs the processor's
    /// wall-clock punctuation (whatever its interval: the driver stands for a runtime
    /// that found it due), commits, and returns what it forwarded.
    ///
    /// # Panics
    /// When the processor returns an error: in-memory stores never fail.
    pub fn advance_wall_clock_ms(&mut self, delta_ms: i64) -> Vec<Output> {
        self.context.wall_clock_ms += delta_ms;
        let now = self.context.wall_clock_ms;
        self.processor
            .punctuate_wall_clock(now, &mut self.context)
            .expect("processor error in the test driver");
        self.punctuate()
    }

    /// Punctuates at the current stream time (the runtime does so at every commit),
    /// then commits the stores' writes, and returns everything forwarded since the last
    /// call.
    fn punctuate(&mut self) -> Vec<Output> {
        let now = self.context.stream_time_ms;
        self.processor
            .punctuate(now, &mut self.context)
            .expect("processor error in the test driver");
        self.context.commit();
        self.processor.committed();
        std::mem::take(&mut self.context.outputs)
            .into_iter()
            .map(|forward| {
                let shown = format!("{forward:?}");
                Output::from_forward(forward)
                    .unwrap_or_else(|| panic!("not a payments output: {shown}"))
            })
            .collect()
    }

    /// The processor under test.
    pub fn processor(&self) -> &P {
        &self.processor
    }

    /// Number of keys in store `name`.
    pub fn store_len(&self, name: &str) -> u64 {
        self.context.stores[name].approximate_len()
    }

    /// The value of `key` in store `name`.
    pub fn store_get(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.context.stores[name]
            .get(key)
            .expect("in-memory stores never fail")
    }
}

/// Record types the driver can place on a [`Stream`].
pub trait StreamOf {
    /// The stream a record of this type arrives on, if it is a lifecycle input.
    fn stream(&self) -> Option<Stream>;
}

impl StreamOf for InputEvent {
    fn stream(&self) -> Option<Stream> {
        Some(Stream::of(self))
    }
}

impl StreamOf for PaymentInitiated {
    fn stream(&self) -> Option<Stream> {
        None
    }
}

/// An origin on `topic` partition 0, offset 0, timestamp 0, with `key` and no value bytes.
pub fn origin(topic: &str, key: Option<&[u8]>) -> Origin {
    Origin {
        topic: topic.to_string(),
        partition: 0,
        offset: 0,
        timestamp_ms: 0,
        key: key.map(<[u8]>::to_vec),
        value: None,
    }
}
