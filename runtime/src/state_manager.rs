//! The one owner of a task's changelog offsets and checkpoint (Kafka Streams'
//! `ProcessorStateManager`).
//!
//! The checkpoint file `<task dir>/checkpoint.json` records, per store, the next changelog
//! offset the local RocksDB store reflects. It is written after each commit, once the
//! store writes of that commit reached RocksDB.
//!
//! Why restoring from a checkpoint is always correct, even after `kill -9`: a store
//! write reaches RocksDB only after its Kafka transaction committed, so the local store
//! never holds anything the committed changelog does not; the checkpoint is written after
//! RocksDB, so it never runs ahead of the store. Replaying the committed changelog from
//! the checkpoint to its end therefore brings the store exactly to the committed state
//! (replaying a record the store already has rewrites the same value). This is what
//! Kafka Streams' KIP-892 aims at: no wipe after an unclean shutdown.
//!
//! A restore writes its progress to the checkpoint after each batch it applies, so a
//! restart resumes where it stopped instead of starting over.
//!
//! "Corrupted task" has one meaning: a checkpoint that is missing, unreadable, or outside
//! the changelog's offsets. Then the task directory is wiped and every store is restored
//! from the beginning of its changelog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use paystream_state::{KeyValueStore, RocksDbStore, Write};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::kafka::read_committed_consumer_config;
use crate::{Error, Result};

/// Name of the checkpoint file in a task directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// Changelog records applied to RocksDB per write batch while restoring; the
/// checkpoint is written after each batch.
const RESTORE_BATCH_RECORDS_MAX: usize = 10_000;
/// How often a long restore logs its progress.
const RESTORE_PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Next changelog offset per store, as written in the checkpoint file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version of the file.
    pub version: u32,
    /// Store name → next changelog offset the local store reflects.
    pub offsets: BTreeMap<String, i64>,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
}

impl Checkpoint {
    /// Reads the checkpoint of the task in `dir`: `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when the file exists but cannot be read or parsed.
    pub fn read(dir: &Path) -> std::result::Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(corrupt(e.to_string())),
            Ok(bytes) => {
                let checkpoint: Checkpoint =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if checkpoint.version != 1 || checkpoint.offsets.values().any(|o| *o < 0) {
                    return Err(corrupt(format!("unsupported content {checkpoint:?}")));
                }
                Ok(Some(checkpoint))
            }
        }
    }

    /// Writes the checkpoint atomically (temporary file, then rename) into `dir`.
    ///
    /// # Errors
    /// The I/O error; the previous checkpoint then stays in place, which is still safe.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).expect("checkpoint serializes"),
        )?;
        std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))
    }
}

/// The directory of a task's stores and checkpoint.
pub fn task_dir(config: &Config, task_id: &str) -> PathBuf {
    config.state.dir.join(&config.application_id).join(task_id)
}

/// The checkpoint of one task, owned by its state manager: loaded (or the task wiped)
/// when the task is created, advanced as restores and commits move the stores forward.
#[derive(Debug)]
pub struct TaskCheckpoint {
    dir: PathBuf,
    checkpoint: Checkpoint,
}

