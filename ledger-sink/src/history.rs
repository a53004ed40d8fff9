//! A payment's whole history in the ledger (`paystream ledger history --payment ID`): its
//! latest status, every journal entry with its postings in the order they happened, and
//! its reconciliation exceptions — what finance reads to see where a payment's money went.

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::{Result, db};

/// What the ledger holds for one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentHistory {
    pub payment_id: String,
    /// Its latest status row (`None` when no status record reached the ledger).
    pub status: Option<PaymentRow>,
    /// Its journal entries by `occurred_at`, then id.
    pub entries: Vec<EntryRow>,
    /// Its reconciliation exceptions by `detected_at`.
    pub exceptions: Vec<ExceptionRow>,
}

/// The `payments` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRow {
    pub merchant_id: String,
    pub status: String,
    /// Requested amount, minor units of `currency` (ISO 4217).
    pub amount_minor: i64,
    pub currency: String,
    pub last_event_id: String,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// One journal entry with its postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRow {
    pub id: String,
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    pub caused_by_event_id: String,
    pub postings: Vec<PostingRow>,
}

/// One posting: `side` is `DEBIT` or `CREDIT`, `amount_minor` > 0 in minor units of
/// `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostingRow {
    pub account: String,
    pub side: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// One reconciliation exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionRow {
    pub kind: String,
    pub expected_amount_minor: Option<i64>,
    pub actual_amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub detected_at_ms: i64,
}

impl PaymentHistory {
    /// True when the ledger knows nothing of the payment.
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.entries.is_empty() && self.exceptions.is_empty()
    }
}

/// The history of `payment_id` (empty when the ledger has none of it).
///
/// # Errors
/// [`crate::SinkError::Database`] on a failed query.
pub async fn payment_history(pool: &PgPool, payment_id: &str) -> Result<PaymentHistory> {
    let ms = |column: &str| format!("(extract(epoch FROM {column}) * 1000)::int8");
    let status = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT merchant_id, status, amount_minor, currency, last_event_id, {} AS updated_at_ms
         FROM payments WHERE payment_id = $1",
        ms("updated_at")
    )))
    .bind(payment_id)
    .fetch_optional(pool)
    .await
    .map_err(db("reading the payment"))?
    .map(|row| -> Result<PaymentRow> {
        Ok(PaymentRow {
            merchant_id: row
                .try_get("merchant_id")
                .map_err(db("reading merchant_id"))?,
            status: row.try_get("status").map_err(db("reading status"))?,
            amount_minor: row
                .try_get("amount_minor")
                .map_err(db("reading amount_minor"))?,
            currency: row.try_get("currency").map_err(db("reading currency"))?,
            last_event_id: row
                .try_get("last_event_id")
                .map_err(db("reading last_event_id"))?,
            updated_at_ms: row
                .try_get("updated_at_ms")
                .map_err(db("reading updated_at"))?,
        })
    })
    .transpose()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT j.id::text AS id, j.kind, {} AS occurred_at_ms, j.caused_by_event_id,
                p.account, p.side, p.amount_minor, p.currency
         FROM journal_entries j JOIN postings p ON p.journal_entry_id = j.id
         WHERE j.payment_id = $1
         ORDER BY j.occurred_at, j.id, p.line",
        ms("j.occurred_at")
    )))
    .bind(payment_id)
    .fetch_all(pool)
    .await
    .map_err(db("reading the payment's journal entries"))?;
    let mut entries: Vec<EntryRow> = Vec::new();
    for row in rows {
        let id: String = row.try_get("id").map_err(db("reading id"))?;
        let posting = PostingRow {
            account: row.try_get("account").map_err(db("reading account"))?,
            side: row.try_get("side").map_err(db("reading side"))?,
            amount_minor: row
                .try_get("amount_minor")
                .map_err(db("reading amount_minor"))?,
            currency: row.try_get("currency").map_err(db("reading currency"))?,
        };
        match entries.last_mut() {
            Some(entry) if entry.id == id => entry.postings.push(posting),
            _ => entries.push(EntryRow {
                id,
                kind: row.try_get("kind").map_err(db("reading kind"))?,
                occurred_at_ms: row
                    .try_get("occurred_at_ms")
                    .map_err(db("reading occurred_at"))?,
                caused_by_event_id: row
                    .try_get("caused_by_event_id")
                    .map_err(db("reading caused_by_event_id"))?,
                postings: vec![posting],
            }),
        }
    }
    let exceptions = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT kind, expected_amount_minor, actual_amount_minor, currency, {} AS detected_at_ms
         FROM reconciliation_exceptions WHERE payment_id = $1 ORDER BY detected_at, kind",
        ms("detected_at")
    )))
    .bind(payment_id)
    .fetch_all(pool)
    .await
    .map_err(db("reading the payment's exceptions"))?
    .into_iter()
    .map(|row| -> Result<ExceptionRow> {
        Ok(ExceptionRow {
            kind: row.try_get("kind").map_err(db("reading kind"))?,
            expected_amount_minor: row
                .try_get("expected_amount_minor")
                .map_err(db("reading expected_amount_minor"))?,
            actual_amount_minor: row
                .try_get("actual_amount_minor")
                .map_err(db("reading actual_amount_minor"))?,
            currency: row
                .try_get::<Option<String>, _>("currency")
                .map_err(db("reading currency"))?
                .map(|c| c.trim().to_string()),
            detected_at_ms: row
                .try_get("detected_at_ms")
                .map_err(db("reading detected_at"))?,
        })
    })
    .collect::<Result<_>>()?;
    Ok(PaymentHistory {
        payment_id: payment_id.to_string(),
        status,
        entries,
        exceptions,
    })
}
