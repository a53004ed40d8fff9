//! The open transaction as the stream thread keeps it: the input records read into it,
//! the offsets to commit for them, the timestamps whose end-to-end latency is observed
//! when it commits, and whether a commit was asked for. It ends in one of two ways —
//! [`OpenTransaction::committed`] or [`OpenTransaction::discarded`] (an abort or a
//! rebalance) — and each leaves it empty, so no part of it is reset by hand.

use rustc_hash::FxHashMap;

use crate::poison::RecordId;

/// A topic partition.
pub(super) type Partition = (String, i32);

/// The bookkeeping of the open Kafka transaction (the records' effects are in the
/// record collector and the stores' write buffers).
#[derive(Debug, Default)]
pub(super) struct OpenTransaction {
    /// Next offset to commit per partition.
    offsets: FxHashMap<Partition, i64>,
    /// Input records, in the order they were read; a record's position is the index
    /// the record collector keeps its delivery reports under.
    inputs: Vec<RecordId>,
    /// Timestamps of the records whose outputs leave the application.
    timestamps_ms: Vec<i64>,
    /// Commit after the record just processed (a suspect processed alone).
    commit_requested: bool,
}

/// What a committed transaction leaves to publish.
pub(super) struct Committed {
    /// Next offset committed per partition.
    pub offsets: FxHashMap<Partition, i64>,
    /// Timestamps of the records whose outputs left the application.
    pub timestamps_ms: Vec<i64>,
}

impl OpenTransaction {
    /// Input records read into it.
    pub fn records(&self) -> usize {
        self.inputs.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Its input records, in the order read.
    pub fn inputs(&self) -> &[RecordId] {
        &self.inputs
    }

    /// The next offsets to commit, per partition (a partition with queued records is
    /// moved up to the consumer's position before the commit).
    pub fn offsets_mut(&mut self) -> impl Iterator<Item = (&Partition, &mut i64)> {
        self.offsets.iter_mut()
    }

    /// Record `id`, read from `partition`, joins the transaction: its next offset is the
    /// partition's to commit. Returns its position among the inputs.
    pub fn read(&mut self, partition: Partition, id: RecordId) -> usize {
        self.offsets.insert(partition, id.offset + 1);
        self.inputs.push(id);
        self.inputs.len() - 1
    }

    /// The end-to-end latency of a record stamped `timestamp_ms` is observed at commit.
    pub fn observe_latency_of(&mut self, timestamp_ms: i64) {
        self.timestamps_ms.push(timestamp_ms);
    }

    /// Asks for a commit after the record being processed.
    pub fn request_commit(&mut self) {
        self.commit_requested = true;
    }

    /// Whether a commit was asked for; the request is taken.
    pub fn take_commit_request(&mut self) -> bool {
        std::mem::take(&mut self.commit_requested)
    }

    /// The transaction committed: what is left to publish; it is empty again.
    pub fn committed(&mut self) -> Committed {
        let committed = Committed {
            offsets: std::mem::take(&mut self.offsets),
            timestamps_ms: std::mem::take(&mut self.timestamps_ms),
        };
        *self = OpenTransaction::default();
        committed
    }

    /// The transaction was aborted or dropped at a rebalance: the partitions it read,
    /// to rewind; it is empty again.
    pub fn discarded(&mut self) -> Vec<Partition> {
        let partitions = std::mem::take(&mut self.offsets).into_keys().collect();
        *self = OpenTransaction::default();
        partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(topic: &str, partition: i32, offset: i64) -> RecordId {
        RecordId {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    #[test]
    fn a_commit_and_a_discard_each_leave_it_empty() {
        let mut transaction = OpenTransaction::default();
        assert_eq!(transaction.read(("t".into(), 0), id("t", 0, 7)), 0);
        assert_eq!(transaction.read(("t".into(), 0), id("t", 0, 8)), 1);
        assert_eq!(transaction.read(("t".into(), 1), id("t", 1, 3)), 2);
        transaction.observe_latency_of(5);
        transaction.request_commit();
        assert_eq!(transaction.records(), 3);
        let committed = transaction.committed();
        assert_eq!(committed.offsets[&("t".to_string(), 0)], 9);
        assert_eq!(committed.offsets[&("t".to_string(), 1)], 4);
        assert_eq!(committed.timestamps_ms, [5]);
        assert!(transaction.is_empty());
        assert!(!transaction.take_commit_request());

        transaction.read(("u".into(), 2), id("u", 2, 0));
        transaction.request_commit();
        assert_eq!(transaction.discarded(), [("u".to_string(), 2)]);
        assert!(transaction.is_empty());
        assert!(!transaction.take_commit_request());
        assert_eq!(transaction.committed().offsets.len(), 0);
    }
}
