//! Tasks: the unit of work and state. A task is one sub-topology on one partition; it
//! owns its state stores — each `Metered(Ttl(Transactional(RocksDb)))`, see
//! [`TaskStore`] — under `<state.dir>/<application_id>/<task_id>/<store>`, and the task's
//! checkpoint (see [`crate::state_manager`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use paystream_processors::{
    Output, ProcessorContext, ProcessorError, Result as ProcessorResult, Stream, stores,
};
use paystream_state::{
    KeyValueStore, MeteredStore, PendingWrite, RocksDbStore, StoreMetrics, TransactionalStore,
    TtlStore,
};

use crate::config::Config;
use crate::state_manager::{Checkpoint, load_or_wipe, restore_store, task_dir};
use crate::topics::TopicNames;
use crate::{Error, Result};

/// How much longer than the transaction timeout a restore may wait for the changelog's
/// end (a previous owner's open transaction is aborted by the broker at that timeout).
const RESTORE_SLACK: Duration = Duration::from_secs(60);

/// A task's state store: metering over time-to-live over the transactional write buffer
/// (whose writes are the changelog) over RocksDB.
pub type TaskStore = MeteredStore<TtlStore<TransactionalStore<RocksDbStore>>>;

/// Keys examined per TTL store at each commit when purging expired keys.
const PURGE_KEYS_PER_COMMIT: usize = 500;

/// Time to live of `store`'s keys, milliseconds of stream time: the idempotency
/// retention for the idempotency and seen-event stores, forever for the others.
pub fn store_ttl_ms(config: &Config, store: &str) -> Option<i64> {
    match store {
        stores::IDEMPOTENCY | stores::SEEN_EVENTS => Some(config.state.idempotency_retention_ms),
        _ => None,
    }
}

/// The two sub-topologies (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubTopology {
    /// `payment_initiated` → dedupe → repartition topic.
    Dedupe = 0,
    /// repartition + auth + settlement topics → lifecycle → outputs.
    Lifecycle = 1,
}

impl SubTopology {
    /// The state stores of the sub-topology.
    pub fn stores(self) -> &'static [&'static str] {
        match self {
            SubTopology::Dedupe => &[stores::IDEMPOTENCY],
            SubTopology::Lifecycle => &[
                stores::PAYMENTS,
                stores::SEEN_EVENTS,
                stores::PENDING,
                stores::TIMERS,
                stores::RECONCILIATION,
            ],
        }
    }
}

/// A task id, written `<sub-topology>_<partition>` as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub sub_topology: SubTopology,
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.sub_topology as u8, self.partition)
    }
}

/// A task's stores, stream time and checkpoint.
pub struct Task {
    pub id: TaskId,
    pub stores: BTreeMap<&'static str, TaskStore>,
    /// Largest record timestamp processed, milliseconds since the Unix epoch.
    pub stream_time_ms: i64,
    /// Largest record timestamp per input [`Stream`] (partition time), milliseconds since
    /// the Unix epoch; `i64::MIN` before the stream's first record.
    pub partition_time_ms: [i64; 3],
    /// For the payments stream (the repartition topic, written by every dedupe task):
    /// the largest timestamp seen from each `payment_initiated` partition. The payments
    /// stream's clock is their minimum — a watermark — so one dedupe task running ahead
    /// of another (a backlog) cannot fire orphan timeouts early.
    upstream_time_ms: Vec<i64>,
    dir: PathBuf,
    checkpoint: Checkpoint,
}

