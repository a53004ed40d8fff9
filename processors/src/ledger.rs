//! Double-entry journal entries (docs/architecture.md, "Payment lifecycle and ledger"). Amounts are minor units; every
//! entry balances to zero per currency, asserted here where entries are made and again by
//! the sink where they are written and by `paystream ledger verify` afterwards.
//!
//! Journal entry ids are UUID v5 of `"{payment_id}:{kind}"` in [`JOURNAL_ENTRY_NAMESPACE`],
//! so a replay or retry produces the same id and can never post twice.

use paystream_schemas::{JournalEntry, JournalEntryKind, Posting, PostingSide, SettlementReported};
use uuid::Uuid;

/// UUID namespace of journal entry ids (fixed forever: changing it would re-post history).
pub const JOURNAL_ENTRY_NAMESPACE: Uuid =
    Uuid::from_u128(0x5d1c_2a4e_8b7f_4c3a_9e61_0f2b_7a9d_c410);

/// The deterministic id of a payment's journal entry of `kind`.
pub fn journal_entry_id(payment_id: &str, kind: JournalEntryKind) -> String {
    Uuid::new_v5(
        &JOURNAL_ENTRY_NAMESPACE,
        format!("{payment_id}:{}", kind.as_str()).as_bytes(),
    )
    .to_string()
}

/// The deterministic id of a payment's journal entry of `kind` for one of several
/// movements of that kind, `sub_id` (a capture id, a refund id, a dispute id): UUID v5
/// of `"{payment_id}:{kind}:{sub_id}"`.
pub fn movement_entry_id(payment_id: &str, kind: JournalEntryKind, sub_id: &str) -> String {
    Uuid::new_v5(
        &JOURNAL_ENTRY_NAMESPACE,
        format!("{payment_id}:{}:{sub_id}", kind.as_str()).as_bytes(),
    )
    .to_string()
}

/// Account names (docs/architecture.md, "Payment lifecycle and ledger").
pub mod accounts {
    /// Funds a PSP holds for us under a manual-capture authorization (a memo account:
    /// nets to zero once the authorization is captured or released).
    pub fn psp_authorized_hold(psp: &str) -> String {
        format!("psp_authorized_hold:{psp}")
    }
    /// What the merchant will be owed once the held funds are captured (the memo
    /// account's other side).
    pub fn merchant_pending(merchant_id: &str) -> String {
        format!("merchant_pending:{merchant_id}")
    }
    /// Chargeback amounts the PSP withdrew while the dispute is undecided.
    pub fn dispute_receivable(psp: &str) -> String {
        format!("dispute_receivable:{psp}")
    }
    /// Chargeback fees the PSP charged.
    pub fn dispute_fees(psp: &str) -> String {
        format!("expense:dispute_fees:{psp}")
    }
    /// What the PSP owes us for captured payments.
    pub fn psp_receivable(psp: &str) -> String {
        format!("psp_receivable:{psp}")
    }
    /// What we owe the merchant.
    pub fn merchant_payable(merchant_id: &str) -> String {
        format!("merchant_payable:{merchant_id}")
    }
    /// Our bank account that receives settlements.
    pub const BANK_SETTLEMENT: &str = "bank:settlement";
    /// Fees the PSP charged.
    pub fn psp_fees(psp: &str) -> String {
        format!("expense:psp_fees:{psp}")
    }
}

fn posting(account: String, side: PostingSide, amount_minor: i64, currency: &str) -> Posting {
    Posting {
        account,
        side,
        amount_minor,
        currency: currency.to_string(),
    }
}

/// The entry for an authorized (and captured) payment: debit `psp_receivable:{psp}`,
/// credit `merchant_payable:{merchant_id}`, both `amount_minor` of `currency`.
pub fn authorization_entry(
    payment_id: &str,
    psp: &str,
    merchant_id: &str,
    amount_minor: i64,
    currency: &str,
    occurred_at_ms: i64,
    caused_by_event_id: &str,
) -> JournalEntry {
    let entry = JournalEntry {
        id: journal_entry_id(payment_id, JournalEntryKind::Authorization),
        payment_id: payment_id.to_string(),
        kind: JournalEntryKind::Authorization,
        postings: vec![
            posting(
                accounts::psp_receivable(psp),
                PostingSide::Debit,
                amount_minor,
                currency,
            ),
            posting(
                accounts::merchant_payable(merchant_id),
                PostingSide::Credit,
                amount_minor,
                currency,
            ),
        ],
        occurred_at: occurred_at_ms,
        caused_by_event_id: caused_by_event_id.to_string(),
        merchant_id: Some(merchant_id.to_string()),
        psp: Some(psp.to_string()),
    };
    assert!(
        entry.is_balanced(),
        "authorization entry must balance: {entry:?}"
    );
    entry
}

