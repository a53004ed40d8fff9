//! The oracle: what a correct pipeline makes of a traffic plan. The plan fills it in as
//! it decides each payment's fate ([`super::plan()`]); the rules of what an event books
//! (postings and balances) live here, and restate the lifecycle's journal entries
//! (`processors/src/ledger.rs`, the table in docs/architecture.md "Ledger rules")
//! independently, so that a mistake in either shows up as a difference.

use std::collections::BTreeMap;

use paystream_schemas::PaymentStatus;
use serde::{Deserialize, Serialize};

use super::PlannedRecord;

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
    /// (`AMOUNT_MISMATCH`, `CURRENCY_MISMATCH`, `ORPHAN_EVENT`, `MISSING_IN_LEDGER`, and
    /// those of refused movements). `MISSING_IN_PSP` is not predicted: it depends on the
    /// configured settlement window against how far stream time moves; nor is
    /// `STUCK_PAYMENT`, which runs on wall-clock time.
    #[serde(default)]
    pub exceptions: BTreeMap<String, u64>,
}

impl ExpectedOutcome {
    /// A record that must be dead-lettered with `reason`.
    pub(super) fn dead_letter(&mut self, reason: &str) {
        *self.dead_letters.entry(reason.into()).or_insert(0) += 1;
    }

    /// A reconciliation exception of `kind` that the traffic makes certain.
    pub(super) fn exception(&mut self, kind: &str) {
        *self.exceptions.entry(kind.into()).or_insert(0) += 1;
    }

    /// A successful authorization: one journal entry of two postings, debiting the
    /// PSP's receivable and crediting the merchant's payable.
    pub(super) fn authorization(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        amount_minor: i64,
    ) {
        self.journal_entries += 1;
        self.postings += 2;
        self.add_balance(format!("psp_receivable:{psp}"), currency, amount_minor);
        self.add_balance(
            format!("merchant_payable:{merchant_id}"),
            currency,
            -amount_minor,
        );
    }

    /// A settlement as the PSP reports it: one journal entry debiting the bank with the
    /// net and the PSP's fees with the fee (a posting only when there is a fee), and
    /// crediting the PSP's receivable with the gross, in the settled currency.
    pub(super) fn settlement(
        &mut self,
        psp: &str,
        currency: &str,
        gross_minor: i64,
        fee_minor: i64,
    ) {
        self.journal_entries += 1;
        self.postings += if fee_minor > 0 { 3 } else { 2 };
        self.add_balance("bank:settlement".into(), currency, gross_minor - fee_minor);
        if fee_minor > 0 {
            self.add_balance(format!("expense:psp_fees:{psp}"), currency, fee_minor);
        }
        self.add_balance(format!("psp_receivable:{psp}"), currency, -gross_minor);
    }

    /// One journal entry of `lines` (account, signed amount: debit positive), in
    /// `currency`; lines of 0 post nothing.
    fn entry(&mut self, currency: &str, lines: &[(String, i64)]) {
        self.journal_entries += 1;
        for (account, signed_minor) in lines {
            if *signed_minor != 0 {
                self.postings += 1;
                self.add_balance(account.clone(), currency, *signed_minor);
            }
        }
    }

    /// A manual-capture authorization holds `amount_minor`: debit the PSP's hold, credit
    /// the merchant's pending.
    pub(super) fn authorization_hold(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        amount_minor: i64,
    ) {
        self.transfer(
            currency,
            format!("psp_authorized_hold:{psp}"),
            format!("merchant_pending:{merchant_id}"),
            amount_minor,
        );
    }

    /// An entry of two postings: `amount_minor` debited to `debit`, credited to `credit`.
    fn transfer(&mut self, currency: &str, debit: String, credit: String, amount_minor: i64) {
        self.entry(currency, &[(debit, amount_minor), (credit, -amount_minor)]);
    }

    /// A capture of `captured_minor` out of the hold, releasing `released_minor` more:
    /// the held funds leave the hold pair; what was captured is owed by the PSP and to
    /// the merchant.
    pub(super) fn capture(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        captured_minor: i64,
        released_minor: i64,
    ) {
        let held = captured_minor + released_minor;
        self.entry(
            currency,
            &[
                (format!("merchant_pending:{merchant_id}"), held),
                (format!("psp_receivable:{psp}"), captured_minor),
                (format!("psp_authorized_hold:{psp}"), -held),
                (format!("merchant_payable:{merchant_id}"), -captured_minor),
            ],
        );
    }

