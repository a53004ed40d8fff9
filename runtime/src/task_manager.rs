//! The task manager (Kafka Streams' `TaskManager`): the tasks this instance runs — one per
//! sub-topology and partition, each owning its state stores — created when their first
//! record arrives (restoring their stores from the changelogs), closed when their
//! partitions move to another instance, and the processors they run: `init`-free today,
//! `process` per record and `punctuate` at commit.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use paystream_processors::dedupe::DedupeProcessor;
use paystream_processors::lifecycle::LifecycleProcessor;
use paystream_processors::{Origin, Output, Processor, Record};
use paystream_schemas::InputEvent;
use rdkafka::TopicPartitionList;
use tracing::info;

use crate::Result;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::poison::panic_message;
use crate::task::{SubTopology, Task, TaskId};
use crate::topics::TopicNames;

/// One changelog record of a store write made in the open transaction: task, store, key,
/// value (`None`: a delete).
pub type ChangelogWrite = (TaskId, &'static str, Vec<u8>, Option<Vec<u8>>);

/// The tasks of one instance and the processors they run.
pub struct TaskManager {
    tasks: BTreeMap<TaskId, Task>,
    dedupe: DedupeProcessor,
    lifecycle: LifecycleProcessor,
    config: Config,
    names: TopicNames,
    metrics: Metrics,
    health: Arc<Health>,
}

impl TaskManager {
    /// No task yet; processors configured from `config`.
    pub fn new(config: Config, names: TopicNames, metrics: Metrics, health: Arc<Health>) -> Self {
        TaskManager {
            dedupe: DedupeProcessor::new(config.state.idempotency_retention_ms),
            lifecycle: LifecycleProcessor::new(config.processing.lifecycle_settings()),
            tasks: BTreeMap::new(),
            config,
            names,
            metrics,
            health,
        }
    }

    /// Tasks running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The task `id`, opened — its stores restored from their changelogs — if this is its
    /// first record.
    ///
    /// # Errors
    /// When a store cannot be opened or restored.
    pub fn task(&mut self, id: TaskId) -> Result<&mut Task> {
        if !self.tasks.contains_key(&id) {
            info!(task = %id, "task assigned: restoring its stores");
            self.health.restore_started();
            let opened = tokio::task::block_in_place(|| {
                Task::open(id, &self.config, &self.names, Some(&self.metrics))
            });
            self.health.restore_finished();
            let task = opened?;
            info!(task = %id, "task running");
            self.tasks.insert(id, task);
        }
        Ok(self.tasks.get_mut(&id).expect("task opened above"))
    }

    /// Runs task `id`'s processor on one decoded record (the task must be open: see
    /// [`Self::task`]). `Ok(Err(message))` when the processor panicked on it: its store
    /// writes are partial, so the caller aborts the transaction and dead-letters the
    /// record.
    ///
    /// # Errors
    /// A processor error (a state store failing): the environment, not the record.
    pub fn process(
        &mut self,
        id: TaskId,
        event: InputEvent,
        origin: Origin,
    ) -> Result<std::result::Result<Vec<Output>, String>> {
        let task = self
            .tasks
            .get_mut(&id)
            .expect("task opened before processing");
        let mut outputs = Vec::new();
        let mut context = task.context(&mut outputs);
        let dedupe = &mut self.dedupe;
        let lifecycle = &mut self.lifecycle;
        let processed =
            std::panic::catch_unwind(AssertUnwindSafe(|| match (id.sub_topology, event) {
                (SubTopology::Dedupe, InputEvent::PaymentInitiated(value)) => {
                    dedupe.process(Record { value, origin }, &mut context)
                }
                (_, value) => lifecycle.process(Record { value, origin }, &mut context),
            }));
        match processed {
            Ok(result) => {
                result?;
                Ok(Ok(outputs))
            }
            Err(panic) => Ok(Err(format!("processor failed: {}", panic_message(&*panic)))),
        }
    }

    /// Punctuation of the lifecycle tasks at their stream time: fires due timers, whose
    /// store writes join the open transaction. Returns their outputs, each with the
    /// timestamp it carries: the task's stream time, a record timestamp the broker
    /// accepted.
    ///
    /// # Errors
    /// A processor error (a state store failing).
    pub fn punctuate(&mut self) -> Result<Vec<(Output, i64)>> {
        let mut outputs = Vec::new();
        let mut outputs_time_ms: Vec<i64> = Vec::new();
        for (id, task) in self.tasks.iter_mut() {
            if id.sub_topology != SubTopology::Lifecycle || task.stream_time_ms == i64::MIN {
                continue;
            }
            let stream_time_ms = task.stream_time_ms;
            let mut context = task.context(&mut outputs);
            self.lifecycle.punctuate(stream_time_ms, &mut context)?;
            outputs_time_ms.resize(outputs.len(), stream_time_ms);
        }
        Ok(outputs.into_iter().zip(outputs_time_ms).collect())
    }

    /// Deletes the expired keys of TTL stores, in the open transaction.
    ///
    /// # Errors
    /// When a store fails.
    pub fn purge_expired(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.purge_expired(&self.config)?;
        }
        Ok(())
    }

    /// The store writes of the open transaction, as changelog records to produce.
    pub fn changelog_writes(&self) -> Vec<ChangelogWrite> {
        let mut changelog = Vec::new();
        for task in self.tasks.values() {
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
        for task in self.tasks.values_mut() {
            task.commit_stores()?;
        }
        Ok(())
    }

    /// The transaction was aborted: its store writes are dropped.
    pub fn abort_stores(&mut self) {
        for task in self.tasks.values_mut() {
            task.abort_stores();
        }
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
            if let Some(task) = self.tasks.get_mut(&task_id) {
                task.checkpoint(&offsets)?;
            }
        }
        Ok(())
    }

    /// After a rebalance: drops every task's open store writes and closes the tasks
    /// whose source partition is not in `assignment`. Their local stores and checkpoints
    /// stay on disk for a later return.
    pub fn keep_assigned(&mut self, assignment: &TopicPartitionList) {
        let names = &self.names;
        self.tasks.retain(|id, task| {
            task.abort_stores();
            let source = match id.sub_topology {
                SubTopology::Dedupe => &names.payment_initiated,
                SubTopology::Lifecycle => &names.payments_by_id,
            };
            let kept = assignment.find_partition(source, id.partition).is_some();
            if !kept {
                info!(task = %id, "task closed: its partitions moved to another instance");
            }
            kept
        });
    }

    /// Moves the stores' operation counters into the Prometheus metrics and sets the
    /// stores' key counts.
    pub fn publish_store_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut keys: BTreeMap<&'static str, u64> = BTreeMap::new();
        for task in self.tasks.values() {
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
        for task in self.tasks.values() {
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