impl TaskCheckpoint {
    /// Loads the checkpoint in `dir`, wiping the task's stores when it is missing or
    /// corrupt (see [`load_or_wipe`]).
    ///
    /// # Errors
    /// [`Error::StateDirectory`] on I/O errors.
    pub fn load(dir: PathBuf) -> Result<TaskCheckpoint> {
        let checkpoint = load_or_wipe(&dir).map_err(|source| Error::StateDirectory {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(TaskCheckpoint { dir, checkpoint })
    }

    /// The task's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The next changelog offset `store` reflects, if known.
    pub fn offset(&self, store: &str) -> Option<i64> {
        self.checkpoint.offsets.get(store).copied()
    }

    /// Records that the stores reflect their changelogs up to these next offsets (store
    /// → offset) and writes the file when an offset changed (a restore from the
    /// beginning after the changelog was emptied can move it back).
    ///
    /// # Errors
    /// [`Error::StateDirectory`] when the file cannot be written; the previous one stays,
    /// which is still safe to restore from.
    pub fn advance<'a>(
        &mut self,
        next_offsets: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Result<()> {
        let mut changed = false;
        for (store, offset) in next_offsets {
            let entry = self
                .checkpoint
                .offsets
                .entry(store.to_string())
                .or_insert(-1);
            if offset != *entry {
                *entry = offset;
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
}

/// Where a task's stores start from: the checkpoint's offsets, or nothing after a wipe.
///
/// Wipes `dir` when the checkpoint is missing or corrupt (a missing checkpoint with
/// stores present means the stores' position is unknown).
pub fn load_or_wipe(dir: &Path) -> std::io::Result<Checkpoint> {
    match Checkpoint::read(dir) {
        Ok(Some(checkpoint)) => Ok(checkpoint),
        Ok(None) => {
            if dir.exists() {
                warn!(dir = %dir.display(), "no checkpoint: wiping the task's stores and restoring in full");
                std::fs::remove_dir_all(dir)?;
            }
            Ok(Checkpoint {
                version: 1,
                offsets: BTreeMap::new(),
            })
        }
        Err(e) => {
            warn!(error = %e, "wiping the task's stores and restoring in full");
            std::fs::remove_dir_all(dir)?;
            Ok(Checkpoint {
                version: 1,
                offsets: BTreeMap::new(),
            })
        }
    }
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
    /// Called with the next changelog offset after each batch is written to the store,
    /// to checkpoint the progress.
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
    let consumer: BaseConsumer =
        read_committed_consumer_config(config, &format!("{}-restore", config.application_id))
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| Error::kafka("creating the restore consumer", e))?;
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let (low, high) = consumer
        .fetch_watermarks(changelog, partition, timeout)
        .map_err(|e| Error::kafka(&format!("fetching watermarks of {changelog}"), e))?;
    let mut restarted = false;
    let start = match from {
        Some(offset) if offset >= low && offset <= high => offset,
        Some(offset) => {
            warn!(
                changelog,
                partition, offset, low, high, "checkpoint outside the changelog: restoring in full"
            );
            restarted = true;
            low
        }
        None => low,
    };
    if start >= high {
        return Ok(Restored {
            records: 0,
            next_offset: start.max(high),
            restarted,
        });
    }
    if restarted || from.is_none() {
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
    let mut batch: Vec<Write> = Vec::with_capacity(RESTORE_BATCH_RECORDS_MAX);
    let mut records = 0u64;
    let mut position = start;
    while position < high {
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
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let Some(key) = message.key() else { continue };
                batch.push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                records += 1;
                position = message.offset() + 1;
                if batch.len() >= RESTORE_BATCH_RECORDS_MAX {
                    let written = batch.len() as u64;
                    store.write_batch(std::mem::take(&mut batch))?;
                    progress(written, high - position);
                    if let Some(on_batch) = control.on_batch.as_mut() {
                        on_batch(position)?;
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {
                // Nothing more to read for now: the consumer's position steps over the
                // transaction markers that follow the last record.
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
        store.write_batch(batch)?;
    }
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

/// Deletes every key of `store`.
fn clear(store: &mut RocksDbStore) -> Result<()> {
    let keys = store.keys()?;
    if !keys.is_empty() {
        store.write_batch(keys.into_iter().map(|k| (k, None)).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpoint::read(dir.path()).unwrap().is_none());
        let checkpoint = Checkpoint {
            version: 1,
            offsets: BTreeMap::from([("payments".to_string(), 42)]),
        };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), Some(checkpoint));
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"{\"version\":1,\"off").unwrap();
        assert!(Checkpoint::read(dir.path()).is_err());
    }

    #[test]
    fn a_missing_or_corrupt_checkpoint_wipes_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("1_0");
        std::fs::create_dir_all(task.join("payments")).unwrap();
        let loaded = load_or_wipe(&task).unwrap();
        assert!(loaded.offsets.is_empty());
        assert!(!task.exists(), "stores of unknown position are wiped");
        std::fs::create_dir_all(task.join("payments")).unwrap();
        std::fs::write(task.join(CHECKPOINT_FILE), b"not json").unwrap();
        load_or_wipe(&task).unwrap();
        assert!(!task.exists());
    }
}
