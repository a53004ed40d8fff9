//! Restoring: the phase a newly assigned task spends bringing its state stores up to
//! their changelogs before it processes anything (docs/architecture.md, "Restore").
//!
//! Each restoring task has a thread of its own. The thread opens the task's RocksDB
//! stores, loads the task's checkpoint (wiping the task when it is missing or corrupt)
//! and restores each store from its changelog with a `read_committed` consumer, writing
//! the checkpoint after every batch, so a restart resumes where it stopped. It runs
//! outside any Kafka transaction and has no deadline: the stream thread meanwhile keeps
//! processing and committing the tasks that are running, and `/readyz` names the tasks
//! that are restoring. A task whose partitions move away while it restores is cancelled;
//! its progress stays in its checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};
use paystream_state::{BulkWrite, KeyValueStore, RocksDbStore};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::config::Config;
use crate::kafka::read_committed_consumer_config;
use crate::metrics::Metrics;
pub use crate::state_manager::RestoredStores;
use crate::state_manager::{TaskCheckpoint, task_dir};
use crate::task::Task;
use crate::topology::{Store, SubTopology, TaskId};
use crate::{Error, Result};

/// Changelog records applied to RocksDB per write batch while restoring; the
/// checkpoint is written after each batch.
const RESTORE_BATCH_RECORDS_MAX: usize = 10_000;

/// A restore flushes its store and checkpoints its progress every this many records
/// (and at its end): RocksDB's writes skip its write-ahead log, so only flushed writes
/// count as restored after a crash.
const RESTORE_CHECKPOINT_RECORDS: u64 = 100_000;
/// Polls between two checks for a cancelled restore and for a progress line due.
const RESTORE_CHECK_EVERY_POLLS: usize = 1_024;
/// Longest one poll of the restore consumer waits for a record.
const RESTORE_POLL_TIMEOUT: Duration = Duration::from_millis(10);
/// How often a long restore logs its progress.
const RESTORE_PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A task in the restoring phase: its restore thread and the flag that cancels it. The
/// thread hands over the restored stores ([`Restoring::start`]) or the task built on
/// them, its processor initialised ([`Restoring::start_task`]).
pub struct Restoring<T: Send + 'static = RestoredStores> {
    pub id: TaskId,
    /// When the restore began: the task was assigned.
    pub started: Instant,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<T>>>,
}

impl Restoring<RestoredStores> {
    /// Starts restoring task `id` of `sub` on a thread named `restore-<task>`.
    ///
    /// # Errors
    /// [`Error::Thread`] when the thread cannot be started.
    pub fn start(
        id: TaskId,
        sub: &SubTopology,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Restoring> {
        let stores = sub.stores.clone();
        let config = config.clone();
        let metrics = metrics.clone();
        Restoring::spawn(id, move |cancel| {
            restore_task(id, &stores, &config, &metrics, cancel)
        })
    }
}

impl Restoring<Task> {
    /// As [`Restoring::start`], then builds the task on the restored stores on the same
    /// thread: its processor's `init` (the lifecycle's scan of every payment for its
    /// timer index) reads the whole store, seconds for millions of keys, while the stream
    /// thread goes on processing and committing the running tasks.
    ///
    /// # Errors
    /// [`Error::Thread`] when the thread cannot be started.
    pub fn start_task(
        id: TaskId,
        sub: &SubTopology,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Restoring<Task>> {
        let sub = sub.clone();
        let config = config.clone();
        let metrics = metrics.clone();
        Restoring::spawn(id, move |cancel| {
            let restored = restore_task(id, &sub.stores, &config, &metrics, cancel)?;
            Task::new(id, &sub, restored)
        })
    }
}

impl<T: Send + 'static> Restoring<T> {
    fn spawn(
        id: TaskId,
        work: impl FnOnce(&AtomicBool) -> Result<T> + Send + 'static,
    ) -> Result<Restoring<T>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name(format!("restore-{id}"))
            .spawn(move || work(&flag))
            .map_err(|source| Error::Thread {
                what: "a restore thread",
                source,
            })?;
        Ok(Restoring {
            id,
            started: Instant::now(),
            cancel,
            thread: Some(thread),
        })
    }

