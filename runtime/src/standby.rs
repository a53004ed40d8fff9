//! Standby replicas (Kafka Streams' standby tasks, `num.standby.replicas`): warm copies
//! of the stores of tasks that other instances run, kept up to date by reading their
//! changelogs, so that a task that moves here starts from stores a few records behind
//! instead of restoring them whole (docs/architecture.md, "Standby replicas").
//!
//! librdkafka's assignors cannot see where standbys are, so there is no placement to
//! follow: with `state.standby_replicas = "all"` every instance follows every stateful
//! task it does not run, whichever instance gets it next. That costs each instance the
//! disk and memory of the whole state and one extra read of every changelog.
//!
//! One thread (`standby`) does it, with one `read_committed` consumer (no group: its
//! partitions are assigned, never committed) over the changelog partitions of the tasks
//! it follows. It writes what it reads to the task's local RocksDB stores in batches,
//! flushes them and writes the task's checkpoint every
//! [`STANDBY_CHECKPOINT_INTERVAL`], and when it lets a task go — so the same invariant
//! as a restore holds: the checkpoint never runs ahead of what the stores hold on disk,
//! and the restore that starts the task replays the few records after it. The stream
//! thread hands tasks over at each rebalance with [`Standbys::follow`], which returns
//! once the tasks it lets go are closed (a RocksDB store has one owner at a time).
//! Standbys are an optimisation: a failure here is logged and the task is dropped from
//! the standbys; it never stops the instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use paystream_state::{BulkWrite, RocksDbStore};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::background::BackgroundThread;
use crate::config::Config;
use crate::interactive_queries::{InteractiveQueries, Role, StandbyProgress};
use crate::kafka::read_committed_consumer_config;
use crate::metrics::Metrics;
use crate::restore::{changelog_watermarks, clear, start_offset};
use crate::state_manager::{TaskCheckpoint, task_dir};
use crate::task::TaskId;
use crate::topology::Topology;
use crate::{Error, Result};

/// How often the standby thread flushes its stores and writes their tasks' checkpoints.
/// A task that moves here replays at most about this much of its changelog.
pub const STANDBY_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one poll of the standby consumer waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// Most records taken from the consumer before they are written to the stores.
const BATCH_RECORDS_MAX: usize = 10_000;
/// How long [`Standbys::follow`] waits for the thread to let tasks go.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// The standby thread, as the stream thread sees it.
pub struct Standbys {
    commands: mpsc::Sender<Follow>,
    /// Set while a task of this instance restores: the standbys wait, so the restore
    /// that holds a task up has the CPU and the disk (as Kafka Streams' state updater
    /// restores active tasks before it updates standbys).
    restoring: Arc<AtomicBool>,
    followed: BTreeSet<TaskId>,
    /// Stops and joins the thread when dropped; it checkpoints and closes every store.
    _thread: BackgroundThread,
}

/// Follow exactly these tasks; the reply comes once the others are closed.
struct Follow {
    tasks: BTreeSet<TaskId>,
    done: mpsc::Sender<()>,
}

impl Standbys {
    /// Starts the standby thread, following no task yet. The stores of each task it
    /// follows answer interactive queries through `queries` once they are all open.
    ///
    /// # Errors
    /// [`Error::Thread`] when the thread cannot be started.
    pub fn spawn(
        config: &Config,
        topology: &Topology,
        metrics: &Metrics,
        queries: &Arc<InteractiveQueries>,
    ) -> Result<Standbys> {
        let (commands, received) = mpsc::channel();
        let config = config.clone();
        let topology = topology.clone();
        let metrics = metrics.clone();
        let queries = queries.clone();
        let restoring = Arc::new(AtomicBool::new(false));
        let waiting = restoring.clone();
        let thread = BackgroundThread::spawn("standby", "the standby thread", move |stop| {
            run(
                &config, &topology, &metrics, &queries, &received, &waiting, stop,
            )
        })?;
        Ok(Standbys {
            commands,
            restoring,
            followed: BTreeSet::new(),
            _thread: thread,
        })
    }

    /// Tells the standbys whether a task of this instance is restoring: they wait while
    /// one is.
    pub fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Relaxed);
    }

    /// Follows exactly `tasks` from now on (the stateful tasks this instance does not
    /// run). Returns once every task it followed and no longer does has been flushed,
    /// checkpointed and closed, so that a restore may open its stores; the tasks it
    /// starts to follow are opened afterwards, on its thread.
    pub fn follow(&mut self, tasks: BTreeSet<TaskId>) {
        if tasks == self.followed {
            return;
        }
        let (done, closed) = mpsc::channel();
        self.followed = tasks.clone();
        if self.commands.send(Follow { tasks, done }).is_err() {
            return; // The thread has ended: it holds no store.
        }
        if closed.recv_timeout(FOLLOW_TIMEOUT).is_err() {
            warn!("the standby thread did not let its tasks go in time");
        }
    }
}

