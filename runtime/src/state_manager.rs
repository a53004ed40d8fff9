//! The one owner of a task's changelog offsets and checkpoint (Kafka Streams'
//! `ProcessorStateManager`).
//!
//! The checkpoint file `<task dir>/checkpoint.json` records, per store, the next changelog
//! offset the local RocksDB store reflects on disk. RocksDB writes skip its write-ahead
//! log (the changelog is the log), so a write is on disk once its store is flushed: after
//! each commit the offsets are noted ([`TaskCheckpoint::note`]), and once
//! [`CHECKPOINT_RECORDS_MIN`] changelog records have accumulated the task asks its stores
//! to flush in the background, keeps what was noted at that moment
//! ([`TaskCheckpoint::noted`]) and writes it once the flush has completed
//! ([`TaskCheckpoint::write`]); when the task closes it flushes, waits and writes what it
//! noted ([`TaskCheckpoint::write_noted`]) — as Kafka Streams checkpoints every 10,000
//! records.
//!
//! Why restoring from a checkpoint is always correct, even after `kill -9`: a store
//! write reaches RocksDB only after its Kafka transaction committed, so the local store
//! never holds anything the committed changelog does not; the checkpoint is written after
//! the flush of what it records has completed, so it never runs ahead of what the store
//! has on disk (RocksDB may have
//! flushed more on its own; that is ahead of the checkpoint, never behind). Replaying the
//! committed changelog from the checkpoint to its end therefore brings the store exactly
//! to the committed state (replaying a record the store already has rewrites the same
//! value, in changelog order). This is what Kafka Streams' KIP-892 aims at: no wipe after
//! an unclean shutdown. A crash costs the replay of about one to two times
//! [`CHECKPOINT_RECORDS_MIN`] records per task (the file trails the stores by at most
//! one flush).
//!
//! A restore flushes and writes its progress to the checkpoint every
//! `RESTORE_CHECKPOINT_RECORDS` records it applies, so a restart resumes near where it
//! stopped instead of starting over.
//!
//! "Corrupted task" has one meaning: a checkpoint that is missing, unreadable, or outside
//! the changelog's offsets. Then the task directory is wiped and every store is restored
//! from the beginning of its changelog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::Config;
use crate::{Error, Result};

/// Changelog records (summed over a task's stores) written since the checkpoint file
/// was last written that make the next commit flush the task's stores and write it.
pub const CHECKPOINT_RECORDS_MIN: i64 = 10_000;

/// Name of the checkpoint file in a task directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

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

/// The offsets noted at one moment ([`TaskCheckpoint::noted`]), waiting for the flush
/// that makes them true on disk.
#[derive(Debug, Clone)]
pub struct NotedCheckpoint {
    checkpoint: Checkpoint,
    /// Records noted up to that moment and not yet written.
    records: i64,
}

/// What a finished restore hands to the task: its stores, up to date with their
/// changelogs, and its checkpoint.
pub struct RestoredStores {
    pub checkpoint: TaskCheckpoint,
    /// `(store name, store)`, in the sub-topology's order.
    pub stores: Vec<(&'static str, paystream_state::RocksDbStore)>,
}

/// The checkpoint of one task, owned by its state manager: loaded (or the task wiped)
/// when the task is created, advanced as restores and commits move the stores forward.
#[derive(Debug)]
pub struct TaskCheckpoint {
    dir: PathBuf,
    /// The offsets the stores have reached, noted or written.
    checkpoint: Checkpoint,
    /// Changelog records noted since the file was last written.
    unwritten_records: i64,
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
        Ok(TaskCheckpoint {
            dir,
            checkpoint,
            unwritten_records: 0,
        })
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
    /// → offset), on disk: the caller has flushed them. Writes the file when an offset
    /// changed (a restore from the beginning after the changelog was emptied can move it
    /// back), with whatever was noted before.
    ///
    /// # Errors
    /// [`Error::StateDirectory`] when the file cannot be written; the previous one stays,
    /// which is still safe to restore from.
    pub fn advance<'a>(
        &mut self,
        next_offsets: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Result<()> {
        self.note(next_offsets);
        if self.unwritten_records > 0 {
            self.write_noted()?;
        }
        Ok(())
    }