    /// True when the restore has ended (successfully or not): [`Self::finish`] will not
    /// block.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the restore and returns what it hands over.
    ///
    /// # Errors
    /// The restore's error: Kafka, RocksDB or the state directory failing, or the
    /// processor's `init`.
    pub fn finish(mut self) -> Result<T> {
        let thread = self.thread.take().expect("a restore is finished once");
        thread.join().unwrap_or_else(|panic| {
            Err(Error::RestorePanicked {
                task: self.id.to_string(),
                message: crate::poison::panic_message(&*panic),
            })
        })
    }

    /// Stops the restore at its next poll and waits for the thread; what it restored so
    /// far stays in the store and its checkpoint.
    pub fn cancel(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(_)) | Ok(Err(Error::RestoreCancelled { .. })) => {}
                Ok(Err(e)) => warn!(task = %self.id, error = %e, "cancelled restore had failed"),
                Err(_) => warn!(task = %self.id, "cancelled restore had panicked"),
            }
        }
    }
}

impl<T: Send + 'static> Drop for Restoring<T> {
    fn drop(&mut self) {
        // A restore thread holds the task's RocksDB locks: never leave one behind.
        self.stop();
    }
}

/// The restore thread's work: open, restore and checkpoint every store of the task.
fn restore_task(
    id: TaskId,
    stores: &[Store],
    config: &Config,
    metrics: &Metrics,
    cancel: &AtomicBool,
) -> Result<RestoredStores> {
    let mut checkpoint = TaskCheckpoint::load(task_dir(config, &id.to_string()))?;
    let mut opened = Vec::with_capacity(stores.len());
    // One consumer for all the task's stores: creating one per store cost about 0.1 s
    // each, most of a move's restore when a standby had the stores up to date.
    let consumer = restore_consumer(config)?;
    for store in stores {
        let mut rocks = RocksDbStore::open(store.name, &checkpoint.dir().join(store.name))?;
        let from = checkpoint.offset(store.name);
        let mut on_batch = |next_offset: i64| checkpoint.advance([(store.name, next_offset)]);
        let restored = restore_store_with(
            &consumer,
            config,
            &store.changelog,
            id.partition,
            from,
            &mut rocks,
            RestoreControl {
                cancel: Some(cancel),
                on_batch: Some(&mut on_batch),
                metrics: Some(metrics),
            },
        )?;
        checkpoint.advance([(store.name, restored.next_offset)])?;
        opened.push((store.name, rocks));
    }
    info!(task = %id, stores = opened.len(), "task restored");
    Ok(RestoredStores {
        checkpoint,
        stores: opened,
    })
}

/// What one store's restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records applied.
    pub records: u64,
    /// The next changelog offset the store now reflects.
    pub next_offset: i64,
    /// True when the checkpoint's offset was outside the changelog and the store was
    /// restored from the beginning instead.
    pub restarted: bool,
}

/// How a restore reports progress and learns it is no longer wanted.
#[derive(Default)]
pub struct RestoreControl<'a> {
    /// Set when the task's partitions moved away or the instance stops: the restore
    /// returns [`Error::RestoreCancelled`] at its next poll.
    pub cancel: Option<&'a AtomicBool>,
    /// Called with the next changelog offset once the store has been flushed up to it
    /// (every `RESTORE_CHECKPOINT_RECORDS` records and at the end), to checkpoint the
    /// progress.
    pub on_batch: Option<&'a mut dyn FnMut(i64) -> Result<()>>,
    /// Restore metrics (records restored, records remaining), by store.
    pub metrics: Option<&'a crate::metrics::Metrics>,
}

