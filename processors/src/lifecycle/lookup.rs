//! A payment as the lifecycle holds it now, for the payment lookup
//! (`GET /payments/{payment_id}`, `paystream payment <id>`; docs/architecture.md,
//! "Interactive queries"): its status and amounts, the events applied to it, the events
//! waiting for it and what each waits for, and its timers — rendered from the value of
//! the `payments` store ([`super::stored::StoredPayment`]).
//!
//! Only identifiers, statuses, amounts and times are shown: never an event's record,
//! its key or value bytes (which a card token or free text could be in).

use paystream_schemas::{InputEvent, PaymentStatus};
use serde_json::{Value, json};

use super::model::PaymentState;
use super::movements::must_wait;
use super::stored::{StoredPayment, decode};
use crate::Result;
use crate::timers::{TimerClock, TimerKind};

/// What a waiting event waits for, in words.
fn waits_for(payment: &StoredPayment, event: &InputEvent) -> &'static str {
    let Some(state) = &payment.state else {
        return "its payment (payment_initiated not seen yet)";
    };
    let movement = !matches!(
        event,
        InputEvent::AuthSucceeded(_) | InputEvent::AuthFailed(_)
    );
    if state.status == PaymentStatus::Initiated {
        "the authorization"
    } else if must_wait(state, event) {
        "the money movements it needs (a capture, or the opening of its dispute)"
    } else if movement && payment.in_reorder_wait() {
        "the reorder wait: movements apply in event-time order once it is over"
    } else {
        "the next event or punctuation of its task"
    }
}

fn timer_kind(kind: TimerKind) -> &'static str {
    match kind {
        TimerKind::Orphan => "orphan_timeout",
        TimerKind::SettlementWindow => "settlement_window",
        TimerKind::PendingExpiry => "pending_retention",
        TimerKind::StuckPayment => "stuck_payment",
        TimerKind::MovementReorder => "movement_reorder",
    }
}

fn timer_clock(kind: TimerKind) -> &'static str {
    match kind.clock() {
        TimerClock::Stream(_) if kind == TimerKind::SettlementWindow => {
            "event time of the settlement stream"
        }
        TimerClock::Stream(_) => "event time of the payments stream",
        TimerClock::WallClock => "wall clock",
    }
}

fn state_view(state: &PaymentState) -> Value {
    let money = state.money_now();
    let mut applied = vec![json!({
        "kind": "payment_initiated",
        "event_id": state.initiated_event_id,
    })];
    if let Some(id) = &state.auth_event_id {
        let kind = if state.status == PaymentStatus::Declined {
            "auth_failure"
        } else {
            "auth_success"
        };
        applied.push(json!({ "kind": kind, "event_id": id }));
    }
    if let Some(money) = &money {
        for movement in &money.applied {
            applied.push(json!({
                "kind": "money_movement",
                "event_id": movement.event_id,
                "movement_id": movement.movement_id,
            }));
        }
    }
    if let Some(id) = &state.settlement_event_id {
        applied.push(json!({ "kind": "settlement", "event_id": id }));
    }
    json!({
        "status": state.status,
        "merchant_id": state.merchant_id,
        "psp": state.psp,
        "amount_minor": state.amount_minor,
        "currency": state.currency,
        "capture_mode": state.capture_mode,
        "authorized_amount_minor": state.authorized_amount_minor,
        "authorized_currency": state.authorized_currency,
        "totals_minor": money.as_ref().map(|m| json!({
            "authorized": m.totals.authorized_minor,
            "captured": m.totals.captured_minor,
            "released": m.totals.released_minor,
            "settled": m.totals.settled_minor,
            "refunded": m.totals.refunded_minor,
            "disputed": m.totals.disputed_minor,
            "charged_back": m.totals.charged_back_minor,
            "reinstated": m.totals.reinstated_minor,
        })),
        "disputes": money.as_ref().map_or_else(Vec::new, |m| m.disputes.iter().map(|d| json!({
            "dispute_id": d.dispute_id,
            "stage": d.stage,
            "amount_minor": d.amount_minor,
        })).collect()),
        "events_applied": applied,
    })
}

