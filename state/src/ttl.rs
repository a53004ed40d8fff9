use crate::{KeyValueStore, Result, StoreError, Write, key_after};

/// Bytes of the write-time prefix of every value in a TTL store.
const TIME_PREFIX_BYTES: usize = 8;

/// A time-to-live layer by stream time (docs/architecture.md: idempotency keys are remembered for
/// 72 h of stream time). Each value is stored as the stream time it was written at
/// (8 bytes, big-endian milliseconds) followed by the value. A key older than the TTL
/// reads as absent; [`purge_expired`](Self::purge_expired) deletes expired keys through
/// the inner layers, a page at a time, so they are removed locally and tombstoned in the
/// changelog within the open transaction.
///
/// Stream time only moves forward ([`advance_stream_time`](Self::advance_stream_time)),
/// so expiry does not depend on the wall clock and a replay expires the same keys.
#[derive(Debug)]
pub struct TtlStore<S> {
    inner: S,
    ttl_ms: i64,
    stream_time_ms: i64,
    /// Where the next purge page starts; wraps around at the end of the store.
    cursor: Vec<u8>,
}

impl<S> TtlStore<S> {
    /// Splits a value as this layer stores it into the stream time it was written at
    /// (milliseconds) and the value; `None` when it is shorter than the prefix. For
    /// readers below this layer ([`crate::StoreReader`]), which cannot tell expiry: a
    /// key past its TTL that is not purged yet is still returned.
    pub fn split_stored_value(stored: &[u8]) -> Option<(i64, &[u8])> {
        if stored.len() < TIME_PREFIX_BYTES {
            return None;
        }
        let (time, value) = stored.split_at(TIME_PREFIX_BYTES);
        Some((i64::from_be_bytes(time.try_into().ok()?), value))
    }
}

impl<S: KeyValueStore> TtlStore<S> {
    /// Wraps `inner`, expiring keys `ttl_ms` of stream time after they were written.
    pub fn new(inner: S, ttl_ms: i64) -> Self {
        TtlStore {
            inner,
            ttl_ms,
            stream_time_ms: i64::MIN,
            cursor: Vec::new(),
        }
    }

    /// Moves stream time forward to `stream_time_ms` (never backward).
    pub fn advance_stream_time(&mut self, stream_time_ms: i64) {
        self.stream_time_ms = self.stream_time_ms.max(stream_time_ms);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn expired(&self, written_at_ms: i64) -> bool {
        self.stream_time_ms != i64::MIN
            && self.stream_time_ms.saturating_sub(written_at_ms) > self.ttl_ms
    }

    fn decode<'v>(&self, key: &[u8], stored: &'v [u8]) -> Result<(i64, &'v [u8])> {
        if stored.len() < TIME_PREFIX_BYTES {
            return Err(StoreError::Rocks {
                store: self.inner.name().to_string(),
                message: format!(
                    "value of key {} has no TTL prefix ({} bytes)",
                    String::from_utf8_lossy(key),
                    stored.len()
                ),
            });
        }
        let (time, value) = stored.split_at(TIME_PREFIX_BYTES);
        let written_at_ms = i64::from_be_bytes(time.try_into().expect("8 bytes"));
        Ok((written_at_ms, value))
    }

    fn encode(&self, value: &[u8]) -> Vec<u8> {
        Self::stored_value(self.stream_time_ms.max(0), value)
    }

    /// `value` as this layer stores it (and as its changelog carries it): the stream time
    /// it was written at, 8 bytes big-endian milliseconds, then the value.
    pub fn stored_value(written_at_ms: i64, value: &[u8]) -> Vec<u8> {
        let mut stored = Vec::with_capacity(TIME_PREFIX_BYTES + value.len());
        stored.extend_from_slice(&written_at_ms.to_be_bytes());
        stored.extend_from_slice(value);
        stored
    }

    /// Deletes expired keys, examining at most `keys_max` keys from where the previous
    /// purge stopped. Returns how many were deleted.
    ///
    /// # Errors
    /// [`StoreError`] from the inner store.
    pub fn purge_expired(&mut self, keys_max: usize) -> Result<u64> {
        let page = self.inner.range(&self.cursor, keys_max)?;
        self.cursor = match page.last() {
            Some((last, _)) if page.len() == keys_max => key_after(last),
            _ => Vec::new(),
        };
        let mut deleted = 0;
        for (key, stored) in page {
            let (written_at_ms, _) = self.decode(&key, &stored)?;
            if self.expired(written_at_ms) {
                self.inner.delete(&key)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl<S: KeyValueStore> KeyValueStore for TtlStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.inner.get(key)? {
            None => Ok(None),
            Some(stored) => {
                let (written_at_ms, value) = self.decode(key, &stored)?;
                Ok((!self.expired(written_at_ms)).then(|| value.to_vec()))
            }
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let stored = self.encode(value);
        self.inner.put(key, &stored)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.inner.delete(key)
    }

    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()> {
        let encoded = writes
            .into_iter()
            .map(|(k, v)| {
                let v = v.map(|v| self.encode(&v));
                (k, v)
            })
            .collect();
        self.inner.write_batch(encoded)
    }

    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut live = Vec::new();
        for (key, stored) in self.inner.range(from, limit)? {
            let (written_at_ms, value) = self.decode(&key, &stored)?;
            if !self.expired(written_at_ms) {
                live.push((key, value.to_vec()));
            }
        }
        Ok(live)
    }

    fn approximate_len(&self) -> u64 {
        self.inner.approximate_len()
    }

    /// Expired keys not purged yet count.
    fn is_empty(&self) -> Result<bool> {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemoryStore, TransactionalStore};

    #[test]
    fn meets_the_store_contract() {
        crate::contract::check_store(&mut || {
            Box::new(TtlStore::new(InMemoryStore::new("contract"), 1_000))
        });
    }

    #[test]
    fn keys_expire_by_stream_time_not_wall_clock() {
        let mut store = TtlStore::new(InMemoryStore::new("s"), 1_000);
        store.advance_stream_time(10_000);
        store.put(b"k", b"v").unwrap();
        store.advance_stream_time(11_000);
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()), "at the TTL");
        store.advance_stream_time(11_001);
        assert_eq!(store.get(b"k").unwrap(), None, "past the TTL");
        assert!(
            !store.is_empty().unwrap(),
            "an expired key counts until it is purged"
        );
        store.advance_stream_time(5);
        assert_eq!(
            store.get(b"k").unwrap(),
            None,
            "stream time never goes back"
        );
    }

    #[test]
    fn purging_deletes_expired_keys_through_the_changelog_layer() {
        let mut store = TtlStore::new(TransactionalStore::new(InMemoryStore::new("s")), 100);
        store.advance_stream_time(0);
        store.put(b"old-1", b"x").unwrap();
        store.put(b"old-2", b"x").unwrap();
        store.advance_stream_time(150);
        store.put(b"new", b"y").unwrap();
        store.inner_mut().commit().unwrap();
        store.advance_stream_time(200);
        // Pages of one key: the cursor walks the store and wraps around.
        let mut deleted = 0;
        for _ in 0..4 {
            deleted += store.purge_expired(1).unwrap();
        }
        assert_eq!(deleted, 2);
        let tombstones: Vec<_> = store
            .inner()
            .pending()
            .filter(|w| w.value.is_none())
            .map(|w| w.key.to_vec())
            .collect();
        assert_eq!(tombstones, vec![b"old-1".to_vec(), b"old-2".to_vec()]);
        assert_eq!(store.get(b"new").unwrap(), Some(b"y".to_vec()));
    }
}