/// Restores `store` from partition `partition` of `changelog`, from `from` (the
/// checkpoint's offset, or the beginning) to the changelog's end, reading committed
/// records only. It runs outside any transaction and has no deadline: an open
/// transaction of a previous owner holds the end back until the broker resolves it
/// (at most the transaction timeout), and progress is logged every 10 s meanwhile.
///
/// # Errors
/// [`Error::Kafka`] when the changelog cannot be read; [`Error::RestoreCancelled`] when
/// `control.cancel` was set; store errors from RocksDB; errors of `control.on_batch`.
pub fn restore_store(
    config: &Config,
    changelog: &str,
    partition: i32,
    from: Option<i64>,
    store: &mut RocksDbStore,
    control: RestoreControl<'_>,
) -> Result<Restored> {
    let consumer = restore_consumer(config)?;
    restore_store_with(
        &consumer, config, changelog, partition, from, store, control,
    )
}

/// The `read_committed` consumer a restore reads changelogs with (no group: partitions
/// are assigned, never committed).
///
/// # Errors
/// [`Error::Kafka`] when it cannot be created.
fn restore_consumer(config: &Config) -> Result<BaseConsumer> {
    read_committed_consumer_config(config, &format!("{}-restore", config.application_id))
        .set("enable.partition.eof", "true")
        // When the restore falls behind the fetcher by `queued.min.messages` records,
        // librdkafka stops fetching for `fetch.queue.backoff.ms`: its 1 s default left
        // the restore idle about half the time once its queue had drained.
        .set("fetch.queue.backoff.ms", "10")
        // The end of a changelog is often a transaction marker, which no poll returns:
        // the broker answers a fetch there at once instead of holding it 500 ms.
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| Error::kafka("creating the restore consumer", e))
}