impl Task {
    /// Opens the task's stores under `<state.dir>/<application_id>/<task_id>/` and
    /// restores each from its changelog, from the checkpoint (or in full after a wipe) to
    /// the changelog's end, before the task processes anything.
    ///
    /// # Errors
    /// Store, Kafka and state-directory errors; restore not finishing in time.
    pub fn open(
        id: TaskId,
        config: &Config,
        names: &TopicNames,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Result<Task> {
        let dir = task_dir(config, &id.to_string());
        let directory_error = |source| Error::StateDirectory {
            path: dir.display().to_string(),
            source,
        };
        let mut checkpoint = load_or_wipe(&dir).map_err(directory_error)?;
        let deadline =
            Duration::from_millis(config.processing.transaction_timeout_ms) + RESTORE_SLACK;
        let mut opened = BTreeMap::new();
        for name in id.sub_topology.stores() {
            let mut store = RocksDbStore::open(name, &dir.join(name))?;
            let restored = restore_store(
                config,
                &names.changelog(name),
                id.partition,
                checkpoint.offsets.get(*name).copied(),
                &mut store,
                deadline,
                metrics,
            )?;
            checkpoint
                .offsets
                .insert(name.to_string(), restored.next_offset);
            let ttl_ms = store_ttl_ms(config, name).unwrap_or(i64::MAX);
            opened.insert(
                *name,
                MeteredStore::new(TtlStore::new(TransactionalStore::new(store), ttl_ms)),
            );
        }
        checkpoint.write(&dir).map_err(directory_error)?;
        Ok(Task {
            id,
            stores: opened,
            stream_time_ms: i64::MIN,
            partition_time_ms: [i64::MIN; 3],
            upstream_time_ms: Vec::new(),
            dir,
            checkpoint,
        })
    }

    /// Records that the local stores now reflect their changelogs up to `next_offsets`
    /// (store → next changelog offset), after a commit's writes reached RocksDB.
    ///
    /// # Errors
    /// [`Error::StateDirectory`] when the checkpoint cannot be written; the previous one
    /// stays, which is still safe to restore from.
    pub fn checkpoint(&mut self, next_offsets: &BTreeMap<&'static str, i64>) -> Result<()> {
        let mut changed = false;
        for (store, offset) in next_offsets {
            let entry = self
                .checkpoint
                .offsets
                .entry(store.to_string())
                .or_insert(0);
            if *offset > *entry {
                *entry = *offset;
                changed = true;
            }
        }
        if changed {
            self.checkpoint
                .write(&self.dir)
                .map_err(|source| Error::StateDirectory {
                    path: self.dir.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Records a repartitioned payment that came from `payment_initiated` partition
    /// `upstream_partition` (of `upstream_partitions`) with `timestamp_ms`, and moves the
    /// payments stream's clock to the minimum over all upstream partitions (`i64::MIN`
    /// until each has been seen).
    pub fn advance_payments_time(
        &mut self,
        upstream_partition: i32,
        upstream_partitions: usize,
        timestamp_ms: i64,
    ) {
        if self.upstream_time_ms.len() != upstream_partitions {
            self.upstream_time_ms.resize(upstream_partitions, i64::MIN);
        }
        if let Some(time) = self.upstream_time_ms.get_mut(upstream_partition as usize) {
            *time = (*time).max(timestamp_ms);
        }
        self.partition_time_ms[Stream::Payments as usize] = self
            .upstream_time_ms
            .iter()
            .copied()
            .min()
            .unwrap_or(i64::MIN);
    }

    /// Moves the task's stream time and `stream`'s partition time forward to
    /// `timestamp_ms` (never backward); TTL stores expire by stream time, timers by
    /// partition times.
    pub fn advance_stream_time(&mut self, stream: Stream, timestamp_ms: i64) {
        if stream != Stream::Payments {
            let partition_time = &mut self.partition_time_ms[stream as usize];
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
    pub fn purge_expired(&mut self, config: &Config) -> paystream_state::Result<u64> {
        let mut deleted = 0;
        for (name, store) in &mut self.stores {
            if store_ttl_ms(config, name).is_some() {
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

    /// The context a processor runs in for one record of this task.
    pub fn context<'a>(&'a mut self, outputs: &'a mut Vec<Output>) -> TaskContext<'a> {
        TaskContext {
            stores: &mut self.stores,
            outputs,
            stream_time_ms: self.stream_time_ms,
            partition_time_ms: self.partition_time_ms,
        }
    }

    /// Applies every store's open-transaction writes to RocksDB (after the Kafka commit).
    ///
    /// # Errors
    /// [`paystream_state::StoreError`] from RocksDB.
    pub fn commit_stores(&mut self) -> paystream_state::Result<()> {
        for store in self.stores.values_mut() {
            store.inner_mut().inner_mut().commit()?;
        }
        Ok(())
    }

    /// Discards every store's open-transaction writes (after a Kafka abort).
    pub fn abort_stores(&mut self) {
        for store in self.stores.values_mut() {
            store.inner_mut().inner_mut().abort();
        }
    }
}

/// [`ProcessorContext`] over one task's stores.
pub struct TaskContext<'a> {
    stores: &'a mut BTreeMap<&'static str, TaskStore>,
    outputs: &'a mut Vec<Output>,
    stream_time_ms: i64,
    partition_time_ms: [i64; 3],
}

impl ProcessorContext for TaskContext<'_> {
    fn store(&mut self, name: &str) -> ProcessorResult<&mut dyn KeyValueStore> {
        self.stores
            .get_mut(name)
            .map(|s| s as &mut dyn KeyValueStore)
            .ok_or_else(|| ProcessorError::UnknownStore(name.to_string()))
    }

    fn forward(&mut self, output: Output) {
        self.outputs.push(output);
    }

    fn stream_time_ms(&self) -> i64 {
        self.stream_time_ms
    }

    fn partition_time_ms(&self, stream: Stream) -> i64 {
        self.partition_time_ms[stream as usize]
    }
}
