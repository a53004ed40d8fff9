//! An entry id already in the ledger: the stored content, the comparison with the one
//! being written, and the conflicts (same id, other content) set aside.

use super::*;

/// A journal entry as the ledger holds it: the content its deterministic id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct StoredEntry {
    pub(super) payment_id: String,
    pub(super) kind: String,
    /// In line order.
    pub(super) postings: Vec<StoredPosting>,
}

/// One posting of a [`StoredEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredPosting {
    pub(super) account: String,
    pub(super) side: String,
    pub(super) amount_minor: i64,
    /// Without `char(3)`'s padding.
    pub(super) currency: String,
}

impl std::fmt::Display for StoredPosting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.side, self.amount_minor, self.currency, self.account
        )
    }
}

/// How `entry` differs from the stored entry with its id, `None` when it does not: the
/// payment id, the kind, the number of postings, or the first posting (by line) whose
/// account, side, amount or currency differs. What an entry says besides (its event
/// time, the event that caused it, where it was read) may differ between a record and
/// its replay and is not compared.
pub(super) fn entry_difference(entry: &JournalEntry, stored: &StoredEntry) -> Option<String> {
    if entry.payment_id != stored.payment_id {
        return Some(format!(
            "payment id {:?}, stored {:?}",
            entry.payment_id, stored.payment_id
        ));
    }
    if entry.kind.as_str() != stored.kind {
        return Some(format!(
            "kind {}, stored {}",
            entry.kind.as_str(),
            stored.kind
        ));
    }
    if entry.postings.len() != stored.postings.len() {
        return Some(format!(
            "{} postings, stored {}",
            entry.postings.len(),
            stored.postings.len()
        ));
    }
    entry
        .postings
        .iter()
        .zip(&stored.postings)
        .enumerate()
        .find_map(|(line, (posting, stored))| {
            let posting = StoredPosting {
                account: posting.account.clone(),
                side: posting.side.as_str().to_string(),
                amount_minor: posting.amount_minor,
                // As `char(3)` compares: trailing spaces do not count.
                currency: posting.currency.trim_end_matches(' ').to_string(),
            };
            (posting != *stored).then(|| format!("posting {line}: {posting}, stored {stored}"))
        })
}

/// Step 4 of [`write_entries`]: reads the stored content of the skipped entries' ids
/// and returns a rejection for each skipped entry that differs from it
/// ([`SinkError::Conflict`]). The stored entry stays as it is: the ledger is
/// append-only, and the first write of an id is the one that posted.
pub(super) async fn find_conflicts(
    transaction: &mut Transaction<'static, Postgres>,
    skipped: &[&EntryRow<'_>],
) -> Result<Vec<Rejection>> {
    if skipped.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = skipped.iter().map(|row| row.id).collect();
    let rows = sqlx::query(
        "SELECT e.id, e.payment_id, e.kind, p.account, p.side, p.amount_minor,
                rtrim(p.currency, ' ') AS currency
         FROM journal_entries e LEFT JOIN postings p ON p.journal_entry_id = e.id
         WHERE e.id = ANY($1::uuid[])
         ORDER BY e.id, p.line",
    )
    .bind(&ids)
    .fetch_all(&mut **transaction)
    .await
    .map_err(db("reading stored journal entries"))?;
    let mut stored: HashMap<Uuid, StoredEntry> = HashMap::new();
    for row in rows {
        let id: Uuid = row
            .try_get("id")
            .map_err(db("reading a stored journal entry"))?;
        let entry = match stored.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) => vacant.insert(StoredEntry {
                payment_id: row
                    .try_get("payment_id")
                    .map_err(db("reading a stored journal entry"))?,
                kind: row
                    .try_get("kind")
                    .map_err(db("reading a stored journal entry"))?,
                postings: Vec::new(),
            }),
        };
        // NULL when the entry has no postings (LEFT JOIN).
        let account: Option<String> = row
            .try_get("account")
            .map_err(db("reading a stored posting"))?;
        if let Some(account) = account {
            entry.postings.push(StoredPosting {
                account,
                side: row
                    .try_get("side")
                    .map_err(db("reading a stored posting"))?,
                amount_minor: row
                    .try_get("amount_minor")
                    .map_err(db("reading a stored posting"))?,
                currency: row
                    .try_get("currency")
                    .map_err(db("reading a stored posting"))?,
            });
        }
    }
    Ok(skipped
        .iter()
        .filter_map(|row| {
            // Always stored: its insert conflicted on the id.
            let difference = entry_difference(row.entry, stored.get(&row.id)?)?;
            let conflict = SinkError::Conflict {
                id: row.entry.id.clone(),
                topic: row.origin.topic.clone(),
                partition: row.origin.partition,
                offset: row.origin.offset,
                difference,
            };
            Some(Rejection::new(row.index, None, &conflict.to_string()))
        })
        .collect())
}
