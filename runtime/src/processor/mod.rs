//! The processor API (Kafka Streams' `Processor`, `ProcessorContext` and `Topology`
//! declarations, in Rust's idiom): what an application writes to run on the runtime
//! (docs/architecture.md, "Writing a processor").
//!
//! A processor declares its place in the topology — the topics it reads, each with the
//! [`Deserializer`](crate::serde::Deserializer) that turns its records into the processor's input type; the state
//! stores it owns; the sinks it forwards to, each with a topic and a [`Serializer`](crate::serde::Serializer) — and
//! handles records in [`Processor::process`]. The runtime knows none of its types: a
//! decoded record travels to the processor as a [`Value`] (a boxed `Any`) and a forwarded
//! one to the record collector the same way, where the sink's serializer turns it into
//! bytes.

use std::sync::Arc;

use paystream_state::{KeyValueStore, StoreError};

use crate::serde::ErasedDeserializer;

mod declarations;

pub use declarations::{Input, Sink, SinkFormat, StoreSpec, TopicRef};
pub use paystream_common::{DeadLetterReason, Origin, Stage};

pub use crate::serde::Value;

/// Errors that stop a task (never bad input: bad input is dead-lettered).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value in a state store does not decode: the store is corrupt and must be restored.
    #[error("state store {store}: corrupt value for key {key}: {message}")]
    CorruptState {
        store: &'static str,
        key: String,
        message: String,
    },
    /// The processor asked for a store the task does not have (a topology bug).
    #[error("processor asked for unknown state store {0}")]
    UnknownStore(String),
    /// The processor was handed a value of another type than it takes: a deserializer of
    /// one of its inputs makes another type, or a repartitioned record's origin header
    /// named another input (the record's data).
    #[error("processor {processor} does not take {value_type} values; check its inputs()")]
    UnexpectedInput {
        processor: &'static str,
        value_type: &'static str,
    },
}

/// `Result` with [`ProcessorError`].
pub type Result<T> = std::result::Result<T, ProcessorError>;

/// A decoded record handed to a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    pub value: T,
    pub origin: Origin,
}

/// What a processor forwards.
pub enum Forward {
    /// A record to the processor's sink `sink`, keyed `key` (bytes as written), its value
    /// serialized by the sink's serializer.
    To {
        sink: &'static str,
        key: Vec<u8>,
        value: Value,
    },
    /// The record at `origin` goes to `<origin topic>.dlq` with this reason.
    DeadLetter {
        origin: Origin,
        reason: DeadLetterReason,
        message: String,
    },
    /// The record was a duplicate and was dropped (counted, not forwarded).
    DuplicateDropped,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forward::To { sink, key, .. } => f
                .debug_struct("To")
                .field("sink", sink)
                .field("key", &String::from_utf8_lossy(key))
                .finish_non_exhaustive(),
            Forward::DeadLetter {
                origin,
                reason,
                message,
            } => f
                .debug_struct("DeadLetter")
                .field("origin", origin)
                .field("reason", reason)
                .field("message", message)
                .finish(),
            Forward::DuplicateDropped => f.write_str("DuplicateDropped"),
        }
    }
}

/// What a processor can reach while it runs.
pub trait ProcessorContext {
    /// The task's state store `name`.
    ///
    /// # Errors
    /// [`ProcessorError::UnknownStore`] when the task has no such store.
    fn store(&mut self, name: &str) -> Result<&mut dyn KeyValueStore>;

    /// Forwards a record; it is written in the open transaction. See also the generic
    /// `forward` on `dyn ProcessorContext`, which takes anything that converts.
    fn forward_record(&mut self, forward: Forward);

    /// Stream time of the task: the largest record timestamp seen, milliseconds since the
    /// Unix epoch.
    fn stream_time_ms(&self) -> i64;

    /// Wall-clock time now, milliseconds since the Unix epoch (Kafka Streams'
    /// `currentSystemTimeMs`, KIP-622): the system clock in the runtime, a manual clock
    /// in test drivers. For deadlines a wall-clock punctuation
    /// ([`Processor::punctuate_wall_clock`]) checks. A context that wraps another
    /// passes this through.
    fn wall_clock_ms(&self) -> i64;

