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

/// Account names (docs/architecture.md, "Payment lifecycle and ledger").
pub mod accounts {
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
pub fn settlement_entry(psp: &str, settlement: &SettlementReported) -> JournalEntry {
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
    };
    assert!(
        entry.is_balanced(),
        "settlement entry must balance: {entry:?}"
    );
    entry
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
        let s = settlement_entry("adyen", &settlement(1234, 34));
        assert!(s.is_balanced());
        assert_eq!(s.postings.len(), 3);
        let no_fee = settlement_entry("adyen", &settlement(1234, 0));
        assert_eq!(no_fee.postings.len(), 2);
        assert!(no_fee.is_balanced());
        let all_fee = settlement_entry("adyen", &settlement(1234, 1234));
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
        let mut s = settlement_entry("adyen", &settlement(1000, 30));
        s.postings[0].amount_minor = 971;
        assert!(!s.is_balanced());
        s.postings[0].amount_minor = 970;
        s.postings[0].currency = "USD".into();
        assert!(!s.is_balanced());
    }
}
