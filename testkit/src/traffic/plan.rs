//! Generation of the plan: payments with their auths, settlements, retries, conflicts,
//! out-of-order arrival and malformed records, in send order, recorded in the
//! [`ExpectedOutcome`] as each is decided.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use paystream_schemas::{
    AuthFailed, AuthSucceeded, CaptureMode, InputEvent, PaymentInitiated, PaymentStatus,
    SettlementReported,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ExpectedOutcome, InputTopic, PlannedRecord, TrafficOptions};

/// A traffic plan: records in send order and the outcome they must produce.
#[derive(Debug, Clone)]
pub struct Plan {
    pub records: Vec<PlannedRecord>,
    pub expected: ExpectedOutcome,
}

const PSPS: [&str; 3] = ["adyen", "stripe", "checkout"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
const MERCHANTS: usize = 40;

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
        expected.exception(kind);
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
            capture_mode: CaptureMode::Automatic,
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
            expected.dead_letter("idempotency_key_reused");
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
            expected.authorization(psp, &merchant_id, currency, amount_minor);
            if chance(&mut rng, options.settlement_rate) {
                // What the PSP reports; a mismatch changes the gross or the currency.
                let (gross_minor, settled_currency) = if chance(&mut rng, options.mismatch_rate) {
                    if rng.random_bool(0.5) {
                        expected.exception("AMOUNT_MISMATCH");
                        (amount_minor - rng.random_range(1..100), currency)
                    } else {
                        expected.exception("CURRENCY_MISMATCH");
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
                expected.settlement(psp, settled_currency, gross_minor, fee_minor);
                PaymentStatus::Settled
            } else {
                PaymentStatus::Authorized
            }
        };
        expected.final_status(final_status);

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
            expected.dead_letter("bad_magic_byte");
        }

        planned += sends.len() as u64;
        for (due, record) in sends {
            schedule.push(due, record);
        }
        schedule.pop_due(slot, &mut records);
        slot += 1;
    }
    schedule.pop_due(u64::MAX, &mut records);
    expected.sent(&records);
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
}
