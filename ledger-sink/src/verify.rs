//! Checks of the ledger's invariants after the fact (`paystream ledger verify`):
//! every journal entry has postings and balances to zero per currency, every posting
//! names a journal entry (the insert trigger of migration 0004 refuses one that does not;
//! this finds one written with that trigger disabled), every account
//! balance equals the sum of its postings, and every account's postings are numbered
//! 1..n without gaps; and per payment and currency, from its journal entries, that
//! captures stay within a manual authorization's hold (captured and released ≤ held),
//! that refunds and chargebacks stay within what was captured (refunded + disputed +
//! charged back ≤ captured), and that nothing was captured after a void. Records the
//! sink dead-lettered (`sink_dead_letters`) are counted by
//! topic and reason: they are accounted for, not lost, so they never fail verification.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};

use crate::{Result, db};

/// Counts and violations found in the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub journal_entries: i64,
    pub postings: i64,
    pub accounts: i64,
    /// Payments by latest status (`INITIATED`, `AUTHORIZED`, `CAPTURED`, `REFUNDED`, …).
    pub payments_by_status: BTreeMap<String, i64>,
    /// Journal entries whose debits and credits differ in some currency.
    pub unbalanced_entries: i64,
    /// Journal entries without any posting.
    pub entries_without_postings: i64,
    /// Postings whose journal entry is not in `journal_entries`.
    pub postings_without_entry: i64,
    /// `(account, currency)` rows whose stored balance differs from its postings' sum.
    pub balance_mismatches: i64,
    /// Accounts whose posting sequence numbers are not exactly 1..n, or whose
    /// `accounts.last_sequence` is not n.
    pub sequence_violations: i64,
    /// Payments whose captures (or captures and releases) exceed their manual
    /// authorization's hold.
    pub captured_over_authorized: i64,
    /// Payments whose refunds and chargebacks exceed what was captured.
    pub refunded_over_captured: i64,
    /// Payments with a capture after their void.
    pub captured_after_void: i64,
    /// Reconciliation exceptions by kind (`AMOUNT_MISMATCH`, …).
    pub exceptions_by_kind: BTreeMap<String, i64>,
    /// Records the sink dead-lettered instead of writing, by `(source topic, reason)`,
    /// e.g. `("ledger_entries", "sink_rejected")`. Informational: not a violation.
    pub sink_dead_letters: BTreeMap<(String, String), i64>,
}

impl VerifyReport {
    /// True when no invariant is broken.
    pub fn is_verified(&self) -> bool {
        self.unbalanced_entries == 0
            && self.entries_without_postings == 0
            && self.postings_without_entry == 0
            && self.balance_mismatches == 0
            && self.sequence_violations == 0
            && self.captured_over_authorized == 0
            && self.refunded_over_captured == 0
            && self.captured_after_void == 0
    }
}

