//! Interactive queries (Kafka Streams' term): reading the value of one key from the
//! state stores, from outside the stream thread, on whichever instance hosts the key's
//! task (docs/architecture.md, "Interactive queries").
//!
//! [`InteractiveQueries`] is shared by the stream thread, the standby thread, the
//! liveness thread and the HTTP endpoints of the process:
//! - the tasks this instance hosts register their stores' readers here — an active task
//!   once it runs, a standby once its stores are open — and take them back before the
//!   stores close;
//! - every heartbeat of this instance carries its HTTP address and its active tasks
//!   (`liveness.rs`), and the heartbeats heard from the others fill a directory of who
//!   runs what;
//! - [`InteractiveQueries::locate`] finds a key's task the way the records found it (the
//!   murmur2 partition of the key, as Kafka's default partitioner), then answers from
//!   the local active task, or names the live instance that runs it, or answers from a
//!   local standby, saying how far behind that is.
//!
//! An active task's stores answer what its committed transactions wrote: the writes of
//! the open transaction are not visible until it commits (read committed, as the
//! downstream consumers see the outputs). A standby answers what it has applied of the
//! changelogs, a commit interval or a few behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use paystream_state::{StoreError, StoreReader, TtlStore};

use crate::source::murmur2_partition;
use crate::task::TaskId;
use crate::topology::Topology;

/// How a task is hosted on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The task runs here: its stores are the ones its processor writes.
    Active,
    /// A warm copy kept from the task's changelogs (`standby.rs`).
    Standby,
}

impl Role {
    /// `active` or `standby`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// How far a standby's stores are behind their changelogs, updated by the standby
/// thread.
#[derive(Debug)]
pub struct StandbyProgress {
    /// Records behind the changelogs' ends at the last statistics (every 5 s), summed
    /// over the task's stores; -1 until known.
    lag_records: AtomicI64,
    /// When the standby last wrote changelog records to the stores, or opened them,
    /// milliseconds since the Unix epoch.
    applied_at_ms: AtomicI64,
}

impl Default for StandbyProgress {
    fn default() -> Self {
        StandbyProgress {
            lag_records: AtomicI64::new(-1),
            applied_at_ms: AtomicI64::new(crate::task::wall_clock_ms()),
        }
    }
}

impl StandbyProgress {
    /// The stores were written now.
    pub(crate) fn applied(&self) {
        self.applied_at_ms
            .store(crate::task::wall_clock_ms(), Ordering::Relaxed);
    }

    /// The stores are `records` behind the changelogs' ends.
    pub(crate) fn set_lag_records(&self, records: i64) {
        self.lag_records.store(records, Ordering::Relaxed);
    }
}

/// What a standby's answer may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Changelog records not applied yet at the last statistics (up to 5 s old); `None`
    /// until the first.
    pub lag_records: Option<i64>,
    /// Milliseconds since the standby last applied changelog records.
    pub applied_ms_ago: i64,
}

/// The value of a key, read on this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalValue {
    /// The key's task.
    pub task: TaskId,
    /// Whether the task runs here or is a standby here.
    pub role: Role,
    /// The value, without the write-time prefix of the task's store layers; `None` when
    /// the store has no such key.
    pub value: Option<Vec<u8>>,
    /// For a standby: how far behind it is.
    pub staleness: Option<Staleness>,
}

/// Where to find the value of a key ([`InteractiveQueries::locate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// Read here (active task, or a standby while no live instance runs the task).
    Local(LocalValue),
    /// Another live instance runs the key's task: ask it.
    Remote {
        task: TaskId,
        instance_id: String,
        /// `host:port` of its HTTP endpoints.
        http_address: String,
    },
}

/// Why a key cannot be read now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No sub-topology has a store of that name.
    #[error("no state store is named {0:?}")]
    UnknownStore(String),
    /// The pipeline has not started (its partition counts are not known yet).
    #[error("the pipeline has not started yet")]
    NotStarted,
    /// Neither this instance nor a live one it has heard of hosts the task (a
    /// rebalance or a restore is under way, or standbys are off).
    #[error(
        "no instance serves task {task} now (a rebalance or a restore is under way); try again shortly"
    )]
    Unavailable { task: TaskId },
    /// The store failed to read.
    #[error("reading state store {store}: {message}")]
    Store { store: String, message: String },
}

