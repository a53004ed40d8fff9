//! Journal entries and their postings: the insert of entries, the postings' column
//! arrays and insert, account balances, and the per-account posting sequence numbers
//! taken under row locks.

use super::*;

/// A journal entry of a batch with its parsed id, where it was read and its index in
/// [`Batch::records`].
pub(super) struct EntryRow<'a> {
    pub(super) index: usize,
    pub(super) entry: &'a JournalEntry,
    pub(super) id: Uuid,
    pub(super) origin: &'a Origin,
}

/// Writes journal entries: first locks the accounts of all of them, in name order, before
/// any other row ([`lock_accounts`]); then inserts the entries (in order; an id already
/// in the ledger is skipped), numbers the postings of those inserted per account in
/// write order and writes each account's last number ([`take_account_sequences`]),
/// inserts the postings and adds them to the balances. Then compares each skipped entry
/// with the stored one: a replay has the same content; one that differs is a conflict,
/// returned as a rejection to dead-letter (see [`find_conflicts`]).
///
/// Taking the account locks first means two writers of the same entries (whose accounts
/// are the same) queue on the first account they share before either inserts a row, so
/// neither can hold a journal entry the other is about to insert: no deadlock, whatever
/// order each read the records in.
pub(super) async fn write_entries(
    transaction: &mut Transaction<'static, Postgres>,
    entries: &[EntryRow<'_>],
) -> Result<(BatchOutcome, Vec<Rejection>)> {
    let mut outcome = BatchOutcome::default();
    if entries.is_empty() {
        return Ok((outcome, Vec::new()));
    }
    let accounts: BTreeSet<&str> = entries
        .iter()
        .flat_map(|row| row.entry.postings.iter().map(|p| p.account.as_str()))
        .collect();
    let created = lock_accounts(transaction, &accounts).await?;
    let inserted = insert_journal_entries(transaction, entries).await?;
    // An id listed twice was inserted once, for its first record: post its lines once,
    // and compare the later records with it like any replay.
    let mut inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    let (written, skipped): (Vec<&EntryRow>, Vec<&EntryRow>) =
        entries.iter().partition(|row| inserted.remove(&row.id));
    outcome.entries_written = written.len() as u64;
    let postings = PostingRows::of(&written);
    let sequence = take_account_sequences(transaction, &postings.account, &created).await?;
    outcome.postings_written = insert_postings(transaction, &postings, &sequence).await?;
    update_balances(transaction, &postings).await?;
    let conflicts = find_conflicts(transaction, &skipped).await?;
    outcome.entries_skipped = (skipped.len() - conflicts.len()) as u64;
    Ok((outcome, conflicts))
}

/// Step 1 of [`write_entries`]: inserts the journal entries, `ON CONFLICT DO NOTHING`;
/// returns the ids actually inserted.
async fn insert_journal_entries(
    transaction: &mut Transaction<'static, Postgres>,
    entries: &[EntryRow<'_>],
) -> Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    let mut payment_ids = Vec::new();
    let mut kinds = Vec::new();
    let mut occurred = Vec::new();
    let mut caused_by = Vec::new();
    let mut topics = Vec::new();
    let mut partitions = Vec::new();
    let mut offsets = Vec::new();
    for row in entries {
        ids.push(row.id);
        payment_ids.push(row.entry.payment_id.clone());
        kinds.push(row.entry.kind.as_str().to_string());
        occurred.push(row.entry.occurred_at);
        caused_by.push(row.entry.caused_by_event_id.clone());
        topics.push(row.origin.topic.clone());
        partitions.push(row.origin.partition);
        offsets.push(row.origin.offset);
    }
    sqlx::query_scalar(
        "INSERT INTO journal_entries
            (id, payment_id, kind, occurred_at, caused_by_event_id,
             source_topic, source_partition, source_offset)
         SELECT id, payment_id, kind, to_timestamp(occurred_ms / 1000.0), caused_by,
                topic, partition, source_offset
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
                     $6::text[], $7::int4[], $8::int8[])
              AS t(id, payment_id, kind, occurred_ms, caused_by, topic, partition, source_offset)
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&payment_ids)
    .bind(&kinds)
    .bind(&occurred)
    .bind(&caused_by)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(&mut **transaction)
    .await
    .map_err(db("inserting journal entries"))
}

/// Column arrays of the postings of inserted journal entries, for one `UNNEST` insert
/// and the balance update.
#[derive(Default)]
struct PostingRows {
    entry: Vec<Uuid>,
    line: Vec<i16>,
    account: Vec<String>,
    side: Vec<String>,
    amount: Vec<i64>,
    currency: Vec<String>,
    debit: Vec<i64>,
    credit: Vec<i64>,
}

impl PostingRows {
    fn of(entries: &[&EntryRow<'_>]) -> Self {
        let mut rows = PostingRows::default();
        for row in entries {
            for (line, posting) in row.entry.postings.iter().enumerate() {
                rows.entry.push(row.id);
                // At most POSTINGS_PER_ENTRY_MAX lines (`check`).
                rows.line.push(line as i16);
                rows.account.push(posting.account.clone());
                rows.side.push(posting.side.as_str().to_string());
                rows.amount.push(posting.amount_minor);
                rows.currency.push(posting.currency.clone());
                let (debit, credit) = match posting.side {
                    PostingSide::Debit => (posting.amount_minor, 0),
                    PostingSide::Credit => (0, posting.amount_minor),
                };
                rows.debit.push(debit);
                rows.credit.push(credit);
            }
        }
        rows
    }
}

/// Step 2 of [`write_entries`]: inserts the postings with their account sequence
/// numbers (`sequence`, one per posting); returns how many.
async fn insert_postings(
    transaction: &mut Transaction<'static, Postgres>,
    postings: &PostingRows,
    sequence: &[i64],
) -> Result<u64> {
    if postings.entry.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO postings
            (journal_entry_id, line, account, side, amount_minor, currency, account_sequence)
         SELECT * FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::text[], $5::int8[],
                              $6::text[], $7::int8[])",
    )
    .bind(&postings.entry)
    .bind(&postings.line)
    .bind(&postings.account)
    .bind(&postings.side)
    .bind(&postings.amount)
    .bind(&postings.currency)
    .bind(sequence)
    .execute(&mut **transaction)
    .await
    .map_err(db("inserting postings"))?;
    Ok(postings.entry.len() as u64)
}

