//! Property tests of the payment lifecycle (STYLE 14): for any interleaving and
//! duplication of a valid set of events, the final statuses and journal entries are
//! the same, every entry balances, and nothing is dead-lettered.

use std::collections::{BTreeMap, BTreeSet};

use paystream_processors::driver::{TestDriver, origin};
use paystream_processors::ledger::journal_entry_id;
use paystream_processors::lifecycle::LifecycleProcessor;
use paystream_processors::{Output, Record};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, InputEvent, JournalEntryKind, PaymentInitiated, PaymentStatus,
    SettlementReported,
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

/// Payments and, for the arrival order, a permutation of all their events and the
/// indexes of events sent a second time.
type Scenario = (Vec<PlannedPayment>, Vec<usize>, Vec<usize>);

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
        (Just(payments), order, duplicates)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_arrival_order_gives_the_same_balanced_ledger((payments, order, duplicates) in scenario()) {
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

        let mut driver = TestDriver::new(LifecycleProcessor);
        let mut final_status = BTreeMap::new();
        let mut entries = BTreeSet::new();
        for event in arrivals {
            let record = Record { value: event.clone(), origin: origin("t", None) };
            for output in driver.pipe(record) {
                match output {
                    Output::PaymentStatus(s) => {
                        final_status.insert(s.payment_id.clone(), s.status);
                    }
                    Output::JournalEntry(e) => {
                        prop_assert!(e.is_balanced(), "entry {} balances", e.id);
                        prop_assert!(entries.insert(e.id.clone()), "entry {} posted twice", e.id);
                    }
                    Output::DuplicateDropped => {}
                    other => prop_assert!(false, "unexpected output {:?}", other),
                }
            }
        }
        prop_assert_eq!(final_status, expected_status);
        prop_assert_eq!(entries, expected_entries);
    }
}
