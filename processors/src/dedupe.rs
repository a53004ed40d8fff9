//! Deduplication of `payment_initiated` by idempotency key (docs/architecture.md, "Topology").
//!
//! The idempotency store maps `merchant_id:idempotency_key` to the fingerprint of the
//! first request seen with that key. Within the retention (default 72 h of stream time):
//! the same fingerprint is a retry and is dropped; a different fingerprint is a conflict
//! and is dead-lettered as `idempotency_key_reused`, never processed (TigerBeetle's
//! "exists" versus "conflict"). A record whose key disagrees with its value is
//! dead-lettered as `key_mismatch`. Accepted records are forwarded to the repartition
//! topic, keyed by payment id.
//!
//! The first byte of a stored value (after the TTL layer's write time) names its format:
//!
//! | first byte | format | written |
//! |---|---|---|
//! | `0x01` | version 1: the byte, the 32-byte SHA-256 fingerprint, `first_seen_ms` (8 bytes, big-endian), the payment id (UTF-8, to the end) | by this release |
//! | `{` (`0x7B`) | JSON `{"fingerprint": hex, "payment_id", "first_seen_ms"}` of earlier releases | never: read after an upgrade |

use paystream_schemas::{CaptureMode, PaymentInitiated};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use paystream_runtime::{Input, Sink};

use crate::defaults::EVENT_TIME_SKEW_MAX_MS;
use crate::names::{sinks, topics};
use crate::serdes::EventDeserializer;
use crate::{
    DeadLetterReason, Output, Processor, ProcessorContext, ProcessorError, Record, Result,
    StoreSpec, stores,
};

/// Default idempotency retention: 72 hours, in milliseconds.
pub use crate::defaults::IDEMPOTENCY_RETENTION_MS as DEFAULT_RETENTION_MS;

/// First byte of a version 1 value of the idempotency store.
pub const IDEMPOTENCY_FORMAT_VERSION_1: u8 = 0x01;

/// First byte of a value in the JSON of earlier releases (a JSON object).
pub const IDEMPOTENCY_FORMAT_LEGACY_JSON: u8 = b'{';

/// Bytes of a SHA-256 fingerprint.
const FINGERPRINT_BYTES: usize = 32;

/// What the idempotency store keeps per key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdempotencyRecord {
    /// SHA-256 of the request's business fields ([`fingerprint`]).
    fingerprint: [u8; FINGERPRINT_BYTES],
    payment_id: String,
    /// Stream time when the key was first seen, milliseconds since the Unix epoch.
    first_seen_ms: i64,
}

/// A value as earlier releases wrote it (JSON, the fingerprint in hex).
#[derive(Deserialize)]
struct IdempotencyRecordJson {
    fingerprint: String,
    payment_id: String,
    first_seen_ms: i64,
}

impl IdempotencyRecord {
    /// The version 1 value.
    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(1 + FINGERPRINT_BYTES + 8 + self.payment_id.len());
        value.push(IDEMPOTENCY_FORMAT_VERSION_1);
        value.extend_from_slice(&self.fingerprint);
        value.extend_from_slice(&self.first_seen_ms.to_be_bytes());
        value.extend_from_slice(self.payment_id.as_bytes());
        value
    }

    /// The value stored for `key`, in either format.
    ///
    /// # Errors
    /// [`ProcessorError::CorruptState`] when it is in neither.
    fn decode(key: &str, bytes: &[u8]) -> Result<IdempotencyRecord> {
        let corrupt = |message: String| ProcessorError::CorruptState {
            store: stores::IDEMPOTENCY,
            key: key.to_string(),
            message,
        };
        match bytes.split_first() {
            Some((&IDEMPOTENCY_FORMAT_VERSION_1, body)) => {
                let (fingerprint, rest) = body
                    .split_first_chunk::<FINGERPRINT_BYTES>()
                    .ok_or_else(|| corrupt(format!("format version 1: {} bytes", bytes.len())))?;
                let (first_seen, payment_id) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| corrupt(format!("format version 1: {} bytes", bytes.len())))?;
                Ok(IdempotencyRecord {
                    fingerprint: *fingerprint,
                    payment_id: String::from_utf8(payment_id.to_vec())
                        .map_err(|_| corrupt("format version 1: payment id is not UTF-8".into()))?,
                    first_seen_ms: i64::from_be_bytes(*first_seen),
                })
            }
            Some((&IDEMPOTENCY_FORMAT_LEGACY_JSON, _)) => {
                let stored: IdempotencyRecordJson = serde_json::from_slice(bytes)
                    .map_err(|e| corrupt(format!("JSON of earlier releases: {e}")))?;
                let mut fingerprint = [0; FINGERPRINT_BYTES];
                hex::decode_to_slice(&stored.fingerprint, &mut fingerprint)
                    .map_err(|e| corrupt(format!("JSON of earlier releases: fingerprint: {e}")))?;
                Ok(IdempotencyRecord {
                    fingerprint,
                    payment_id: stored.payment_id,
                    first_seen_ms: stored.first_seen_ms,
                })
            }
            Some((other, _)) => Err(corrupt(format!("unknown format byte {other:#04x}"))),
            None => Err(corrupt("empty value".to_string())),
        }
    }
}