/// Step 3 of [`write_entries`]: adds the postings to the account balances.
async fn update_balances(
    transaction: &mut Transaction<'static, Postgres>,
    postings: &PostingRows,
) -> Result<()> {
    if postings.entry.is_empty() {
        return Ok(());
    }
    // Summed by PostgreSQL: a total beyond bigint is refused as data (22003) instead of
    // overflowing here. `currency` is `char(3)`, where trailing spaces do not count.
    sqlx::query(
        "INSERT INTO account_balances
            (account, currency, debit_total_minor, credit_total_minor, balance_minor)
         SELECT account, rtrim(currency, ' '), sum(debit)::int8, sum(credit)::int8,
                (sum(debit) - sum(credit))::int8
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[])
              AS t(account, currency, debit, credit)
         GROUP BY account, rtrim(currency, ' ')
         ON CONFLICT (account, currency) DO UPDATE SET
            debit_total_minor = account_balances.debit_total_minor + EXCLUDED.debit_total_minor,
            credit_total_minor = account_balances.credit_total_minor + EXCLUDED.credit_total_minor,
            balance_minor = account_balances.balance_minor + EXCLUDED.balance_minor,
            updated_at = now()",
    )
    .bind(&postings.account)
    .bind(&postings.currency)
    .bind(&postings.debit)
    .bind(&postings.credit)
    .execute(&mut **transaction)
    .await
    .map_err(db("updating account balances"))?;
    Ok(())
}

/// Locks the `accounts` rows of `accounts` for the rest of the transaction, in name order
/// (PostgreSQL's, so every writer takes them in the same order and none deadlocks on
/// another), creating the missing ones with `last_sequence` 0; returns the names it
/// created. An existing row is locked, not rewritten: `DO UPDATE … WHERE false` locks
/// the conflicting row and leaves it as it is.
async fn lock_accounts(
    tx: &mut Transaction<'static, Postgres>,
    accounts: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let names: Vec<&str> = accounts.iter().copied().collect();
    sqlx::query_scalar(
        "INSERT INTO accounts (account, last_sequence)
         SELECT account, 0 FROM UNNEST($1::text[]) AS t(account) ORDER BY account
         ON CONFLICT (account) DO UPDATE SET last_sequence = accounts.last_sequence WHERE false
         RETURNING account",
    )
    .bind(&names)
    .fetch_all(&mut **tx)
    .await
    .map_err(db("locking accounts"))
}

/// Numbers the postings of `accounts` (one account name per posting, in write order)
/// per account, continuing from each account's `last_sequence`, and stores each
/// account's new last number — one `UPDATE` for all of them. The accounts were locked
/// by [`lock_accounts`] (which created those in `created`), so no other writer can take
/// numbers in between. Accounts `lock_accounts` created that end up with no posting
/// (only entries already posted, or refused as conflicts, named them) are removed
/// again: an `accounts` row always has postings.
async fn take_account_sequences(
    tx: &mut Transaction<'static, Postgres>,
    accounts: &[String],
    created: &[String],
) -> Result<Vec<i64>> {
    let mut needed: BTreeMap<&str, i64> = BTreeMap::new();
    for account in accounts {
        *needed.entry(account).or_insert(0) += 1;
    }
    let unused: Vec<&str> = created
        .iter()
        .map(String::as_str)
        .filter(|account| !needed.contains_key(account))
        .collect();
    if !unused.is_empty() {
        sqlx::query("DELETE FROM accounts WHERE account = ANY($1::text[])")
            .bind(&unused)
            .execute(&mut **tx)
            .await
            .map_err(db("removing unused accounts"))?;
    }
    if needed.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = needed.keys().copied().collect();
    let counts: Vec<i64> = needed.values().copied().collect();
    let rows = sqlx::query(
        "UPDATE accounts AS a SET last_sequence = a.last_sequence + t.n
         FROM UNNEST($1::text[], $2::int8[]) AS t(account, n)
         WHERE a.account = t.account
         RETURNING a.account, a.last_sequence",
    )
    .bind(&names)
    .bind(&counts)
    .fetch_all(&mut **tx)
    .await
    .map_err(db("taking account sequence numbers"))?;
    if rows.len() != needed.len() {
        // Every account was locked (or created) by `lock_accounts` in this transaction.
        return Err(SinkError::Database {
            context: "taking account sequence numbers: an account row is missing",
            source: sqlx::Error::RowNotFound,
        });
    }
    // The next number to hand out per account: last − needed + 1.
    let mut next: HashMap<String, i64> = HashMap::new();
    for row in rows {
        let account: String = row.try_get("account").map_err(db("reading account"))?;
        let last: i64 = row
            .try_get("last_sequence")
            .map_err(db("reading last_sequence"))?;
        let first = last - needed[account.as_str()] + 1;
        next.insert(account, first);
    }
    Ok(accounts
        .iter()
        .map(|account| {
            let n = next.get_mut(account).expect("every account was numbered");
            *n += 1;
            *n - 1
        })
        .collect())
}
