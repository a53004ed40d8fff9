//! Events, records and output filters shared by the lifecycle's unit tests.

use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, CaptureMode, ChargebackReported,
    ChargebackStage, InputEvent, JournalEntry, PaymentCaptured, PaymentInitiated, PaymentStatus,
    ReconciliationExceptionKind, RefundIssued, SettlementReported,
};

use crate::driver::{TestDriver, origin};
use crate::lifecycle::LifecycleProcessor;
use crate::lifecycle::stored::{self, StoredPayment};
use crate::{DeadLetterReason, Output, Record, stores};

/// A lifecycle with the reorder wait of money movements off: each movement and
/// settlement applies as it is piped. For the tests of what they do; the wait has its
/// own (`movements.rs`).
pub(crate) fn in_read_order() -> LifecycleProcessor {
    LifecycleProcessor::new(crate::lifecycle::LifecycleSettings {
        movement_reorder_wait_ms: 0,
        ..Default::default()
    })
}

pub(crate) fn initiated(payment_id: &str) -> InputEvent {
    InputEvent::PaymentInitiated(PaymentInitiated {
        event_id: format!("init-{payment_id}"),
        idempotency_key: format!("idem-{payment_id}"),
        payment_id: payment_id.into(),
        merchant_id: "m1".into(),
        customer_id: "c1".into(),
        amount_minor: 1000,
        currency: "EUR".into(),
        payment_method_token: "pm_1".into(),
        psp: "adyen".into(),
        occurred_at: 10,
        capture_mode: paystream_schemas::CaptureMode::Automatic,
    })
}

pub(crate) fn auth_ok(payment_id: &str, event_id: &str) -> InputEvent {
    InputEvent::AuthSucceeded(AuthSucceeded {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: "psp-1".into(),
        auth_code: "A1".into(),
        amount_minor: 1000,
        currency: "EUR".into(),
        occurred_at: 20,
    })
}

pub(crate) fn auth_failed(payment_id: &str, event_id: &str) -> InputEvent {
    InputEvent::AuthFailed(AuthFailed {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: None,
        decline_code: "05".into(),
        reason: "do not honour".into(),
        occurred_at: 20,
    })
}

pub(crate) fn settled(payment_id: &str, event_id: &str) -> InputEvent {
    InputEvent::SettlementReported(SettlementReported {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: "psp-1".into(),
        settlement_batch_id: "batch-1".into(),
        gross_amount_minor: 1000,
        fee_minor: 25,
        net_amount_minor: 975,
        currency: "EUR".into(),
        settled_at: 30,
    })
}

/// A payment of 1000 EUR under manual capture.
pub(crate) fn initiated_manual(payment_id: &str) -> InputEvent {
    let InputEvent::PaymentInitiated(mut payment) = initiated(payment_id) else {
        unreachable!()
    };
    payment.capture_mode = CaptureMode::Manual;
    InputEvent::PaymentInitiated(payment)
}

pub(crate) fn capture(
    payment_id: &str,
    capture_id: &str,
    amount_minor: i64,
    final_capture: bool,
) -> InputEvent {
    InputEvent::PaymentCaptured(PaymentCaptured {
        event_id: format!("evt-{capture_id}"),
        payment_id: payment_id.into(),
        capture_id: capture_id.into(),
        psp_reference: "psp-1".into(),
        amount_minor,
        currency: "EUR".into(),
        final_capture,
        occurred_at: 25,
    })
}

pub(crate) fn void(payment_id: &str) -> InputEvent {
    InputEvent::AuthorizationVoided(AuthorizationVoided {
        event_id: format!("evt-void-{payment_id}"),
        payment_id: payment_id.into(),
        psp_reference: "psp-1".into(),
        reason: "order cancelled".into(),
        occurred_at: 26,
    })
}

pub(crate) fn refund(payment_id: &str, refund_id: &str, amount_minor: i64) -> InputEvent {
    InputEvent::RefundIssued(RefundIssued {
        event_id: format!("evt-{refund_id}"),
        payment_id: payment_id.into(),
        refund_id: refund_id.into(),
        psp_reference: "psp-1".into(),
        amount_minor,
        currency: "EUR".into(),
        reason: "returned".into(),
        occurred_at: 40,
    })
}

pub(crate) fn chargeback(
    payment_id: &str,
    dispute_id: &str,
    stage: ChargebackStage,
    amount_minor: i64,
    fee_minor: i64,
) -> InputEvent {
    InputEvent::ChargebackReported(ChargebackReported {
        event_id: format!("evt-{dispute_id}-{}", stage.as_str()),
        payment_id: payment_id.into(),
        dispute_id: dispute_id.into(),
        amount_minor,
        currency: "EUR".into(),
        fee_minor,
        reason_code: "10.4".into(),
        stage,
        occurred_at: 50,
    })
}

/// `event` as a record keyed by its payment id.
pub(crate) fn rec(event: InputEvent) -> Record<InputEvent> {
    let key = event.payment_id().as_bytes().to_vec();
    Record {
        value: event,
        origin: origin("t", Some(&key)),
    }
}

/// The `(previous, new)` status of each status change in `outputs`.
pub(crate) fn statuses(outputs: &[Output]) -> Vec<(Option<PaymentStatus>, PaymentStatus)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::PaymentStatus(s) => Some((s.previous_status, s.status)),
            _ => None,
        })
        .collect()
}

/// The journal entries in `outputs`.
pub(crate) fn entries(outputs: &[Output]) -> Vec<&JournalEntry> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::JournalEntry(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Whether `outputs` is exactly one dead letter with `reason`.
pub(crate) fn is_dead_letter(outputs: &[Output], reason: DeadLetterReason) -> bool {
    matches!(outputs, [Output::DeadLetter { reason: r, .. }] if *r == reason)
}

/// True when one of `outputs` is a dead letter with `reason`.
pub(crate) fn has_dead_letter(outputs: &[Output], reason: DeadLetterReason) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::DeadLetter { reason: r, .. } if *r == reason))
}

/// The `(kind, expected, actual)` of each reconciliation exception in `outputs`.
pub(crate) fn exceptions(
    outputs: &[Output],
) -> Vec<(ReconciliationExceptionKind, Option<i64>, Option<i64>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ReconciliationException(x) => {
                Some((x.kind, x.expected_amount_minor, x.actual_amount_minor))
            }
            _ => None,
        })
        .collect()
}

/// What the `payments` store holds for `payment_id` (empty when it holds nothing).
pub(crate) fn stored_payment(
    d: &TestDriver<LifecycleProcessor>,
    payment_id: &str,
) -> StoredPayment {
    d.store_get(stores::PAYMENTS, payment_id.as_bytes())
        .map(|value| stored::decode(payment_id, &value).expect("a value the lifecycle wrote"))
        .unwrap_or_default()
}