    /// Wall-clock time since when the task has been reading without a break,
    /// milliseconds since the Unix epoch: since it started on this instance, or since
    /// its stream thread last went on after it had not run for longer than
    /// [`crate::STREAM_THREAD_STALL_MS`] (the process paused, a call that blocked).
    /// Records that reached the broker during such a break may not have been read yet,
    /// so a wait measured in wall-clock time for other records to arrive (a reorder
    /// wait) counts from here, not from before the break. A context that wraps another
    /// passes this through (docs/architecture.md, "Stalls of the stream thread").
    fn running_since_ms(&self) -> i64;

    /// Partition time of the processor's input `input` (its position in
    /// [`Processor::inputs`]): the largest record timestamp seen on it, milliseconds
    /// since the Unix epoch (`i64::MIN` before its first record). A record rerouted
    /// through a repartition topic counts for the input it came from; for a repartition
    /// topic written by another sub-topology it is the minimum over the writer's
    /// partitions (a watermark), so one upstream task running ahead cannot move it.
    /// Unlike stream time it does not depend on how the inputs' records interleave, so
    /// timers on it fire at the same point of their stream in every replay.
    fn partition_time_ms(&self, input: usize) -> i64;
}

impl dyn ProcessorContext + '_ {
    /// Forwards anything that converts into a [`Forward`] (an application's own output
    /// type, for one).
    pub fn forward(&mut self, output: impl Into<Forward>) {
        self.forward_record(output.into());
    }
}

/// A stream processor: it declares its place in the topology ([`Self::name`],
/// [`Self::inputs`], [`Self::stores`], [`Self::sinks`]) and handles records in
/// [`Self::process`]; `init`, `punctuate`, `punctuate_wall_clock`, `committed`,
/// `aborted` and `close` have no-op defaults. The runtime creates one instance per task.
pub trait Processor: Send + 'static {
    /// The decoded record type the processor takes (the value type of every input's
    /// deserializer).
    type Input: Send + Sync + 'static;

    /// The processor's name in the topology, e.g. `dedupe`.
    fn name(&self) -> &'static str;

    /// The topics it reads. One task per partition reads the same partition of each, so
    /// when there are several they must be co-partitioned (same partition count, keyed
    /// alike); the runtime checks this at start-up.
    fn inputs(&self) -> Vec<Input<Self::Input>>;

    /// The state stores it owns, each with its changelog.
    fn stores(&self) -> Vec<StoreSpec>;

    /// Where it forwards records.
    fn sinks(&self) -> Vec<Sink>;

    /// Called once when a task starts, after its stores are restored, before its first
    /// record.
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn init(&mut self, _ctx: &mut dyn ProcessorContext) -> Result<()> {
        Ok(())
    }

    /// Handles one record.
    ///
    /// # Errors
    /// [`ProcessorError`] when a store fails; bad input is dead-lettered, never an error.
    fn process(
        &mut self,
        record: Record<Self::Input>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()>;

    /// Timer callback when stream time advances (punctuation).
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate(&mut self, _stream_time_ms: i64, _ctx: &mut dyn ProcessorContext) -> Result<()> {
        Ok(())
    }

    /// How often the runtime calls [`Self::punctuate_wall_clock`], in milliseconds of
    /// wall-clock time; `None` (the default) never.
    fn wall_clock_punctuation_interval_ms(&self) -> Option<u64> {
        None
    }

    /// Timer callback on wall-clock time (Kafka Streams' `PunctuationType.WALL_CLOCK_TIME`,
    /// KIP-138): called about every [`Self::wall_clock_punctuation_interval_ms`] while the
    /// task runs, whether or not records arrive, so that it fires when a stream goes
    /// quiet — where stream-time punctuation ([`Self::punctuate`]) never does. What it
    /// writes and forwards joins the open transaction, which the runtime commits even
    /// when no record was read into it. `wall_clock_ms` is milliseconds since the Unix
    /// epoch. Replays do not reproduce wall-clock time: keep what it decides out of
    /// anything that must come out the same in every replay.
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate_wall_clock(
        &mut self,
        _wall_clock_ms: i64,
        _ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        Ok(())
    }

    /// True while records the processor has read wait for wall-clock time to pass
    /// before what they cause is forwarded (a reorder wait, say), so that a run that
    /// stops once caught up (`paystream run --until-caught-up`) does not stop before
    /// its wall-clock punctuation has let them through. Default `false`.
    fn awaits_wall_clock(&self) -> bool {
        false
    }

    /// Called after the task's open transaction committed: its store writes are now in
    /// the stores. A processor that keeps something in memory beside its stores (an
    /// index, a cache, counts for its metrics) makes that part final here.
    fn committed(&mut self) {}

    /// Called after the task's open transaction aborted: its store writes were dropped.
    /// A processor that keeps something in memory beside its stores puts it back as it
    /// was at the last commit.
    fn aborted(&mut self) {}

    /// Called once when the task closes.
    fn close(&mut self) {}
}