/// The standby thread's loop: commands first, then one poll.
fn run(
    config: &Config,
    topology: &Topology,
    metrics: &Metrics,
    queries: &Arc<InteractiveQueries>,
    commands: &mpsc::Receiver<Follow>,
    restoring: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut follower = match Follower::new(config, topology, metrics, queries) {
        Ok(follower) => follower,
        Err(error) => {
            warn!(%error, "standby replicas are off: the standby consumer cannot be created");
            // Answer every command, so the stream thread never waits for this thread.
            while !stop.load(Ordering::Relaxed) {
                if let Ok(command) = commands.recv_timeout(Duration::from_millis(200)) {
                    let _ = command.done.send(());
                }
            }
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        while let Ok(command) = commands.try_recv() {
            follower.follow(command);
        }
        if restoring.load(Ordering::Relaxed) {
            std::thread::sleep(POLL_TIMEOUT);
            continue;
        }
        // One store opened per turn, so a command waits for one open at most.
        if !follower.open_next() {
            follower.poll();
        }
    }
    follower.release_all();
}

/// One store of a followed task.
struct FollowedStore {
    name: &'static str,
    changelog: String,
    store: RocksDbStore,
    /// The next changelog offset the store reflects once its batch is written.
    position: i64,
    batch: BulkWrite,
}

/// A followed task: its stores and checkpoint.
struct FollowedTask {
    checkpoint: TaskCheckpoint,
    stores: Vec<FollowedStore>,
    /// How far behind it is, for the interactive queries it answers.
    progress: Arc<StandbyProgress>,
}

/// The changelog ends librdkafka's statistics report, for the standby lag.
#[derive(Clone, Default)]
struct StandbyContext {
    ends: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl ClientContext for StandbyContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut ends = self.ends.lock().expect("standby ends lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if let Some(end) = crate::lag::committed_end(p).filter(|_| *partition >= 0) {
                    ends.insert((topic.clone(), *partition), end);
                }
            }
        }
    }
}

impl ConsumerContext for StandbyContext {}

/// The standby thread's state: the consumer and the followed tasks.
struct Follower {
    consumer: BaseConsumer<StandbyContext>,
    ends: Arc<Mutex<HashMap<(String, i32), i64>>>,
    tasks: BTreeMap<TaskId, FollowedTask>,
    /// Tasks to follow, not opened yet.
    to_open: BTreeSet<TaskId>,
    /// Changelog partition → (task, index of the store in the task).
    by_partition: HashMap<(String, i32), (TaskId, usize)>,
    config: Config,
    topology: Topology,
    metrics: Metrics,
    /// Where the followed tasks' stores are read from other threads.
    queries: Arc<InteractiveQueries>,
    timeout: Duration,
    last_checkpoint: Instant,
}

impl Follower {
    fn new(
        config: &Config,
        topology: &Topology,
        metrics: &Metrics,
        queries: &Arc<InteractiveQueries>,
    ) -> Result<Follower> {
        let context = StandbyContext::default();
        let ends = context.ends.clone();
        let consumer: BaseConsumer<StandbyContext> =
            read_committed_consumer_config(config, &format!("{}-standby", config.application_id))
                .set("statistics.interval.ms", "5000")
                .set("fetch.queue.backoff.ms", "10")
                // What librdkafka fetches ahead while the thread waits (a restore of its
                // instance runs): 16 MiB, not its 64 MiB default.
                .set("queued.max.messages.kbytes", "16384")
                .create_with_context(context)
                .map_err(|e| Error::kafka("creating the standby consumer", e))?;
        Ok(Follower {
            consumer,
            ends,
            tasks: BTreeMap::new(),
            to_open: BTreeSet::new(),
            by_partition: HashMap::new(),
            config: config.clone(),
            topology: topology.clone(),
            metrics: metrics.clone(),
            queries: queries.clone(),
            timeout: Duration::from_millis(config.kafka.request_timeout_ms),
            last_checkpoint: Instant::now(),
        })
    }