/// Runs every check against the ledger in `pool`.
///
/// # Errors
/// [`crate::SinkError::Database`] on a failed query.
pub async fn verify(pool: &PgPool) -> Result<VerifyReport> {
    let count = |sql: &'static str, context: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .map_err(db(context))
    };
    let mut report = VerifyReport {
        journal_entries: count("SELECT count(*) FROM journal_entries", "counting entries").await?,
        postings: count("SELECT count(*) FROM postings", "counting postings").await?,
        accounts: count("SELECT count(*) FROM account_balances", "counting accounts").await?,
        unbalanced_entries: count(
            "SELECT count(*) FROM (
                SELECT journal_entry_id, currency
                FROM postings
                GROUP BY journal_entry_id, currency
                HAVING sum(CASE side WHEN 'DEBIT' THEN amount_minor ELSE -amount_minor END) <> 0
             ) unbalanced",
            "checking entry balance",
        )
        .await?,
        entries_without_postings: count(
            "SELECT count(*) FROM journal_entries j
             WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.journal_entry_id = j.id)",
            "checking entries without postings",
        )
        .await?,
        postings_without_entry: count(
            "SELECT count(*) FROM postings p
             WHERE NOT EXISTS (SELECT 1 FROM journal_entries j WHERE j.id = p.journal_entry_id)",
            "checking postings without an entry",
        )
        .await?,
        balance_mismatches: count(
            "SELECT count(*) FROM (
                SELECT account, currency,
                       sum(CASE side WHEN 'DEBIT' THEN amount_minor ELSE 0 END) AS debit,
                       sum(CASE side WHEN 'CREDIT' THEN amount_minor ELSE 0 END) AS credit
                FROM postings GROUP BY account, currency
             ) summed
             FULL OUTER JOIN account_balances b USING (account, currency)
             WHERE b.account IS NULL OR summed.account IS NULL
                OR b.debit_total_minor <> summed.debit
                OR b.credit_total_minor <> summed.credit
                OR b.balance_minor <> summed.debit - summed.credit",
            "checking account balances",
        )
        .await?,
        sequence_violations: count(
            "SELECT count(*) FROM (
                SELECT account, count(*) AS n, min(account_sequence) AS lo,
                       max(account_sequence) AS hi
                FROM postings GROUP BY account
             ) s
             FULL OUTER JOIN accounts a USING (account)
             WHERE s.account IS NULL OR a.account IS NULL
                OR s.lo <> 1 OR s.hi <> s.n OR a.last_sequence <> s.n",
            "checking posting sequence numbers",
        )
        .await?,
        captured_over_authorized: 0,
        refunded_over_captured: 0,
        captured_after_void: count(
            "SELECT count(DISTINCT c.payment_id) FROM journal_entries c
             JOIN journal_entries v ON v.payment_id = c.payment_id AND v.kind = 'VOID'
             WHERE c.kind = 'CAPTURE' AND c.occurred_at > v.occurred_at",
            "checking captures after voids",
        )
        .await?,
        payments_by_status: BTreeMap::new(),
        exceptions_by_kind: BTreeMap::new(),
        sink_dead_letters: BTreeMap::new(),
    };
    // Each payment's totals from its postings (docs/architecture.md, "Payment lifecycle
    // and ledger"): held by AUTHORIZATION_HOLD; captured onto psp_receivable by
    // AUTHORIZATION (automatic capture) and CAPTURE; moved out of the hold by CAPTURE and
    // VOID; refunded off merchant_payable; disputed while in dispute_receivable; lost
    // off merchant_payable by CHARGEBACK_LOST.
    let row = sqlx::query(
        "WITH per_payment AS (
            SELECT j.payment_id, p.currency,
              sum(p.amount_minor) FILTER (WHERE j.kind = 'AUTHORIZATION_HOLD' AND p.side = 'DEBIT') AS held,
              coalesce(sum(p.amount_minor) FILTER (WHERE j.kind IN ('AUTHORIZATION', 'CAPTURE')
                  AND p.side = 'DEBIT' AND p.account LIKE 'psp_receivable:%'), 0) AS captured,
              coalesce(sum(p.amount_minor) FILTER (WHERE j.kind IN ('CAPTURE', 'VOID')
                  AND p.side = 'DEBIT' AND p.account LIKE 'merchant_pending:%'), 0) AS moved,
              coalesce(sum(p.amount_minor) FILTER (WHERE j.kind = 'REFUND' AND p.side = 'DEBIT'), 0) AS refunded,
              coalesce(sum(CASE p.side WHEN 'DEBIT' THEN p.amount_minor ELSE -p.amount_minor END)
                  FILTER (WHERE p.account LIKE 'dispute_receivable:%'), 0) AS disputed,
              coalesce(sum(p.amount_minor) FILTER (WHERE j.kind = 'CHARGEBACK_LOST'
                  AND p.side = 'DEBIT' AND p.account LIKE 'merchant_payable:%'), 0) AS lost
            FROM journal_entries j JOIN postings p ON p.journal_entry_id = j.id
            GROUP BY j.payment_id, p.currency)
         SELECT
           count(*) FILTER (WHERE held IS NOT NULL AND (captured > held OR moved > held)) AS over_authorized,
           count(*) FILTER (WHERE refunded + disputed + lost > captured) AS over_captured
         FROM per_payment",
    )
    .fetch_one(pool)
    .await
    .map_err(db("checking each payment's totals"))?;
    report.captured_over_authorized = row
        .try_get("over_authorized")
        .map_err(db("reading over_authorized"))?;
    report.refunded_over_captured = row
        .try_get("over_captured")
        .map_err(db("reading over_captured"))?;
    let rows = sqlx::query(
        "SELECT topic, reason, count(*) AS n FROM sink_dead_letters GROUP BY topic, reason",
    )
    .fetch_all(pool)
    .await
    .map_err(db("counting sink dead letters"))?;
    for row in rows {
        report.sink_dead_letters.insert(
            (
                row.try_get("topic").map_err(db("reading topic"))?,
                row.try_get("reason").map_err(db("reading reason"))?,
            ),
            row.try_get("n").map_err(db("reading count"))?,
        );
    }
    let rows =
        sqlx::query("SELECT kind, count(*) AS n FROM reconciliation_exceptions GROUP BY kind")
            .fetch_all(pool)
            .await
            .map_err(db("counting reconciliation exceptions"))?;
    for row in rows {
        report.exceptions_by_kind.insert(
            row.try_get("kind").map_err(db("reading kind"))?,
            row.try_get("n").map_err(db("reading count"))?,
        );
    }
    let rows = sqlx::query("SELECT status, count(*) AS n FROM payments GROUP BY status")
        .fetch_all(pool)
        .await
        .map_err(db("counting payments by status"))?;
    for row in rows {
        report.payments_by_status.insert(
            row.try_get("status").map_err(db("reading status"))?,
            row.try_get("n").map_err(db("reading count"))?,
        );
    }
    Ok(report)
}
