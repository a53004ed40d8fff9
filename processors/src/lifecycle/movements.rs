//! The money movements after an authorization — captures, voids, refunds and the stages
//! of chargebacks (docs/architecture.md, "Payment lifecycle and ledger"). Each handler
//! checks the event against the payment (its currency, whether it was applied already
//! under another event id), applies it to the payment's running totals
//! ([`super::money::MoneyTotals`], which guard every movement), and emits the balanced
//! journal entry of the movement and, when the payment's status changed, a
//! `PaymentStatusChanged`. A movement the totals refuse is dead-lettered with its reason
//! and raises a reconciliation exception: money is at stake.
//!
//! When a movement must wait instead — for the authorization, for captures that may
//! still come, for the opening of its dispute — is [`must_wait`]; the pending buffer
//! (`pending.rs`) keeps it until then.

use paystream_schemas::{
    AuthorizationVoided, CaptureMode, ChargebackReported, ChargebackStage, InputEvent,
    JournalEntry, PaymentCaptured, PaymentStatus, PaymentStatusChanged,
    ReconciliationExceptionKind, RefundIssued,
};

use super::model::{AppliedMovement, Dispute, Money, PaymentState};
use super::money::{Movement, Refusal};
use super::stored::Loaded;
use crate::ledger::{self, EntryContext};
use crate::reconciliation::{self, Amounts};
use crate::{DeadLetterReason, Origin, Output, ProcessorContext, Result, stores};

/// At most this many money movements (captures, voids, refunds, chargeback stages) are
/// applied to one payment; one more is dead-lettered (`record_too_large`) and raises
/// `ILLEGAL_MONEY_MOVEMENT`. Each applied movement keeps its event id and movement id in
/// the payment's value (about 520 bytes at the identifiers' 256-byte maximum), which is
/// written as one changelog record: 400 keep it under 210 KiB, within the 256 KiB the
/// pending buffer also counts against ([`super::PENDING_VALUE_BYTES_MAX`]).
pub const APPLIED_MOVEMENTS_PER_PAYMENT_MAX: usize = 400;

/// True when the money movement `event` cannot be decided yet on `state` and waits in
/// the pending buffer: before the authorization; a refund or chargeback while nothing
/// (or not enough) is captured and the authorization is still open to captures; a
/// chargeback's WON or LOST before its dispute was opened (LOST also after WON); under
/// manual capture, a settlement while the authorization is open. Every other case is
/// decided now, applied or refused.
pub(super) fn must_wait(state: &PaymentState, event: &InputEvent) -> bool {
    if state.status == PaymentStatus::Initiated {
        return matches!(
            event,
            InputEvent::PaymentCaptured(_)
                | InputEvent::AuthorizationVoided(_)
                | InputEvent::RefundIssued(_)
                | InputEvent::ChargebackReported(_)
        );
    }
    let Some(money) = state.money_now() else {
        return false;
    };
    let open_to_captures = money.totals.open_authorization_minor() > 0;
    match event {
        InputEvent::RefundIssued(refund) => {
            open_to_captures && refund.amount_minor > money.totals.refundable_minor()
        }
        InputEvent::ChargebackReported(chargeback) => match chargeback.stage {
            ChargebackStage::Opened => {
                open_to_captures && chargeback.amount_minor > money.totals.refundable_minor()
            }
            ChargebackStage::Won => dispute_stage(&money, &chargeback.dispute_id)
                .is_none_or(|stage| stage != ChargebackStage::Opened),
            ChargebackStage::Lost => dispute_stage(&money, &chargeback.dispute_id).is_none(),
        },
        // Under manual capture a settlement settles what was captured: it waits until
        // the authorization is closed (a final capture, a capture of all, or a void),
        // so that it is compared with every capture whatever the arrival order.
        InputEvent::SettlementReported(_) => {
            state.capture_mode == CaptureMode::Manual && open_to_captures
        }
        _ => false,
    }
}

fn dispute_stage(money: &Money, dispute_id: &str) -> Option<ChargebackStage> {
    money
        .disputes
        .iter()
        .find(|d| d.dispute_id == dispute_id)
        .map(|d| d.stage)
}