    /// Lets go of the tasks not in the command and answers once they are closed; the
    /// new ones are opened afterwards, one store per turn ([`Self::open_next`]).
    fn follow(&mut self, command: Follow) {
        let released: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !command.tasks.contains(id))
            .copied()
            .collect();
        for id in released {
            self.release(id);
        }
        self.to_open = command
            .tasks
            .into_iter()
            .filter(|id| !self.is_open(*id))
            .collect();
        let _ = command.done.send(());
        self.publish();
    }

    /// True when every store of task `id` is open.
    fn is_open(&self, id: TaskId) -> bool {
        self.tasks.get(&id).is_some_and(|task| {
            task.stores.len() == self.topology.sub_topology(id.sub_topology).stores.len()
        })
    }

    /// Opens the next store of the tasks to follow (a RocksDB open and a watermark
    /// request: tens of milliseconds), so that a command never waits for more than one;
    /// false when every task is open.
    fn open_next(&mut self) -> bool {
        let Some(id) = self.to_open.first().copied() else {
            return false;
        };
        if self.is_open(id) {
            self.to_open.remove(&id);
            self.serve_queries(id);
            if self.to_open.is_empty() {
                self.publish();
            }
            return true;
        }
        if let Err(error) = self.open_store(id) {
            warn!(task = %id, %error, "the standby of this task could not start; it is restored in full if it moves here");
            self.to_open.remove(&id);
            self.release(id);
        }
        true
    }

    /// Task `id`'s stores answer interactive queries from now on.
    fn serve_queries(&self, id: TaskId) {
        if let Some(task) = self.tasks.get(&id) {
            let readers = task.stores.iter().map(|s| s.store.reader()).collect();
            self.queries
                .host(id, Role::Standby, readers, Some(task.progress.clone()));
        }
    }

    /// Opens the next store of task `id` (loading its checkpoint first) and starts
    /// reading its changelog from the checkpoint.
    fn open_store(&mut self, id: TaskId) -> Result<()> {
        if !self.tasks.contains_key(&id) {
            let checkpoint = TaskCheckpoint::load(task_dir(&self.config, &id.to_string()))?;
            self.tasks.insert(
                id,
                FollowedTask {
                    checkpoint,
                    stores: Vec::new(),
                    progress: Arc::default(),
                },
            );
        }
        let task = self.tasks.get_mut(&id).expect("inserted above");
        let sub = self.topology.sub_topology(id.sub_topology);
        let Some(spec) = sub.stores.get(task.stores.len()) else {
            return Ok(());
        };
        let mut store = RocksDbStore::open(spec.name, &task.checkpoint.dir().join(spec.name))?;
        let (low, high) =
            changelog_watermarks(&self.consumer, &spec.changelog, id.partition, self.timeout)?;
        let (start, from_scratch) = start_offset(task.checkpoint.offset(spec.name), low, high);
        if from_scratch {
            clear(&mut store)?;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&spec.changelog, id.partition, Offset::Offset(start))
            .map_err(|e| Error::kafka("building the standby assignment", e))?;
        self.consumer
            .incremental_assign(&assignment)
            .map_err(|e| Error::kafka("assigning a changelog to the standby", e))?;
        self.by_partition.insert(
            (spec.changelog.clone(), id.partition),
            (id, task.stores.len()),
        );
        task.stores.push(FollowedStore {
            name: spec.name,
            changelog: spec.changelog.clone(),
            store,
            position: start,
            batch: BulkWrite::default(),
        });
        debug!(task = %id, store = spec.name, from = start, "standby following");
        Ok(())
    }

    /// Writes task `id`'s batches, flushes its stores, writes its checkpoint, stops
    /// reading its changelogs and closes its stores.
    fn release(&mut self, id: TaskId) {
        let Some(mut task) = self.tasks.remove(&id) else {
            return;
        };
        self.queries.release(id, Role::Standby);
        let started = Instant::now();
        // Checkpointed while still assigned: the consumer's positions step over the
        // transaction markers after the last record.
        if let Err(error) = checkpoint_task(&mut task, &self.consumer, id.partition) {
            warn!(task = %id, %error, "the standby's checkpoint failed; the previous one stays");
        }
        let mut partitions = TopicPartitionList::new();
        for store in &task.stores {
            self.by_partition
                .remove(&(store.changelog.clone(), id.partition));
            partitions.add_partition(&store.changelog, id.partition);
        }
        if let Err(error) = self.consumer.incremental_unassign(&partitions) {
            warn!(task = %id, %error, "unassigning the standby's changelogs failed");
        }
        let checkpointed_ms = started.elapsed().as_millis() as u64;
        drop(task);
        debug!(
            task = %id,
            checkpointed_ms,
            closed_ms = started.elapsed().as_millis() as u64,
            "standby let go"
        );
    }

    /// Lets go of every task (the instance stops).
    fn release_all(&mut self) {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            self.release(id);
        }
        self.publish();
    }

    /// Reads what the changelogs have (up to [`BATCH_RECORDS_MAX`] records), writes it
    /// to the stores, and checkpoints when [`STANDBY_CHECKPOINT_INTERVAL`] has passed.
    fn poll(&mut self) {
        if self.tasks.is_empty() {
            std::thread::sleep(POLL_TIMEOUT);
            return;
        }
        let mut records = 0usize;
        let mut wait = POLL_TIMEOUT;
        while records < BATCH_RECORDS_MAX {
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    wait = Duration::ZERO;
                    let key = (message.topic().to_string(), message.partition());
                    let Some((id, index)) = self.by_partition.get(&key).copied() else {
                        continue; // A partition let go of, still in the fetch.
                    };
                    let Some(store) = self
                        .tasks
                        .get_mut(&id)
                        .and_then(|t| t.stores.get_mut(index))
                    else {
                        continue;
                    };
                    store.position = message.offset() + 1;
                    if let Some(k) = message.key() {
                        store.batch.write(k, message.payload());
                        records += 1;
                    }
                }
                Some(Err(error)) => {
                    warn!(%error, "the standby consumer failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    break;
                }
                None => break,
            }
        }
        if let Err(error) = self.write_batches() {
            warn!(%error, "the standby's stores could not be written; its tasks are let go");
            self.release_all();
        }
        self.metrics.standby_records.inc_by(records as u64);
        if self.last_checkpoint.elapsed() >= STANDBY_CHECKPOINT_INTERVAL {
            self.last_checkpoint = Instant::now();
            for (id, task) in &mut self.tasks {
                if let Err(error) = checkpoint_task(task, &self.consumer, id.partition) {
                    warn!(task = %id, %error, "the standby's checkpoint failed; the previous one stays");
                }
            }
            self.publish();
        }
    }

    /// Writes every store's batch to RocksDB.
    fn write_batches(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            let mut applied = false;
            for store in &mut task.stores {
                if !store.batch.is_empty() {
                    store.store.write_bulk(std::mem::take(&mut store.batch))?;
                    applied = true;
                }
            }
            if applied {
                task.progress.applied();
            }
        }
        Ok(())
    }

    /// Sets the standby gauges: tasks followed, and records behind the changelogs' ends.
    fn publish(&self) {
        self.metrics.standby_tasks.set(self.tasks.len() as i64);
        let ends = self.ends.lock().expect("standby ends lock");
        let mut lag = 0;
        for (id, task) in &self.tasks {
            let task_lag: i64 = task
                .stores
                .iter()
                .map(|s| {
                    ends.get(&(s.changelog.clone(), id.partition))
                        .map_or(0, |end| (end - s.position).max(0))
                })
                .sum();
            task.progress.set_lag_records(task_lag);
            lag += task_lag;
        }
        self.metrics.standby_lag_records.set(lag);
    }
}

