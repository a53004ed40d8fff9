//! Deduplication of `payment_initiated` by idempotency key (docs/architecture.md, "Topology").
//!
//! The idempotency store maps `merchant_id:idempotency_key` to the fingerprint of the
//! first request seen with that key. Within the retention (default 72 h of stream time):
//! the same fingerprint is a retry and is dropped; a different fingerprint is a conflict
//! and is dead-lettered as `idempotency_key_reused`, never processed (TigerBeetle's
//! "exists" versus "conflict"). A record whose key disagrees with its value is
//! dead-lettered as `key_mismatch`. Accepted records are forwarded to the repartition
//! topic, keyed by payment id.

use paystream_schemas::PaymentInitiated;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    DeadLetterReason, EventType, Input, Output, OutputKind, OutputSpec, Processor,
    ProcessorContext, Record, Result, StoreSpec, TopicRef, read_json, stores, write_json,
};

/// Default idempotency retention: 72 hours, in milliseconds.
pub const DEFAULT_RETENTION_MS: i64 = 72 * 60 * 60 * 1000;

/// The repartition topic's logical name: deduplicated payments keyed by payment id,
/// `<application_id>-payments-by-id`.
pub const REPARTITION_TOPIC: &str = "payments-by-id";

/// What the idempotency store keeps per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdempotencyRecord {
    /// Hex SHA-256 of the request's business fields.
    fingerprint: String,
    payment_id: String,
    /// Stream time when the key was first seen, milliseconds since the Unix epoch.
    first_seen_ms: i64,
}

