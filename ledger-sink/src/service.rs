//! PostgreSQL I/O of the ledger sink.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use paystream_runtime::config::SinkConfig;
use paystream_schemas::{JournalEntry, PaymentStatusChanged, PostingSide, ReconciliationException};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool, Row};
use uuid::Uuid;

use crate::{Result, SinkError, db};

/// Where a record was read: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Records to write in one database transaction, with the offsets they advance to.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub entries: Vec<(JournalEntry, Source)>,
    pub statuses: Vec<PaymentStatusChanged>,
    pub exceptions: Vec<(ReconciliationException, Source)>,
    /// Next offset to read per `(topic, partition)` once this batch is written.
    pub next_offsets: BTreeMap<(String, i32), i64>,
}

impl Batch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.entries.len() + self.statuses.len() + self.exceptions.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.statuses.is_empty()
            && self.exceptions.is_empty()
            && self.next_offsets.is_empty()
    }
}

/// What one batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Journal entries inserted (entries already present were skipped).
    pub entries_written: u64,
    /// Journal entries skipped because their id was already in the ledger (a replay).
    pub entries_skipped: u64,
    pub postings_written: u64,
    pub statuses_written: u64,
    /// Reconciliation exceptions inserted (ones already present were skipped).
    pub exceptions_written: u64,
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
        let pool = PgPoolOptions::new()
            .max_connections(connections_max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect_options(sink)?)
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

    /// Writes a batch and its offsets in one transaction. Entries whose id is already in
    /// the ledger are skipped with their postings and balance changes.
    ///
    /// # Errors
    /// [`SinkError::Unbalanced`] (nothing written) when an entry does not balance;
    /// [`SinkError::Database`] when PostgreSQL fails (the transaction rolls back).
    pub async fn write_batch(&self, batch: &Batch) -> Result<BatchOutcome> {
        for (entry, source) in &batch.entries {
            if !entry.is_balanced() {
                return Err(SinkError::Unbalanced {
                    id: entry.id.clone(),
                    topic: source.topic.clone(),
                    partition: source.partition,
                    offset: source.offset,
                });
            }
        }
        let mut outcome = BatchOutcome::default();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("beginning a transaction"))?;

        // 1. Journal entries; the ids actually inserted come back.
        let mut ids = Vec::new();
        let mut payment_ids = Vec::new();
        let mut kinds = Vec::new();
        let mut occurred = Vec::new();
        let mut caused_by = Vec::new();
        let mut topics = Vec::new();
        let mut partitions = Vec::new();
        let mut offsets = Vec::new();
        for (entry, source) in &batch.entries {
            ids.push(
                Uuid::parse_str(&entry.id).map_err(|e| SinkError::Undecodable {
                    topic: source.topic.clone(),
                    partition: source.partition,
                    offset: source.offset,
                    message: format!("journal entry id is not a UUID: {e}"),
                })?,
            );
            payment_ids.push(entry.payment_id.clone());
            kinds.push(entry.kind.as_str().to_string());
            occurred.push(entry.occurred_at);
            caused_by.push(entry.caused_by_event_id.clone());
            topics.push(source.topic.clone());
            partitions.push(source.partition);
            offsets.push(source.offset);
        }
        let inserted: Vec<Uuid> = if ids.is_empty() {
            Vec::new()
        } else {
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
            .fetch_all(&mut *tx)
            .await
            .map_err(db("inserting journal entries"))?
        };
        outcome.entries_written = inserted.len() as u64;
        outcome.entries_skipped = (ids.len() - inserted.len()) as u64;

        // 2. Postings of the inserted entries, and 3. their balance changes.
        // An id listed twice in one batch was inserted once: post its lines once.
        let mut inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
        let mut p_entry = Vec::new();
        let mut p_line = Vec::new();
        let mut p_account = Vec::new();
        let mut p_side = Vec::new();
        let mut p_amount = Vec::new();
        let mut p_currency = Vec::new();
        let mut balances: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for ((entry, _), id) in batch.entries.iter().zip(&ids) {
            if !inserted.remove(id) {
                continue;
            }
            for (line, posting) in entry.postings.iter().enumerate() {
                p_entry.push(*id);
                p_line.push(line as i16);
                p_account.push(posting.account.clone());
                p_side.push(posting.side.as_str().to_string());
                p_amount.push(posting.amount_minor);
                p_currency.push(posting.currency.clone());
                let totals = balances
                    .entry((posting.account.clone(), posting.currency.clone()))
                    .or_insert((0, 0));
                match posting.side {
                    PostingSide::Debit => totals.0 += posting.amount_minor,
                    PostingSide::Credit => totals.1 += posting.amount_minor,
                }
            }
        }
        if !p_entry.is_empty() {
            let p_sequence = take_account_sequences(&mut tx, &p_account).await?;
            sqlx::query(
                "INSERT INTO postings
                    (journal_entry_id, line, account, side, amount_minor, currency, account_sequence)
                 SELECT * FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::text[], $5::int8[],
                                      $6::text[], $7::int8[])",
            )
            .bind(&p_entry)
            .bind(&p_line)
            .bind(&p_account)
            .bind(&p_side)
            .bind(&p_amount)
            .bind(&p_currency)
            .bind(&p_sequence)
            .execute(&mut *tx)
            .await
            .map_err(db("inserting postings"))?;
            outcome.postings_written = p_entry.len() as u64;
        }
        if !balances.is_empty() {
            let (mut accounts, mut currencies, mut debits, mut credits) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((account, currency), (debit, credit)) in balances {
                accounts.push(account);
                currencies.push(currency);
                debits.push(debit);
                credits.push(credit);
            }
            sqlx::query(
                "INSERT INTO account_balances
                    (account, currency, debit_total_minor, credit_total_minor, balance_minor)
                 SELECT account, currency, debit, credit, debit - credit
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[])
                      AS t(account, currency, debit, credit)
                 ON CONFLICT (account, currency) DO UPDATE SET
                    debit_total_minor = account_balances.debit_total_minor + EXCLUDED.debit_total_minor,
                    credit_total_minor = account_balances.credit_total_minor + EXCLUDED.credit_total_minor,
                    balance_minor = account_balances.balance_minor + EXCLUDED.balance_minor,
                    updated_at = now()",
            )
            .bind(&accounts)
            .bind(&currencies)
            .bind(&debits)
            .bind(&credits)
            .execute(&mut *tx)
            .await
            .map_err(db("updating account balances"))?;
        }

        // 4. Latest status per payment (records of one payment arrive in order).
        let mut latest: BTreeMap<&str, &PaymentStatusChanged> = BTreeMap::new();
        for status in &batch.statuses {
            latest.insert(&status.payment_id, status);
        }
        if !latest.is_empty() {
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
                 -- statuses only move forward: INITIATED < AUTHORIZED, DECLINED < SETTLED
                 WHERE (CASE EXCLUDED.status WHEN 'INITIATED' THEN 0 WHEN 'SETTLED' THEN 2 ELSE 1 END)
                    >= (CASE payments.status WHEN 'INITIATED' THEN 0 WHEN 'SETTLED' THEN 2 ELSE 1 END)",
            )
            .bind(&pid)
            .bind(&mid)
            .bind(&st)
            .bind(&amt)
            .bind(&cur)
            .bind(&evt)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(db("upserting payments"))?;
            outcome.statuses_written = batch.statuses.len() as u64;
        }

        // 5. Reconciliation exceptions, once per id (= once per payment and kind).
        if !batch.exceptions.is_empty() {
            let mut rows = ExceptionRows::default();
            for (exception, source) in &batch.exceptions {
                rows.push(exception, source)?;
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
            .execute(&mut *tx)
            .await
            .map_err(db("inserting reconciliation exceptions"))?;
            outcome.exceptions_written = written.rows_affected();
        }

        // 6. The offsets, in the same transaction.
        if !batch.next_offsets.is_empty() {
            let (mut t, mut p, mut o) = (Vec::new(), Vec::new(), Vec::new());
            for ((topic, partition), offset) in &batch.next_offsets {
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
            .execute(&mut *tx)
            .await
            .map_err(db("storing sink offsets"))?;
        }
        tx.commit().await.map_err(db("committing a batch"))?;
        Ok(outcome)
    }
}