/// Writes `task`'s batches, moves each store's position over the transaction markers
/// the consumer stepped over, flushes the stores and writes the checkpoint.
fn checkpoint_task(
    task: &mut FollowedTask,
    consumer: &BaseConsumer<StandbyContext>,
    partition: i32,
) -> Result<()> {
    let positions = consumer.position().ok();
    for store in &mut task.stores {
        if !store.batch.is_empty() {
            store.store.write_bulk(std::mem::take(&mut store.batch))?;
        }
        if let Some(Offset::Offset(p)) = positions
            .as_ref()
            .and_then(|tpl| tpl.find_partition(&store.changelog, partition))
            .map(|e| e.offset())
        {
            store.position = store.position.max(p);
        }
        store.store.flush()?;
    }
    task.checkpoint
        .advance(task.stores.iter().map(|s| (s.name, s.position)))
}

/// Every stateful task of `topology`, with its sub-topology's partition count from
/// `partitions` (by sub-topology id).
pub fn stateful_tasks(topology: &Topology, partitions: &[i32]) -> BTreeSet<TaskId> {
    topology
        .sub_topologies
        .iter()
        .filter(|sub| !sub.stores.is_empty())
        .flat_map(|sub| {
            let count = partitions.get(sub.id as usize).copied().unwrap_or(0);
            (0..count).map(move |partition| TaskId {
                sub_topology: sub.id,
                partition,
            })
        })
        .collect()
}

impl Drop for Follower {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            info!(tasks = self.tasks.len(), "standby stopping");
            self.release_all();
        }
    }
}
