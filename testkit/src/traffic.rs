//! The ingress simulator's traffic plan: a deterministic (seeded) stream of payment
//! events with duplicate retries, idempotency-key conflicts, declines, manual captures,
//! voids, settlements, refunds, chargebacks, movements the payment does not allow,
//! out-of-order arrival and malformed records, plus the outcome a correct pipeline
//! must reach on it. The outcome is computed from the plan alone — never from the
//! pipeline — so tests and the demo can compare the two exactly.
//!
//! - [`plan()`] (`traffic/plan.rs`) generates the records, in send order, from
//!   [`TrafficOptions`];
//! - [`ExpectedOutcome`] (`traffic/expected.rs`) is the oracle: the journal entries,
//!   postings, balances, statuses, dead letters and reconciliation exceptions those
//!   records must produce, filled in as each record is planned;
//! - [`PlannedRecord`] and [`InputTopic`] (`traffic/records.rs`) are what is sent where.

mod expected;
mod plan;
mod records;

pub use expected::ExpectedOutcome;
pub use plan::{Plan, plan};
pub use records::{InputTopic, PlannedRecord};

/// Rates and sizes of generated traffic. Rates are probabilities in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficOptions {
    /// Input records to generate, at least; whole payments are generated, so the exact
    /// number can be a few records more.
    pub count: u64,
    pub seed: u64,
    /// Event time of the first payment, milliseconds since the Unix epoch; later events
    /// follow at 20 ms per payment, settlements a day later. See [`default_start_ms`].
    pub start_ms: i64,
    /// Chance that a record is also sent a second time (a retried publish).
    pub duplicate_rate: f64,
    /// Chance that a payment is declined.
    pub decline_rate: f64,
    /// Chance that an authorized payment is settled.
    pub settlement_rate: f64,
    /// Chance that a payment's auth arrives before the payment itself.
    pub out_of_order_rate: f64,
    /// Chance that a payment's idempotency key is reused for a different request.
    pub conflict_rate: f64,
    /// Chance per payment of one malformed record (wrong magic byte) on an input topic.
    pub malformed_rate: f64,
    /// Chance that a settlement disagrees with its authorization: half of them in the
    /// gross amount (`AMOUNT_MISMATCH`), half in the currency (`CURRENCY_MISMATCH`).
    pub mismatch_rate: f64,
    /// Chance that an authorized payment is under manual capture: its authorization
    /// holds the funds and one or two captures take them (the last one final, sometimes
    /// for less than what is left, releasing the rest), or a void releases them.
    pub manual_capture_rate: f64,
    /// Chance that a manual-capture authorization is voided instead of captured.
    pub void_rate: f64,
    /// Chance that a captured payment is refunded: half of them in part, half in full
    /// (in one or two refunds).
    pub refund_rate: f64,
    /// Chance that a captured payment without refunds gets a chargeback: won, lost, won
    /// then lost (a second chargeback), or left open.
    pub chargeback_rate: f64,
    /// Chance per payment of one movement it does not allow: a refund of a declined
    /// payment, a refund above what was captured, or a capture above what is left of a
    /// manual authorization — each dead-lettered with its reason and raising its
    /// exception.
    pub illegal_movement_rate: f64,
    /// Auth and settlement events, alternately, for payments that are never initiated,
    /// dated at the start of the traffic: each raises `ORPHAN_EVENT` or
    /// `MISSING_IN_LEDGER` once payments dated `processing.orphan_timeout_ms` later have
    /// arrived (payments are 20 ms apart: a 10-minute timeout needs 30,000 payments).
    pub orphan_events: u64,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            count: 10_000,
            seed: 42,
            start_ms: default_start_ms(10_000),
            duplicate_rate: 0.05,
            decline_rate: 0.1,
            settlement_rate: 0.8,
            out_of_order_rate: 0.05,
            conflict_rate: 0.005,
            malformed_rate: 0.002,
            mismatch_rate: 0.002,
            manual_capture_rate: 0.2,
            void_rate: 0.1,
            refund_rate: 0.08,
            chargeback_rate: 0.01,
            illegal_movement_rate: 0.002,
            orphan_events: 0,
        }
    }
}

/// A start time that puts all of a plan of `count` records in the recent past: brokers
/// refuse timestamps more than an hour ahead (Kafka 4's `message.timestamp.after.max.ms`)
/// and delete those older than the retention (7 days by default). Settlements come a day
/// after their payment, payments 20 ms apart.
pub fn default_start_ms(count: u64) -> i64 {
    now_ms() - 86_400_000 - (count as i64) * 20 - 60_000
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
