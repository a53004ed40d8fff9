use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rocksdb::{BlockBasedOptions, DB, Options, WriteBatch, WriteOptions};

use crate::{KeyValueStore, Result, StoreError, Write};

/// A [`KeyValueStore`] in its own RocksDB instance (one per task and store).
///
/// Writes skip RocksDB's write-ahead log: the store's changelog topic is its log, as in
/// Kafka Streams. A write that returned is in the memtable and survives a process crash
/// only once [`flush`](Self::flush) has written it to an SST file; the runtime writes a
/// task's checkpoint only after flushing its stores, so a restart replays the changelog
/// from a point every store on disk has reached (docs/architecture.md, "State:
/// changelogs, checkpoints, restore").
pub struct RocksDbStore {
    name: String,
    path: PathBuf,
    /// Shared with the [`StoreReader`]s handed out, which hold it only while they read.
    db: Arc<DB>,
    write_options: WriteOptions,
}

/// Longest dropping a [`RocksDbStore`] waits for reads of its [`StoreReader`]s in flight
/// (each a single point look-up, microseconds).
const READERS_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl RocksDbStore {
    /// Opens (creating if missing) the store `name` in directory `path`.
    ///
    /// # Errors
    /// [`StoreError::Directory`] when `path` cannot be created, [`StoreError::Rocks`] when
    /// RocksDB cannot open it (e.g. another process holds its lock).
    pub fn open(name: &str, path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Directory {
            store: name.to_string(),
            path: path.display().to_string(),
            source,
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Zstd);
        // A bloom filter per SST file (10 bits per key, about 1 % false positives), as
        // Kafka Streams configures: a look-up of a key the store does not have (every new
        // idempotency key, every new payment) skips the files that cannot hold it.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        options.set_block_based_table_factory(&table);
        // Small stores per task: keep RocksDB's footprint modest.
        options.set_write_buffer_size(16 * 1024 * 1024);
        options.set_max_open_files(256);
        options.set_keep_log_file_num(2);
        let db = DB::open(&options, path).map_err(|e| rocks_error(name, e))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbStore {
            name: name.to_string(),
            path: path.to_path_buf(),
            db: Arc::new(db),
            write_options,
        })
    }

    /// A handle that reads this store from another thread (interactive queries) for as
    /// long as the store is open; once it is closed, reads answer
    /// [`StoreError::Closed`]. Reads see what was written to RocksDB: in a task's store,
    /// what the task's committed transactions wrote (the open transaction's writes wait
    /// in [`crate::TransactionalStore`] above this layer).
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            name: self.name.clone(),
            db: Arc::downgrade(&self.db),
        }
    }

    /// Every key, in key order (for wiping a store before a full restore).
    ///
    /// # Errors
    /// [`StoreError::Rocks`] when iteration fails.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.db
            .iterator(rocksdb::IteratorMode::Start)
            .map(|item| {
                item.map(|(key, _)| key.to_vec())
                    .map_err(|e| rocks_error(&self.name, e))
            })
            .collect()
    }

    /// Where the store lives on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every write so far durable: writes the memtables to SST files and waits
    /// (RocksDB's `Flush`; nothing to do when they are empty).
    ///
    /// # Errors
    /// [`StoreError::Rocks`] when the flush fails.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| rocks_error(&self.name, e))
    }

    /// Starts writing the memtables to SST files and returns without waiting (RocksDB's
    /// `Flush` with `wait = false`): the current memtable is sealed now, so every write
    /// made before this call is on disk once [`Self::flushed`] turns true.
    ///
    /// # Errors
    /// [`StoreError::Rocks`] when RocksDB refuses the flush.
    pub fn flush_in_background(&self) -> Result<()> {
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(false);
        self.db
            .flush_opt(&options)
            .map_err(|e| rocks_error(&self.name, e))
    }

    /// True when no sealed memtable waits for its flush (RocksDB's
    /// `rocksdb.num-immutable-mem-table` is 0): every write made before the last
    /// [`Self::flush_in_background`] is on disk.
    ///
    /// # Errors
    /// [`StoreError::Rocks`] when RocksDB cannot report the property.
    pub fn flushed(&self) -> Result<bool> {
        let sealed = self
            .db
            .property_int_value("rocksdb.num-immutable-mem-table")
            .map_err(|e| rocks_error(&self.name, e))?;
        Ok(sealed.unwrap_or(0) == 0)
    }

    /// Applies `batch` atomically, as [`KeyValueStore::write_batch`] does, without the
    /// owned key and value copies that call takes: for bulk loads such as a restore.
    ///
    /// # Errors
    /// [`StoreError::Rocks`] when RocksDB refuses the write.
    pub fn write_bulk(&mut self, batch: BulkWrite) -> Result<()> {
        self.db
            .write_opt(batch.batch, &self.write_options)
            .map_err(|e| rocks_error(&self.name, e))
    }
}

