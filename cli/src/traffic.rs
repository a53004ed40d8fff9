//! The ingress simulator's traffic plan: a deterministic (seeded) stream of payment
//! events with duplicate retries, idempotency-key conflicts, declines, settlements,
//! out-of-order arrival and malformed records, plus the outcome a correct pipeline
//! must reach on it. The outcome is computed from the plan alone — never from the
//! pipeline — so tests and the demo can compare the two exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use paystream_schemas::{
    AuthFailed, AuthSucceeded, InputEvent, PaymentInitiated, PaymentStatus, SettlementReported,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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
            orphan_events: 0,
        }
    }
}

/// Which input topic a record goes to (base names; the configured prefix is added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InputTopic {
    PaymentInitiated,
    AuthSuccess,
    AuthFailure,
    Settlement,
}

impl InputTopic {
    /// The base topic name.
    pub fn base_name(self) -> &'static str {
        match self {
            InputTopic::PaymentInitiated => "payment_initiated",
            InputTopic::AuthSuccess => "auth_success",
            InputTopic::AuthFailure => "auth_failure",
            InputTopic::Settlement => "settlement",
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedRecord {
    /// A valid event, Avro-encoded when produced.
    Event {
        topic: InputTopic,
        key: String,
        event: InputEvent,
    },
    /// Raw bytes that are not Confluent-framed Avro.
    Malformed {
        topic: InputTopic,
        key: String,
        value: Vec<u8>,
        /// Record timestamp, milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl PlannedRecord {
    pub fn topic(&self) -> InputTopic {
        match self {
            PlannedRecord::Event { topic, .. } | PlannedRecord::Malformed { topic, .. } => *topic,
        }
    }
}

/// What a correct pipeline makes of the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedOutcome {
    pub seed: u64,
    /// Records produced, in all.
    pub records: u64,
    /// Records produced per base topic name.
    pub records_by_topic: BTreeMap<String, u64>,
    /// Distinct payments initiated (accepted by dedupe).
    pub payments: u64,
    /// Records that must be dropped as duplicates.
    pub duplicates: u64,
    /// Records that must be dead-lettered, by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// Final status per payment, counted.
    pub payments_by_status: BTreeMap<String, u64>,
    /// Payments whose auth was sent before the payment.
    pub out_of_order: u64,
    pub journal_entries: u64,
    pub postings: u64,
    /// Debits minus credits per `account|currency`, minor units.
    pub balances_minor: BTreeMap<String, i64>,
    /// Reconciliation exceptions by kind that the traffic makes certain
    /// (`AMOUNT_MISMATCH`, `CURRENCY_MISMATCH`, `ORPHAN_EVENT`, `MISSING_IN_LEDGER`).
    /// `MISSING_IN_PSP` is not predicted: it depends on the configured settlement window
    /// against how far stream time moves.
    #[serde(default)]
    pub exceptions: BTreeMap<String, u64>,
}

/// A traffic plan: records in send order and the outcome they must produce.
#[derive(Debug, Clone)]
pub struct Plan {
    pub records: Vec<PlannedRecord>,
    pub expected: ExpectedOutcome,
}

const PSPS: [&str; 3] = ["adyen", "stripe", "checkout"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
const MERCHANTS: usize = 40;
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

/// A random UUID that does not look like a card number (the pipeline would rightly
/// dead-letter it as `pan_detected`).
fn uuid(rng: &mut ChaCha8Rng) -> String {
    loop {
        let id = uuid::Builder::from_random_bytes(rng.random())
            .into_uuid()
            .to_string();
        if !paystream_schemas::validate::contains_pan(&id) {
            return id;
        }
    }
}

/// Record queue ordered by (due slot, sequence): delayed records are sent later.
struct Schedule {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<PlannedRecord>>,
    sequence: u64,
}

impl Schedule {
    fn push(&mut self, due: u64, record: PlannedRecord) {
        self.slots.push(Some(record));
        self.heap
            .push(Reverse((due, self.sequence, self.slots.len() - 1)));
        self.sequence += 1;
    }

    fn pop_due(&mut self, now: u64, out: &mut Vec<PlannedRecord>) {
        while let Some(Reverse((due, _, index))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            out.push(self.slots[index].take().expect("scheduled once"));
        }
    }
}

fn add_balance(expected: &mut ExpectedOutcome, account: String, currency: &str, signed_minor: i64) {
    *expected
        .balances_minor
        .entry(format!("{account}|{currency}"))
        .or_insert(0) += signed_minor;
}

/// Builds the plan for `options`. The same options give the same plan.
pub fn plan(options: &TrafficOptions) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let merchants: Vec<String> = (0..MERCHANTS).map(|_| uuid(&mut rng)).collect();
    let mut expected = ExpectedOutcome {
        seed: options.seed,
        ..ExpectedOutcome::default()
    };
    let mut schedule = Schedule {
        heap: BinaryHeap::new(),
        slots: Vec::new(),
        sequence: 0,
    };
    let mut records = Vec::new();
    let mut planned: u64 = 0;
    let mut slot: u64 = 0;
    let chance = |rng: &mut ChaCha8Rng, rate: f64| rate > 0.0 && rng.random_bool(rate.min(1.0));

    for index in 0..options.orphan_events {
        let payment_id = uuid(&mut rng);
        let t0 = options.start_ms + index as i64;
        let (topic, event, kind) = if index % 2 == 0 {
            (
                InputTopic::AuthSuccess,
                InputEvent::AuthSucceeded(AuthSucceeded {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    psp_reference: format!("psp_{}", &uuid(&mut rng)[..12]),
                    auth_code: "A00000".into(),
                    amount_minor: 1_000,
                    currency: "EUR".into(),
                    occurred_at: t0,
                }),
                "ORPHAN_EVENT",
            )
        } else {
            (
                InputTopic::Settlement,
                InputEvent::SettlementReported(SettlementReported {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    psp_reference: format!("psp_{}", &uuid(&mut rng)[..12]),
                    settlement_batch_id: "batch-orphans".into(),
                    gross_amount_minor: 1_000,
                    fee_minor: 29,
                    net_amount_minor: 971,
                    currency: "EUR".into(),
                    settled_at: t0,
                }),
                "MISSING_IN_LEDGER",
            )
        };
        records.push(PlannedRecord::Event {
            topic,
            key: payment_id,
            event,
        });
        *expected.exceptions.entry(kind.into()).or_insert(0) += 1;
        planned += 1;
    }

    while planned < options.count {
        let t0 = options.start_ms + slot as i64 * 20;
        let merchant_id = merchants[rng.random_range(0..MERCHANTS)].clone();
        let psp = PSPS[rng.random_range(0..PSPS.len())];
        let currency = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
        let amount_minor: i64 = rng.random_range(100..200_000);
        let initiated = PaymentInitiated {
            event_id: uuid(&mut rng),
            idempotency_key: format!("idem-{}", uuid(&mut rng)),
            payment_id: uuid(&mut rng),
            merchant_id: merchant_id.clone(),
            customer_id: uuid(&mut rng),
            amount_minor,
            currency: currency.to_string(),
            payment_method_token: format!("pm_{}", &uuid(&mut rng)[..18]),
            psp: psp.to_string(),
            occurred_at: t0,
        };
        let payment_id = initiated.payment_id.clone();
        let out_of_order = chance(&mut rng, options.out_of_order_rate);
        let init_due = if out_of_order {
            expected.out_of_order += 1;
            slot + rng.random_range(3..12)
        } else {
            slot
        };
        let init_record = PlannedRecord::Event {
            topic: InputTopic::PaymentInitiated,
            key: initiated.key(),
            event: InputEvent::PaymentInitiated(initiated.clone()),
        };
        let mut sends: Vec<(u64, PlannedRecord)> = vec![(init_due, init_record)];
        expected.payments += 1;

        if chance(&mut rng, options.conflict_rate) {
            let mut conflict = initiated.clone();
            conflict.event_id = uuid(&mut rng);
            conflict.payment_id = uuid(&mut rng);
            conflict.amount_minor += 1;
            sends.push((
                init_due + rng.random_range(1..20),
                PlannedRecord::Event {
                    topic: InputTopic::PaymentInitiated,
                    key: conflict.key(),
                    event: InputEvent::PaymentInitiated(conflict),
                },
            ));
            *expected
                .dead_letters
                .entry("idempotency_key_reused".into())
                .or_insert(0) += 1;
        }

        let auth_due = if out_of_order {
            slot
        } else {
            slot + rng.random_range(0..10)
        };
        let psp_reference = format!("psp_{}", &uuid(&mut rng)[..12]);
        let final_status = if chance(&mut rng, options.decline_rate) {
            let failed = AuthFailed {
                event_id: uuid(&mut rng),
                payment_id: payment_id.clone(),
                psp_reference: Some(psp_reference.clone()),
                decline_code: "05".into(),
                reason: "do_not_honor".into(),
                occurred_at: t0 + 800,
            };
            sends.push((
                auth_due,
                PlannedRecord::Event {
                    topic: InputTopic::AuthFailure,
                    key: payment_id.clone(),
                    event: InputEvent::AuthFailed(failed),
                },
            ));
            PaymentStatus::Declined
        } else {
            let auth = AuthSucceeded {
                event_id: uuid(&mut rng),
                payment_id: payment_id.clone(),
                psp_reference: psp_reference.clone(),
                auth_code: format!("A{:05}", rng.random_range(0..100_000)),
                amount_minor,
                currency: currency.to_string(),
                occurred_at: t0 + 800,
            };
            sends.push((
                auth_due,
                PlannedRecord::Event {
                    topic: InputTopic::AuthSuccess,
                    key: payment_id.clone(),
                    event: InputEvent::AuthSucceeded(auth),
                },
            ));
            expected.journal_entries += 1;
            expected.postings += 2;
            add_balance(
                &mut expected,
                format!("psp_receivable:{psp}"),
                currency,
                amount_minor,
            );
            add_balance(
                &mut expected,
                format!("merchant_payable:{merchant_id}"),
                currency,
                -amount_minor,
            );
            if chance(&mut rng, options.settlement_rate) {
                // What the PSP reports; a mismatch changes the gross or the currency.
                let (gross_minor, settled_currency) = if chance(&mut rng, options.mismatch_rate) {
                    if rng.random_bool(0.5) {
                        *expected
                            .exceptions
                            .entry("AMOUNT_MISMATCH".into())
                            .or_insert(0) += 1;
                        (amount_minor - rng.random_range(1..100), currency)
                    } else {
                        *expected
                            .exceptions
                            .entry("CURRENCY_MISMATCH".into())
                            .or_insert(0) += 1;
                        let other = CURRENCIES
                            .iter()
                            .find(|c| **c != currency)
                            .expect("several currencies");
                        (amount_minor, *other)
                    }
                } else {
                    (amount_minor, currency)
                };
                let fee_minor = gross_minor * 29 / 1000;
                let settlement = SettlementReported {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    psp_reference,
                    settlement_batch_id: format!("batch-{}", t0 / 86_400_000),
                    gross_amount_minor: gross_minor,
                    fee_minor,
                    net_amount_minor: gross_minor - fee_minor,
                    currency: settled_currency.to_string(),
                    settled_at: t0 + 86_400_000,
                };
                sends.push((
                    auth_due + rng.random_range(10..200),
                    PlannedRecord::Event {
                        topic: InputTopic::Settlement,
                        key: payment_id.clone(),
                        event: InputEvent::SettlementReported(settlement),
                    },
                ));
                expected.journal_entries += 1;
                expected.postings += if fee_minor > 0 { 3 } else { 2 };
                add_balance(
                    &mut expected,
                    "bank:settlement".into(),
                    settled_currency,
                    gross_minor - fee_minor,
                );
                if fee_minor > 0 {
                    add_balance(
                        &mut expected,
                        format!("expense:psp_fees:{psp}"),
                        settled_currency,
                        fee_minor,
                    );
                }
                add_balance(
                    &mut expected,
                    format!("psp_receivable:{psp}"),
                    settled_currency,
                    -gross_minor,
                );
                PaymentStatus::Settled
            } else {
                PaymentStatus::Authorized
            }
        };
        *expected
            .payments_by_status
            .entry(final_status.as_str().into())
            .or_insert(0) += 1;

        // Retried publishes: the same record again, a little later.
        let mut duplicates = Vec::new();
        for (due, record) in &sends {
            let is_conflict = matches!(record, PlannedRecord::Event { event: InputEvent::PaymentInitiated(p), .. } if p.payment_id != payment_id);
            if !is_conflict && chance(&mut rng, options.duplicate_rate) {
                duplicates.push((due + rng.random_range(0..30), record.clone()));
                expected.duplicates += 1;
            }
        }
        sends.extend(duplicates);

        if chance(&mut rng, options.malformed_rate) {
            let topic = [
                InputTopic::PaymentInitiated,
                InputTopic::AuthSuccess,
                InputTopic::AuthFailure,
                InputTopic::Settlement,
            ][rng.random_range(0..4)];
            sends.push((
                slot,
                PlannedRecord::Malformed {
                    topic,
                    key: payment_id.clone(),
                    value: format!("{{\"payment_id\":\"{payment_id}\",\"amount\":12.5}}")
                        .into_bytes(),
                    timestamp_ms: t0,
                },
            ));
            *expected
                .dead_letters
                .entry("bad_magic_byte".into())
                .or_insert(0) += 1;
        }

        planned += sends.len() as u64;
        for (due, record) in sends {
            schedule.push(due, record);
        }
        schedule.pop_due(slot, &mut records);
        slot += 1;
    }
    schedule.pop_due(u64::MAX, &mut records);
    for record in &records {
        *expected
            .records_by_topic
            .entry(record.topic().base_name().into())
            .or_insert(0) += 1;
    }
    expected.records = records.len() as u64;
    Plan { records, expected }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let options = TrafficOptions {
            count: 2_000,
            ..TrafficOptions::default()
        };
        let a = plan(&options);
        let b = plan(&TrafficOptions {
            start_ms: options.start_ms,
            ..options.clone()
        });
        assert_eq!(a.records, b.records);
        assert_eq!(a.expected, b.expected);
        let c = plan(&TrafficOptions {
            seed: 7,
            ..options.clone()
        });
        assert_ne!(a.records, c.records);
    }

    #[test]
    fn the_expected_outcome_adds_up() {
        let p = plan(&TrafficOptions {
            count: 5_000,
            ..TrafficOptions::default()
        });
        let e = &p.expected;
        assert!(e.records >= 5_000 && e.records < 5_010, "{}", e.records);
        assert_eq!(e.records, p.records.len() as u64);
        assert_eq!(e.payments_by_status.values().sum::<u64>(), e.payments);
        // The whole ledger balances: debits minus credits over all accounts is zero per currency.
        let mut per_currency: BTreeMap<&str, i64> = BTreeMap::new();
        for (key, v) in &e.balances_minor {
            *per_currency
                .entry(key.rsplit('|').next().unwrap())
                .or_insert(0) += v;
        }
        assert!(per_currency.values().all(|v| *v == 0), "{per_currency:?}");
        assert!(e.duplicates > 0 && e.out_of_order > 0);
        assert!(e.payments_by_status.contains_key("DECLINED"));
        assert!(e.payments_by_status.contains_key("SETTLED"));
    }
}