/// What the lifecycle holds for `payment_id`, from its value in the `payments` store
/// (the bytes as the lifecycle wrote them). A payment not seen yet whose events wait
/// has `"status": null` and its waiting events. Amounts are minor units of the
/// currency (ISO 4217); times are milliseconds since the Unix epoch.
///
/// # Errors
/// [`crate::ProcessorError::CorruptState`] when the value cannot be decoded.
pub fn payment_view(payment_id: &str, value: &[u8]) -> Result<Value> {
    let payment = decode(payment_id, value)?;
    let pending: Vec<Value> = payment
        .pending
        .iter()
        .map(|waiting| {
            json!({
                "kind": waiting.event.topic_name(),
                "event_id": waiting.event.event_id(),
                "event_time_ms": waiting.event.event_time_ms(),
                "topic": waiting.origin.topic,
                "partition": waiting.origin.partition,
                "offset": waiting.origin.offset,
                "waits_for": waits_for(&payment, &waiting.event),
            })
        })
        .collect();
    let timers: Vec<Value> = payment
        .timers
        .iter()
        .map(|timer| {
            json!({
                "kind": timer_kind(timer.kind),
                "due_ms": timer.due_ms,
                "clock": timer_clock(timer.kind),
            })
        })
        .collect();
    let mut view = match &payment.state {
        Some(state) => state_view(state),
        None => json!({ "status": null, "events_applied": [] }),
    };
    let object = view.as_object_mut().expect("a JSON object");
    object.insert("payment_id".into(), json!(payment_id));
    object.insert("pending".into(), Value::Array(pending));
    object.insert("timers".into(), Value::Array(timers));
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::test_support::{auth_ok, in_read_order, initiated, rec, settled};
    use crate::stores;

    fn view(d: &TestDriver<LifecycleProcessor>, payment_id: &str) -> Value {
        let value = d
            .store_get(stores::PAYMENTS, payment_id.as_bytes())
            .expect("the lifecycle keeps a value for the payment");
        payment_view(payment_id, &value).unwrap()
    }

    #[test]
    fn a_payment_not_seen_yet_shows_its_waiting_auth_and_timers_and_never_its_record() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(auth_ok("p1", "a1")));
        let view = view(&d, "p1");
        assert_eq!(view["payment_id"], "p1");
        assert_eq!(view["status"], Value::Null);
        assert_eq!(view["pending"][0]["kind"], "auth_success");
        assert_eq!(view["pending"][0]["event_id"], "a1");
        assert_eq!(
            view["pending"][0]["waits_for"],
            "its payment (payment_initiated not seen yet)"
        );
        let kinds: Vec<&str> = view["timers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"orphan_timeout"), "{kinds:?}");
        assert!(kinds.contains(&"pending_retention"), "{kinds:?}");
        let text = view.to_string();
        // The auth's psp reference and auth code are in its record, not in the view.
        assert!(
            !text.contains("psp-1") && !text.contains("\"A1\""),
            "{text}"
        );
    }

    #[test]
    fn an_initiated_payment_shows_its_amount_and_a_settlement_waiting_for_the_authorization() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p2")));
        d.pipe(rec(settled("p2", "s1")));
        let view = view(&d, "p2");
        assert_eq!(view["status"], "INITIATED");
        assert_eq!(view["amount_minor"], 1000);
        assert_eq!(view["currency"], "EUR");
        assert_eq!(view["events_applied"][0]["kind"], "payment_initiated");
        assert_eq!(view["events_applied"][0]["event_id"], "init-p2");
        assert_eq!(view["pending"][0]["kind"], "settlement");
        assert_eq!(view["pending"][0]["waits_for"], "the authorization");
        assert_eq!(view["totals_minor"], Value::Null);
        // The payment method token of the payment_initiated is never shown.
        assert!(!view.to_string().contains("pm_1"), "{view}");
    }

    #[test]
    fn a_settled_payment_shows_its_totals_and_the_events_applied() {
        let mut d = TestDriver::new(in_read_order());
        d.pipe(rec(initiated("p3")));
        d.pipe(rec(auth_ok("p3", "a3")));
        d.pipe(rec(settled("p3", "s3")));
        let view = view(&d, "p3");
        assert_eq!(view["status"], "SETTLED");
        assert_eq!(view["totals_minor"]["captured"], 1000);
        assert_eq!(view["totals_minor"]["settled"], 1000);
        let applied: Vec<&str> = view["events_applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(applied, ["init-p3", "a3", "s3"]);
        assert!(view["pending"].as_array().unwrap().is_empty());
    }

    #[test]
    fn a_value_that_is_not_a_payment_is_an_error_not_a_panic() {
        assert!(payment_view("p4", &[0xff, 0x00, 0x13]).is_err());
    }
}
