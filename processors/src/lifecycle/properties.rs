//! Property tests of the payment lifecycle: for any interleaving, duplication
//! and delay of a valid set of events, and any wall-clock time between their arrivals
//! (settlements wait in the reorder wait), the final statuses and journal entries are the
//! same, every entry balances, every status change is a legal transition, nothing is
//! dead-lettered, and reconciliation exceptions are only the timing kinds, each at most
//! once per payment and kind.

use std::collections::{BTreeMap, BTreeSet};

use crate::driver::{TestDriver, origin};
use crate::ledger::journal_entry_id;
use crate::lifecycle::{LEGAL_TRANSITIONS, LifecycleProcessor, LifecycleSettings};
use crate::{Output, Record};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, InputEvent, JournalEntryKind, PaymentInitiated, PaymentStatus,
    ReconciliationExceptionKind, SettlementReported,
};
use proptest::prelude::*;

/// How a generated payment ends.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Initiated,
    Declined,
    Authorized,
    Settled,
}

fn events_of(index: usize, fate: Fate, amount_minor: i64, fee_minor: i64) -> Vec<InputEvent> {
    let payment_id = format!("payment-{index}");
    let mut events = vec![InputEvent::PaymentInitiated(PaymentInitiated {
        event_id: format!("init-{index}"),
        idempotency_key: format!("idem-{index}"),
        payment_id: payment_id.clone(),
        merchant_id: format!("merchant-{}", index % 3),
        customer_id: "customer".into(),
        amount_minor,
        currency: "EUR".into(),
        payment_method_token: "pm_x".into(),
        psp: "adyen".into(),
        occurred_at: 1_000 + index as i64,
        capture_mode: paystream_schemas::CaptureMode::Automatic,
    })];
    match fate {
        Fate::Initiated => {}
        Fate::Declined => events.push(InputEvent::AuthFailed(AuthFailed {
            event_id: format!("fail-{index}"),
            payment_id,
            psp_reference: None,
            decline_code: "05".into(),
            reason: "declined".into(),
            occurred_at: 2_000 + index as i64,
        })),
        Fate::Authorized | Fate::Settled => {
            events.push(InputEvent::AuthSucceeded(AuthSucceeded {
                event_id: format!("auth-{index}"),
                payment_id: payment_id.clone(),
                psp_reference: "r".into(),
                auth_code: "A".into(),
                amount_minor,
                currency: "EUR".into(),
                occurred_at: 2_000 + index as i64,
            }));
            if matches!(fate, Fate::Settled) {
                events.push(InputEvent::SettlementReported(SettlementReported {
                    event_id: format!("settle-{index}"),
                    payment_id,
                    psp_reference: "r".into(),
                    settlement_batch_id: "b".into(),
                    gross_amount_minor: amount_minor,
                    fee_minor,
                    net_amount_minor: amount_minor - fee_minor,
                    currency: "EUR".into(),
                    settled_at: 3_000 + index as i64,
                }));
            }
        }
    }
    events
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Initiated),
        Just(Fate::Declined),
        Just(Fate::Authorized),
        Just(Fate::Settled)
    ]
}

/// A generated payment: how it ends, its amount and its settlement fee (minor units).
type PlannedPayment = (Fate, i64, i64);

/// Payments and, for the arrival order, a permutation of all their events, the indexes
/// of events sent a second time, per arrival a delay (ms) added to its record timestamp,
/// which moves stream time, and per arrival the wall-clock time (ms) that passes after it.
type Scenario = (
    Vec<PlannedPayment>,
    Vec<usize>,
    Vec<usize>,
    Vec<i64>,
    Vec<i64>,
);

/// Timers short enough for generated delays to make them fire.
const SETTINGS: LifecycleSettings = LifecycleSettings {
    orphan_timeout_ms: 60_000,
    settlement_window_ms: 120_000,
    // Longer than any generated delay: no valid event expires from `pending`.
    pending_retention_ms: 10_000_000,
    event_time_skew_max_ms: crate::lifecycle::EVENT_TIME_SKEW_MAX_MS,
    // The stuck-payment checks are tested on their own.
    stuck_payment_timeout_ms: 0,
    uncaptured_authorization_timeout_ms: 0,
    movement_reorder_wait_ms: crate::lifecycle::MOVEMENT_REORDER_WAIT_MS,
};

