//! The batch model: what one record of the sink's input topics decoded to, a batch of
//! them with the offsets it reaches, what writing it did, and the records set aside.

use super::*;

/// What one record of the sink's input topics decoded to.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A journal entry (`ledger_entries`).
    Entry(JournalEntry),
    /// A payment status change (`payment_status`).
    Status(PaymentStatusChanged),
    /// A reconciliation exception (`reconciliation_exceptions`).
    Exception(ReconciliationException),
    /// The record did not decode; the message says why. It is dead-lettered, never
    /// written.
    Undecodable(String),
}

/// One record of a batch: where it was read, with its original key and value bytes (for
/// its dead letter), and what it decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    pub origin: Origin,
    pub content: Content,
}

/// Records to write in one database transaction, in the order they were read, with the
/// offsets they advance to.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub records: Vec<BatchRecord>,
    /// Next offset to read per `(topic, partition)` once this batch is written.
    pub next_offsets: BTreeMap<(String, i32), i64>,
}

impl Batch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record and advances no offset.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.next_offsets.is_empty()
    }
}

/// What one batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Journal entries inserted (entries already present were skipped).
    pub entries_written: u64,
    /// Journal entries skipped because their id was already in the ledger with the same
    /// content (a replay). One with different content is dead-lettered instead.
    pub entries_skipped: u64,
    pub postings_written: u64,
    pub statuses_written: u64,
    /// Reconciliation exceptions inserted (ones already present were skipped).
    pub exceptions_written: u64,
    /// Records dead-lettered instead of written (see [`Rejection`]).
    pub dead_lettered: u64,
}

impl BatchOutcome {
    pub(super) fn add(&mut self, other: BatchOutcome) {
        self.entries_written += other.entries_written;
        self.entries_skipped += other.entries_skipped;
        self.postings_written += other.postings_written;
        self.statuses_written += other.statuses_written;
        self.exceptions_written += other.exceptions_written;
        self.dead_lettered += other.dead_lettered;
    }
}

/// A record of a batch that is dead-lettered instead of written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its index in [`Batch::records`].
    pub index: usize,
    /// Always [`DeadLetterReason::SinkRejected`] today; stored and counted per reason.
    pub reason: DeadLetterReason,
    /// The SQLSTATE PostgreSQL refused its rows with; `None` when the sink refused it
    /// before writing (it did not decode, or does not balance).
    pub sqlstate: Option<String>,
    /// Why: PostgreSQL's message or the sink's check, as every dead letter carries it
    /// ([`sanitize_error`]: card numbers masked, credentials redacted, NUL bytes removed,
    /// bounded).
    pub error: String,
}

impl Rejection {
    pub(super) fn new(index: usize, sqlstate: Option<String>, error: &str) -> Self {
        Rejection {
            index,
            reason: DeadLetterReason::SinkRejected,
            sqlstate,
            error: sanitize_error(error),
        }
    }
}
