//! Defaults of the payments application's settings that more than one processor uses.

/// Idempotency retention: how long an idempotency key (dedupe) and an event id
/// (lifecycle) are remembered, milliseconds of stream time: 72 hours
/// (`state.idempotency_retention_ms`).
pub const IDEMPOTENCY_RETENTION_MS: i64 = 72 * 60 * 60 * 1000;

/// How far an event's own time may be ahead of its record's broker timestamp,
/// milliseconds: 1 h, as Kafka's own `message.timestamp.after.max.ms`
/// (`processing.event_time_skew_max_ms`).
pub const EVENT_TIME_SKEW_MAX_MS: i64 = 60 * 60 * 1_000;

/// Wall-clock time a payment may wait in INITIATED for its auth outcome before
/// `STUCK_PAYMENT` is raised, milliseconds: 15 minutes
/// (`payments.stuck_payment_timeout_ms`).
pub const STUCK_PAYMENT_TIMEOUT_MS: i64 = 15 * 60 * 1_000;

/// Wall-clock time an authorization under manual capture may wait for its first capture
/// or a void before `STUCK_PAYMENT` is raised, milliseconds: 7 days, about when card
/// networks let an authorization expire (`payments.uncaptured_authorization_timeout_ms`).
pub const UNCAPTURED_AUTHORIZATION_TIMEOUT_MS: i64 = 7 * 24 * 60 * 60 * 1_000;

/// Wall-clock time the money movements of a payment wait after the last one arrived, so
/// that those read in another order than they happened apply in the order they happened,
/// milliseconds: 1 s (`payments.movement_reorder_wait_ms`; docs/architecture.md, "Order
/// of money movements").
pub const MOVEMENT_REORDER_WAIT_MS: i64 = 1_000;
