use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::{KeyValueStore, Result, Write};

/// Counters of one store's operations, shared with whoever exports them (the runtime's
/// Prometheus metrics). Times are nanoseconds.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    pub ranges: AtomicU64,
    pub get_nanos: AtomicU64,
    pub write_nanos: AtomicU64,
}

/// A metering layer: counts every operation and the time it took.
#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
    metrics: Arc<StoreMetrics>,
}

impl<S: KeyValueStore> MeteredStore<S> {
    /// Wraps `inner`; its counters are in [`metrics`](Self::metrics).
    pub fn new(inner: S) -> Self {
        MeteredStore {
            inner,
            metrics: Arc::new(StoreMetrics::default()),
        }
    }

    /// The counters, shared.
    pub fn metrics(&self) -> Arc<StoreMetrics> {
        self.metrics.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl<S: KeyValueStore> KeyValueStore for MeteredStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let start = Instant::now();
        let value = self.inner.get(key);
        self.metrics.gets.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .get_nanos
            .fetch_add(nanos_since(start), Ordering::Relaxed);
        value
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let start = Instant::now();
        let result = self.inner.put(key, value);
        self.metrics.puts.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .write_nanos
            .fetch_add(nanos_since(start), Ordering::Relaxed);
        result
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        let start = Instant::now();
        let result = self.inner.delete(key);
        self.metrics.deletes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .write_nanos
            .fetch_add(nanos_since(start), Ordering::Relaxed);
        result
    }

    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()> {
        let start = Instant::now();
        let (puts, deletes) =
            writes.iter().fold(
                (0, 0),
                |(p, d), (_, v)| {
                    if v.is_some() { (p + 1, d) } else { (p, d + 1) }
                },
            );
        let result = self.inner.write_batch(writes);
        self.metrics.puts.fetch_add(puts, Ordering::Relaxed);
        self.metrics.deletes.fetch_add(deletes, Ordering::Relaxed);
        self.metrics
            .write_nanos
            .fetch_add(nanos_since(start), Ordering::Relaxed);
        result
    }

    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.metrics.ranges.fetch_add(1, Ordering::Relaxed);
        self.inner.range(from, limit)
    }

    fn approximate_len(&self) -> u64 {
        self.inner.approximate_len()
    }

    fn is_empty(&self) -> Result<bool> {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;

    #[test]
    fn meets_the_store_contract() {
        crate::contract::check_store(&mut || {
            Box::new(MeteredStore::new(InMemoryStore::new("contract")))
        });
    }

    #[test]
    fn counts_operations() {
        let mut store = MeteredStore::new(InMemoryStore::new("s"));
        store.put(b"a", b"1").unwrap();
        store.get(b"a").unwrap();
        store.get(b"b").unwrap();
        store.delete(b"a").unwrap();
        let m = store.metrics();
        assert_eq!(m.puts.load(Ordering::Relaxed), 1);
        assert_eq!(m.gets.load(Ordering::Relaxed), 2);
        assert_eq!(m.deletes.load(Ordering::Relaxed), 1);
    }
}