/// The request fingerprint, SHA-256 of the length-prefixed business fields: what makes
/// two requests with one idempotency key "the same". Event id, payment id and timestamps
/// are left out: a client retry may carry new ones.
///
/// The capture mode is part of the request (the same payment with manual capture is a
/// different request), but only [`CaptureMode::Manual`] is hashed: the fingerprint of an
/// automatic-capture request is the one releases before capture modes stored, so a retry
/// that arrives across an upgrade is still a retry, not a conflict.
pub fn fingerprint(event: &PaymentInitiated) -> [u8; FINGERPRINT_BYTES] {
    let mut hasher = Sha256::new();
    let amount_minor = event.amount_minor.to_string();
    let capture_mode = match event.capture_mode {
        CaptureMode::Automatic => None,
        CaptureMode::Manual => Some(CaptureMode::Manual.as_str()),
    };
    for part in [
        event.merchant_id.as_str(),
        event.customer_id.as_str(),
        &amount_minor,
        event.currency.as_str(),
        event.payment_method_token.as_str(),
        event.psp.as_str(),
    ]
    .into_iter()
    .chain(capture_mode)
    {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// The dedupe processor over the `idempotency` store.
#[derive(Debug, Clone)]
pub struct DedupeProcessor {
    retention_ms: i64,
    event_time_skew_max_ms: i64,
}

impl DedupeProcessor {
    /// A processor that remembers idempotency keys for `retention_ms` of stream time.
    pub fn new(retention_ms: i64) -> Self {
        DedupeProcessor {
            retention_ms,
            event_time_skew_max_ms: EVENT_TIME_SKEW_MAX_MS,
        }
    }

    /// Dead-letters payments whose `occurred_at` is more than `skew_ms` ahead of their
    /// record's timestamp (`processing.event_time_skew_max_ms`).
    pub fn with_event_time_skew_max_ms(mut self, skew_ms: i64) -> Self {
        self.event_time_skew_max_ms = skew_ms;
        self
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

    fn inputs(&self) -> Vec<Input<PaymentInitiated>> {
        vec![Input::new(
            topics::PAYMENT_INITIATED,
            EventDeserializer::<PaymentInitiated, PaymentInitiated>::new(
                self.event_time_skew_max_ms,
            ),
        )]
    }

    /// Idempotency keys are remembered for the retention, then expire.
    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::expiring(stores::IDEMPOTENCY, self.retention_ms)]
    }

    /// Accepted payments go to the repartition topic, re-keyed by payment id, byte for
    /// byte as they came.
    fn sinks(&self) -> Vec<Sink> {
        vec![Sink::pass_through(
            sinks::REPARTITION,
            topics::PAYMENTS_BY_ID,
        )]
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
        let existing = match ctx
            .store(stores::IDEMPOTENCY)?
            .get(expected_key.as_bytes())?
        {
            None => None,
            Some(bytes) => Some(IdempotencyRecord::decode(&expected_key, &bytes)?),
        };
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
                ctx.store(stores::IDEMPOTENCY)?
                    .put(expected_key.as_bytes(), &stored.encode())?;
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
            capture_mode: CaptureMode::Automatic,
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

    #[test]
    fn fingerprint_of_automatic_capture_is_unchanged_and_manual_capture_differs() {
        // The fingerprint releases before capture modes computed (and stored) for this
        // request: SHA-256 of the length-prefixed m1, c1, 100, EUR, pm_1, adyen.
        let automatic = payment("k", 100);
        assert_eq!(automatic.capture_mode, CaptureMode::Automatic);
        assert_eq!(
            hex::encode(fingerprint(&automatic)),
            "417ccd25518710916caa20807118ff09a224bad9a59bb86a82ee759baddd7762"
        );
        let manual = PaymentInitiated {
            capture_mode: CaptureMode::Manual,
            ..automatic.clone()
        };
        assert_ne!(fingerprint(&automatic), fingerprint(&manual));

        // The same key with another capture mode is a different request: a conflict.
        let mut driver = TestDriver::new(DedupeProcessor::default());
        driver.pipe(record(automatic.clone()));
        let out = driver.pipe(record(manual.clone()));
        assert!(
            matches!(
                out.as_slice(),
                [Output::DeadLetter {
                    reason: DeadLetterReason::IdempotencyKeyReused,
                    ..
                }]
            ),
            "{out:?}"
        );
        // A retry of the automatic request is still a retry.
        assert_eq!(
            driver.pipe(record(automatic)),
            vec![Output::DuplicateDropped]
        );
    }

    /// A value exactly as the release before version 1 wrote it.
    const LEGACY_FIXTURE: &str = concat!(
        r#"{"fingerprint":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","#,
        r#""payment_id":"pay-k1","first_seen_ms":1000}"#
    );

    #[test]
    fn values_round_trip_and_those_of_earlier_releases_still_read() {
        let record = IdempotencyRecord {
            fingerprint: fingerprint(&payment("k1", 500)),
            payment_id: "pay-k1".into(),
            first_seen_ms: -5,
        };
        let value = record.encode();
        assert_eq!(value[0], IDEMPOTENCY_FORMAT_VERSION_1);
        assert_eq!(value.len(), 1 + 32 + 8 + 6);
        assert_eq!(IdempotencyRecord::decode("k", &value).unwrap(), record);
        let legacy = IdempotencyRecord::decode("k", LEGACY_FIXTURE.as_bytes()).unwrap();
        assert_eq!(legacy.fingerprint[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(
            (legacy.payment_id.as_str(), legacy.first_seen_ms),
            ("pay-k1", 1000)
        );
        for (damaged, says) in [
            (&value[..40], "format version 1: 40 bytes"),
            (&b""[..], "empty value"),
            (&b"[]"[..], "unknown format byte 0x5b"),
            (
                &b"{\"fingerprint\":\"zz\",\"payment_id\":\"p\",\"first_seen_ms\":1}"[..],
                "fingerprint",
            ),
        ] {
            match IdempotencyRecord::decode("k", damaged) {
                Err(ProcessorError::CorruptState { message, .. }) => {
                    assert!(message.contains(says), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_key_stored_by_an_earlier_release_still_drops_a_retry() {
        let event = payment("k1", 500);
        let legacy = format!(
            r#"{{"fingerprint":"{}","payment_id":"pay-k1","first_seen_ms":0}}"#,
            hex::encode(fingerprint(&event))
        );
        let mut driver = TestDriver::with_restored(DedupeProcessor::default(), |ctx| {
            ctx.store(stores::IDEMPOTENCY)
                .unwrap()
                .put(event.key().as_bytes(), legacy.as_bytes())
                .unwrap();
        });
        assert_eq!(driver.pipe(record(event)), vec![Output::DuplicateDropped]);
        assert!(matches!(
            driver.pipe(record(payment("k1", 501))).as_slice(),
            [Output::DeadLetter {
                reason: DeadLetterReason::IdempotencyKeyReused,
                ..
            }]
        ));
    }
}
