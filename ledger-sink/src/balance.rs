//! Account balances now and at a past moment (`paystream ledger balance`).

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::{Result, db};

/// An account's totals in one currency. Balances are debit-normal:
/// `balance_minor = debit_total_minor − credit_total_minor`, in minor units of `currency`
/// (ISO 4217).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountBalance {
    pub account: String,
    pub currency: String,
    pub debit_total_minor: i64,
    pub credit_total_minor: i64,
    pub balance_minor: i64,
    /// Postings counted.
    pub postings: i64,
    /// The moment the balance is for, milliseconds since the Unix epoch; `None` = now.
    pub at_ms: Option<i64>,
}

/// Every account's balance now, minor units, keyed `account|currency` (the
/// `account_balances` table the sink keeps as it posts: debit-normal, as
/// [`AccountBalance::balance_minor`]).
///
/// # Errors
/// [`crate::SinkError::Database`] on a failed query.
pub async fn all_balances(pool: &PgPool) -> Result<std::collections::BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT account, currency, balance_minor FROM account_balances")
        .fetch_all(pool)
        .await
        .map_err(db("reading account_balances"))?;
    rows.iter()
        .map(|row| {
            let account: String = row.try_get("account").map_err(db("reading account"))?;
            let currency: String = row.try_get("currency").map_err(db("reading currency"))?;
            let balance_minor: i64 = row
                .try_get("balance_minor")
                .map_err(db("reading balance_minor"))?;
            Ok((format!("{account}|{currency}"), balance_minor))
        })
        .collect()
}

/// `account`'s balance per currency. With `at_ms`, only postings of journal entries that
/// occurred at or before that moment count (entries are dated by their event time, so a
/// late-arriving settlement is counted at the moment it happened); without, the whole
/// ledger counts. An account without postings gives an empty list.
///
/// # Errors
/// [`crate::SinkError::Database`] on a failed query.
pub async fn account_balance(
    pool: &PgPool,
    account: &str,
    at_ms: Option<i64>,
) -> Result<Vec<AccountBalance>> {
    let rows = sqlx::query(
        "SELECT p.currency::text AS currency,
                coalesce(sum(p.amount_minor) FILTER (WHERE p.side = 'DEBIT'), 0)::int8 AS debit,
                coalesce(sum(p.amount_minor) FILTER (WHERE p.side = 'CREDIT'), 0)::int8 AS credit,
                count(*) AS postings
         FROM postings p JOIN journal_entries e ON e.id = p.journal_entry_id
         WHERE p.account = $1
           AND ($2::int8 IS NULL OR e.occurred_at <= to_timestamp($2::int8 / 1000.0))
         GROUP BY p.currency
         ORDER BY p.currency",
    )
    .bind(account)
    .bind(at_ms)
    .fetch_all(pool)
    .await
    .map_err(db("summing an account's postings"))?;
    rows.iter()
        .map(|row| {
            let debit: i64 = row.try_get("debit").map_err(db("reading debit"))?;
            let credit: i64 = row.try_get("credit").map_err(db("reading credit"))?;
            Ok(AccountBalance {
                account: account.to_string(),
                currency: row.try_get("currency").map_err(db("reading currency"))?,
                debit_total_minor: debit,
                credit_total_minor: credit,
                balance_minor: debit - credit,
                postings: row.try_get("postings").map_err(db("reading postings"))?,
                at_ms,
            })
        })
        .collect()
}
