//! Tasks: the unit of work and state. A task is one sub-topology on one partition; it
//! owns a [`TransactionalStore`] over a [`RocksDbStore`] per state store, under
//! `<state.dir>/<application_id>/<task_id>/<store>`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use paystream_processors::{
    Output, ProcessorContext, ProcessorError, Result as ProcessorResult, stores,
};
use paystream_state::{KeyValueStore, RocksDbStore, TransactionalStore};

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
            SubTopology::Lifecycle => &[stores::PAYMENTS, stores::SEEN_EVENTS, stores::PENDING],
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

/// A task's stores and stream time.
pub struct Task {
    pub id: TaskId,
    pub stores: BTreeMap<&'static str, TransactionalStore<RocksDbStore>>,
    /// Largest record timestamp processed, milliseconds since the Unix epoch.
    pub stream_time_ms: i64,
}

impl Task {
    /// Opens the task's stores under `<state_dir>/<application_id>/<task_id>/`.
    ///
    /// # Errors
    /// [`paystream_state::StoreError`] when a store cannot be opened.
    pub fn open(
        id: TaskId,
        state_dir: &Path,
        application_id: &str,
    ) -> paystream_state::Result<Task> {
        let dir = state_dir.join(application_id).join(id.to_string());
        let mut opened = BTreeMap::new();
        for name in id.sub_topology.stores() {
            let store = RocksDbStore::open(name, &dir.join(name))?;
            opened.insert(*name, TransactionalStore::new(store));
        }
        Ok(Task {
            id,
            stores: opened,
            stream_time_ms: i64::MIN,
        })
    }

    /// The context a processor runs in for one record of this task.
    pub fn context<'a>(&'a mut self, outputs: &'a mut Vec<Output>) -> TaskContext<'a> {
        TaskContext {
            stores: &mut self.stores,
            outputs,
            stream_time_ms: self.stream_time_ms,
        }
    }

    /// Applies every store's open-transaction writes to RocksDB (after the Kafka commit).
    ///
    /// # Errors
    /// [`paystream_state::StoreError`] from RocksDB.
    pub fn commit_stores(&mut self) -> paystream_state::Result<()> {
        for store in self.stores.values_mut() {
            store.commit()?;
        }
        Ok(())
    }

    /// Discards every store's open-transaction writes (after a Kafka abort).
    pub fn abort_stores(&mut self) {
        for store in self.stores.values_mut() {
            store.abort();
        }
    }
}

/// [`ProcessorContext`] over one task's stores.
pub struct TaskContext<'a> {
    stores: &'a mut BTreeMap<&'static str, TransactionalStore<RocksDbStore>>,
    outputs: &'a mut Vec<Output>,
    stream_time_ms: i64,
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
}
