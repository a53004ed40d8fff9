//! The task manager (Kafka Streams' `TaskManager`): the tasks this instance runs, one per
//! sub-topology and partition. A task is created when its first record arrives: it is
//! RESTORING while its stores catch up with their changelogs on a thread of their own
//! ([`crate::restore`]), then RUNNING — its processor created and `init`ed — until its
//! partitions move to another instance, when it is closed (its processor's `close`) or
//! its restore cancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::TopicPartitionList;
use tracing::info;

use crate::Result;
use crate::config::Config;
use crate::config::StandbyReplicas;
use crate::health::Health;
use crate::interactive_queries::{InteractiveQueries, Role};
use crate::metrics::Metrics;
use crate::processor::{Forward, Origin, Value};
use crate::restore::Restoring;
use crate::standby::{Standbys, stateful_tasks};
use crate::task::{Task, TaskId};
use crate::topology::Topology;

/// One changelog record of a store write made in the open transaction: task, store, key,
/// value (`None`: a delete).
pub type ChangelogWrite = (TaskId, &'static str, Vec<u8>, Option<Vec<u8>>);

/// What the punctuation of every running task made.
#[derive(Debug, Default)]
pub struct Punctuated {
    /// Outputs with the task that made them and their timestamp.
    pub outputs: Vec<(TaskId, Forward, i64)>,
    /// Tasks whose punctuation panicked, with the message.
    pub failed: Vec<(TaskId, String)>,
}

/// The tasks of one instance, restoring and running, and the standbys of the others.
pub struct TaskManager {
    topology: Topology,
    running: BTreeMap<TaskId, Task>,
    restoring: BTreeMap<TaskId, Restoring<Task>>,
    /// Every stateful task of the application (with `state.standby_replicas = "all"`,
    /// those this instance does not run are its standbys).
    stateful: BTreeSet<TaskId>,
    /// The standby thread, started at the first assignment (`None` before, or when
    /// standbys are off).
    standbys: Option<Standbys>,
    config: Config,
    metrics: Metrics,
    health: Arc<Health>,
    /// Where the running tasks' and the standbys' stores are read from other threads.
    queries: Arc<InteractiveQueries>,
}

impl TaskManager {
    /// No task yet. `partitions` is the partition count of each sub-topology (by id).
    pub fn new(
        topology: Topology,
        partitions: &[i32],
        config: Config,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Self {
        TaskManager {
            stateful: stateful_tasks(&topology, partitions),
            topology,
            running: BTreeMap::new(),
            restoring: BTreeMap::new(),
            standbys: None,
            config,
            metrics,
            health,
            queries: Arc::default(),
        }
    }

    /// Registers the running tasks' and the standbys' stores with `queries` from now on.
    pub fn set_interactive_queries(&mut self, queries: Arc<InteractiveQueries>) {
        self.queries = queries;
    }

    /// After a rebalance that gave this instance the tasks `assigned`: the standbys
    /// follow every other stateful task (`state.standby_replicas = "all"`). Returns once
    /// the standbys of the assigned tasks are closed, so their restores can open the
    /// stores; the first call starts the standby thread.
    ///
    /// # Errors
    /// [`crate::Error::Thread`] when the standby thread cannot be started.
    pub fn follow_standbys(&mut self, assigned: &BTreeSet<TaskId>) -> Result<()> {
        if self.config.state.standby_replicas == StandbyReplicas::None {
            return Ok(());
        }
        if self.standbys.is_none() {
            self.standbys = Some(Standbys::spawn(
                &self.config,
                &self.topology,
                &self.metrics,
                &self.queries,
            )?);
        }
        let standbys = self.standbys.as_mut().expect("started above");
        standbys.follow(self.stateful.difference(assigned).copied().collect());
        self.restoring_changed();
        Ok(())
    }

    /// Tasks running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// The task `id` when it is running; otherwise `None`, and its restore is started if
    /// it is not restoring yet.
    ///
    /// # Errors
    /// When the restore thread cannot be started.
    pub fn running(&mut self, id: TaskId) -> Result<Option<&mut Task>> {
        if self.running.contains_key(&id) {
            return Ok(self.running.get_mut(&id));
        }
        if !self.restoring.contains_key(&id) {
            info!(task = %id, "task assigned: restoring its stores");
            let sub = self.topology.sub_topology(id.sub_topology);
            let restoring = Restoring::start_task(id, sub, &self.config, &self.metrics)?;
            self.health.restore_started(&id.to_string());
            self.restoring.insert(id, restoring);
            self.restoring_changed();
        }
        Ok(None)
    }

    /// The standbys wait while a task restores.
    fn restoring_changed(&self) {
        if let Some(standbys) = &self.standbys {
            standbys.set_restoring(!self.restoring.is_empty());
        }
    }

    /// True while some task is restoring.
    pub fn any_restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// The task `id`, which must be running.
    ///
    /// # Panics
    /// When it is not: callers check [`Self::running`] first.
    pub fn task(&mut self, id: TaskId) -> &mut Task {
        self.running.get_mut(&id).expect("task running")
    }

    /// Moves the tasks whose restore has finished to RUNNING and returns their ids.
    ///
    /// # Errors
    /// A restore's error (Kafka, RocksDB, the state directory) or a processor's `init`.
    pub fn finish_restores(&mut self) -> Result<Vec<TaskId>> {
        let finished: Vec<TaskId> = self
            .restoring
            .iter()
            .filter(|(_, r)| r.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in &finished {
            let restoring = self.restoring.remove(id).expect("listed above");
            self.health.restore_finished(&id.to_string());
            let started = restoring.started;
            // Restored and initialised on the restore thread.
            let task = restoring.finish()?;
            self.metrics
                .task_restore_seconds
                .observe(started.elapsed().as_secs_f64());
            info!(task = %id, "task running");
            self.queries
                .host(*id, Role::Active, task.store_readers(), None);
            self.running.insert(*id, task);
        }
        if !finished.is_empty() {
            self.restoring_changed();
        }
        Ok(finished)
    }

    /// The partitions task `id` reads: the same partition of each of its sources.
    pub fn partitions_of(&self, id: TaskId) -> Vec<(String, i32)> {
        self.topology
            .sub_topology(id.sub_topology)
            .sources
            .iter()
            .map(|s| (s.topic.clone(), id.partition))
            .collect()
    }

    /// Runs task `id`'s processor on one decoded record (see [`Task::process`]).
    ///
    /// # Errors
    /// A processor error (a state store failing): the environment, not the record.
    pub fn process(
        &mut self,
        id: TaskId,
        value: Value,
        origin: Origin,
    ) -> Result<std::result::Result<Vec<Forward>, String>> {
        self.task(id).process(value, origin)
    }

    /// Punctuation of every running task at its stream time: fires due timers, whose
    /// store writes join the open transaction. Returns their outputs with the task that
    /// made them and the timestamp they carry: the task's stream time, a record
    /// timestamp the broker accepted. A task whose punctuation panicked is named with
    /// the panic's message in the second list: the caller aborts the transaction.
    ///
    /// # Errors
    /// A processor error (a state store failing).
    pub fn punctuate(&mut self) -> Result<Punctuated> {
        let mut punctuated = Punctuated::default();
        for (id, task) in self.running.iter_mut() {
            let stream_time_ms = task.stream_time_ms;
            match task.punctuate()? {
                Ok(outputs) => punctuated.outputs.extend(
                    outputs
                        .into_iter()
                        .map(|output| (*id, output, stream_time_ms)),
                ),
                Err(message) => punctuated.failed.push((*id, message)),
            }
        }
        Ok(punctuated)
    }

    /// Wall-clock punctuation of every running task whose processor asked for it and
    /// whose interval has passed at `now` (`wall_clock_ms`, the same instant in
    /// milliseconds since the Unix epoch, is what the processors are told and the
    /// outputs' timestamp). Returns what they forwarded and whether any of them wrote to
    /// a store.
    ///
    /// # Errors
    /// A processor error (a state store failing).
    pub fn punctuate_wall_clock(
        &mut self,
        now: Instant,
        wall_clock_ms: i64,
    ) -> Result<(Punctuated, bool)> {
        let mut punctuated = Punctuated::default();
        let mut wrote = false;
        for (id, task) in self.running.iter_mut() {
            match task.punctuate_wall_clock(now, wall_clock_ms)? {
                Ok(None) => {}
                Ok(Some(outputs)) => {
                    wrote |= task.has_pending_writes();
                    punctuated.outputs.extend(
                        outputs
                            .into_iter()
                            .map(|output| (*id, output, wall_clock_ms)),
                    );
                }
                Err(message) => punctuated.failed.push((*id, message)),
            }
        }
        Ok((punctuated, wrote))
    }

    /// True while a running task's processor waits for wall-clock time to let through
    /// what records it read cause ([`crate::Processor::awaits_wall_clock`]).
    pub fn any_awaiting_wall_clock(&self) -> bool {
        self.running.values().any(Task::awaits_wall_clock)
    }

    /// When the earliest wall-clock punctuation of a running task is due; `None` when no
    /// running task's processor asked for one.
    pub fn next_wall_clock_punctuation(&self) -> Option<Instant> {
        self.running
            .values()
            .filter_map(Task::next_wall_clock_punctuation)
            .min()
    }

    /// Deletes the expired keys of TTL stores, in the open transaction.
    ///
    /// # Errors
    /// When a store fails.
    pub fn purge_expired(&mut self) -> Result<()> {
        for task in self.running.values_mut() {
            task.purge_expired()?;
        }
        Ok(())
    }

    /// The store writes of the open transaction, as changelog records to produce.
    pub fn changelog_writes(&self) -> Vec<ChangelogWrite> {
        let mut changelog = Vec::new();
        for task in self.running.values() {
            for (store, write) in task.pending_writes() {
                changelog.push((
                    task.id,
                    store,
                    write.key.to_vec(),
                    write.value.map(<[u8]>::to_vec),
                ));
            }
        }
        changelog
    }

    /// The transaction committed: its store writes go to RocksDB.
    ///
    /// # Errors
    /// When a store fails.
    pub fn commit_stores(&mut self) -> Result<()> {
        for task in self.running.values_mut() {
            task.commit_stores()?;
        }
        Ok(())
    }

    /// The stream thread goes on after a stall: every running task has been reading only
    /// since now ([`Task::went_on_after_stall`]).
    pub fn went_on_after_stall(&mut self) {
        for task in self.running.values_mut() {
            task.went_on_after_stall();
        }
    }

    /// The transaction was aborted: its store writes are dropped (and the `init` of a
    /// task that had not committed since runs again, see [`Task::abort_stores`]).
    ///
    /// # Errors
    /// A processor error from that `init`.
    pub fn abort_stores(&mut self) -> Result<()> {
        for task in self.running.values_mut() {
            task.abort_stores()?;
        }
        Ok(())
    }

    /// Records in each task's checkpoint the next changelog offset per store.
    ///
    /// # Errors
    /// When a checkpoint cannot be written.
    pub fn checkpoint(
        &mut self,
        next: BTreeMap<TaskId, BTreeMap<&'static str, i64>>,
    ) -> Result<()> {
        for (task_id, offsets) in next {
            if let Some(task) = self.running.get_mut(&task_id) {
                task.checkpoint(&offsets)?;
            }
        }
        Ok(())
    }

    /// After a rebalance: drops every task's open store writes, closes the running
    /// tasks and cancels the restores whose partitions are not in `assignment`. Their
    /// local stores and checkpoints stay on disk for a later return.
    ///
    /// # Errors
    /// A processor error from the `init` of a kept task that runs again
    /// ([`Task::abort_stores`]).
    pub fn keep_assigned(&mut self, assignment: &TopicPartitionList) -> Result<()> {
        let topology = &self.topology;
        let assigned = |id: &TaskId| {
            topology
                .sub_topology(id.sub_topology)
                .sources
                .iter()
                .any(|s| assignment.find_partition(&s.topic, id.partition).is_some())
        };
        let (kept, closed): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|(id, _)| assigned(id));
        self.running = kept;
        for (id, task) in closed {
            info!(task = %id, "task closed: its partitions moved to another instance");
            self.queries.release(id, Role::Active);
            task.close();
        }
        let (kept, cancelled): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.restoring)
                .into_iter()
                .partition(|(id, _)| assigned(id));
        self.restoring = kept;
        for (id, restoring) in cancelled {
            info!(task = %id, "restore cancelled: its partitions moved to another instance");
            restoring.cancel();
            self.health.restore_finished(&id.to_string());
        }
        self.restoring_changed();
        for task in self.running.values_mut() {
            task.abort_stores()?;
        }
        Ok(())
    }

    /// Closes every task and cancels every restore (the instance stops).
    pub fn close_all(&mut self) {
        for (id, task) in std::mem::take(&mut self.running) {
            self.queries.release(id, Role::Active);
            task.close();
        }
        for (id, restoring) in std::mem::take(&mut self.restoring) {
            restoring.cancel();
            self.health.restore_finished(&id.to_string());
        }
    }

    /// Moves the stores' operation counters into the Prometheus metrics and sets the
    /// stores' key counts.
    pub fn publish_store_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut keys: BTreeMap<&'static str, u64> = BTreeMap::new();
        for task in self.running.values() {
            for (store, n) in task.store_keys() {
                *keys.entry(store).or_insert(0) += n;
            }
        }
        for (store, n) in keys {
            self.metrics
                .store_keys
                .with_label_values(&[store])
                .set(n as i64);
        }
        for task in self.running.values() {
            for (store, metrics) in task.store_metrics() {
                for (operation, counter) in [
                    ("get", &metrics.gets),
                    ("put", &metrics.puts),
                    ("delete", &metrics.deletes),
                    ("range", &metrics.ranges),
                ] {
                    let n = counter.swap(0, Relaxed);
                    if n > 0 {
                        self.metrics
                            .store_operations
                            .with_label_values(&[store, operation])
                            .inc_by(n);
                    }
                }
            }
        }
    }
}