/// A [`Processor`] as the runtime holds it: object-safe, taking a [`Value`] of any type.
/// Every `Processor` is one.
pub trait TaskProcessor: Send {
    /// See [`Processor::name`].
    fn name(&self) -> &'static str;
    /// The topics it reads with their deserializers; see [`Processor::inputs`].
    fn inputs(&self) -> Vec<(TopicRef, Arc<dyn ErasedDeserializer>)>;
    /// See [`Processor::stores`].
    fn stores(&self) -> Vec<StoreSpec>;
    /// See [`Processor::sinks`].
    fn sinks(&self) -> Vec<Sink>;
    /// See [`Processor::init`].
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()>;
    /// Takes `value` as the processor's input type and processes it.
    ///
    /// # Errors
    /// [`ProcessorError::UnexpectedInput`] when it is of another type; otherwise as
    /// [`Processor::process`].
    fn process_value(
        &mut self,
        value: Value,
        origin: Origin,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()>;
    /// See [`Processor::punctuate`].
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate(&mut self, stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()>;
    /// See [`Processor::wall_clock_punctuation_interval_ms`].
    fn wall_clock_punctuation_interval_ms(&self) -> Option<u64>;
    /// See [`Processor::punctuate_wall_clock`].
    ///
    /// # Errors
    /// [`ProcessorError`] stops the task.
    fn punctuate_wall_clock(
        &mut self,
        wall_clock_ms: i64,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()>;
    /// See [`Processor::awaits_wall_clock`].
    fn awaits_wall_clock(&self) -> bool;
    /// See [`Processor::committed`].
    fn committed(&mut self);
    /// See [`Processor::aborted`].
    fn aborted(&mut self);
    /// See [`Processor::close`].
    fn close(&mut self);
}

impl<P: Processor> TaskProcessor for P {
    fn name(&self) -> &'static str {
        Processor::name(self)
    }
    fn inputs(&self) -> Vec<(TopicRef, Arc<dyn ErasedDeserializer>)> {
        Processor::inputs(self)
            .into_iter()
            .map(|input| (input.topic, input.deserializer))
            .collect()
    }
    fn stores(&self) -> Vec<StoreSpec> {
        Processor::stores(self)
    }
    fn sinks(&self) -> Vec<Sink> {
        Processor::sinks(self)
    }
    fn init(&mut self, ctx: &mut dyn ProcessorContext) -> Result<()> {
        Processor::init(self, ctx)
    }
    fn process_value(
        &mut self,
        value: Value,
        origin: Origin,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        let value = value
            .downcast::<P::Input>()
            .map_err(|_| ProcessorError::UnexpectedInput {
                processor: Processor::name(self),
                value_type: std::any::type_name::<P::Input>(),
            })?;
        Processor::process(
            self,
            Record {
                value: *value,
                origin,
            },
            ctx,
        )
    }
    fn punctuate(&mut self, stream_time_ms: i64, ctx: &mut dyn ProcessorContext) -> Result<()> {
        Processor::punctuate(self, stream_time_ms, ctx)
    }
    fn wall_clock_punctuation_interval_ms(&self) -> Option<u64> {
        Processor::wall_clock_punctuation_interval_ms(self)
    }
    fn punctuate_wall_clock(
        &mut self,
        wall_clock_ms: i64,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        Processor::punctuate_wall_clock(self, wall_clock_ms, ctx)
    }
    fn awaits_wall_clock(&self) -> bool {
        Processor::awaits_wall_clock(self)
    }
    fn committed(&mut self) {
        Processor::committed(self)
    }
    fn aborted(&mut self) {
        Processor::aborted(self)
    }
    fn close(&mut self) {
        Processor::close(self)
    }
}
