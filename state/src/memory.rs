use std::collections::BTreeMap;

use crate::{KeyValueStore, Result, Write};

/// A [`KeyValueStore`] in a `BTreeMap`: no persistence. For processor tests and the
/// in-memory test driver.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStore {
    name: String,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl InMemoryStore {
    /// An empty store called `name`.
    pub fn new(name: &str) -> Self {
        InMemoryStore {
            name: name.to_string(),
            entries: BTreeMap::new(),
        }
    }
}

impl KeyValueStore for InMemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.entries.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.entries.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.entries.remove(key);
        Ok(())
    }

    fn write_batch(&mut self, writes: Vec<Write>) -> Result<()> {
        for (key, value) in writes {
            match value {
                Some(v) => self.entries.insert(key, v),
                None => self.entries.remove(&key),
            };
        }
        Ok(())
    }

    fn range(&self, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .entries
            .range(from.to_vec()..)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn approximate_len(&self) -> u64 {
        self.entries.len() as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meets_the_store_contract() {
        crate::contract::check_store(&mut || Box::new(super::InMemoryStore::new("contract")));
    }
}
