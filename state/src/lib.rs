//! paystream state stores.
//!
//! A state store is a small key-value interface ([`KeyValueStore`]); features are layers
//! that wrap a store rather than being mixed into it, as in Kafka Streams'
//! `Metered(Caching(ChangeLogging(RocksDB)))`:
//!
//! - [`RocksDbStore`]: the persistent store, one RocksDB instance per task and store,
//!   under `<state_dir>/<application_id>/<task_id>/<store_name>`.
//! - [`InMemoryStore`]: the same contract in a `BTreeMap`, for processor tests.
//! - [`TransactionalStore`]: keeps the writes of an open Kafka transaction in a write
//!   buffer; readers see them at once, RocksDB sees them only after [`TransactionalStore::commit`]
//!   (called once the Kafka transaction committed). [`TransactionalStore::abort`] drops them.
//!   The buffer is also what the runtime writes to the store's changelog topic (the
//!   change-logging layer: one record per key written in the transaction, a tombstone
//!   for a delete).
//! - [`TtlStore`]: time to live by stream time: values carry the stream time they were
//!   written at; expired keys read as absent and [`TtlStore::purge_expired`] deletes them
//!   through the layers below (so the changelog gets tombstones).
//! - [`MeteredStore`]: counts reads, writes, deletes and their time, for metrics.
//!
//! The runtime stacks them as `Metered(Ttl(Transactional(RocksDb)))`.
//!
//! Keys and values are bytes; processors choose their own encodings.

mod memory;
mod metered;
mod rocks;
mod transactional;
mod ttl;

#[cfg(test)]
mod contract;

pub use memory::InMemoryStore;
pub use metered::{MeteredStore, StoreMetrics};
pub use rocks::{BulkWrite, RocksDbStore, StoreReader};
pub use transactional::{PendingWrite, TransactionalStore};
pub use ttl::TtlStore;

/// Errors of state stores. Each names the store it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB failed to open, read or write.
    #[error("state store {store}: RocksDB error: {message}")]
    Rocks { store: String, message: String },
    /// The store's directory could not be created.
    #[error("state store {store}: cannot create directory {path}: {source}")]
    Directory {
        store: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A [`StoreReader`] read a store that has been closed (its task moved, or the
    /// instance stops).
    #[error("state store {store} is closed")]
    Closed { store: String },
}

impl StoreError {
    /// Store errors are never retried in place: the task is closed and its state restored.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// `Result` with [`StoreError`].
pub type Result<T> = std::result::Result<T, StoreError>;

/// One write to apply: `Some(value)` puts, `None` deletes.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// A key-value state store.
pub trait KeyValueStore: Send {
    /// The store's name (`idempotency`, `payments`, …), used in errors, changelog topic
    /// names and metrics.
    fn name(&self) -> &str;

    /// The value for `key`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key` (a no-op when absent).
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails.
    fn delete(&mut self, key: &[u8]) -> Result<()>;

    /// Applies all `writes` atomically: after a crash either all or none are visible.
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails; then none was applied.
    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()>;

    /// Up to `limit` entries whose key is `>= from`, in key order: a page of a scan.
    /// Callers continue from just after the last key returned; an empty page is the end.
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails.
    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// An estimate of the number of keys (exact for in-memory stores).
    fn approximate_len(&self) -> u64;

    /// True when the store holds no key. Layers that hide keys (expired ones) still
    /// count them until they are deleted.
    ///
    /// # Errors
    /// [`StoreError`] when the underlying storage fails.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.range(&[], 1)?.is_empty())
    }
}

/// The smallest key strictly after `key` (for paging with [`KeyValueStore::range`]).
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}
