//! Generation of the plan: payments with their auths, settlements, retries, conflicts,
//! out-of-order arrival and malformed records, in send order, recorded in the
//! [`ExpectedOutcome`] as each is decided.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, CaptureMode, ChargebackReported,
    ChargebackStage, InputEvent, PaymentCaptured, PaymentInitiated, PaymentStatus, RefundIssued,
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
    /// Event ids of the movements the pipeline must refuse (dead-letter), for checks
    /// that follow records one by one.
    pub refused_event_ids: std::collections::BTreeSet<String>,
}

const PSPS: [&str; 3] = ["adyen", "stripe", "checkout"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
const MERCHANTS: usize = 40;
/// Refunds come this long after their payment (event time), milliseconds: 12 h.
const REFUND_AFTER_MS: i64 = 12 * 3_600_000;
/// Chargebacks open this long after their payment, milliseconds (14 h); each later stage
/// an hour after the one before. Everything stays within a day of the payment, which
/// [`super::default_start_ms`] puts in the past.
const CHARGEBACK_AFTER_MS: i64 = 14 * 3_600_000;

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
    let mut refused_event_ids = std::collections::BTreeSet::new();
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
        let psp_ref = psp_reference.clone();
        // Records not to send twice: a refused movement is not marked seen, so a retry
        // of it would be refused (and dead-lettered) again.
        let mut not_retried: Vec<String> = Vec::new();
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
            if chance(&mut rng, options.illegal_movement_rate) {
                // A refund of a declined payment: nothing was captured.
                let refund = RefundIssued {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    refund_id: uuid(&mut rng),
                    psp_reference: psp_ref.clone(),
                    amount_minor: amount_minor.min(100),
                    currency: currency.to_string(),
                    reason: "customer request".into(),
                    occurred_at: t0 + REFUND_AFTER_MS,
                };
                not_retried.push(refund.event_id.clone());
                sends.push((
                    auth_due + rng.random_range(10..200),
                    PlannedRecord::Event {
                        topic: InputTopic::Refund,
                        key: payment_id.clone(),
                        event: InputEvent::RefundIssued(refund),
                    },
                ));
                expected.dead_letter("illegal_transition");
                expected.exception("ILLEGAL_MONEY_MOVEMENT");
            }
            PaymentStatus::Declined
        } else {
            let manual = chance(&mut rng, options.manual_capture_rate);
            if manual {
                let mut manual_initiated = match &sends[0].1 {
                    PlannedRecord::Event {
                        event: InputEvent::PaymentInitiated(p),
                        ..
                    } => p.clone(),
                    _ => unreachable!("the payment is the first record"),
                };
                manual_initiated.capture_mode = CaptureMode::Manual;
                sends[0].1 = PlannedRecord::Event {
                    topic: InputTopic::PaymentInitiated,
                    key: manual_initiated.key(),
                    event: InputEvent::PaymentInitiated(manual_initiated),
                };
            }
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
            // Movements go out after the auth, in their order on each topic.
            let mut due = auth_due + rng.random_range(10..100);
            let mut next_due = |rng: &mut ChaCha8Rng| {
                due += rng.random_range(1..20);
                due
            };
            let movement = |topic: InputTopic, event: InputEvent| PlannedRecord::Event {
                topic,
                key: payment_id.clone(),
                event,
            };
            let mut captured_minor = amount_minor;
            let mut voided = false;
            if manual {
                expected.authorization_hold(psp, &merchant_id, currency, amount_minor);
                if chance(&mut rng, options.void_rate) {
                    // Half the voids come after a partial capture and release the rest:
                    // on another topic than the capture, so they compete when read in
                    // another order than they happened.
                    let first = if amount_minor >= 4 && rng.random_bool(0.5) {
                        amount_minor * rng.random_range(30..70) / 100
                    } else {
                        0
                    };
                    if first > 0 {
                        let c = PaymentCaptured {
                            event_id: uuid(&mut rng),
                            payment_id: payment_id.clone(),
                            capture_id: uuid(&mut rng),
                            psp_reference: psp_ref.clone(),
                            amount_minor: first,
                            currency: currency.to_string(),
                            final_capture: false,
                            occurred_at: t0 + 1_200,
                        };
                        sends.push((
                            next_due(&mut rng),
                            movement(InputTopic::Capture, InputEvent::PaymentCaptured(c)),
                        ));
                        expected.capture(psp, &merchant_id, currency, first, 0);
                    }
                    let void = AuthorizationVoided {
                        event_id: uuid(&mut rng),
                        payment_id: payment_id.clone(),
                        psp_reference: psp_ref.clone(),
                        reason: "order cancelled".into(),
                        occurred_at: t0 + 1_500,
                    };
                    sends.push((
                        next_due(&mut rng),
                        movement(InputTopic::Void, InputEvent::AuthorizationVoided(void)),
                    ));
                    expected.void(psp, &merchant_id, currency, amount_minor - first);
                    captured_minor = first;
                    voided = first == 0;
                } else {
                    // One or two captures; the last is final and may take less than what
                    // is left, releasing the rest.
                    let first = if amount_minor >= 4 && rng.random_bool(0.5) {
                        amount_minor * rng.random_range(30..70) / 100
                    } else {
                        0
                    };
                    let left = amount_minor - first;
                    let last = if left >= 2 && rng.random_bool(0.2) {
                        left - rng.random_range(1..left.min(1_000))
                    } else {
                        left
                    };
                    let illegal = first > 0 && chance(&mut rng, options.illegal_movement_rate);
                    let mut at = t0 + 2_000;
                    let mut capture = |rng: &mut ChaCha8Rng, amount: i64, final_capture: bool| {
                        at += 1_000;
                        PaymentCaptured {
                            event_id: uuid(rng),
                            payment_id: payment_id.clone(),
                            capture_id: uuid(rng),
                            psp_reference: psp_ref.clone(),
                            amount_minor: amount,
                            currency: currency.to_string(),
                            final_capture,
                            occurred_at: at,
                        }
                    };
                    if first > 0 {
                        let c = capture(&mut rng, first, false);
                        sends.push((
                            next_due(&mut rng),
                            movement(InputTopic::Capture, InputEvent::PaymentCaptured(c)),
                        ));
                        expected.capture(psp, &merchant_id, currency, first, 0);
                    }
                    if illegal {
                        // Above what is left of the authorization: refused.
                        let c = capture(&mut rng, left + 1, false);
                        not_retried.push(c.event_id.clone());
                        sends.push((
                            next_due(&mut rng),
                            movement(InputTopic::Capture, InputEvent::PaymentCaptured(c)),
                        ));
                        expected.dead_letter("capture_exceeds_authorization");
                        expected.exception("CAPTURE_EXCEEDS_AUTHORIZATION");
                    }
                    let c = capture(&mut rng, last, true);
                    sends.push((
                        next_due(&mut rng),
                        movement(InputTopic::Capture, InputEvent::PaymentCaptured(c)),
                    ));
                    expected.capture(psp, &merchant_id, currency, last, left - last);
                    captured_minor = first + last;
                }
            } else {
                expected.authorization(psp, &merchant_id, currency, amount_minor);
            }
            let mut settled = false;
            if captured_minor > 0 && chance(&mut rng, options.settlement_rate) {
                settled = true;
                // What the PSP reports; a mismatch changes the gross or the currency.
                let (gross_minor, settled_currency) = if chance(&mut rng, options.mismatch_rate) {
                    if rng.random_bool(0.5) {
                        expected.exception("AMOUNT_MISMATCH");
                        (
                            captured_minor
                                - rng.random_range(1..100).min(captured_minor - 1).max(1),
                            currency,
                        )
                    } else {
                        expected.exception("CURRENCY_MISMATCH");
                        let other = CURRENCIES
                            .iter()
                            .find(|c| **c != currency)
                            .expect("several currencies");
                        (captured_minor, *other)
                    }
                } else {
                    (captured_minor, currency)
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
                    movement(
                        InputTopic::Settlement,
                        InputEvent::SettlementReported(settlement),
                    ),
                ));
                expected.settlement(psp, settled_currency, gross_minor, fee_minor);
            }
            let mut refunded_minor = 0;
            if captured_minor > 0 && chance(&mut rng, options.refund_rate) {
                let amounts: Vec<i64> = if rng.random_bool(0.5) {
                    vec![(captured_minor * rng.random_range(20..80) / 100).max(1)]
                } else if captured_minor >= 2 && rng.random_bool(0.5) {
                    vec![captured_minor / 2, captured_minor - captured_minor / 2]
                } else {
                    vec![captured_minor]
                };
                for (n, amount) in amounts.into_iter().enumerate() {
                    let refund = RefundIssued {
                        event_id: uuid(&mut rng),
                        payment_id: payment_id.clone(),
                        refund_id: uuid(&mut rng),
                        psp_reference: psp_ref.clone(),
                        amount_minor: amount,
                        currency: currency.to_string(),
                        reason: "customer request".into(),
                        occurred_at: t0 + REFUND_AFTER_MS + n as i64 * 1_000,
                    };
                    sends.push((
                        next_due(&mut rng),
                        movement(InputTopic::Refund, InputEvent::RefundIssued(refund)),
                    ));
                    expected.refund(psp, &merchant_id, currency, amount);
                    refunded_minor += amount;
                }
            } else if !manual && chance(&mut rng, options.illegal_movement_rate) {
                // A refund above what was captured: refused.
                let refund = RefundIssued {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    refund_id: uuid(&mut rng),
                    psp_reference: psp_ref.clone(),
                    amount_minor: captured_minor + 1,
                    currency: currency.to_string(),
                    reason: "customer request".into(),
                    occurred_at: t0 + REFUND_AFTER_MS,
                };
                not_retried.push(refund.event_id.clone());
                sends.push((
                    next_due(&mut rng),
                    movement(InputTopic::Refund, InputEvent::RefundIssued(refund)),
                ));
                expected.dead_letter("refund_exceeds_captured");
                expected.exception("REFUND_EXCEEDS_CAPTURED");
            }
            let mut dispute = None;
            // What a chargeback may still take: what was captured and not refunded.
            let disputable_minor = captured_minor - refunded_minor;
            if disputable_minor > 0 && chance(&mut rng, options.chargeback_rate) {
                let dispute_id = uuid(&mut rng);
                let captured_minor = disputable_minor;
                let fee_minor = (captured_minor / 50).max(1);
                let outcome = rng.random_range(0..10);
                let stages: &[ChargebackStage] = match outcome {
                    0..4 => &[ChargebackStage::Opened, ChargebackStage::Won],
                    4..8 => &[ChargebackStage::Opened, ChargebackStage::Lost],
                    8 => &[
                        ChargebackStage::Opened,
                        ChargebackStage::Won,
                        ChargebackStage::Lost,
                    ],
                    _ => &[ChargebackStage::Opened],
                };
                let mut won = false;
                for (n, stage) in stages.iter().enumerate() {
                    let chargeback = ChargebackReported {
                        event_id: uuid(&mut rng),
                        payment_id: payment_id.clone(),
                        dispute_id: dispute_id.clone(),
                        amount_minor: captured_minor,
                        currency: currency.to_string(),
                        fee_minor,
                        reason_code: "10.4".into(),
                        stage: *stage,
                        occurred_at: t0 + CHARGEBACK_AFTER_MS + n as i64 * 3_600_000,
                    };
                    sends.push((
                        next_due(&mut rng),
                        movement(
                            InputTopic::Chargeback,
                            InputEvent::ChargebackReported(chargeback),
                        ),
                    ));
                    match stage {
                        ChargebackStage::Opened => {
                            expected.chargeback_opened(psp, currency, captured_minor, fee_minor)
                        }
                        ChargebackStage::Won => {
                            won = true;
                            expected.chargeback_won(psp, currency, captured_minor, fee_minor)
                        }
                        ChargebackStage::Lost => expected.chargeback_lost(
                            psp,
                            &merchant_id,
                            currency,
                            captured_minor,
                            fee_minor,
                            won,
                        ),
                    }
                }
                dispute = stages.last().copied();
            } else if captured_minor > 0
                && refunded_minor == captured_minor
                && chance(&mut rng, options.chargeback_rate)
            {
                // The customer disputes a payment already refunded in full: nothing is
                // left to charge back, the chargeback is refused as an illegal movement
                // (and the PSP should defend it). On another topic than the refund: they compete when read
                // in another order than they happened.
                let chargeback = ChargebackReported {
                    event_id: uuid(&mut rng),
                    payment_id: payment_id.clone(),
                    dispute_id: uuid(&mut rng),
                    amount_minor: captured_minor,
                    currency: currency.to_string(),
                    fee_minor: (captured_minor / 50).max(1),
                    reason_code: "13.1".into(),
                    stage: ChargebackStage::Opened,
                    occurred_at: t0 + CHARGEBACK_AFTER_MS,
                };
                not_retried.push(chargeback.event_id.clone());
                sends.push((
                    next_due(&mut rng),
                    movement(
                        InputTopic::Chargeback,
                        InputEvent::ChargebackReported(chargeback),
                    ),
                ));
                expected.dead_letter("illegal_transition");
                expected.exception("ILLEGAL_MONEY_MOVEMENT");
            }
            match dispute {
                Some(ChargebackStage::Opened) => PaymentStatus::Disputed,
                Some(ChargebackStage::Won) => PaymentStatus::ChargebackWon,
                Some(ChargebackStage::Lost) => PaymentStatus::ChargebackLost,
                None if refunded_minor > 0 && refunded_minor == captured_minor => {
                    PaymentStatus::Refunded
                }
                None if refunded_minor > 0 => PaymentStatus::PartiallyRefunded,
                None if voided => PaymentStatus::Voided,
                None if settled => PaymentStatus::Settled,
                None if manual => PaymentStatus::Captured,
                None => PaymentStatus::Authorized,
            }
        };
        expected.final_status(final_status);

        // Retried publishes: the same record again, a little later.
        let mut duplicates = Vec::new();
        for (due, record) in &sends {
            let is_conflict = matches!(record, PlannedRecord::Event { event: InputEvent::PaymentInitiated(p), .. } if p.payment_id != payment_id);
            let refused = matches!(record, PlannedRecord::Event { event, .. } if not_retried.iter().any(|id| id == event.event_id()));
            if !is_conflict && !refused && chance(&mut rng, options.duplicate_rate) {
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

        refused_event_ids.extend(not_retried);
        planned += sends.len() as u64;
        for (due, record) in sends {
            schedule.push(due, record);
        }
        schedule.pop_due(slot, &mut records);
        slot += 1;
    }
    schedule.pop_due(u64::MAX, &mut records);
    expected.sent(&records);
    Plan {
        records,
        expected,
        refused_event_ids,
    }
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