    /// Notes that the stores reflect their changelogs up to these next offsets (store →
    /// offset) in RocksDB's memtables, without writing the file. Returns whether an
    /// offset changed.
    pub fn note<'a>(&mut self, next_offsets: impl IntoIterator<Item = (&'a str, i64)>) -> bool {
        let mut changed = false;
        for (store, offset) in next_offsets {
            let entry = self
                .checkpoint
                .offsets
                .entry(store.to_string())
                .or_insert(-1);
            if offset != *entry {
                self.unwritten_records += (offset - (*entry).max(0)).max(1);
                *entry = offset;
                changed = true;
            }
        }
        changed
    }

    /// Changelog records noted since the file was last written (an estimate: offsets
    /// also count transaction markers).
    pub fn unwritten_records(&self) -> i64 {
        self.unwritten_records
    }

    /// Writes what was noted to the file. The caller has flushed the task's stores.
    ///
    /// # Errors
    /// [`Error::StateDirectory`] when the file cannot be written; the previous one stays,
    /// which is still safe to restore from.
    pub fn write_noted(&mut self) -> Result<()> {
        let noted = self.noted();
        self.write(&noted)
    }

    /// What was noted so far, to write ([`Self::write`]) once a flush of the stores
    /// requested after this call has completed.
    pub fn noted(&self) -> NotedCheckpoint {
        NotedCheckpoint {
            checkpoint: self.checkpoint.clone(),
            records: self.unwritten_records,
        }
    }

    /// Writes `noted` to the file; the records noted after it stay unwritten. The caller
    /// has made the writes `noted` covers durable (a flush requested after
    /// [`Self::noted`], and completed).
    ///
    /// # Errors
    /// [`Error::StateDirectory`] when the file cannot be written; the previous one stays,
    /// which is still safe to restore from.
    pub fn write(&mut self, noted: &NotedCheckpoint) -> Result<()> {
        noted
            .checkpoint
            .write(&self.dir)
            .map_err(|source| Error::StateDirectory {
                path: self.dir.display().to_string(),
                source,
            })?;
        self.unwritten_records = (self.unwritten_records - noted.records).max(0);
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

    #[test]
    fn noted_offsets_reach_the_file_only_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("1_0");
        let mut checkpoint = TaskCheckpoint::load(task.clone()).unwrap();
        std::fs::create_dir_all(&task).unwrap();
        checkpoint.advance([("payments", 100)]).unwrap();
        let on_disk = |store: &str| {
            Checkpoint::read(&task)
                .unwrap()
                .and_then(|c| c.offsets.get(store).copied())
        };
        assert_eq!(on_disk("payments"), Some(100), "a restore's advance writes");
        assert!(checkpoint.note([("payments", 5_000), ("reconciliation", 7)]));
        assert!(!checkpoint.note([("payments", 5_000)]), "nothing new");
        assert_eq!(checkpoint.unwritten_records(), 4_900 + 7);
        assert_eq!(on_disk("payments"), Some(100), "a note does not write");
        assert_eq!(checkpoint.offset("payments"), Some(5_000));
        checkpoint.write_noted().unwrap();
        assert_eq!(on_disk("payments"), Some(5_000));
        assert_eq!(on_disk("reconciliation"), Some(7));
        assert_eq!(checkpoint.unwritten_records(), 0);

        // Noted before a flush in the background, written once it completed: the
        // offsets noted after it stay unwritten.
        checkpoint.note([("payments", 15_000)]);
        let before_flush = checkpoint.noted();
        checkpoint.note([("payments", 18_000)]);
        checkpoint.write(&before_flush).unwrap();
        assert_eq!(on_disk("payments"), Some(15_000), "what the flush covered");
        assert_eq!(checkpoint.offset("payments"), Some(18_000));
        assert_eq!(checkpoint.unwritten_records(), 3_000);
    }
}
