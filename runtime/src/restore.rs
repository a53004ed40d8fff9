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

use paystream_state::RocksDbStore;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state_manager::{RestoreControl, TaskCheckpoint, restore_store, task_dir};
use crate::task::TaskId;
use crate::topology::{Store, SubTopology};
use crate::{Error, Result};

/// What a finished restore hands to the task: its stores, up to date with their
/// changelogs, and its checkpoint.
pub struct RestoredStores {
    pub checkpoint: TaskCheckpoint,
    /// `(store name, store)`, in the sub-topology's order.
    pub stores: Vec<(&'static str, RocksDbStore)>,
}

/// A task in the restoring phase: its restore thread and the flag that cancels it.
pub struct Restoring {
    pub id: TaskId,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<RestoredStores>>>,
}

impl Restoring {
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
        let cancel = Arc::new(AtomicBool::new(false));
        let stores = sub.stores.clone();
        let config = config.clone();
        let metrics = metrics.clone();
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name(format!("restore-{id}"))
            .spawn(move || restore_task(id, &stores, &config, &metrics, &flag))
            .map_err(|source| Error::Thread {
                what: "a restore thread",
                source,
            })?;
        Ok(Restoring {
            id,
            cancel,
            thread: Some(thread),
        })
    }

    /// True when the restore has ended (successfully or not): [`Self::finish`] will not
    /// block.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the restore and returns the restored stores.
    ///
    /// # Errors
    /// The restore's error: Kafka, RocksDB or the state directory failing.
    pub fn finish(mut self) -> Result<RestoredStores> {
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

impl Drop for Restoring {
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
    for store in stores {
        let mut rocks = RocksDbStore::open(store.name, &checkpoint.dir().join(store.name))?;
        let from = checkpoint.offset(store.name);
        let mut on_batch = |next_offset: i64| checkpoint.advance([(store.name, next_offset)]);
        let restored = restore_store(
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