/// The entry for a settlement: debit `bank:settlement` net, debit
/// `expense:psp_fees:{psp}` fee, credit `psp_receivable:{psp}` gross. A zero net or fee
/// posts no line (postings are always > 0).
/// The settlement was validated on input (`net = gross − fee`, fee ≥ 0).
pub fn settlement_entry(
    psp: &str,
    merchant_id: &str,
    settlement: &SettlementReported,
) -> JournalEntry {
    let currency = settlement.currency.as_str();
    let fee_minor = settlement.fee_minor;
    let mut postings = Vec::with_capacity(3);
    if settlement.net_amount_minor > 0 {
        postings.push(posting(
            accounts::BANK_SETTLEMENT.to_string(),
            PostingSide::Debit,
            settlement.net_amount_minor,
            currency,
        ));
    }
    if fee_minor > 0 {
        postings.push(posting(
            accounts::psp_fees(psp),
            PostingSide::Debit,
            fee_minor,
            currency,
        ));
    }
    postings.push(posting(
        accounts::psp_receivable(psp),
        PostingSide::Credit,
        settlement.gross_amount_minor,
        currency,
    ));
    let entry = JournalEntry {
        id: journal_entry_id(&settlement.payment_id, JournalEntryKind::Settlement),
        payment_id: settlement.payment_id.clone(),
        kind: JournalEntryKind::Settlement,
        postings,
        occurred_at: settlement.settled_at,
        caused_by_event_id: settlement.event_id.clone(),
        merchant_id: Some(merchant_id.to_string()),
        psp: Some(psp.to_string()),
    };
    assert!(
        entry.is_balanced(),
        "settlement entry must balance: {entry:?}"
    );
    entry
}

/// The amount of money `entry` moved, minor units of its currency: what was authorized,
/// held, captured, released, settled (gross), refunded, or withdrawn, reinstated or lost
/// by a chargeback — read off the posting that carries it in the [ledger
/// rules](`authorization_entry`).
pub fn movement_amount_minor(entry: &JournalEntry) -> i64 {
    use JournalEntryKind as Kind;
    use PostingSide::{Credit, Debit};
    let (prefix, side) = match entry.kind {
        Kind::Authorization | Kind::Capture => ("psp_receivable:", Debit),
        Kind::AuthorizationHold => ("psp_authorized_hold:", Debit),
        Kind::Void => ("merchant_pending:", Debit),
        Kind::Settlement => ("psp_receivable:", Credit),
        Kind::Refund | Kind::ChargebackLost => ("merchant_payable:", Debit),
        Kind::ChargebackOpened => ("dispute_receivable:", Debit),
        Kind::ChargebackWon => ("dispute_receivable:", Credit),
    };
    entry
        .postings
        .iter()
        .filter(|p| p.side == side && p.account.starts_with(prefix))
        .map(|p| p.amount_minor)
        .sum()
}

/// What a journal entry of a money movement is about: the payment, its parties and the
/// event that caused the movement.
#[derive(Debug, Clone, Copy)]
pub struct EntryContext<'a> {
    pub payment_id: &'a str,
    pub psp: &'a str,
    pub merchant_id: &'a str,
    /// ISO 4217 code of every posting.
    pub currency: &'a str,
    /// Milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    pub caused_by_event_id: &'a str,
}

/// One line of an entry: account, side, amount in minor units (a line of 0 is left out).
type Line = (String, PostingSide, i64);

fn movement_entry(
    context: &EntryContext<'_>,
    kind: JournalEntryKind,
    id: String,
    lines: Vec<Line>,
) -> JournalEntry {
    let entry = JournalEntry {
        id,
        payment_id: context.payment_id.to_string(),
        kind,
        postings: lines
            .into_iter()
            .filter(|(_, _, amount_minor)| *amount_minor > 0)
            .map(|(account, side, amount_minor)| {
                posting(account, side, amount_minor, context.currency)
            })
            .collect(),
        occurred_at: context.occurred_at_ms,
        caused_by_event_id: context.caused_by_event_id.to_string(),
        merchant_id: Some(context.merchant_id.to_string()),
        psp: Some(context.psp.to_string()),
    };
    assert!(
        entry.is_balanced(),
        "{kind:?} entry must balance: {entry:?}"
    );
    entry
}