/// Hands out the next per-account posting sequence numbers for `accounts` (one per
/// posting, in order) and returns them. Accounts are locked in name order, so concurrent
/// writers never deadlock on each other.
async fn take_account_sequences(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    accounts: &[String],
) -> Result<Vec<i64>> {
    let mut needed: BTreeMap<&str, i64> = BTreeMap::new();
    for account in accounts {
        *needed.entry(account).or_insert(0) += 1;
    }
    let names: Vec<&str> = needed.keys().copied().collect();
    let counts: Vec<i64> = needed.values().copied().collect();
    let rows = sqlx::query(
        "INSERT INTO accounts (account, last_sequence)
         SELECT account, n FROM UNNEST($1::text[], $2::int8[]) AS t(account, n) ORDER BY account
         ON CONFLICT (account) DO UPDATE SET last_sequence = accounts.last_sequence + EXCLUDED.last_sequence
         RETURNING account, last_sequence",
    )
    .bind(&names)
    .bind(&counts)
    .fetch_all(&mut **tx)
    .await
    .map_err(db("taking account sequence numbers"))?;
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
    fn push(&mut self, exception: &ReconciliationException, source: &Source) -> Result<()> {
        self.id.push(
            Uuid::parse_str(&exception.id).map_err(|e| SinkError::Undecodable {
                topic: source.topic.clone(),
                partition: source.partition,
                offset: source.offset,
                message: format!("exception id is not a UUID: {e}"),
            })?,
        );
        self.kind.push(exception.kind.as_str());
        self.payment_id.push(exception.payment_id.clone());
        self.expected.push(exception.expected_amount_minor);
        self.actual.push(exception.actual_amount_minor);
        self.currency.push(exception.currency.clone());
        self.detected_at.push(exception.detected_at);
        self.topic.push(source.topic.clone());
        self.partition.push(source.partition);
        self.offset.push(source.offset);
        Ok(())
    }
}