/// One task hosted here.
struct Hosted {
    role: Role,
    stores: Vec<StoreReader>,
    progress: Option<Arc<StandbyProgress>>,
}

/// What this instance heard from another in its last heartbeat.
struct Peer {
    http_address: Option<String>,
    active_tasks: BTreeSet<TaskId>,
    last_heard: Instant,
    stopped: bool,
}

/// The stores this instance hosts and the directory of the others; see the module's
/// documentation.
pub struct InteractiveQueries {
    /// Store name → its sub-topology and partition count (set when the pipeline
    /// starts).
    layout: RwLock<HashMap<String, (u8, i32)>>,
    hosted: RwLock<BTreeMap<TaskId, Hosted>>,
    peers: RwLock<BTreeMap<String, Peer>>,
    /// `host:port` the others reach this instance's HTTP endpoints at.
    http_address: RwLock<Option<String>>,
    /// A peer not heard from for this long is not asked.
    peer_timeout: RwLock<Duration>,
}

impl Default for InteractiveQueries {
    fn default() -> Self {
        InteractiveQueries {
            layout: RwLock::default(),
            hosted: RwLock::default(),
            peers: RwLock::default(),
            http_address: RwLock::default(),
            peer_timeout: RwLock::new(Duration::from_millis(1_500)),
        }
    }
}