/// A manual-capture authorization holds `amount_minor`: debit
/// `psp_authorized_hold:{psp}`, credit `merchant_pending:{merchant_id}`.
pub fn authorization_hold_entry(context: &EntryContext<'_>, amount_minor: i64) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    movement_entry(
        context,
        JournalEntryKind::AuthorizationHold,
        journal_entry_id(context.payment_id, JournalEntryKind::AuthorizationHold),
        vec![
            (
                accounts::psp_authorized_hold(context.psp),
                Debit,
                amount_minor,
            ),
            (
                accounts::merchant_pending(context.merchant_id),
                Credit,
                amount_minor,
            ),
        ],
    )
}

/// A capture `capture_id` of `captured_minor` out of the hold, releasing `released_minor`
/// more (the rest, at a final capture): the held funds move from the memo pair to what
/// the PSP owes us and we owe the merchant — debit `merchant_pending` and
/// `psp_receivable`, credit `psp_authorized_hold` and `merchant_payable` (captured), and
/// debit `merchant_pending`, credit `psp_authorized_hold` (released).
pub fn capture_entry(
    context: &EntryContext<'_>,
    capture_id: &str,
    captured_minor: i64,
    released_minor: i64,
) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    let held = captured_minor + released_minor;
    movement_entry(
        context,
        JournalEntryKind::Capture,
        movement_entry_id(context.payment_id, JournalEntryKind::Capture, capture_id),
        vec![
            (accounts::merchant_pending(context.merchant_id), Debit, held),
            (accounts::psp_receivable(context.psp), Debit, captured_minor),
            (accounts::psp_authorized_hold(context.psp), Credit, held),
            (
                accounts::merchant_payable(context.merchant_id),
                Credit,
                captured_minor,
            ),
        ],
    )
}

/// A void releases the `released_minor` left of the hold: debit `merchant_pending`,
/// credit `psp_authorized_hold`.
pub fn void_entry(context: &EntryContext<'_>, released_minor: i64) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    movement_entry(
        context,
        JournalEntryKind::Void,
        journal_entry_id(context.payment_id, JournalEntryKind::Void),
        vec![
            (
                accounts::merchant_pending(context.merchant_id),
                Debit,
                released_minor,
            ),
            (
                accounts::psp_authorized_hold(context.psp),
                Credit,
                released_minor,
            ),
        ],
    )
}

/// A refund `refund_id` of `amount_minor`: the merchant is owed less and the PSP, which
/// pays the customer back, owes us less — debit `merchant_payable`, credit
/// `psp_receivable` (before or after settlement alike).
pub fn refund_entry(
    context: &EntryContext<'_>,
    refund_id: &str,
    amount_minor: i64,
) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    movement_entry(
        context,
        JournalEntryKind::Refund,
        movement_entry_id(context.payment_id, JournalEntryKind::Refund, refund_id),
        vec![
            (
                accounts::merchant_payable(context.merchant_id),
                Debit,
                amount_minor,
            ),
            (accounts::psp_receivable(context.psp), Credit, amount_minor),
        ],
    )
}

/// A chargeback `dispute_id` opened: the PSP withdraws `amount_minor` and its fee
/// `fee_minor` — debit `dispute_receivable:{psp}` (amount) and
/// `expense:dispute_fees:{psp}` (fee), credit `psp_receivable:{psp}` (both).
pub fn chargeback_opened_entry(
    context: &EntryContext<'_>,
    dispute_id: &str,
    amount_minor: i64,
    fee_minor: i64,
) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    movement_entry(
        context,
        JournalEntryKind::ChargebackOpened,
        movement_entry_id(
            context.payment_id,
            JournalEntryKind::ChargebackOpened,
            dispute_id,
        ),
        vec![
            (
                accounts::dispute_receivable(context.psp),
                Debit,
                amount_minor,
            ),
            (accounts::dispute_fees(context.psp), Debit, fee_minor),
            (
                accounts::psp_receivable(context.psp),
                Credit,
                amount_minor + fee_minor,
            ),
        ],
    )
}