/// The request fingerprint: what makes two requests with one idempotency key "the same".
/// Event id, payment id and timestamps are left out: a client retry may carry new ones.
pub fn fingerprint(event: &PaymentInitiated) -> String {
    let mut hasher = Sha256::new();
    for part in [
        event.merchant_id.as_str(),
        event.customer_id.as_str(),
        &event.amount_minor.to_string(),
        event.currency.as_str(),
        event.payment_method_token.as_str(),
        event.psp.as_str(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The dedupe processor over the `idempotency` store.
#[derive(Debug, Clone)]
pub struct DedupeProcessor {
    retention_ms: i64,
}

impl DedupeProcessor {
    /// A processor that remembers idempotency keys for `retention_ms` of stream time.
    pub fn new(retention_ms: i64) -> Self {
        DedupeProcessor { retention_ms }
    }
}

impl Default for DedupeProcessor {
    fn default() -> Self {
        DedupeProcessor::new(DEFAULT_RETENTION_MS)
    }
}

impl Processor for DedupeProcessor {
    type Input = PaymentInitiated;

    fn name(&self) -> &'static str {
        "dedupe"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input {
            topic: TopicRef::External("payment_initiated"),
            event: EventType::PaymentInitiated,
        }]
    }

    /// Idempotency keys are remembered for the retention, then expire.
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::expiring(stores::IDEMPOTENCY, self.retention_ms)]
    }

    /// Accepted payments go to the repartition topic, re-keyed by payment id.
    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            kind: OutputKind::Repartition,
            topic: TopicRef::Internal(REPARTITION_TOPIC),
        }]
    }

    fn process(
        &mut self,
        record: Record<PaymentInitiated>,
        ctx: &mut dyn ProcessorContext,
    ) -> Result<()> {
        let event = record.value;
        let expected_key = event.key();
        if record.origin.key.as_deref() != Some(expected_key.as_bytes()) {
            let found = match &record.origin.key {
                None => "no key".to_string(),
                Some(k) => format!("key of {} bytes", k.len()),
            };
            ctx.forward(Output::DeadLetter {
                origin: record.origin,
                reason: DeadLetterReason::KeyMismatch,
                message: format!(
                    "record has {found}; expected merchant_id:idempotency_key of its value"
                ),
            });
            return Ok(());
        }
        let fingerprint = fingerprint(&event);
        let now_ms = ctx.stream_time_ms();
        let existing: Option<IdempotencyRecord> =
            read_json(ctx, stores::IDEMPOTENCY, &expected_key)?;
        match existing {
            Some(seen) if now_ms - seen.first_seen_ms <= self.retention_ms => {
                if seen.fingerprint == fingerprint {
                    ctx.forward(Output::DuplicateDropped);
                } else {
                    ctx.forward(Output::DeadLetter {
                        origin: record.origin,
                        reason: DeadLetterReason::IdempotencyKeyReused,
                        message: format!(
                            "idempotency key already used for payment {} with a different request",
                            seen.payment_id
                        ),
                    });
                }
            }
            _ => {
                let stored = IdempotencyRecord {
                    fingerprint,
                    payment_id: event.payment_id.clone(),
                    first_seen_ms: now_ms,
                };
                write_json(ctx, stores::IDEMPOTENCY, &expected_key, &stored)?;
                ctx.forward(Output::Repartition(event));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{TestDriver, origin};

    fn payment(key: &str, amount_minor: i64) -> PaymentInitiated {
        PaymentInitiated {
            event_id: format!("evt-{key}-{amount_minor}"),
            idempotency_key: key.into(),
            payment_id: format!("pay-{key}"),
            merchant_id: "m1".into(),
            customer_id: "c1".into(),
            amount_minor,
            currency: "EUR".into(),
            payment_method_token: "pm_1".into(),
            psp: "adyen".into(),
            occurred_at: 1_000,
        }
    }

    fn record(event: PaymentInitiated) -> Record<PaymentInitiated> {
        let key = event.key();
        Record {
            value: event,
            origin: origin("payment_initiated", Some(key.as_bytes())),
        }
    }

    #[test]
    fn first_request_is_forwarded_and_a_retry_dropped() {
        let mut driver = TestDriver::new(DedupeProcessor::default());
        let out = driver.pipe(record(payment("k1", 500)));
        assert_eq!(out, vec![Output::Repartition(payment("k1", 500))]);
        let out = driver.pipe(record(payment("k1", 500)));
        assert_eq!(out, vec![Output::DuplicateDropped]);
    }

    #[test]
    fn conflicting_reuse_is_dead_lettered() {
        let mut driver = TestDriver::new(DedupeProcessor::default());
        driver.pipe(record(payment("k1", 500)));
        let out = driver.pipe(record(payment("k1", 501)));
        assert!(matches!(
            out.as_slice(),
            [Output::DeadLetter { reason: DeadLetterReason::IdempotencyKeyReused, message, .. }]
                if message.contains("pay-k1")
        ));
        // The conflict did not replace the first request: a true retry is still a duplicate.
        assert_eq!(
            driver.pipe(record(payment("k1", 500))),
            vec![Output::DuplicateDropped]
        );
    }

    #[test]
    fn key_not_matching_value_is_dead_lettered() {
        let mut driver = TestDriver::new(DedupeProcessor::default());
        let mut r = record(payment("k1", 500));
        r.origin.key = Some(b"m1:other".to_vec());
        let out = driver.pipe(r);
        assert!(matches!(
            out.as_slice(),
            [Output::DeadLetter {
                reason: DeadLetterReason::KeyMismatch,
                ..
            }]
        ));
    }

    #[test]
    fn a_key_is_new_again_after_the_retention() {
        let mut driver = TestDriver::new(DedupeProcessor::new(1_000));
        driver.pipe(record(payment("k1", 500)));
        driver.advance_stream_time_ms(1_001);
        let out = driver.pipe(record(payment("k1", 500)));
        assert_eq!(out, vec![Output::Repartition(payment("k1", 500))]);
    }

    #[test]
    fn fingerprint_ignores_event_and_payment_ids_but_not_amounts() {
        let a = payment("k", 100);
        let mut b = a.clone();
        b.event_id = "other".into();
        b.payment_id = "other".into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.amount_minor = 101;
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