impl Drop for RocksDbStore {
    /// Waits (at most [`READERS_DRAIN_TIMEOUT`]) for the reads of [`StoreReader`]s in
    /// flight, so that RocksDB is closed — and its lock on the directory released — when
    /// this returns: the next owner of the store (a task taking over from a standby)
    /// opens it right after.
    fn drop(&mut self) {
        let started = Instant::now();
        while Arc::strong_count(&self.db) > 1 && started.elapsed() < READERS_DRAIN_TIMEOUT {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Reads one [`RocksDbStore`] from any thread, without keeping it open
/// ([`RocksDbStore::reader`]).
#[derive(Clone)]
pub struct StoreReader {
    name: String,
    db: Weak<DB>,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("name", &self.name)
            .finish()
    }
}

impl StoreReader {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value RocksDB holds for `key`, as the layers above it wrote it (for a
    /// task's stores, with the write-time prefix of [`crate::TtlStore`]: see
    /// [`crate::TtlStore::split_stored_value`]).
    ///
    /// # Errors
    /// [`StoreError::Closed`] once the store is closed; [`StoreError::Rocks`] when the
    /// read fails.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db.upgrade().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })?;
        db.get(key).map_err(|e| rocks_error(&self.name, e))
    }
}

/// Writes gathered for one [`RocksDbStore::write_bulk`], copied once, straight into
/// RocksDB's write batch.
#[derive(Default)]
pub struct BulkWrite {
    batch: WriteBatch,
}

impl BulkWrite {
    /// Sets `key` to `value`, or removes `key` when `value` is `None` (a changelog
    /// tombstone).
    pub fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        match value {
            Some(value) => self.batch.put(key, value),
            None => self.batch.delete(key),
        }
    }

    /// Writes gathered so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// True when nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

fn rocks_error(store: &str, e: rocksdb::Error) -> StoreError {
    StoreError::Rocks {
        store: store.to_string(),
        message: e.into_string(),
    }
}

impl KeyValueStore for RocksDbStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| rocks_error(&self.name, e))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db
            .put_opt(key, value, &self.write_options)
            .map_err(|e| rocks_error(&self.name, e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.db
            .delete_opt(key, &self.write_options)
            .map_err(|e| rocks_error(&self.name, e))
    }

    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| rocks_error(&self.name, e))
    }

    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator(rocksdb::IteratorMode::From(
                from,
                rocksdb::Direction::Forward,
            ))
            .take(limit)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| rocks_error(&self.name, e))
            })
            .collect()
    }

    fn approximate_len(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_reads_the_store_while_it_is_open_and_lets_it_be_opened_again_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbStore::open("read", dir.path()).unwrap();
        store.put(b"k", b"v1").unwrap();
        let reader = store.reader();
        let from_thread = {
            let reader = reader.clone();
            std::thread::spawn(move || reader.get(b"k").unwrap())
                .join()
                .unwrap()
        };
        assert_eq!(from_thread, Some(b"v1".to_vec()));
        assert_eq!(reader.get(b"absent").unwrap(), None);
        drop(store);
        assert!(matches!(reader.get(b"k"), Err(StoreError::Closed { .. })));
        // Closed means RocksDB let go of the directory: the next owner opens it.
        let store = RocksDbStore::open("read", dir.path()).unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(b"v1".to_vec()));
    }

    #[test]
    fn a_background_flush_writes_every_earlier_write_to_an_sst_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbStore::open("flush", dir.path()).unwrap();
        let level0_files = |store: &RocksDbStore| {
            store
                .db
                .property_int_value("rocksdb.num-files-at-level0")
                .unwrap()
                .unwrap_or(0)
        };
        let mut batch = BulkWrite::default();
        for i in 0..1_000u32 {
            batch.write(&i.to_be_bytes(), Some(b"value"));
        }
        store.write_bulk(batch).unwrap();
        assert_eq!(
            level0_files(&store),
            0,
            "the writes are in the memtable only"
        );
        store.flush_in_background().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !store.flushed().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "the flush did not complete"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            level0_files(&store),
            1,
            "the sealed memtable became one SST file"
        );
        assert_eq!(
            store.get(&7u32.to_be_bytes()).unwrap().as_deref(),
            Some(&b"value"[..])
        );
    }

    #[test]
    fn meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        crate::contract::check_store(&mut || {
            n += 1;
            Box::new(RocksDbStore::open("contract", &dir.path().join(n.to_string())).unwrap())
        });
    }

    #[test]
    fn keeps_flushed_writes_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = RocksDbStore::open("s", dir.path()).unwrap();
            store
                .write_batch(vec![(b"a".to_vec(), Some(b"1".to_vec()))])
                .unwrap();
            store.flush().unwrap();
        }
        let store = RocksDbStore::open("s", dir.path()).unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.keys().unwrap(), vec![b"a".to_vec()]);
    }
}
