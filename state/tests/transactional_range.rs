//! Property test of the transactional layer's paged range: whatever is committed below
//! and whatever the open transaction puts and deletes, a page of `range(from, limit)` is
//! exactly the first `limit` live keys from `from` of the merged view.

use std::collections::BTreeMap;

use paystream_state::{InMemoryStore, KeyValueStore, TransactionalStore};
use proptest::prelude::*;

/// A write of the open transaction: `Some` puts, `None` deletes.
type Op = (u8, Option<u8>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn a_page_is_the_first_live_keys_of_the_merged_view(
        committed in prop::collection::btree_map(0u8..64, any::<u8>(), 0..40),
        open in prop::collection::vec((0u8..64, prop::option::of(any::<u8>())), 0..40),
        from in 0u8..64,
        limit in 1usize..12,
    ) {
        let mut inner = InMemoryStore::new("p");
        let mut model: BTreeMap<u8, u8> = BTreeMap::new();
        for (k, v) in &committed {
            inner.put(&[*k], &[*v]).unwrap();
            model.insert(*k, *v);
        }
        let mut store = TransactionalStore::new(inner);
        for (k, v) in &open as &Vec<Op> {
            match v {
                Some(v) => {
                    store.put(&[*k], &[*v]).unwrap();
                    model.insert(*k, *v);
                }
                None => {
                    store.delete(&[*k]).unwrap();
                    model.remove(k);
                }
            }
        }
        let page = store.range(&[from], limit).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model
            .range(from..)
            .take(limit)
            .map(|(k, v)| (vec![*k], vec![*v]))
            .collect();
        prop_assert_eq!(page, expected);
    }
}