/// Applies a capture, void, refund or chargeback to the payment in `loaded`, which
/// exists. Returns whether it changed the payment (`false`: a duplicate or a refusal).
pub(super) fn apply_movement(
    loaded: &mut Loaded,
    event: InputEvent,
    origin: Origin,
    ctx: &mut dyn ProcessorContext,
) -> Result<bool> {
    let request = match &event {
        InputEvent::PaymentCaptured(capture) => Request::capture(capture),
        InputEvent::AuthorizationVoided(void) => Request::void(void),
        InputEvent::RefundIssued(refund) => Request::refund(refund),
        InputEvent::ChargebackReported(chargeback) => {
            let after_win = loaded
                .state()
                .money
                .as_ref()
                .and_then(|money| dispute_stage(money, &chargeback.dispute_id))
                == Some(ChargebackStage::Won);
            Request::chargeback(chargeback, after_win)
        }
        other => unreachable!("not a money movement: {other:?}"),
    };
    let state = loaded
        .payment
        .state
        .as_mut()
        .expect("applied to a payment that exists");
    if state.status == PaymentStatus::Declined {
        let amounts = Amounts {
            expected_minor: None,
            actual_minor: request.amount_minor,
            currency: request.currency.map(str::to_string),
        };
        return refuse(
            ctx,
            state,
            origin,
            request.event_id,
            DeadLetterReason::IllegalTransition,
            format!(
                "payment {} was declined: nothing to {}",
                state.payment_id, request.verb
            ),
            ReconciliationExceptionKind::IllegalMoneyMovement,
            amounts,
            request.occurred_at_ms,
        );
    }
    let payment_currency = state
        .authorized_currency
        .clone()
        .unwrap_or_else(|| state.currency.clone());
    if let Some(currency) = request.currency
        && currency != payment_currency
    {
        return refuse(
            ctx,
            state,
            origin,
            request.event_id,
            DeadLetterReason::InvalidValue,
            format!(
                "{} in {currency}, but payment {} is in {payment_currency}",
                request.verb, state.payment_id
            ),
            ReconciliationExceptionKind::CurrencyMismatch,
            Amounts {
                expected_minor: None,
                actual_minor: request.amount_minor,
                currency: Some(currency.to_string()),
            },
            request.occurred_at_ms,
        );
    }
    let mut money = state
        .money_now()
        .expect("a payment past INITIATED and not declined is authorized");
    if money
        .applied
        .iter()
        .any(|a| a.movement_id == request.movement_id)
    {
        // The PSP reported the same capture, refund or dispute stage again under a new
        // event id: applied once.
        ctx.forward(Output::DuplicateDropped);
        return Ok(false);
    }
    if money.applied.len() >= APPLIED_MOVEMENTS_PER_PAYMENT_MAX {
        return refuse(
            ctx,
            state,
            origin,
            request.event_id,
            DeadLetterReason::RecordTooLarge,
            format!(
                "{} refused: {APPLIED_MOVEMENTS_PER_PAYMENT_MAX} money movements were already \
                 applied to this payment, the most its value in the payments store keeps; book \
                 it by hand",
                request.verb
            ),
            ReconciliationExceptionKind::IllegalMoneyMovement,
            Amounts {
                expected_minor: None,
                actual_minor: request.amount_minor,
                currency: Some(payment_currency),
            },
            request.occurred_at_ms,
        );
    }
    let released_minor = match money.totals.apply(request.movement) {
        Ok(released_minor) => released_minor,
        Err(refusal) => {
            let (reason, kind) = refusal_kind(refusal);
            let amounts = Amounts {
                expected_minor: Some(limit_of(refusal, &money)),
                actual_minor: request.amount_minor,
                currency: Some(payment_currency),
            };
            return refuse(
                ctx,
                state,
                origin,
                request.event_id,
                reason,
                format!("{} refused: {refusal}", request.verb),
                kind,
                amounts,
                request.occurred_at_ms,
            );
        }
    };
    money.applied.push(AppliedMovement {
        event_id: request.event_id.to_string(),
        movement_id: request.movement_id.clone(),
    });
    if let InputEvent::ChargebackReported(chargeback) = &event {
        match money
            .disputes
            .iter_mut()
            .find(|d| d.dispute_id == chargeback.dispute_id)
        {
            Some(dispute) => dispute.stage = chargeback.stage,
            None => money.disputes.push(Dispute {
                dispute_id: chargeback.dispute_id.clone(),
                stage: chargeback.stage,
                amount_minor: chargeback.amount_minor,
            }),
        }
    }
    let previous = state.status;
    state.status = money.totals.status(state.capture_mode);
    state.money = Some(money);
    let context = EntryContext {
        payment_id: &state.payment_id,
        psp: &state.psp,
        merchant_id: &state.merchant_id,
        currency: &payment_currency,
        occurred_at_ms: request.occurred_at_ms,
        caused_by_event_id: request.event_id,
    };
    let entry = journal_entry(&event, &context, released_minor, request.after_win);
    if state.status != previous {
        debug_assert!(
            super::transitions::transition(Some(previous), state.status).is_ok(),
            "{previous} → {} is not in LEGAL_TRANSITIONS",
            state.status
        );
        ctx.forward(Output::PaymentStatus(PaymentStatusChanged {
            payment_id: state.payment_id.clone(),
            merchant_id: state.merchant_id.clone(),
            status: state.status,
            previous_status: Some(previous),
            amount_minor: state.amount_minor,
            currency: state.currency.clone(),
            caused_by_event_id: request.event_id.to_string(),
            occurred_at: request.occurred_at_ms,
        }));
    }
    if let Some(entry) = entry {
        ctx.forward(Output::JournalEntry(entry));
    }
    Ok(true)
}

