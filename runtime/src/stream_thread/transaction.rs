//! The open Kafka transaction (Kafka Streams' `StreamsProducer` with the stream thread's
//! bookkeeping): it owns the exactly-once producer and the record collector, the input
//! records read into it, the offsets to commit for them, the timestamps whose end-to-end
//! latency is observed when it commits, and the offsets committed so far. It is begun,
//! committed ([`Transaction::commit`]) or aborted ([`Transaction::abort`], which says
//! what to rewind), and each of these leaves it empty and begun again, so no part of it
//! is reset by hand (docs/architecture.md, "Exactly once"). A producer left in a fatal
//! state is replaced at the abort ([`crate::eos_producer::ExactlyOnceProducer::reset`]).

use std::collections::HashMap;
use std::time::Instant;

use prometheus::IntCounter;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tracing::warn;

use crate::eos_producer::{CommitTimes, ExactlyOnceProducer};
use crate::poison::RecordId;
use crate::record_collector::{RecordCollector, TransactionCounts};
use crate::{Error, Result};

/// A topic partition.
pub(super) type Partition = (String, i32);

/// Producer replacements in a row, with no commit in between, before the instance
/// stops ([`Error::TransactionFatal`]): a producer fenced again at once is another
/// incarnation's doing, not a transaction that timed out.
const PRODUCER_RESETS_IN_A_ROW_MAX: u32 = 3;

/// The open transaction of the stream thread.
pub(super) struct Transaction {
    producer: ExactlyOnceProducer,
    /// Sends the transaction's outputs, dead letters and changelog records, and counts
    /// what it did.
    pub collector: RecordCollector,
    /// Next offset to commit per partition.
    offsets: FxHashMap<Partition, i64>,
    /// Input records, in the order they were read; a record's position is the index
    /// the record collector keeps its delivery reports under.
    inputs: Vec<RecordId>,
    /// Timestamps of the records whose outputs leave the application.
    timestamps_ms: Vec<i64>,
    /// Commit after the record just processed (a suspect processed alone).
    commit_requested: bool,
    /// A wall-clock punctuation forwarded or wrote in it: it must commit although no
    /// record may have been read into it.
    punctuation_work: bool,
    /// Bumped at every abort: a record read before it was rewound and is dropped.
    generation: u64,
    /// Next offset committed per partition, over the run.
    committed_offsets: HashMap<Partition, i64>,
    /// `paystream_transaction_aborts_total`.
    aborts: IntCounter,
    /// `paystream_producer_resets_total`.
    resets: IntCounter,
    /// Producer replacements since the last commit.
    resets_in_a_row: u32,
}

/// What a committed transaction leaves to publish.
pub(super) struct Committed {
    /// Next offset committed per partition.
    pub offsets: FxHashMap<Partition, i64>,
    /// Timestamps of the records whose outputs left the application.
    pub timestamps_ms: Vec<i64>,
    /// What the transaction did.
    pub counts: TransactionCounts,
    /// How long building and sending the offsets, the deliveries and EndTxn took.
    pub times: CommitTimes,
}

/// How a commit ended when it did not fail for good.
pub(super) enum CommitOutcome {
    Committed(Committed),
    /// The broker refused it (not fatally): abort with this error.
    Refused(KafkaError),
}

/// What an aborted transaction leaves: its outputs' delivery reports (to find the
/// records the broker refused), its input records, and the partitions to rewind to
/// their committed offsets.
pub(super) struct Aborted {
    pub deliveries: Vec<(Option<usize>, DeliveryFuture)>,
    pub inputs: Vec<RecordId>,
    pub rewind: Vec<Partition>,
}

impl Transaction {
    /// The transaction of `producer`, whose outputs `collector` sends; aborts are
    /// counted in `aborts`, producer replacements in `resets`. Not begun yet: see
    /// [`Transaction::begin`].
    pub fn new(
        producer: ExactlyOnceProducer,
        collector: RecordCollector,
        aborts: IntCounter,
        resets: IntCounter,
    ) -> Self {
        Transaction {
            producer,
            collector,
            offsets: FxHashMap::default(),
            inputs: Vec::new(),
            timestamps_ms: Vec::new(),
            commit_requested: false,
            punctuation_work: false,
            generation: 0,
            committed_offsets: HashMap::new(),
            aborts,
            resets,
            resets_in_a_row: 0,
        }
    }

    /// Begins the first transaction (the others begin when one ends).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the producer refuses.
    pub fn begin(&self) -> Result<()> {
        self.producer.begin()
    }

    /// Input records read into it.
    pub fn records(&self) -> usize {
        self.inputs.len()
    }