fn scenario() -> impl Strategy<Value = Scenario> {
    prop::collection::vec((fate(), 1i64..1_000_000, 0i64..1_000), 1..8).prop_flat_map(|payments| {
        let events: usize = payments
            .iter()
            .map(|(f, _, _)| match f {
                Fate::Initiated => 1,
                Fate::Declined | Fate::Authorized => 2,
                Fate::Settled => 3,
            })
            .sum();
        let order = Just((0..events).collect::<Vec<_>>()).prop_shuffle();
        let duplicates = prop::collection::vec(0..events, 0..events);
        let delays = prop::collection::vec(0i64..300_000, 2 * events);
        let gaps = prop::collection::vec(0i64..2 * SETTINGS.movement_reorder_wait_ms, 2 * events);
        (Just(payments), order, duplicates, delays, gaps)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_arrival_order_gives_the_same_balanced_ledger((payments, order, duplicates, delays, gaps) in scenario()) {
        let mut all = Vec::new();
        let mut expected_status = BTreeMap::new();
        let mut expected_entries = BTreeSet::new();
        for (index, (fate, amount_minor, fee_minor)) in payments.iter().enumerate() {
            let fee_minor = (*fee_minor).min(*amount_minor);
            all.extend(events_of(index, *fate, *amount_minor, fee_minor));
            let payment_id = format!("payment-{index}");
            let status = match fate {
                Fate::Initiated => PaymentStatus::Initiated,
                Fate::Declined => PaymentStatus::Declined,
                Fate::Authorized => PaymentStatus::Authorized,
                Fate::Settled => PaymentStatus::Settled,
            };
            if matches!(fate, Fate::Authorized | Fate::Settled) {
                expected_entries.insert(journal_entry_id(&payment_id, JournalEntryKind::Authorization));
            }
            if matches!(fate, Fate::Settled) {
                expected_entries.insert(journal_entry_id(&payment_id, JournalEntryKind::Settlement));
            }
            expected_status.insert(payment_id, status);
        }
        let arrivals: Vec<&InputEvent> = order
            .iter()
            .chain(duplicates.iter())
            .map(|i| &all[*i])
            .collect();

        let mut driver = TestDriver::new(LifecycleProcessor::new(SETTINGS));
        let mut final_status = BTreeMap::new();
        let mut entries = BTreeSet::new();
        let mut exceptions = BTreeSet::new();
        let mut outputs = Vec::new();
        for ((event, delay_ms), gap_ms) in arrivals.into_iter().zip(delays).zip(gaps) {
            let mut record_origin = origin("t", Some(event.payment_id().as_bytes()));
            record_origin.timestamp_ms = event.event_time_ms() + delay_ms;
            outputs.extend(driver.pipe(Record { value: event.clone(), origin: record_origin }));
            outputs.extend(driver.advance_wall_clock_ms(gap_ms));
        }
        // Long after the last event, every timer has fired.
        outputs.extend(driver.advance_wall_clock_ms(SETTINGS.movement_reorder_wait_ms));
        outputs.extend(driver.advance_stream_time_ms(10 * SETTINGS.settlement_window_ms));
        for output in outputs {
            match output {
                Output::PaymentStatus(s) => {
                    prop_assert!(
                        LEGAL_TRANSITIONS.contains(&(s.previous_status, s.status)),
                        "illegal state change {:?} -> {}", s.previous_status, s.status
                    );
                    final_status.insert(s.payment_id.clone(), s.status);
                }
                Output::JournalEntry(e) => {
                    prop_assert!(e.is_balanced(), "entry {} balances", e.id);
                    prop_assert!(entries.insert(e.id.clone()), "entry {} posted twice", e.id);
                }
                Output::ReconciliationException(x) => {
                    prop_assert!(
                        !matches!(x.kind, ReconciliationExceptionKind::AmountMismatch | ReconciliationExceptionKind::CurrencyMismatch),
                        "valid events never mismatch: {:?}", x
                    );
                    prop_assert!(exceptions.insert((x.payment_id.clone(), x.kind.as_str())), "raised twice: {:?}", x);
                }
                Output::DuplicateDropped => {}
                other => prop_assert!(false, "unexpected output {:?}", other),
            }
        }
        // A payment that stays authorized is reported missing in the PSP's settlements.
        for (payment_id, status) in &expected_status {
            if *status == PaymentStatus::Authorized {
                prop_assert!(exceptions.contains(&(payment_id.clone(), "MISSING_IN_PSP")), "{payment_id}");
            }
        }
        prop_assert_eq!(final_status, expected_status);
        prop_assert_eq!(entries, expected_entries);
    }
}
