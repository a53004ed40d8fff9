use std::collections::BTreeMap;

use crate::{KeyValueStore, Result, Write};

/// A write made during the open Kafka transaction, not yet in the inner store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite<'a> {
    pub key: &'a [u8],
    /// `None` is a delete (a tombstone in the changelog).
    pub value: Option<&'a [u8]>,
}

/// A layer that keeps writes in a buffer until the Kafka transaction they belong to has
/// committed (docs/architecture.md, "Exactly once"): reads see the buffer first, then the inner
/// store. [`commit`](Self::commit) applies the buffer atomically;
/// [`abort`](Self::abort) discards it. Only the last write per key is kept, so a key
/// written many times in one commit interval costs one changelog record.
#[derive(Debug)]
pub struct TransactionalStore<S> {
    inner: S,
    buffer: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<S: KeyValueStore> TransactionalStore<S> {
    /// Wraps `inner` with an empty write buffer.
    pub fn new(inner: S) -> Self {
        TransactionalStore {
            inner,
            buffer: BTreeMap::new(),
        }
    }

    /// The writes of the open transaction, in key order.
    pub fn pending(&self) -> impl Iterator<Item = PendingWrite<'_>> {
        self.buffer.iter().map(|(key, value)| PendingWrite {
            key,
            value: value.as_deref(),
        })
    }

    /// Number of keys written in the open transaction.
    pub fn pending_len(&self) -> usize {
        self.buffer.len()
    }

    /// Applies the open transaction's writes to the inner store, atomically, and empties
    /// the buffer.
    ///
    /// # Errors
    /// [`crate::StoreError`] from the inner store. The buffer is then dropped too: a
    /// store that failed is never written again in place (the runtime closes its task
    /// and restores it from the changelog, see [`crate::StoreError::is_retriable`]).
    pub fn commit(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let writes: Vec<Write> = std::mem::take(&mut self.buffer).into_iter().collect();
        self.inner.write_batch(writes)
    }

    /// Discards the open transaction's writes.
    pub fn abort(&mut self) {
        self.buffer.clear();
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: KeyValueStore> KeyValueStore for TransactionalStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.buffer.get(key) {
            Some(buffered) => Ok(buffered.clone()),
            None => self.inner.get(key),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buffer.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.buffer.insert(key.to_vec(), None);
        Ok(())
    }

    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()> {
        self.buffer.extend(writes);
        Ok(())
    }

    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // Read enough of the inner store to make up for keys the buffer deletes (an
        // in-memory count; only the deletes cost extra inner reads).
        let buffered: Vec<_> = self.buffer.range(from.to_vec()..).collect();
        let deletes = buffered.iter().filter(|(_, v)| v.is_none()).count();
        let inner = self.inner.range(from, limit + deletes)?;
        let inner_exhausted = inner.len() < limit + deletes;
        let horizon = if inner_exhausted {
            None
        } else {
            inner.last().map(|(k, _)| k.clone())
        };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            inner.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (key, value) in buffered {
            // Beyond the inner page, keys of the inner store may be missing: stop there.
            if horizon.as_ref().is_some_and(|h| key > h) {
                break;
            }
            merged.insert(key.clone(), value.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    fn approximate_len(&self) -> u64 {
        self.inner.approximate_len() + self.buffer.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;

    #[test]
    fn meets_the_store_contract_once_committed() {
        crate::contract::check_store(&mut || {
            Box::new(TransactionalStore::new(InMemoryStore::new("contract")))
        });
    }

    #[test]
    fn writes_reach_the_inner_store_only_on_commit() {
        let mut store = TransactionalStore::new(InMemoryStore::new("s"));
        store.put(b"k", b"v").unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.inner().get(b"k").unwrap(), None);
        assert_eq!(store.pending().count(), 1);
        store.commit().unwrap();
        assert_eq!(store.inner().get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.pending_len(), 0);
    }

    #[test]
    fn abort_discards_writes_and_deletes() {
        let mut store = TransactionalStore::new(InMemoryStore::new("s"));
        store.put(b"a", b"1").unwrap();
        store.commit().unwrap();
        store.delete(b"a").unwrap();
        store.put(b"b", b"2").unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
        store.abort();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_range_sees_buffered_writes_and_deletes() {
        let mut store = TransactionalStore::new(InMemoryStore::new("s"));
        for k in [b"a", b"b", b"c", b"d"] {
            store.put(k, b"old").unwrap();
        }
        store.commit().unwrap();
        store.delete(b"b").unwrap();
        store.put(b"c", b"new").unwrap();
        store.put(b"e", b"new").unwrap();
        let page = store.range(b"a", 3).unwrap();
        let keys: Vec<&[u8]> = page.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"a"[..], b"c", b"d"]);
        assert_eq!(page[1].1, b"new".to_vec());
        let rest = store.range(b"d\0", 10).unwrap();
        assert_eq!(rest, vec![(b"e".to_vec(), b"new".to_vec())]);
    }

    #[test]
    fn keeps_only_the_last_write_per_key() {
        let mut store = TransactionalStore::new(InMemoryStore::new("s"));
        store.put(b"a", b"1").unwrap();
        store.put(b"a", b"2").unwrap();
        store.delete(b"a").unwrap();
        let pending: Vec<_> = store.pending().collect();
        assert_eq!(
            pending,
            vec![PendingWrite {
                key: b"a",
                value: None
            }]
        );
    }
}