/// A chargeback `dispute_id` won: `amount_minor` is reinstated and `fee_minor` of the
/// fee returned (as the PSP reports it) — debit `psp_receivable`, credit
/// `dispute_receivable` (amount) and `expense:dispute_fees` (fee).
pub fn chargeback_won_entry(
    context: &EntryContext<'_>,
    dispute_id: &str,
    amount_minor: i64,
    fee_minor: i64,
) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    movement_entry(
        context,
        JournalEntryKind::ChargebackWon,
        movement_entry_id(
            context.payment_id,
            JournalEntryKind::ChargebackWon,
            dispute_id,
        ),
        vec![
            (
                accounts::psp_receivable(context.psp),
                Debit,
                amount_minor + fee_minor,
            ),
            (
                accounts::dispute_receivable(context.psp),
                Credit,
                amount_minor,
            ),
            (accounts::dispute_fees(context.psp), Credit, fee_minor),
        ],
    )
}

/// A chargeback `dispute_id` lost: the merchant bears `amount_minor` (debit
/// `merchant_payable`). From an open dispute the withdrawn amount leaves
/// `dispute_receivable`; after a win (a second chargeback) it is withdrawn again from
/// `psp_receivable`, with its fee `fee_minor` (debit `expense:dispute_fees`).
pub fn chargeback_lost_entry(
    context: &EntryContext<'_>,
    dispute_id: &str,
    amount_minor: i64,
    fee_minor: i64,
    after_win: bool,
) -> JournalEntry {
    use PostingSide::{Credit, Debit};
    let lines = if after_win {
        vec![
            (
                accounts::merchant_payable(context.merchant_id),
                Debit,
                amount_minor,
            ),
            (accounts::dispute_fees(context.psp), Debit, fee_minor),
            (
                accounts::psp_receivable(context.psp),
                Credit,
                amount_minor + fee_minor,
            ),
        ]
    } else {
        vec![
            (
                accounts::merchant_payable(context.merchant_id),
                Debit,
                amount_minor,
            ),
            (
                accounts::dispute_receivable(context.psp),
                Credit,
                amount_minor,
            ),
        ]
    };
    movement_entry(
        context,
        JournalEntryKind::ChargebackLost,
        movement_entry_id(
            context.payment_id,
            JournalEntryKind::ChargebackLost,
            dispute_id,
        ),
        lines,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settlement(gross: i64, fee: i64) -> SettlementReported {
        SettlementReported {
            event_id: "e2".into(),
            payment_id: "p".into(),
            psp_reference: "r".into(),
            settlement_batch_id: "b".into(),
            gross_amount_minor: gross,
            fee_minor: fee,
            net_amount_minor: gross - fee,
            currency: "EUR".into(),
            settled_at: 2,
        }
    }

    #[test]
    fn entries_balance_per_currency() {
        let a = authorization_entry("p", "adyen", "m", 1234, "EUR", 1, "e");
        assert!(a.is_balanced());
        assert_eq!(a.postings.len(), 2);
        let s = settlement_entry("adyen", "m", &settlement(1234, 34));
        assert!(s.is_balanced());
        assert_eq!(s.postings.len(), 3);
        let no_fee = settlement_entry("adyen", "m", &settlement(1234, 0));
        assert_eq!(no_fee.postings.len(), 2);
        assert!(no_fee.is_balanced());
        let all_fee = settlement_entry("adyen", "m", &settlement(1234, 1234));
        assert_eq!(all_fee.postings.len(), 2, "no zero bank posting");
        assert!(all_fee.is_balanced());
    }

    #[test]
    fn ids_are_deterministic_per_payment_and_kind() {
        let a1 = journal_entry_id("p1", JournalEntryKind::Authorization);
        assert_eq!(a1, journal_entry_id("p1", JournalEntryKind::Authorization));
        assert_ne!(a1, journal_entry_id("p1", JournalEntryKind::Settlement));
        assert_ne!(a1, journal_entry_id("p2", JournalEntryKind::Authorization));
    }

    #[test]
    fn an_unbalanced_entry_is_detected() {
        let mut s = settlement_entry("adyen", "m", &settlement(1000, 30));
        s.postings[0].amount_minor = 971;
        assert!(!s.is_balanced());
        s.postings[0].amount_minor = 970;
        s.postings[0].currency = "USD".into();
        assert!(!s.is_balanced());
    }
}