/// What one movement event asks for, in the terms the handlers need.
struct Request<'a> {
    event_id: &'a str,
    movement: Movement,
    /// The movement's own id (see [`AppliedMovement::movement_id`]).
    movement_id: String,
    amount_minor: Option<i64>,
    currency: Option<&'a str>,
    occurred_at_ms: i64,
    /// What it does, for messages: "capture", "void", "refund", "chargeback".
    verb: &'static str,
    /// A chargeback stage of a dispute that was WON before.
    after_win: bool,
}

impl<'a> Request<'a> {
    fn capture(capture: &'a PaymentCaptured) -> Self {
        Request {
            event_id: &capture.event_id,
            movement: Movement::Capture {
                amount_minor: capture.amount_minor,
                final_capture: capture.final_capture,
            },
            movement_id: format!("CAPTURE:{}", capture.capture_id),
            amount_minor: Some(capture.amount_minor),
            currency: Some(&capture.currency),
            occurred_at_ms: capture.occurred_at,
            verb: "capture",
            after_win: false,
        }
    }

    fn void(void: &'a AuthorizationVoided) -> Self {
        Request {
            event_id: &void.event_id,
            movement: Movement::Void,
            movement_id: "VOID".to_string(),
            amount_minor: None,
            currency: None,
            occurred_at_ms: void.occurred_at,
            verb: "void",
            after_win: false,
        }
    }

    fn refund(refund: &'a RefundIssued) -> Self {
        Request {
            event_id: &refund.event_id,
            movement: Movement::Refund {
                amount_minor: refund.amount_minor,
            },
            movement_id: format!("REFUND:{}", refund.refund_id),
            amount_minor: Some(refund.amount_minor),
            currency: Some(&refund.currency),
            occurred_at_ms: refund.occurred_at,
            verb: "refund",
            after_win: false,
        }
    }

    fn chargeback(chargeback: &'a ChargebackReported, after_win: bool) -> Self {
        let amount_minor = chargeback.amount_minor;
        Request {
            event_id: &chargeback.event_id,
            movement: match chargeback.stage {
                ChargebackStage::Opened => Movement::ChargebackOpened { amount_minor },
                ChargebackStage::Won => Movement::ChargebackWon { amount_minor },
                ChargebackStage::Lost => Movement::ChargebackLost {
                    amount_minor,
                    after_win,
                },
            },
            movement_id: format!(
                "CHARGEBACK_{}:{}",
                chargeback.stage.as_str(),
                chargeback.dispute_id
            ),
            amount_minor: Some(amount_minor),
            currency: Some(&chargeback.currency),
            occurred_at_ms: chargeback.occurred_at,
            verb: "chargeback",
            after_win,
        }
    }
}

/// The journal entry of an applied movement (`released_minor`: what it released of the
/// hold; `after_win`: a chargeback LOST after it was WON).
fn journal_entry(
    event: &InputEvent,
    context: &EntryContext<'_>,
    released_minor: i64,
    after_win: bool,
) -> Option<JournalEntry> {
    Some(match event {
        InputEvent::PaymentCaptured(capture) => ledger::capture_entry(
            context,
            &capture.capture_id,
            capture.amount_minor,
            released_minor,
        ),
        InputEvent::AuthorizationVoided(_) => ledger::void_entry(context, released_minor),
        InputEvent::RefundIssued(refund) => {
            ledger::refund_entry(context, &refund.refund_id, refund.amount_minor)
        }
        InputEvent::ChargebackReported(c) => match c.stage {
            ChargebackStage::Opened => {
                ledger::chargeback_opened_entry(context, &c.dispute_id, c.amount_minor, c.fee_minor)
            }
            ChargebackStage::Won => {
                ledger::chargeback_won_entry(context, &c.dispute_id, c.amount_minor, c.fee_minor)
            }
            ChargebackStage::Lost => ledger::chargeback_lost_entry(
                context,
                &c.dispute_id,
                c.amount_minor,
                c.fee_minor,
                after_win,
            ),
        },
        _ => return None,
    })
}

/// The dead-letter reason and exception kind of a refusal.
fn refusal_kind(refusal: Refusal) -> (DeadLetterReason, ReconciliationExceptionKind) {
    match refusal {
        Refusal::CaptureExceedsAuthorization { .. } => (
            DeadLetterReason::CaptureExceedsAuthorization,
            ReconciliationExceptionKind::CaptureExceedsAuthorization,
        ),
        Refusal::RefundExceedsCaptured { .. } => (
            DeadLetterReason::RefundExceedsCaptured,
            ReconciliationExceptionKind::RefundExceedsCaptured,
        ),
        Refusal::ChargebackExceedsCaptured { .. } => (
            DeadLetterReason::ChargebackExceedsCaptured,
            ReconciliationExceptionKind::ChargebackExceedsCaptured,
        ),
        Refusal::AuthorizationClosed
        | Refusal::NothingCaptured
        | Refusal::FullyRefunded
        | Refusal::ChargebackNotOpen { .. }
        | Refusal::NotPositive { .. } => (
            DeadLetterReason::IllegalTransition,
            ReconciliationExceptionKind::IllegalMoneyMovement,
        ),
    }
}