/// As [`restore_store`], reading with `consumer` (whose assignment it replaces): a
/// task's stores restore one after another with one consumer.
fn restore_store_with(
    consumer: &BaseConsumer,
    config: &Config,
    changelog: &str,
    partition: i32,
    from: Option<i64>,
    store: &mut RocksDbStore,
    mut control: RestoreControl<'_>,
) -> Result<Restored> {
    let metrics = control.metrics;
    let store_name = store.name().to_string();
    let progress = |restored: u64, remaining: i64| {
        if let Some(m) = metrics {
            m.restore_records
                .with_label_values(&[store_name.as_str()])
                .inc_by(restored);
            m.restore_remaining_records
                .with_label_values(&[store_name.as_str()])
                .set(remaining.max(0));
        }
    };
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let (low, high) = changelog_watermarks(consumer, changelog, partition, timeout)?;
    let (start, from_scratch) = start_offset(from, low, high);
    let restarted = from_scratch && from.is_some();
    if restarted {
        warn!(
            changelog,
            partition,
            offset = from,
            low,
            high,
            "checkpoint outside the changelog: restoring in full"
        );
    }
    if start >= high {
        return Ok(Restored {
            records: 0,
            next_offset: start.max(high),
            restarted,
        });
    }
    if from_scratch {
        // Anything in the store is of unknown position: start it empty.
        clear(store)?;
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(changelog, partition, Offset::Offset(start))
        .map_err(|e| Error::kafka("building the restore assignment", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka("assigning the changelog", e))?;
    let started = Instant::now();
    let mut last_logged = Instant::now();
    let mut batch = BulkWrite::default();
    let mut polls_since_check = 0usize;
    let mut unflushed: u64 = 0;
    let mut records = 0u64;
    let mut position = start;
    while position < high {
        // Checked every few records and whenever the changelog has nothing new, not per
        // record: reading the clock per record was a tenth of the restore thread's time.
        if polls_since_check == 0 {
            if control.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::RestoreCancelled {
                    changelog: changelog.to_string(),
                    partition,
                });
            }
            if last_logged.elapsed() >= RESTORE_PROGRESS_LOG_INTERVAL {
                last_logged = Instant::now();
                info!(
                    changelog,
                    partition,
                    records,
                    position,
                    end = high,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "restoring"
                );
            }
        }
        polls_since_check = (polls_since_check + 1) % RESTORE_CHECK_EVERY_POLLS;
        // A short wait: when only transaction markers are left before the end (a store
        // a standby kept up to date is one marker behind), the position check below ends
        // the restore. A 200 ms wait cost each such store 200 ms, a task of five 1 s.
        match consumer.poll(RESTORE_POLL_TIMEOUT) {
            Some(Ok(message)) => {
                if message.partition() != partition || message.topic() != changelog {
                    continue; // Fetched for the task's previous store.
                }
                position = message.offset() + 1;
                let Some(key) = message.key() else { continue };
                batch.write(key, message.payload());
                records += 1;
                if batch.len() >= RESTORE_BATCH_RECORDS_MAX {
                    let written = batch.len() as u64;
                    store.write_bulk(std::mem::take(&mut batch))?;
                    progress(written, high - position);
                    unflushed += written;
                    if unflushed >= RESTORE_CHECKPOINT_RECORDS {
                        store.flush()?;
                        unflushed = 0;
                        if let Some(on_batch) = control.on_batch.as_mut() {
                            on_batch(position)?;
                        }
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {
                // Nothing more to read for now: the consumer's position steps over the
                // transaction markers that follow the last record.
                polls_since_check = 0;
                if let Ok(positions) = consumer.position()
                    && let Some(Offset::Offset(p)) = positions
                        .find_partition(changelog, partition)
                        .map(|e| e.offset())
                {
                    position = position.max(p);
                }
            }
            Some(Err(e)) => return Err(Error::kafka(&format!("restoring {changelog}"), e)),
        }
    }
    let written = batch.len() as u64;
    if !batch.is_empty() {
        store.write_bulk(batch)?;
    }
    store.flush()?;
    progress(written, 0);
    if let Some(on_batch) = control.on_batch.as_mut() {
        on_batch(position)?;
    }
    info!(
        changelog,
        partition,
        records,
        from = start,
        to = position,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store restored"
    );
    Ok(Restored {
        records,
        next_offset: position,
        restarted,
    })
}

/// The low and high watermarks of partition `partition` of `changelog`, retried for
/// about 10 s while the cluster answers with a retriable error (a partition whose leader
/// is not elected yet, just after the topics were created, or moving with a broker).
///
/// # Errors
/// [`Error::Kafka`] when it still fails, or fails for another reason.
pub(crate) fn changelog_watermarks(
    consumer: &BaseConsumer<impl ConsumerContext>,
    changelog: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64)> {
    let fetch = || consumer.fetch_watermarks(changelog, partition, timeout);
    fetch
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(8),
        )
        .when(|e: &rdkafka::error::KafkaError| {
            e.rdkafka_error_code()
                .is_some_and(crate::kafka::is_retriable_code)
        })
        .notify(|e, delay| {
            warn!(changelog, partition, error = %e, ?delay, "fetching a changelog's watermarks failed; retrying")
        })
        .call()
        .map_err(|e| Error::kafka(&format!("fetching watermarks of {changelog}"), e))
}

/// Where a store whose checkpoint says `from` starts reading a changelog partition
/// whose offsets run from `low` to `high`: `(offset, from_scratch)`. From the
/// checkpoint when it lies within them; otherwise (no checkpoint, or one outside the
/// changelog: compacted, deleted, recreated) from `low`, with `from_scratch` true: the
/// store's content is of unknown position and must be cleared first.
pub(crate) fn start_offset(from: Option<i64>, low: i64, high: i64) -> (i64, bool) {
    match from {
        Some(offset) if offset >= low && offset <= high => (offset, false),
        _ => (low, true),
    }
}

/// Deletes every key of `store`.
pub(crate) fn clear(store: &mut RocksDbStore) -> Result<()> {
    let keys = store.keys()?;
    if !keys.is_empty() {
        store.write_batch(keys.into_iter().map(|k| (k, None)).collect())?;
    }
    Ok(())
}