    /// A void releasing `released_minor` of the hold.
    pub(super) fn void(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        released_minor: i64,
    ) {
        self.transfer(
            currency,
            format!("merchant_pending:{merchant_id}"),
            format!("psp_authorized_hold:{psp}"),
            released_minor,
        );
    }

    /// A refund: the merchant is owed less, the PSP owes less.
    pub(super) fn refund(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        amount_minor: i64,
    ) {
        self.transfer(
            currency,
            format!("merchant_payable:{merchant_id}"),
            format!("psp_receivable:{psp}"),
            amount_minor,
        );
    }

    /// A chargeback opened: the amount is withdrawn into a receivable, the fee is an
    /// expense, both taken from what the PSP owes.
    pub(super) fn chargeback_opened(
        &mut self,
        psp: &str,
        currency: &str,
        amount_minor: i64,
        fee_minor: i64,
    ) {
        self.entry(
            currency,
            &[
                (format!("dispute_receivable:{psp}"), amount_minor),
                (format!("expense:dispute_fees:{psp}"), fee_minor),
                (format!("psp_receivable:{psp}"), -(amount_minor + fee_minor)),
            ],
        );
    }

    /// A chargeback won: the amount and the returned fee come back.
    pub(super) fn chargeback_won(
        &mut self,
        psp: &str,
        currency: &str,
        amount_minor: i64,
        fee_minor: i64,
    ) {
        self.entry(
            currency,
            &[
                (format!("psp_receivable:{psp}"), amount_minor + fee_minor),
                (format!("dispute_receivable:{psp}"), -amount_minor),
                (format!("expense:dispute_fees:{psp}"), -fee_minor),
            ],
        );
    }

    /// A chargeback lost: the merchant bears the amount — out of the receivable when the
    /// dispute was open, withdrawn again with a fee after a win.
    pub(super) fn chargeback_lost(
        &mut self,
        psp: &str,
        merchant_id: &str,
        currency: &str,
        amount_minor: i64,
        fee_minor: i64,
        after_win: bool,
    ) {
        if after_win {
            self.entry(
                currency,
                &[
                    (format!("merchant_payable:{merchant_id}"), amount_minor),
                    (format!("expense:dispute_fees:{psp}"), fee_minor),
                    (format!("psp_receivable:{psp}"), -(amount_minor + fee_minor)),
                ],
            );
        } else {
            self.transfer(
                currency,
                format!("merchant_payable:{merchant_id}"),
                format!("dispute_receivable:{psp}"),
                amount_minor,
            );
        }
    }

    /// A payment's last status.
    pub(super) fn final_status(&mut self, status: PaymentStatus) {
        *self
            .payments_by_status
            .entry(status.as_str().into())
            .or_insert(0) += 1;
    }

    /// The records of the whole plan, in send order: counted in all and per topic.
    pub(super) fn sent(&mut self, records: &[PlannedRecord]) {
        for record in records {
            *self
                .records_by_topic
                .entry(record.topic().base_name().into())
                .or_insert(0) += 1;
        }
        self.records = records.len() as u64;
    }

    fn add_balance(&mut self, account: String, currency: &str, signed_minor: i64) {
        *self
            .balances_minor
            .entry(format!("{account}|{currency}"))
            .or_insert(0) += signed_minor;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::traffic::{TrafficOptions, plan};

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
        for status in [
            "DECLINED",
            "SETTLED",
            "AUTHORIZED",
            "CAPTURED",
            "VOIDED",
            "PARTIALLY_REFUNDED",
            "REFUNDED",
            "CHARGEBACK_WON",
            "CHARGEBACK_LOST",
        ] {
            assert!(
                e.payments_by_status.contains_key(status),
                "{status}: {:?}",
                e.payments_by_status
            );
        }
        // Under manual capture the hold accounts net to zero once every authorization
        // is captured or voided.
        for (key, v) in &e.balances_minor {
            if key.starts_with("psp_authorized_hold:") || key.starts_with("merchant_pending:") {
                assert_eq!(*v, 0, "{key}");
            }
        }
    }
}
