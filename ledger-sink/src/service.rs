//! PostgreSQL I/O of the ledger sink.
//!
//! A batch is written in one transaction with its offsets ([`LedgerDatabase::stage_batch`],
//! then [`StagedBatch::commit`]). Records the database must never hold are set aside
//! first (an entry that does not balance, an id that is not a UUID, a record that did not
//! decode). The rest is written under a savepoint; when PostgreSQL refuses it for a data
//! reason ([`crate::policy`]), the savepoint is rolled back and the records are written
//! again in halves, each under its own savepoint, down to the single records it refuses
//! (bisection: with k bad records among n, at most about 2·k·log2(n) extra attempts).
//! Rows are derived per attempt — posting sequence numbers are taken, and balances
//! summed, inside the savepoint — so a record left out leaves no gap in an account's
//! sequence and no trace in a balance. A journal entry whose id is already stored is
//! skipped, then compared with the stored entry: one with different content is a
//! conflict and is set aside too (`entry_difference`, [`SinkError::Conflict`]). Each
//! set-aside record gets a row in `sink_dead_letters`, in the same transaction as the
//! batch's other rows and all of its offsets, so exactly-once holds for the batch as a
//! whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use paystream_processors::lifecycle::transition;
use paystream_processors::{DeadLetterReason, Origin};
use paystream_runtime::config::SinkConfig;
use paystream_runtime::dead_letter::ERROR_HEADER_BYTES_MAX;
use paystream_runtime::dead_letter::mask_pans_in_text;
use paystream_schemas::validate::redact_sensitive;
use paystream_schemas::{
    JournalEntry, PaymentStatus, PaymentStatusChanged, PostingSide, ReconciliationException,
};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::policy::{WriteFailureAction, on_write_error};
use crate::{Result, SinkError, db};

/// What one record of the sink's input topics decoded to.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A journal entry (`ledger_entries`).
    Entry(JournalEntry),
    /// A payment status change (`payment_status`).
    Status(PaymentStatusChanged),
    /// A reconciliation exception (`reconciliation_exceptions`).
    Exception(ReconciliationException),
    /// The record did not decode; the message says why. It is dead-lettered, never
    /// written.
    Undecodable(String),
}

/// One record of a batch: where it was read, with its original key and value bytes (for
/// its dead letter), and what it decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    pub origin: Origin,
    pub content: Content,
}

/// Records to write in one database transaction, in the order they were read, with the
/// offsets they advance to.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub records: Vec<BatchRecord>,
    /// Next offset to read per `(topic, partition)` once this batch is written.
    pub next_offsets: BTreeMap<(String, i32), i64>,
}

impl Batch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record and advances no offset.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.next_offsets.is_empty()
    }
}

/// What one batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Journal entries inserted (entries already present were skipped).
    pub entries_written: u64,
    /// Journal entries skipped because their id was already in the ledger with the same
    /// content (a replay). One with different content is dead-lettered instead.
    pub entries_skipped: u64,
    pub postings_written: u64,
    pub statuses_written: u64,
    /// Reconciliation exceptions inserted (ones already present were skipped).
    pub exceptions_written: u64,
    /// Records dead-lettered instead of written (see [`Rejection`]).
    pub dead_lettered: u64,
}

impl BatchOutcome {
    fn add(&mut self, other: BatchOutcome) {
        self.entries_written += other.entries_written;
        self.entries_skipped += other.entries_skipped;
        self.postings_written += other.postings_written;
        self.statuses_written += other.statuses_written;
        self.exceptions_written += other.exceptions_written;
        self.dead_lettered += other.dead_lettered;
    }
}

/// A record of a batch that is dead-lettered instead of written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its index in [`Batch::records`].
    pub index: usize,
    /// Always [`DeadLetterReason::SinkRejected`] today; stored and counted per reason.
    pub reason: DeadLetterReason,
    /// The SQLSTATE PostgreSQL refused its rows with; `None` when the sink refused it
    /// before writing (it did not decode, or does not balance).
    pub sqlstate: Option<String>,
    /// Why: PostgreSQL's message or the sink's check, with card numbers masked
    /// ([`mask_pans_in_text`]) and credentials redacted ([`redact_sensitive`]), NUL bytes
    /// removed, at most
    /// [`ERROR_HEADER_BYTES_MAX`] bytes.
    pub error: String,
}