impl std::fmt::Debug for InteractiveQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InteractiveQueries")
            .field("hosted", &read(&self.hosted).len())
            .field("peers", &read(&self.peers).len())
            .finish()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl InteractiveQueries {
    /// Sets the `host:port` at which the other instances reach this one's HTTP endpoints
    /// (sent with every heartbeat); `None`: lookups are not forwarded here.
    pub fn set_http_address(&self, address: Option<String>) {
        *write(&self.http_address) = address;
    }

    /// The `host:port` set by [`Self::set_http_address`].
    pub fn http_address(&self) -> Option<String> {
        read(&self.http_address).clone()
    }

    /// Where each store's keys live: its sub-topology and that sub-topology's partition
    /// count (`partitions`, by sub-topology id).
    pub(crate) fn set_layout(&self, topology: &Topology, partitions: &[i32]) {
        let mut layout = write(&self.layout);
        layout.clear();
        for sub in &topology.sub_topologies {
            let count = partitions.get(sub.id as usize).copied().unwrap_or(1);
            for store in &sub.stores {
                layout.insert(store.name.to_string(), (sub.id, count));
            }
        }
    }

    /// Peers not heard from for `timeout` are not asked (`processing.peer_timeout_ms`).
    pub(crate) fn set_peer_timeout(&self, timeout: Duration) {
        *write(&self.peer_timeout) = timeout;
    }

    /// Task `task` is hosted here as `role`, with these readers of its stores.
    pub(crate) fn host(
        &self,
        task: TaskId,
        role: Role,
        stores: Vec<StoreReader>,
        progress: Option<Arc<StandbyProgress>>,
    ) {
        write(&self.hosted).insert(
            task,
            Hosted {
                role,
                stores,
                progress,
            },
        );
    }

    /// Task `task` is no longer hosted here as `role` (its stores are about to close);
    /// an entry of the other role stays.
    pub(crate) fn release(&self, task: TaskId, role: Role) {
        let mut hosted = write(&self.hosted);
        if hosted.get(&task).is_some_and(|h| h.role == role) {
            hosted.remove(&task);
        }
    }

    /// The tasks running here, for the heartbeats.
    pub(crate) fn active_tasks(&self) -> Vec<TaskId> {
        read(&self.hosted)
            .iter()
            .filter(|(_, h)| h.role == Role::Active)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A heartbeat from instance `instance_id`: where it serves HTTP and what it runs.
    pub(crate) fn heard(
        &self,
        instance_id: &str,
        http_address: Option<String>,
        active_tasks: &[String],
        stopped: bool,
    ) {
        let active_tasks = active_tasks
            .iter()
            .filter_map(|id| id.parse::<TaskId>().ok())
            .collect();
        write(&self.peers).insert(
            instance_id.to_string(),
            Peer {
                http_address,
                active_tasks,
                last_heard: Instant::now(),
                stopped,
            },
        );
    }

    /// The task that holds `key` in store `store`: the murmur2 partition of the key
    /// among its sub-topology's partitions. The store's keys must be the record keys its
    /// task's input was partitioned by (as a payment id is for `payments`).
    ///
    /// # Errors
    /// [`QueryError::UnknownStore`], [`QueryError::NotStarted`].
    pub fn task_of(&self, store: &str, key: &[u8]) -> Result<TaskId, QueryError> {
        let layout = read(&self.layout);
        if layout.is_empty() {
            return Err(QueryError::NotStarted);
        }
        let (sub_topology, partitions) = layout
            .get(store)
            .copied()
            .ok_or_else(|| QueryError::UnknownStore(store.to_string()))?;
        Ok(TaskId {
            sub_topology,
            partition: murmur2_partition(key, partitions),
        })
    }

    /// Where to read `key` of store `store` now: here when the task runs here; else the
    /// live instance that runs it (by its latest heartbeat); else a standby here.
    ///
    /// # Errors
    /// As [`Self::task_of`]; [`QueryError::Unavailable`] when nobody serves the task;
    /// [`QueryError::Store`] when the local read fails.
    pub fn locate(&self, store: &str, key: &[u8]) -> Result<KeyLocation, QueryError> {
        let task = self.task_of(store, key)?;
        if read(&self.hosted)
            .get(&task)
            .is_some_and(|h| h.role == Role::Active)
            && let Some(local) = self.read_local(task, store, key)?
        {
            return Ok(KeyLocation::Local(local));
        }
        if let Some((instance_id, http_address)) = self.owner(task) {
            return Ok(KeyLocation::Remote {
                task,
                instance_id,
                http_address,
            });
        }
        self.read_local(task, store, key)?
            .map(KeyLocation::Local)
            .ok_or(QueryError::Unavailable { task })
    }

    /// `key` of store `store` as this instance has it, active or standby — the answer
    /// when the instance that runs the task did not answer.
    ///
    /// # Errors
    /// As [`Self::locate`].
    pub fn read_here(&self, store: &str, key: &[u8]) -> Result<LocalValue, QueryError> {
        let task = self.task_of(store, key)?;
        self.read_local(task, store, key)?
            .ok_or(QueryError::Unavailable { task })
    }

    /// The live peer that runs `task` and serves HTTP, most recently heard first.
    fn owner(&self, task: TaskId) -> Option<(String, String)> {
        let timeout = *read(&self.peer_timeout);
        read(&self.peers)
            .iter()
            .filter(|(_, p)| {
                !p.stopped && p.last_heard.elapsed() <= timeout && p.active_tasks.contains(&task)
            })
            .filter_map(|(id, p)| Some((p.last_heard, id.clone(), p.http_address.clone()?)))
            .max_by_key(|(heard, ..)| *heard)
            .map(|(_, id, address)| (id, address))
    }

    /// Reads `key` from task `task`'s store `store` if the task is hosted here.
    fn read_local(
        &self,
        task: TaskId,
        store: &str,
        key: &[u8],
    ) -> Result<Option<LocalValue>, QueryError> {
        let hosted = read(&self.hosted);
        let Some(entry) = hosted.get(&task) else {
            return Ok(None);
        };
        let Some(reader) = entry.stores.iter().find(|r| r.name() == store) else {
            return Ok(None);
        };
        let stored = match reader.get(key) {
            Ok(stored) => stored,
            // Closed between the look-up and the read: the task is moving.
            Err(StoreError::Closed { .. }) => return Ok(None),
            Err(e) => {
                return Err(QueryError::Store {
                    store: store.to_string(),
                    message: e.to_string(),
                });
            }
        };
        let value = match stored {
            None => None,
            Some(stored) => Some(
                TtlStore::<()>::split_stored_value(&stored)
                    .map(|(_, value)| value.to_vec())
                    .ok_or_else(|| QueryError::Store {
                        store: store.to_string(),
                        message: "a value without its write-time prefix".into(),
                    })?,
            ),
        };
        let staleness = entry.progress.as_ref().map(|p| {
            let lag = p.lag_records.load(Ordering::Relaxed);
            Staleness {
                lag_records: (lag >= 0).then_some(lag),
                applied_ms_ago: (crate::task::wall_clock_ms()
                    - p.applied_at_ms.load(Ordering::Relaxed))
                .max(0),
            }
        });
        Ok(Some(LocalValue {
            task,
            role: entry.role,
            value,
            staleness,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paystream_state::{KeyValueStore, RocksDbStore};

    fn layout(queries: &InteractiveQueries, partitions: i32) {
        write(&queries.layout).insert("payments".into(), (1, partitions));
    }

    fn store_with(dir: &std::path::Path, key: &[u8], value: &[u8]) -> RocksDbStore {
        let mut store = RocksDbStore::open("payments", dir).unwrap();
        store
            .put(key, &TtlStore::<RocksDbStore>::stored_value(5, value))
            .unwrap();
        store
    }

    #[test]
    fn a_key_is_read_from_the_active_task_here_without_its_write_time_prefix() {
        let queries = InteractiveQueries::default();
        layout(&queries, 6);
        let task = queries.task_of("payments", b"pay-1").unwrap();
        assert_eq!(task.partition, murmur2_partition(b"pay-1", 6));
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), b"pay-1", b"value");
        queries.host(task, Role::Active, vec![store.reader()], None);
        let KeyLocation::Local(local) = queries.locate("payments", b"pay-1").unwrap() else {
            panic!("read here")
        };
        assert_eq!(local.role, Role::Active);
        assert_eq!(local.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(local.staleness, None);
    }

    #[test]
    fn a_key_of_a_task_a_live_peer_runs_is_located_there_and_read_from_a_standby_once_it_is_silent()
    {
        let queries = InteractiveQueries::default();
        layout(&queries, 6);
        queries.set_peer_timeout(Duration::from_millis(200));
        let task = queries.task_of("payments", b"pay-2").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), b"pay-2", b"copy");
        let progress = Arc::new(StandbyProgress::default());
        progress.set_lag_records(3);
        queries.host(task, Role::Standby, vec![store.reader()], Some(progress));
        queries.heard("b", Some("127.0.0.1:1".into()), &[task.to_string()], false);
        assert_eq!(
            queries.locate("payments", b"pay-2").unwrap(),
            KeyLocation::Remote {
                task,
                instance_id: "b".into(),
                http_address: "127.0.0.1:1".into()
            }
        );
        std::thread::sleep(Duration::from_millis(250));
        let KeyLocation::Local(local) = queries.locate("payments", b"pay-2").unwrap() else {
            panic!("the owner is silent: read from the standby here")
        };
        assert_eq!(local.role, Role::Standby);
        assert_eq!(local.value.as_deref(), Some(&b"copy"[..]));
        assert_eq!(local.staleness.unwrap().lag_records, Some(3));
    }

    #[test]
    fn a_key_nobody_serves_is_unavailable_and_a_closed_store_is_not_read() {
        let queries = InteractiveQueries::default();
        assert_eq!(
            queries.locate("payments", b"x"),
            Err(QueryError::NotStarted)
        );
        layout(&queries, 3);
        assert_eq!(
            queries.locate("nope", b"x"),
            Err(QueryError::UnknownStore("nope".into()))
        );
        let task = queries.task_of("payments", b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), b"x", b"v");
        queries.host(task, Role::Active, vec![store.reader()], None);
        drop(store);
        assert_eq!(
            queries.locate("payments", b"x"),
            Err(QueryError::Unavailable { task })
        );
        queries.release(task, Role::Standby);
        assert_eq!(
            queries.active_tasks(),
            vec![task],
            "only its own role releases it"
        );
        queries.release(task, Role::Active);
        assert!(queries.active_tasks().is_empty());
    }
}