/// What the refused movement could have had at most (the exception's expected amount).
fn limit_of(refusal: Refusal, money: &Money) -> i64 {
    match refusal {
        Refusal::CaptureExceedsAuthorization {
            remaining_minor, ..
        } => remaining_minor,
        Refusal::RefundExceedsCaptured {
            refundable_minor, ..
        } => refundable_minor,
        Refusal::ChargebackExceedsCaptured {
            chargeable_minor, ..
        } => chargeable_minor,
        Refusal::AuthorizationClosed => money.totals.open_authorization_minor(),
        Refusal::ChargebackNotOpen { .. } => money.totals.disputed_minor,
        Refusal::NothingCaptured | Refusal::FullyRefunded | Refusal::NotPositive { .. } => 0,
    }
}

/// Dead-letters the event at `origin` with `reason` and `message`, and raises `kind` for
/// its payment (once per payment and kind). Returns `Ok(false)`: nothing changed.
#[allow(clippy::too_many_arguments)]
fn refuse(
    ctx: &mut dyn ProcessorContext,
    state: &PaymentState,
    origin: Origin,
    event_id: &str,
    reason: DeadLetterReason,
    message: String,
    kind: ReconciliationExceptionKind,
    amounts: Amounts,
    detected_at_ms: i64,
) -> Result<bool> {
    ctx.forward(Output::DeadLetter {
        origin,
        reason,
        message: format!(
            "{message} (payment {} is {}, event {event_id})",
            state.payment_id, state.status
        ),
    });
    // A refused event is not marked seen: read again (a replay, a retry) it is refused
    // again, against the payment as it is by then, which may give another reason. Its
    // exception is raised once, the first time.
    let marker = format!("{}:refused:{event_id}", state.payment_id);
    let store = ctx.store(stores::RECONCILIATION)?;
    if store.get(marker.as_bytes())?.is_none() {
        store.put(marker.as_bytes(), b"")?;
        reconciliation::raise(ctx, &state.payment_id, kind, amounts, detected_at_ms)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use paystream_schemas::{JournalEntryKind, PostingSide};

    use super::*;
    use crate::driver::TestDriver;
    use crate::lifecycle::LifecycleProcessor;
    use crate::lifecycle::MOVEMENT_REORDER_WAIT_MS;
    use crate::lifecycle::test_support::*;
    use crate::timers::TimerKind;

    /// Net balance per account (debits positive) over every entry in `outputs`.
    fn balances(outputs: &[Output]) -> BTreeMap<String, i64> {
        let mut balances = BTreeMap::new();
        for entry in entries(outputs) {
            assert!(entry.is_balanced(), "{entry:?}");
            for p in &entry.postings {
                let signed = match p.side {
                    PostingSide::Debit => p.amount_minor,
                    PostingSide::Credit => -p.amount_minor,
                };
                *balances.entry(p.account.clone()).or_insert(0) += signed;
            }
        }
        balances.retain(|_, v| *v != 0);
        balances
    }

    fn run(d: &mut TestDriver<LifecycleProcessor>, events: Vec<InputEvent>) -> Vec<Output> {
        events.into_iter().flat_map(|e| d.pipe(rec(e))).collect()
    }

    #[test]
    fn manual_capture_holds_then_partial_captures_move_the_money_and_the_rest_is_released() {
        let mut d = TestDriver::new(in_read_order());
        let out = run(&mut d, vec![initiated_manual("p1"), auth_ok("p1", "a1")]);
        assert_eq!(entries(&out)[0].kind, JournalEntryKind::AuthorizationHold);
        assert_eq!(
            statuses(&out).last(),
            Some(&(Some(PaymentStatus::Initiated), PaymentStatus::Authorized))
        );
        let partial = d.pipe(rec(capture("p1", "c1", 600, false)));
        assert_eq!(
            statuses(&partial),
            vec![(
                Some(PaymentStatus::Authorized),
                PaymentStatus::PartiallyCaptured
            )]
        );
        let last = d.pipe(rec(capture("p1", "c2", 300, true)));
        assert_eq!(
            statuses(&last),
            vec![(
                Some(PaymentStatus::PartiallyCaptured),
                PaymentStatus::Captured
            )]
        );
        let all: Vec<Output> = out.into_iter().chain(partial).chain(last).collect();
        // The hold nets to zero: 900 captured is owed, 100 released.
        assert_eq!(
            balances(&all),
            BTreeMap::from([
                ("merchant_payable:m1".to_string(), -900),
                ("psp_receivable:adyen".to_string(), 900),
            ])
        );
        // A settlement of what was captured matches; one of the authorization would not.
        let InputEvent::SettlementReported(mut s) = settled("p1", "s1") else {
            unreachable!()
        };
        s.gross_amount_minor = 900;
        s.net_amount_minor = 875;
        let out = d.pipe(rec(InputEvent::SettlementReported(s)));
        assert!(exceptions(&out).is_empty(), "{out:?}");
        assert_eq!(
            statuses(&out),
            vec![(Some(PaymentStatus::Captured), PaymentStatus::Settled)]
        );
    }

    #[test]
    fn a_void_releases_the_hold_and_nothing_is_captured_after_it() {
        let mut d = TestDriver::new(in_read_order());
        let mut out = run(
            &mut d,
            vec![initiated_manual("p1"), auth_ok("p1", "a1"), void("p1")],
        );
        assert_eq!(
            statuses(&out).last(),
            Some(&(Some(PaymentStatus::Authorized), PaymentStatus::Voided))
        );
        let late = d.pipe(rec(capture("p1", "c1", 100, false)));
        assert!(has_dead_letter(&late, DeadLetterReason::IllegalTransition));
        assert_eq!(
            exceptions(&late),
            vec![(
                ReconciliationExceptionKind::IllegalMoneyMovement,
                Some(0),
                Some(100)
            )]
        );
        out.extend(late);
        assert!(
            balances(&out).is_empty(),
            "hold released: {:?}",
            balances(&out)
        );
    }

    #[test]
    fn a_capture_above_the_authorized_remainder_is_refused_with_an_exception() {
        let mut d = TestDriver::new(in_read_order());
        run(
            &mut d,
            vec![
                initiated_manual("p1"),
                auth_ok("p1", "a1"),
                capture("p1", "c1", 700, false),
            ],
        );
        let out = d.pipe(rec(capture("p1", "c2", 400, false)));
        assert!(has_dead_letter(
            &out,
            DeadLetterReason::CaptureExceedsAuthorization
        ));
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::CaptureExceedsAuthorization,
                Some(300),
                Some(400)
            )]
        );
        assert!(entries(&out).is_empty());
        // Nothing changed: 300 can still be captured.
        assert_eq!(
            entries(&d.pipe(rec(capture("p1", "c3", 300, false)))).len(),
            1
        );
    }

    #[test]
    fn refunds_up_to_what_was_captured_then_no_chargeback() {
        let mut d = TestDriver::new(in_read_order());
        let mut out = run(
            &mut d,
            vec![
                initiated("p1"),
                auth_ok("p1", "a1"),
                settled("p1", "s1"),
                refund("p1", "r1", 400),
            ],
        );
        assert_eq!(
            statuses(&out).last(),
            Some(&(
                Some(PaymentStatus::Settled),
                PaymentStatus::PartiallyRefunded
            ))
        );
        let too_much = d.pipe(rec(refund("p1", "r2", 700)));
        assert!(has_dead_letter(
            &too_much,
            DeadLetterReason::RefundExceedsCaptured
        ));
        assert_eq!(
            exceptions(&too_much),
            vec![(
                ReconciliationExceptionKind::RefundExceedsCaptured,
                Some(600),
                Some(700)
            )]
        );
        out.extend(d.pipe(rec(refund("p1", "r3", 600))));
        assert_eq!(
            statuses(&out).last(),
            Some(&(
                Some(PaymentStatus::PartiallyRefunded),
                PaymentStatus::Refunded
            ))
        );
        // Captured 1000, settled at a fee of 25, refunded 1000: the merchant and the PSP
        // are square; the bank is down the fee, which is the expense.
        assert_eq!(
            balances(&out),
            BTreeMap::from([
                ("bank:settlement".to_string(), 975),
                ("expense:psp_fees:adyen".to_string(), 25),
                ("psp_receivable:adyen".to_string(), -1000),
            ])
        );
        let chargeback = d.pipe(rec(chargeback(
            "p1",
            "d1",
            ChargebackStage::Opened,
            100,
            15,
        )));
        assert!(has_dead_letter(
            &chargeback,
            DeadLetterReason::IllegalTransition
        ));
        assert_eq!(
            exceptions(&chargeback)[0].0,
            ReconciliationExceptionKind::IllegalMoneyMovement
        );
    }

    #[test]
    fn a_refund_of_a_declined_payment_is_refused() {
        let mut d = TestDriver::new(in_read_order());
        run(&mut d, vec![initiated("p1"), auth_failed("p1", "f1")]);
        let out = d.pipe(rec(refund("p1", "r1", 100)));
        assert!(has_dead_letter(&out, DeadLetterReason::IllegalTransition));
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::IllegalMoneyMovement,
                None,
                Some(100)
            )]
        );
    }

    #[test]
    fn a_chargeback_opened_won_then_lost_again_books_each_fund_movement() {
        let mut d = TestDriver::new(in_read_order());
        let mut out = run(&mut d, vec![initiated("p1"), auth_ok("p1", "a1")]);
        for (stage, fee) in [
            (ChargebackStage::Opened, 15),
            (ChargebackStage::Won, 15),
            (ChargebackStage::Lost, 15),
        ] {
            out.extend(d.pipe(rec(chargeback("p1", "d1", stage, 1000, fee))));
        }
        let kinds: Vec<JournalEntryKind> = entries(&out).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                JournalEntryKind::Authorization,
                JournalEntryKind::ChargebackOpened,
                JournalEntryKind::ChargebackWon,
                JournalEntryKind::ChargebackLost
            ]
        );
        assert_eq!(
            statuses(&out)
                .into_iter()
                .map(|(_, to)| to)
                .collect::<Vec<_>>(),
            [
                PaymentStatus::Initiated,
                PaymentStatus::Authorized,
                PaymentStatus::Disputed,
                PaymentStatus::ChargebackWon,
                PaymentStatus::ChargebackLost
            ]
        );
        // The merchant bore the loss; the PSP kept the amount and the second fee.
        assert_eq!(
            balances(&out),
            BTreeMap::from([
                ("expense:dispute_fees:adyen".to_string(), 15),
                ("psp_receivable:adyen".to_string(), -15),
            ])
        );
    }

    #[test]
    fn movements_that_arrive_early_wait_and_apply_in_the_same_outcome() {
        let events = [
            initiated_manual("p1"),
            auth_ok("p1", "a1"),
            capture("p1", "c1", 600, false),
            refund("p1", "r1", 800),
            capture("p1", "c2", 400, true),
            chargeback("p1", "d1", ChargebackStage::Opened, 200, 10),
            chargeback("p1", "d1", ChargebackStage::Won, 200, 0),
        ];
        let outcome = |order: &[usize]| {
            let mut d = TestDriver::new(in_read_order());
            let out = run(&mut d, order.iter().map(|i| events[*i].clone()).collect());
            let mut ids: Vec<String> = entries(&out).iter().map(|e| e.id.clone()).collect();
            ids.sort();
            let dead = out
                .iter()
                .filter(|o| matches!(o, Output::DeadLetter { .. }))
                .count();
            (
                ids,
                balances(&out),
                dead,
                stored_payment(&d, "p1").pending.len(),
            )
        };
        let in_order = outcome(&[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(in_order.2, 0, "nothing refused");
        assert_eq!(in_order.3, 0, "nothing left waiting");
        // Any order across topics; within one topic (one partition of it, keyed by the
        // payment id) records keep their order: c1 before c2, the dispute's OPENED
        // before its WON.
        for order in [
            [5, 6, 3, 2, 4, 1, 0],
            [3, 2, 0, 5, 1, 6, 4],
            [3, 5, 6, 2, 0, 4, 1],
            [1, 2, 4, 3, 5, 6, 0],
        ] {
            assert_eq!(outcome(&order), in_order, "{order:?}");
        }
    }

    #[test]
    fn a_movement_reported_again_is_applied_once() {
        let mut d = TestDriver::new(in_read_order());
        run(
            &mut d,
            vec![
                initiated_manual("p1"),
                auth_ok("p1", "a1"),
                capture("p1", "c1", 500, false),
            ],
        );
        // The same event again, and the same capture under a new event id.
        assert_eq!(
            d.pipe(rec(capture("p1", "c1", 500, false))),
            vec![Output::DuplicateDropped]
        );
        let InputEvent::PaymentCaptured(mut again) = capture("p1", "c1", 500, false) else {
            unreachable!()
        };
        again.event_id = "evt-c1-resent".into();
        assert_eq!(
            d.pipe(rec(InputEvent::PaymentCaptured(again))),
            vec![Output::DuplicateDropped]
        );
        let stored = stored_payment(&d, "p1");
        let money = stored.state.unwrap().money.unwrap();
        assert_eq!(money.totals.captured_minor, 500);
    }

    #[test]
    fn the_money_survives_a_restart() {
        let mut d = TestDriver::new(in_read_order());
        run(
            &mut d,
            vec![
                initiated_manual("p1"),
                auth_ok("p1", "a1"),
                capture("p1", "c1", 500, false),
                chargeback("p1", "d1", ChargebackStage::Opened, 200, 10),
            ],
        );
        d.restart(in_read_order());
        let out = d.pipe(rec(chargeback("p1", "d1", ChargebackStage::Won, 200, 10)));
        assert_eq!(
            statuses(&out),
            vec![(Some(PaymentStatus::Disputed), PaymentStatus::ChargebackWon)]
        );
        let out = d.pipe(rec(refund("p1", "r1", 501)));
        assert!(out.is_empty(), "waits: captures may still come ({out:?})");
        let out = d.pipe(rec(void("p1")));
        assert!(
            has_dead_letter(&out, DeadLetterReason::RefundExceedsCaptured),
            "the void closes the authorization and the waiting refund is decided: {out:?}"
        );
    }

    /// A manual-capture payment whose movements compete, in the order they happen (as
    /// `test_support` dates them): a partial capture, then a void that releases the rest;
    /// a refund, then a chargeback above what is left.
    fn competing_movements() -> Vec<InputEvent> {
        vec![
            initiated_manual("p1"),
            auth_ok("p1", "a1"),
            capture("p1", "c1", 600, false),
            void("p1"),
            refund("p1", "r1", 400),
            chargeback("p1", "d1", ChargebackStage::Opened, 300, 15),
        ]
    }

    type Outcome = (
        Vec<(&'static str, String)>,
        BTreeMap<String, i64>,
        Vec<&'static str>,
    );

    /// Entry kinds and ids, balances and dead-letter reasons of `out`.
    fn outcome_of(out: &[Output]) -> Outcome {
        let mut ids: Vec<(&'static str, String)> = entries(out)
            .iter()
            .map(|e| (e.kind.as_str(), e.id.clone()))
            .collect();
        ids.sort();
        let mut dead: Vec<&'static str> = out
            .iter()
            .filter_map(|o| match o {
                Output::DeadLetter { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        dead.sort();
        (ids, balances(out), dead)
    }

    /// Every permutation of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut all = Vec::new();
        for shorter in permutations(n - 1) {
            for at in 0..=shorter.len() {
                let mut order = shorter.clone();
                order.insert(at, n - 1);
                all.push(order);
            }
        }
        all
    }

    #[test]
    fn competing_movements_apply_in_the_order_they_happened_whatever_the_read_order() {
        let events = competing_movements();
        let run_in = |lifecycle: LifecycleProcessor, order: &[usize]| {
            let mut d = TestDriver::new(lifecycle);
            let mut out: Vec<Output> = order
                .iter()
                .flat_map(|i| d.pipe(rec(events[*i].clone())))
                .collect();
            out.extend(d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS));
            assert!(stored_payment(&d, "p1").pending.is_empty(), "{order:?}");
            outcome_of(&out)
        };
        let in_order: Vec<usize> = (0..events.len()).collect();
        let happened = run_in(in_read_order(), &in_order);
        let kinds: Vec<&str> = happened.0.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(
            kinds,
            ["AUTHORIZATION_HOLD", "CAPTURE", "REFUND", "VOID"],
            "the capture, the release of the rest, the refund; the chargeback is refused"
        );
        assert_eq!(happened.2, ["chargeback_exceeds_captured"]);
        // Every read order of the six events (720), the movements within one wait.
        for order in permutations(events.len()) {
            assert_eq!(
                run_in(LifecycleProcessor::default(), &order),
                happened,
                "read in {order:?}"
            );
        }
        // Without the wait, a void read first releases everything: the capture is refused.
        assert_ne!(run_in(in_read_order(), &[0, 1, 3, 2, 4, 5]), happened);
    }

    #[test]
    fn movements_wait_until_none_arrived_for_the_reorder_wait() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated_manual("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        assert!(d.pipe(rec(void("p1"))).is_empty(), "the void waits");
        assert!(crate::Processor::awaits_wall_clock(d.processor()));
        assert!(
            d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS - 1)
                .is_empty()
        );
        // A capture that happened before the void arrives: the wait starts again.
        assert!(d.pipe(rec(capture("p1", "c1", 600, false))).is_empty());
        assert!(
            d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS - 1)
                .is_empty()
        );
        let out = d.advance_wall_clock_ms(1);
        assert_eq!(
            statuses(&out),
            captured_then_rest_released(),
            "the capture, then the void releases the rest"
        );
        assert!(!crate::Processor::awaits_wall_clock(d.processor()));
        let stored = stored_payment(&d, "p1");
        assert!(stored.pending.is_empty());
        assert!(
            stored
                .timers
                .iter()
                .all(|t| t.kind != TimerKind::MovementReorder)
        );
        assert!(
            stored
                .timers
                .iter()
                .all(|t| t.kind != TimerKind::StuckPayment),
            "captured: no longer an uncaptured authorization"
        );
    }

    #[test]
    fn a_settlement_waits_with_the_movements_and_applies_among_them_in_event_time_order() {
        // A refund that happened before the settlement (the status goes to
        // PARTIALLY_REFUNDED, and the settlement then changes no status).
        let InputEvent::RefundIssued(mut early) = refund("p1", "r1", 300) else {
            unreachable!()
        };
        early.occurred_at = 28;
        let early = InputEvent::RefundIssued(early);
        let mut in_order = TestDriver::new(in_read_order());
        run(&mut in_order, vec![initiated("p1"), auth_ok("p1", "a1")]);
        let happened = run(&mut in_order, vec![early.clone(), settled("p1", "s1")]);
        assert_eq!(
            statuses(&happened),
            vec![(
                Some(PaymentStatus::Authorized),
                PaymentStatus::PartiallyRefunded
            )]
        );
        for read in [
            vec![early.clone(), settled("p1", "s1")],
            vec![settled("p1", "s1"), early.clone()],
        ] {
            let mut d = TestDriver::new(LifecycleProcessor::default());
            run(&mut d, vec![initiated("p1"), auth_ok("p1", "a1")]);
            assert!(run(&mut d, read.clone()).is_empty(), "both wait: {read:?}");
            let out = d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS);
            assert_eq!(statuses(&out), statuses(&happened), "{read:?}");
            assert_eq!(entries(&out), entries(&happened), "{read:?}");
            assert!(stored_payment(&d, "p1").pending.is_empty());
        }
    }

    #[test]
    fn a_payment_keeps_at_most_its_maximum_of_movements() {
        let mut d = TestDriver::new(in_read_order());
        run(&mut d, vec![initiated("p1"), auth_ok("p1", "a1")]);
        for n in 0..APPLIED_MOVEMENTS_PER_PAYMENT_MAX {
            let out = d.pipe(rec(refund("p1", &format!("r{n}"), 1)));
            assert_eq!(entries(&out).len(), 1, "refund {n}: {out:?}");
        }
        let out = d.pipe(rec(refund("p1", "one-too-many", 1)));
        assert!(
            has_dead_letter(&out, DeadLetterReason::RecordTooLarge),
            "{out:?}"
        );
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::IllegalMoneyMovement,
                None,
                Some(1)
            )]
        );
        let value_bytes = d.store_get(crate::stores::PAYMENTS, b"p1").unwrap().len();
        assert!(value_bytes < 256 * 1024, "{value_bytes} bytes");
    }

    #[test]
    fn after_a_restart_movements_wait_the_whole_wait_again() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated_manual("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        assert!(d.pipe(rec(void("p1"))).is_empty());
        // The instance dies; the task runs again a minute later, when the void's wait is
        // long over, and has yet to read the capture that happened before the void.
        d.pass_wall_clock_ms(60_000);
        d.restart(LifecycleProcessor::default());
        let out = d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS / 2);
        assert!(
            statuses(&out).is_empty(),
            "waits again from the restart: {out:?}"
        );
        d.pipe(rec(capture("p1", "c1", 600, false)));
        let out = d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS);
        assert_eq!(statuses(&out), captured_then_rest_released());
    }

    #[test]
    fn after_a_stall_movements_wait_the_whole_wait_again() {
        let mut d = TestDriver::new(LifecycleProcessor::default());
        d.pipe(rec(initiated_manual("p1")));
        d.pipe(rec(auth_ok("p1", "a1")));
        assert!(d.pipe(rec(void("p1"))).is_empty());
        // The process is paused for 6 s, longer than the void's wait; the capture that
        // happened before the void reached the broker meanwhile and is not read yet.
        d.stall_ms(6_000);
        let out = d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS / 2);
        assert!(
            statuses(&out).is_empty(),
            "waits again from the end of the stall: {out:?}"
        );
        d.pipe(rec(capture("p1", "c1", 600, false)));
        let out = d.advance_wall_clock_ms(MOVEMENT_REORDER_WAIT_MS);
        assert_eq!(statuses(&out), captured_then_rest_released());
    }

    #[test]
    fn a_refused_movement_read_again_raises_no_second_exception() {
        let mut d = TestDriver::new(in_read_order());
        let too_much = capture("p1", "c2", 900, false);
        let out = run(
            &mut d,
            vec![
                initiated_manual("p1"),
                auth_ok("p1", "a1"),
                capture("p1", "c1", 600, false),
                too_much.clone(),
                capture("p1", "c3", 400, true),
            ],
        );
        assert_eq!(
            exceptions(&out),
            vec![(
                ReconciliationExceptionKind::CaptureExceedsAuthorization,
                Some(400),
                Some(900)
            )]
        );
        // A replay: the refused capture is refused again — now after the final capture,
        // so as an illegal movement — and dead-lettered again, with no new exception.
        let out = d.pipe(rec(too_much));
        assert!(
            has_dead_letter(&out, DeadLetterReason::IllegalTransition),
            "{out:?}"
        );
        assert!(exceptions(&out).is_empty(), "{out:?}");
    }

    /// The status changes of a partial capture followed by a void of the rest.
    fn captured_then_rest_released() -> Vec<(Option<PaymentStatus>, PaymentStatus)> {
        vec![
            (
                Some(PaymentStatus::Authorized),
                PaymentStatus::PartiallyCaptured,
            ),
            (
                Some(PaymentStatus::PartiallyCaptured),
                PaymentStatus::Captured,
            ),
        ]
    }
}