impl Rejection {
    fn new(index: usize, sqlstate: Option<String>, error: &str) -> Self {
        // Card digits masked before redaction, as for every dead letter.
        let mut error = redact_sensitive(&mask_pans_in_text(error)).replace('\0', "");
        if error.len() > ERROR_HEADER_BYTES_MAX {
            let mut cut = ERROR_HEADER_BYTES_MAX;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        Rejection {
            index,
            reason: DeadLetterReason::SinkRejected,
            sqlstate,
            error,
        }
    }
}

/// A batch written in an open transaction, not committed yet: the caller produces the
/// dead letters of [`StagedBatch::rejections`] to Kafka, then commits. Dropping it rolls
/// everything back.
pub struct StagedBatch {
    transaction: Transaction<'static, Postgres>,
    /// What the batch changes once committed.
    pub outcome: BatchOutcome,
    /// The records dead-lettered, in batch order.
    pub rejections: Vec<Rejection>,
}

impl StagedBatch {
    /// Commits the batch's rows, dead-letter rows and offsets.
    ///
    /// # Errors
    /// [`SinkError::Database`] when the commit fails (its outcome may be unknown: a
    /// retry of the same batch is harmless, every insert is idempotent).
    pub async fn commit(self) -> Result<(BatchOutcome, Vec<Rejection>)> {
        self.transaction
            .commit()
            .await
            .map_err(db("committing a batch"))?;
        Ok((self.outcome, self.rejections))
    }
}

/// The ledger database.
#[derive(Debug, Clone)]
pub struct LedgerDatabase {
    pool: PgPool,
}

/// The connection options of `sink.database_url` (libpq URL syntax, TLS parameters
/// `sslmode`, `sslrootcert`, `sslcert`, `sslkey` included) with `sink.database_password`.
/// With `sslmode=verify-full` the server's certificate must chain to `sslrootcert` and
/// name the host connected to.
///
/// # Errors
/// [`SinkError::Database`] when the URL does not parse (the error never shows a password).
pub fn connect_options(sink: &SinkConfig) -> Result<PgConnectOptions> {
    let options: PgConnectOptions = sink.database_url.parse().map_err(|_| SinkError::Database {
        context: "parsing sink.database_url",
        source: sqlx::Error::Configuration(
            format!(
                "{} is not a PostgreSQL URL (postgres://user@host:port/database?sslmode=...)",
                paystream_runtime::security::redact_url(&sink.database_url)
            )
            .into(),
        ),
    })?;
    Ok(match &sink.database_password {
        Some(password) => options.password(password.expose_secret()),
        None => options,
    })
}

/// Creates the database named in `sink.database_url` when it does not exist (connecting to the
/// `postgres` maintenance database of the same server).
///
/// # Errors
/// [`SinkError::Database`] when the server cannot be reached or refuses.
pub async fn create_database_if_missing(sink: &SinkConfig) -> Result<()> {
    let options = connect_options(sink)?;
    let name = options.get_database().unwrap_or("postgres").to_string();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(db("connecting to the postgres maintenance database"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(db("looking up the database"))?;
    if !exists {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SinkError::Database {
                context: "creating the database",
                source: sqlx::Error::Configuration(
                    format!("database name {name:?} must be [A-Za-z0-9_]").into(),
                ),
            });
        }
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(db("creating the database"))?;
    }
    admin
        .close()
        .await
        .map_err(db("closing the admin connection"))?;
    Ok(())
}

impl LedgerDatabase {
    /// Connects to `sink.database_url` (see [`connect_options`]; at most `connections_max`
    /// connections) and applies the migrations.
    ///
    /// # Errors
    /// [`SinkError::Database`] when PostgreSQL cannot be reached within 10 s;
    /// [`SinkError::Migrate`] when a migration fails.
    pub async fn connect(sink: &SinkConfig, connections_max: u32) -> Result<Self> {
        let options = connect_options(sink)?;
        let for_nodelay = options.clone();
        let pool = PgPoolOptions::new()
            .max_connections(connections_max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |_connection, _metadata| {
                let options = for_nodelay.clone();
                Box::pin(async move {
                    crate::nodelay::disable_nagle(&options).await;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db("connecting to sink.database_url"))?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(LedgerDatabase { pool })
    }

    /// The connection pool, for queries outside the sink (verify, reports).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The stored next offset per `(topic, partition)`.
    ///
    /// # Errors
    /// [`SinkError::Database`] on a failed query.
    pub async fn load_offsets(&self) -> Result<HashMap<(String, i32), i64>> {
        let rows = sqlx::query("SELECT topic, partition, next_offset FROM sink_offsets")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading sink_offsets"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    (
                        row.try_get::<String, _>("topic")
                            .map_err(db("reading topic"))?,
                        row.try_get::<i32, _>("partition")
                            .map_err(db("reading partition"))?,
                    ),
                    row.try_get::<i64, _>("next_offset")
                        .map_err(db("reading next_offset"))?,
                ))
            })
            .collect()
    }

    /// Writes a batch, its dead-letter rows and its offsets in one transaction and leaves
    /// it open (see [`StagedBatch`]). Entries whose id is already in the ledger are
    /// skipped with their postings and balance changes. Records that did not decode,
    /// entries that do not balance (or have no postings, or more than 32,767), entries
    /// whose id is stored with different content (a conflict, [`SinkError::Conflict`])
    /// and records whose rows PostgreSQL refuses for a data reason ([`crate::policy`])
    /// are not written: they come back as [`StagedBatch::rejections`] and have a row in
    /// `sink_dead_letters`. The offsets always cover the whole batch.
    ///
    /// # Errors
    /// [`SinkError::Database`] when PostgreSQL fails for another reason than a record's
    /// data (nothing is written; [`SinkError::is_retriable`] says whether to retry).
    pub async fn stage_batch(&self, batch: &Batch) -> Result<StagedBatch> {
        let mut rejections = Vec::new();
        // The parsed id of each entry and exception, by batch index.
        let mut ids: Vec<Option<Uuid>> = Vec::with_capacity(batch.len());
        let mut writable = Vec::with_capacity(batch.len());
        for (index, record) in batch.records.iter().enumerate() {
            match check(record) {
                Ok(id) => {
                    ids.push(id);
                    writable.push(index);
                }
                Err(error) => {
                    ids.push(None);
                    rejections.push(Rejection::new(index, None, &error));
                }
            }
        }
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(db("beginning a transaction"))?;
        let mut outcome = BatchOutcome::default();
        // Runs of `writable` still to write, the next one last: runs are written in read
        // order, so posting sequence numbers follow the order of the records.
        let mut pending: Vec<&[usize]> = vec![writable.as_slice()];
        while let Some(run) = pending.pop() {
            if run.is_empty() {
                continue;
            }
            execute(
                &mut transaction,
                "SAVEPOINT sink_rows",
                "setting a savepoint",
            )
            .await?;
            match write_rows(&mut transaction, batch, &ids, run).await {
                Ok((written, conflicts)) => {
                    execute(
                        &mut transaction,
                        "RELEASE SAVEPOINT sink_rows",
                        "releasing a savepoint",
                    )
                    .await?;
                    outcome.add(written);
                    rejections.extend(conflicts);
                }
                Err(error) if on_write_error(&error) == WriteFailureAction::Isolate => {
                    execute(
                        &mut transaction,
                        "ROLLBACK TO SAVEPOINT sink_rows",
                        "rolling back to a savepoint",
                    )
                    .await?;
                    execute(
                        &mut transaction,
                        "RELEASE SAVEPOINT sink_rows",
                        "releasing a savepoint",
                    )
                    .await?;
                    if let [index] = run {
                        let sqlstate = error.sqlstate();
                        let message =
                            format!("{error} (SQLSTATE {})", sqlstate.as_deref().unwrap_or("?"));
                        rejections.push(Rejection::new(*index, sqlstate, &message));
                    } else {
                        let (first, second) = run.split_at(run.len() / 2);
                        pending.push(second);
                        pending.push(first);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        rejections.sort_by_key(|rejection| rejection.index);
        store_dead_letters(&mut transaction, batch, &rejections).await?;
        outcome.dead_lettered = rejections.len() as u64;
        store_offsets(&mut transaction, &batch.next_offsets).await?;
        Ok(StagedBatch {
            transaction,
            outcome,
            rejections,
        })
    }
}

/// Most postings in one journal entry: their line numbers are `smallint`.
pub const POSTINGS_PER_ENTRY_MAX: usize = i16::MAX as usize;

/// The sink's own checks of a record, before PostgreSQL sees it: the parsed id of an
/// entry or exception, or why the record must never be written.
fn check(record: &BatchRecord) -> std::result::Result<Option<Uuid>, String> {
    let origin = &record.origin;
    let undecodable = |message: String| {
        SinkError::Undecodable {
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            message,
        }
        .to_string()
    };
    match &record.content {
        Content::Undecodable(message) => Err(undecodable(message.clone())),
        Content::Entry(entry) => {
            let id = Uuid::parse_str(&entry.id)
                .map_err(|e| undecodable(format!("journal entry id is not a UUID: {e}")))?;
            if !entry.is_balanced() {
                return Err(SinkError::Unbalanced {
                    id: entry.id.clone(),
                    topic: origin.topic.clone(),
                    partition: origin.partition,
                    offset: origin.offset,
                }
                .to_string());
            }
            if entry.postings.len() > POSTINGS_PER_ENTRY_MAX {
                return Err(format!(
                    "journal entry {id} has {} postings, more than {POSTINGS_PER_ENTRY_MAX}",
                    entry.postings.len()
                ));
            }
            Ok(Some(id))
        }
        Content::Exception(exception) => Uuid::parse_str(&exception.id)
            .map(Some)
            .map_err(|e| undecodable(format!("exception id is not a UUID: {e}"))),
        Content::Status(_) => Ok(None),
    }
}

async fn execute(
    transaction: &mut Transaction<'static, Postgres>,
    sql: &'static str,
    context: &'static str,
) -> Result<()> {
    sqlx::query(sql)
        .execute(&mut **transaction)
        .await
        .map_err(db(context))?;
    Ok(())
}

/// A journal entry of a batch with its parsed id, where it was read and its index in
/// [`Batch::records`].
struct EntryRow<'a> {
    index: usize,
    entry: &'a JournalEntry,
    id: Uuid,
    origin: &'a Origin,
}

/// Writes the rows of the records at `indices` of `batch` (none of them set aside by
/// [`check`]; `ids` holds their parsed ids). Returns what was written and the journal
/// entries to dead-letter because their id is already in the ledger with different
/// content ([`entry_difference`]); those wrote nothing.
async fn write_rows(
    transaction: &mut Transaction<'static, Postgres>,
    batch: &Batch,
    ids: &[Option<Uuid>],
    indices: &[usize],
) -> Result<(BatchOutcome, Vec<Rejection>)> {
    let mut entries = Vec::new();
    let mut statuses = Vec::new();
    let mut exceptions = Vec::new();
    for &index in indices {
        let record = &batch.records[index];
        match (&record.content, ids[index]) {
            (Content::Entry(entry), Some(id)) => entries.push(EntryRow {
                index,
                entry,
                id,
                origin: &record.origin,
            }),
            (Content::Status(status), _) => statuses.push(status),
            (Content::Exception(exception), Some(id)) => {
                exceptions.push((exception, id, &record.origin))
            }
            // Set aside by `check`: never among `indices`.
            _ => {}
        }
    }
    let (mut outcome, conflicts) = write_entries(transaction, &entries).await?;
    outcome.statuses_written = write_statuses(transaction, &statuses).await?;
    outcome.exceptions_written = write_exceptions(transaction, &exceptions).await?;
    Ok((outcome, conflicts))
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
async fn write_entries(
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

/// A journal entry as the ledger holds it: the content its deterministic id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct StoredEntry {
    payment_id: String,
    kind: String,
    /// In line order.
    postings: Vec<StoredPosting>,
}

/// One posting of a [`StoredEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredPosting {
    account: String,
    side: String,
    amount_minor: i64,
    /// Without `char(3)`'s padding.
    currency: String,
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
fn entry_difference(entry: &JournalEntry, stored: &StoredEntry) -> Option<String> {
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
async fn find_conflicts(
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

/// Each payment status with its rank: its distance from INITIATED along the lifecycle's
/// legal transitions ([`transition`]), found breadth-first from "no payment yet". A
/// legal transition always leads to a higher rank, so a stored status is only ever
/// replaced by one of the same or a higher rank (INITIATED 0, AUTHORIZED and DECLINED 1,
/// SETTLED 2). A status no transition reaches has no rank.
pub fn status_ranks() -> Vec<(PaymentStatus, i32)> {
    let mut ranks: Vec<(PaymentStatus, i32)> = Vec::new();
    let mut level: Vec<Option<PaymentStatus>> = vec![None];
    let mut rank = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        for &from in &level {
            for to in PaymentStatus::ALL {
                if transition(from, to).is_ok() && !ranks.iter().any(|&(s, _)| s == to) {
                    ranks.push((to, rank));
                    next.push(Some(to));
                }
            }
        }
        level = next;
        rank += 1;
    }
    ranks
}

/// [`status_ranks`] as the two arrays the payments upsert binds: names and ranks.
static STATUS_RANKS: LazyLock<(Vec<&'static str>, Vec<i32>)> = LazyLock::new(|| {
    status_ranks()
        .into_iter()
        .map(|(status, rank)| (status.as_str(), rank))
        .unzip()
});

/// Upserts the latest status per payment (records of one payment arrive in order);
/// returns how many status records that covered. A status never moves back: the stored
/// one is replaced only by one of the same or a higher [`status_ranks`] rank.
async fn write_statuses(
    transaction: &mut Transaction<'static, Postgres>,
    statuses: &[&PaymentStatusChanged],
) -> Result<u64> {
    let mut latest: BTreeMap<&str, &PaymentStatusChanged> = BTreeMap::new();
    for &status in statuses {
        latest.insert(&status.payment_id, status);
    }
    if latest.is_empty() {
        return Ok(0);
    }
    let (mut pid, mut mid, mut st, mut amt, mut cur, mut evt, mut at) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for s in latest.values() {
        pid.push(s.payment_id.clone());
        mid.push(s.merchant_id.clone());
        st.push(s.status.as_str().to_string());
        amt.push(s.amount_minor);
        cur.push(s.currency.clone());
        evt.push(s.caused_by_event_id.clone());
        at.push(s.occurred_at);
    }
    sqlx::query(
        "INSERT INTO payments
            (payment_id, merchant_id, status, amount_minor, currency, last_event_id, updated_at)
         SELECT pid, mid, st, amt, cur, evt, to_timestamp(at_ms / 1000.0)
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[])
              AS t(pid, mid, st, amt, cur, evt, at_ms)
         ON CONFLICT (payment_id) DO UPDATE SET
            status = EXCLUDED.status,
            last_event_id = EXCLUDED.last_event_id,
            updated_at = EXCLUDED.updated_at
         -- statuses only move forward: $9[i] is the rank of status $8[i] (status_ranks)
         WHERE ($9::int4[])[array_position($8::text[], EXCLUDED.status)]
            >= ($9::int4[])[array_position($8::text[], payments.status)]",
    )
    .bind(&pid)
    .bind(&mid)
    .bind(&st)
    .bind(&amt)
    .bind(&cur)
    .bind(&evt)
    .bind(&at)
    .bind(&STATUS_RANKS.0)
    .bind(&STATUS_RANKS.1)
    .execute(&mut **transaction)
    .await
    .map_err(db("upserting payments"))?;
    Ok(statuses.len() as u64)
}

/// Inserts reconciliation exceptions, once per id (= once per payment and kind); returns
/// how many were new.
async fn write_exceptions(
    transaction: &mut Transaction<'static, Postgres>,
    exceptions: &[(&ReconciliationException, Uuid, &Origin)],
) -> Result<u64> {
    if exceptions.is_empty() {
        return Ok(0);
    }
    let mut rows = ExceptionRows::default();
    for (exception, id, origin) in exceptions {
        rows.push(exception, *id, origin);
    }
    let written = sqlx::query(
        "INSERT INTO reconciliation_exceptions
            (id, kind, payment_id, expected_amount_minor, actual_amount_minor, currency,
             detected_at, source_topic, source_partition, source_offset)
         SELECT id, kind, pid, expected, actual, cur, to_timestamp(at_ms / 1000.0),
                topic, part, off
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                     $6::text[], $7::int8[], $8::text[], $9::int4[], $10::int8[])
              AS t(id, kind, pid, expected, actual, cur, at_ms, topic, part, off)
         ON CONFLICT DO NOTHING",
    )
    .bind(&rows.id)
    .bind(&rows.kind)
    .bind(&rows.payment_id)
    .bind(&rows.expected)
    .bind(&rows.actual)
    .bind(&rows.currency)
    .bind(&rows.detected_at)
    .bind(&rows.topic)
    .bind(&rows.partition)
    .bind(&rows.offset)
    .execute(&mut **transaction)
    .await
    .map_err(db("inserting reconciliation exceptions"))?;
    Ok(written.rows_affected())
}

/// Records the batch's rejected records in `sink_dead_letters` (a record dead-lettered
/// before, by a batch whose commit outcome was unknown, keeps its first row).
async fn store_dead_letters(
    transaction: &mut Transaction<'static, Postgres>,
    batch: &Batch,
    rejections: &[Rejection],
) -> Result<()> {
    if rejections.is_empty() {
        return Ok(());
    }
    let (mut topic, mut partition, mut offset, mut reason, mut sqlstate, mut error) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for rejection in rejections {
        let origin = &batch.records[rejection.index].origin;
        topic.push(origin.topic.clone());
        partition.push(origin.partition);
        offset.push(origin.offset);
        reason.push(rejection.reason.as_str());
        sqlstate.push(rejection.sqlstate.clone());
        error.push(rejection.error.clone());
    }
    sqlx::query(
        "INSERT INTO sink_dead_letters (topic, partition, \"offset\", reason, sqlstate, error)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::text[], $5::text[],
                              $6::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&topic)
    .bind(&partition)
    .bind(&offset)
    .bind(&reason)
    .bind(&sqlstate)
    .bind(&error)
    .execute(&mut **transaction)
    .await
    .map_err(db("recording sink dead letters"))?;
    Ok(())
}

/// Stores the next offset per partition, never moving one back.
async fn store_offsets(
    transaction: &mut Transaction<'static, Postgres>,
    next_offsets: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    if next_offsets.is_empty() {
        return Ok(());
    }
    let (mut t, mut p, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for ((topic, partition), offset) in next_offsets {
        t.push(topic.clone());
        p.push(*partition);
        o.push(*offset);
    }
    sqlx::query(
        "INSERT INTO sink_offsets (topic, partition, next_offset)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[])
         ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
         WHERE sink_offsets.next_offset < EXCLUDED.next_offset",
    )
    .bind(&t)
    .bind(&p)
    .bind(&o)
    .execute(&mut **transaction)
    .await
    .map_err(db("storing sink offsets"))?;
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

/// Column arrays of reconciliation exceptions for one `UNNEST` insert.
#[derive(Default)]
struct ExceptionRows {
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    payment_id: Vec<String>,
    expected: Vec<Option<i64>>,
    actual: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    detected_at: Vec<i64>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

impl ExceptionRows {
    fn push(&mut self, exception: &ReconciliationException, id: Uuid, origin: &Origin) {
        self.id.push(id);
        self.kind.push(exception.kind.as_str());
        self.payment_id.push(exception.payment_id.clone());
        self.expected.push(exception.expected_amount_minor);
        self.actual.push(exception.actual_amount_minor);
        self.currency.push(exception.currency.clone());
        self.detected_at.push(exception.detected_at);
        self.topic.push(origin.topic.clone());
        self.partition.push(origin.partition);
        self.offset.push(origin.offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paystream_schemas::{JournalEntryKind, Posting};

    fn origin(offset: i64) -> Origin {
        Origin {
            topic: "ledger_entries".into(),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: None,
        }
    }

    fn entry(debit: i64, credit: i64) -> JournalEntry {
        let posting = |side, amount_minor| Posting {
            account: "psp_receivable:adyen".into(),
            side,
            amount_minor,
            currency: "EUR".into(),
        };
        JournalEntry {
            id: "6f1c1c2e-52a4-5b8e-9d43-2f4a0a9c0b11".into(),
            payment_id: "pay-1".into(),
            kind: JournalEntryKind::Authorization,
            postings: vec![
                posting(PostingSide::Debit, debit),
                posting(PostingSide::Credit, credit),
            ],
            occurred_at: 0,
            caused_by_event_id: "evt-1".into(),
        }
    }

    fn record(content: Content) -> BatchRecord {
        BatchRecord {
            origin: origin(7),
            content,
        }
    }

    #[test]
    fn the_sink_sets_aside_what_the_ledger_must_never_hold() {
        assert_eq!(
            check(&record(Content::Entry(entry(100, 100)))),
            Ok(Some(
                Uuid::parse_str("6f1c1c2e-52a4-5b8e-9d43-2f4a0a9c0b11").unwrap()
            ))
        );
        let unbalanced = check(&record(Content::Entry(entry(100, 99)))).unwrap_err();
        assert!(unbalanced.contains("does not balance"), "{unbalanced}");
        assert!(unbalanced.contains("ledger_entries/0@7"), "{unbalanced}");
        let not_uuid = check(&record(Content::Entry(JournalEntry {
            id: "entry-1".into(),
            ..entry(100, 100)
        })))
        .unwrap_err();
        assert!(not_uuid.contains("not a UUID"), "{not_uuid}");
        let no_postings = check(&record(Content::Entry(JournalEntry {
            postings: Vec::new(),
            ..entry(100, 100)
        })))
        .unwrap_err();
        assert!(no_postings.contains("does not balance"), "{no_postings}");
        let mut many = entry(1, 1);
        many.postings = many
            .postings
            .iter()
            .cycle()
            .take(POSTINGS_PER_ENTRY_MAX + 1)
            .cloned()
            .collect();
        let too_many = check(&record(Content::Entry(many))).unwrap_err();
        assert!(too_many.contains("postings, more than 32767"), "{too_many}");
        let undecodable = check(&record(Content::Undecodable(
            "bad_magic_byte: first byte 7".into(),
        )))
        .unwrap_err();
        assert!(undecodable.contains("does not decode"), "{undecodable}");
    }

    #[test]
    fn a_rejection_error_is_redacted_without_nul_bytes_and_bounded() {
        let rejection = Rejection::new(
            3,
            Some("22021".into()),
            "pay-\0 token 4111111111111111 refused",
        );
        assert_eq!(rejection.reason, DeadLetterReason::SinkRejected);
        assert!(!rejection.error.contains('\0'));
        assert!(
            !rejection.error.contains("4111111111111111"),
            "{}",
            rejection.error
        );
        let long = Rejection::new(0, None, &"é".repeat(ERROR_HEADER_BYTES_MAX));
        assert!(long.error.len() <= ERROR_HEADER_BYTES_MAX);
    }

    /// `entry` as the ledger would hold it.
    fn stored(entry: &JournalEntry) -> StoredEntry {
        StoredEntry {
            payment_id: entry.payment_id.clone(),
            kind: entry.kind.as_str().into(),
            postings: entry
                .postings
                .iter()
                .map(|p| StoredPosting {
                    account: p.account.clone(),
                    side: p.side.as_str().into(),
                    amount_minor: p.amount_minor,
                    currency: p.currency.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_replay_with_the_same_content_is_no_conflict() {
        let original = entry(100, 100);
        let replay = JournalEntry {
            // Not part of what the id stands for: may differ in a replay.
            occurred_at: 99,
            caused_by_event_id: "evt-2".into(),
            ..original.clone()
        };
        assert_eq!(entry_difference(&replay, &stored(&original)), None);
        // `char(3)` pads a shorter currency; the padding does not count.
        let mut short = entry(100, 100);
        for posting in &mut short.postings {
            posting.currency = "EU".into();
        }
        let mut padded = stored(&short);
        padded.postings[0].currency = "EU".into();
        assert_eq!(entry_difference(&short, &padded), None);
    }

    #[test]
    fn the_same_id_with_different_content_is_a_conflict() {
        let stored = stored(&entry(100, 100));
        let differs = |entry: JournalEntry| entry_difference(&entry, &stored).unwrap();
        assert_eq!(
            differs(JournalEntry {
                payment_id: "pay-2".into(),
                ..entry(100, 100)
            }),
            r#"payment id "pay-2", stored "pay-1""#
        );
        assert_eq!(
            differs(JournalEntry {
                kind: JournalEntryKind::Settlement,
                ..entry(100, 100)
            }),
            "kind SETTLEMENT, stored AUTHORIZATION"
        );
        assert_eq!(
            differs(entry(200, 200)),
            "posting 0: DEBIT 200 EUR psp_receivable:adyen, stored DEBIT 100 EUR psp_receivable:adyen"
        );
        let mut sides = entry(100, 100);
        sides.postings.reverse();
        assert!(differs(sides).starts_with("posting 0: CREDIT 100"));
        let mut account = entry(100, 100);
        account.postings[1].account = "merchant_payable:m-1".into();
        assert_eq!(
            differs(account),
            "posting 1: CREDIT 100 EUR merchant_payable:m-1, stored CREDIT 100 EUR psp_receivable:adyen"
        );
        let mut currency = entry(100, 100);
        currency.postings[1].currency = "USD".into();
        assert!(differs(currency).contains("CREDIT 100 USD"));
        let mut more = entry(100, 100);
        more.postings.extend(entry(5, 5).postings);
        assert_eq!(differs(more), "4 postings, stored 2");
        // A stored entry that lost its postings.
        let bare = StoredEntry {
            postings: Vec::new(),
            ..stored.clone()
        };
        assert_eq!(
            entry_difference(&entry(100, 100), &bare).unwrap(),
            "2 postings, stored 0"
        );
    }

    #[test]
    fn a_conflict_is_dead_lettered_with_its_id_origin_and_difference() {
        let conflict = SinkError::Conflict {
            id: "6f1c1c2e-52a4-5b8e-9d43-2f4a0a9c0b11".into(),
            topic: "ledger_entries".into(),
            partition: 2,
            offset: 41,
            difference: "kind SETTLEMENT, stored AUTHORIZATION".into(),
        };
        let rejection = Rejection::new(5, None, &conflict.to_string());
        assert_eq!(rejection.reason, DeadLetterReason::SinkRejected);
        assert_eq!(
            rejection.error,
            "journal entry 6f1c1c2e-52a4-5b8e-9d43-2f4a0a9c0b11 from ledger_entries/2@41 is \
             already in the ledger with different content: kind SETTLEMENT, stored AUTHORIZATION"
        );
        assert!(!conflict.is_retriable());
    }

    #[test]
    fn status_ranks_follow_the_lifecycle_transitions() {
        let ranks: HashMap<PaymentStatus, i32> = status_ranks().into_iter().collect();
        // Every status has exactly one rank.
        assert_eq!(ranks.len(), PaymentStatus::ALL.len());
        assert_eq!(status_ranks().len(), PaymentStatus::ALL.len());
        for to in PaymentStatus::ALL {
            // A status a payment starts in has rank 0 ...
            if transition(None, to).is_ok() {
                assert_eq!(ranks[&to], 0, "{to}");
            }
            for from in PaymentStatus::ALL {
                // ... every legal transition goes up by exactly one ...
                if transition(Some(from), to).is_ok() {
                    assert_eq!(ranks[&to], ranks[&from] + 1, "{from}→{to}");
                }
                // ... so an upsert that may only raise the rank never undoes one.
                if ranks[&to] < ranks[&from] {
                    assert!(transition(Some(from), to).is_err(), "{from}→{to}");
                }
            }
        }
        // What the SQL CASE said before it was derived.
        assert_eq!(
            [
                PaymentStatus::Initiated,
                PaymentStatus::Authorized,
                PaymentStatus::Declined,
                PaymentStatus::Settled
            ]
            .map(|s| ranks[&s]),
            [0, 1, 1, 2]
        );
        assert_eq!(
            *STATUS_RANKS,
            (
                vec!["INITIATED", "AUTHORIZED", "DECLINED", "SETTLED"],
                vec![0, 1, 1, 2]
            )
        );
    }

    #[test]
    fn outcomes_add_up() {
        let mut total = BatchOutcome::default();
        let one = BatchOutcome {
            entries_written: 2,
            entries_skipped: 1,
            postings_written: 4,
            statuses_written: 3,
            exceptions_written: 1,
            dead_lettered: 1,
        };
        total.add(one);
        total.add(one);
        assert_eq!(total.postings_written, 8);
        assert_eq!(total.dead_lettered, 2);
    }
}