    /// True when it holds no record and no work of a wall-clock punctuation: nothing
    /// to commit.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && !self.punctuation_work
    }

    /// A wall-clock punctuation forwarded or wrote in it: it is committed like one
    /// holding records.
    pub fn hold_punctuation_work(&mut self) {
        self.punctuation_work = true;
    }

    /// Bumped at every abort: compare before and after an await to know whether the
    /// records read in between were rewound.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Next offset committed per partition, over the run.
    pub fn committed_offsets(&self) -> &HashMap<Partition, i64> {
        &self.committed_offsets
    }

    /// Record `id`, read from `partition`, joins the transaction: its next offset is the
    /// partition's to commit. Returns its position among the inputs.
    pub fn read(&mut self, partition: Partition, id: RecordId) -> usize {
        self.offsets.insert(partition, id.offset + 1);
        self.inputs.push(id);
        self.inputs.len() - 1
    }

    /// The end-to-end latency of a record stamped `timestamp_ms` is observed at commit.
    pub fn observe_latency_of(&mut self, timestamp_ms: i64) {
        self.timestamps_ms.push(timestamp_ms);
    }

    /// Asks for a commit after the record being processed.
    pub fn request_commit(&mut self) {
        self.commit_requested = true;
    }

    /// Whether a commit was asked for; the request is taken.
    pub fn take_commit_request(&mut self) -> bool {
        std::mem::take(&mut self.commit_requested)
    }

    /// Commits: the consumed offsets (each moved up to the consumer's `positions`, which
    /// step over transaction markers, unless `has_queued` says records of the partition
    /// still wait in its queue) are sent with the group metadata (KIP-447), every
    /// delivery is awaited, and EndTxn is sent; then the next transaction begins. Blocks
    /// the calling thread.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the offsets cannot be built or the next transaction cannot
    /// begin. A refusal, fatal for the producer or not, is [`CommitOutcome::Refused`]:
    /// the abort recovers from it.
    pub fn commit(
        &mut self,
        positions: &TopicPartitionList,
        has_queued: impl Fn(&Partition) -> bool,
        group: &ConsumerGroupMetadata,
    ) -> Result<CommitOutcome> {
        let started = Instant::now();
        let mut offsets = TopicPartitionList::new();
        for (key, offset) in self.offsets.iter_mut() {
            let (topic, partition) = key;
            if !has_queued(key)
                && let Some(Offset::Offset(position)) = positions
                    .find_partition(topic, *partition)
                    .map(|e| e.offset())
            {
                *offset = (*offset).max(position);
            }
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| Error::kafka("building the offsets to commit", e))?;
        }
        let built = started.elapsed();
        let mut times = match tokio::task::block_in_place(|| self.producer.commit(&offsets, group))
        {
            Ok(times) => times,
            Err(error) => return Ok(CommitOutcome::Refused(error)),
        };
        times.offsets += built;
        self.resets_in_a_row = 0;
        let committed = Committed {
            offsets: std::mem::take(&mut self.offsets),
            timestamps_ms: std::mem::take(&mut self.timestamps_ms),
            counts: std::mem::take(&mut self.collector.counts),
            times,
        };
        self.committed_offsets.extend(
            committed
                .offsets
                .iter()
                .map(|(partition, offset)| (partition.clone(), *offset)),
        );
        self.clear();
        self.producer.begin()?;
        Ok(CommitOutcome::Committed(committed))
    }

    /// Aborts (for `context`, in errors): nothing it wrote is seen by `read_committed`
    /// readers, its input records will be read again (the generation moves), and the
    /// next transaction begins. A producer in a fatal state (its transaction timed out
    /// at the coordinator, or it was fenced) is replaced instead, which aborts what was
    /// open. Blocks the calling thread.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the abort, the replacement or the next begin fails;
    /// [`Error::TransactionFatal`] after [`PRODUCER_RESETS_IN_A_ROW_MAX`] replacements
    /// with no commit in between.
    pub fn abort(&mut self, context: &str) -> Result<Aborted> {
        if let Err(error) = tokio::task::block_in_place(|| self.producer.abort()) {
            if !ExactlyOnceProducer::is_fatal(&error) {
                return Err(Error::kafka(context, error));
            }
            self.reset_producer(&error)?;
        }
        self.aborts.inc();
        self.generation += 1;
        let aborted = Aborted {
            deliveries: self.collector.take_deliveries(),
            inputs: std::mem::take(&mut self.inputs),
            rewind: std::mem::take(&mut self.offsets).into_keys().collect(),
        };
        self.clear();
        self.producer.begin()?;
        Ok(aborted)
    }

    /// Aborts what is open at shutdown, ignoring a failure (the broker aborts it at
    /// `transaction.timeout.ms`, or the next incarnation's `init_transactions` does).
    pub fn abort_at_shutdown(&mut self) {
        let _ = self.producer.abort();
    }

    /// Replaces the producer left in a fatal state by `error`: the new one's
    /// `init_transactions` aborts the open transaction, and the record collector sends
    /// with it from now on.
    fn reset_producer(&mut self, error: &KafkaError) -> Result<()> {
        self.resets_in_a_row += 1;
        if self.resets_in_a_row > PRODUCER_RESETS_IN_A_ROW_MAX {
            return Err(Error::TransactionFatal {
                transactional_id: self.producer.transactional_id().to_string(),
                message: format!(
                    "{error} (the producer was replaced {PRODUCER_RESETS_IN_A_ROW_MAX} times \
                     with no commit in between)"
                ),
            });
        }
        warn!(
            error = %error,
            transactional_id = %self.producer.transactional_id(),
            "the producer is in a fatal state (its transaction timed out at the coordinator, \
             or it was fenced); replacing it, which aborts the open transaction"
        );
        tokio::task::block_in_place(|| self.producer.reset())?;
        self.collector
            .set_producer(self.producer.producer().clone());
        self.resets.inc();
        Ok(())
    }

    /// Empty again: no record, offset, latency, request or output of its own.
    fn clear(&mut self) {
        self.offsets.clear();
        self.inputs.clear();
        self.timestamps_ms.clear();
        self.commit_requested = false;
        self.punctuation_work = false;
        self.collector.reset();
    }
}
