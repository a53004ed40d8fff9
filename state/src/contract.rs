//! The contract every [`KeyValueStore`] implementation meets, as one test suite run
//! against each (Kafka Streams' `AbstractKeyValueStoreTest`). Public so that layers in
//! other crates can run it too.

use crate::KeyValueStore;

/// Runs the contract against fresh stores made by `make`.
///
/// # Panics
/// On the first broken rule, naming it.
pub fn check_store(make: &mut dyn FnMut() -> Box<dyn KeyValueStore>) {
    // Missing keys read as None.
    let store = make();
    assert_eq!(store.get(b"absent").unwrap(), None, "absent key");

    // Put then get; overwrite; delete; delete of an absent key.
    let mut store = make();
    store.put(b"k", b"v1").unwrap();
    assert_eq!(
        store.get(b"k").unwrap(),
        Some(b"v1".to_vec()),
        "put then get"
    );
    store.put(b"k", b"v2").unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"v2".to_vec()), "overwrite");
    store.delete(b"k").unwrap();
    assert_eq!(store.get(b"k").unwrap(), None, "delete");
    store.delete(b"never-there").unwrap();

    // Empty values and binary keys are legal.
    let mut store = make();
    store.put(&[0, 255, 7], b"").unwrap();
    assert_eq!(
        store.get(&[0, 255, 7]).unwrap(),
        Some(Vec::new()),
        "empty value"
    );

    // A batch applies puts and deletes in order; the last write to a key wins.
    let mut store = make();
    store.put(b"gone", b"x").unwrap();
    store
        .write_batch(vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"a".to_vec(), Some(b"2".to_vec())),
            (b"gone".to_vec(), None),
            (b"b".to_vec(), Some(b"3".to_vec())),
        ])
        .unwrap();
    assert_eq!(
        store.get(b"a").unwrap(),
        Some(b"2".to_vec()),
        "batch last write"
    );
    assert_eq!(store.get(b"gone").unwrap(), None, "batch delete");
    assert_eq!(store.get(b"b").unwrap(), Some(b"3".to_vec()), "batch put");

    // A range is a page in key order from a key on; paging with key_after visits each
    // key once.
    let mut store = make();
    for k in [b"k3", b"k1", b"k2", b"k5", b"k4"] {
        store.put(k, k).unwrap();
    }
    let page = store.range(b"k2", 2).unwrap();
    assert_eq!(
        page,
        vec![
            (b"k2".to_vec(), b"k2".to_vec()),
            (b"k3".to_vec(), b"k3".to_vec())
        ],
        "range page"
    );
    let mut seen = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = store.range(&from, 2).unwrap();
        if page.is_empty() {
            break;
        }
        from = crate::key_after(&page.last().unwrap().0);
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(seen.len(), 5, "paging visits every key once");

    // Size is reported (estimates may lag, so only check for in-range values).
    let mut store = make();
    for i in 0..100u32 {
        store.put(&i.to_be_bytes(), b"v").unwrap();
    }
    assert!(
        store.approximate_len() <= 200,
        "approximate_len out of range"
    );
    assert!(!store.name().is_empty(), "store has a name");
}
