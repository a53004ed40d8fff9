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

use crate::config::SinkConfig;
use paystream_common::dead_letter::sanitize_error;
use paystream_processors::lifecycle::{LEGAL_TRANSITIONS, transition};
use paystream_processors::{DeadLetterReason, Origin};
use paystream_schemas::{
    JournalEntry, PaymentStatus, PaymentStatusChanged, PostingSide, ReconciliationException,
};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::policy::{WriteFailureAction, on_write_error};
use crate::{Result, SinkError, db};

mod batch;
mod conflicts;
mod entries;
mod offsets;
mod statuses;

pub use batch::{Batch, BatchOutcome, BatchRecord, Content, Rejection};
use conflicts::find_conflicts;
#[cfg(test)]
use conflicts::{StoredEntry, StoredPosting, entry_difference};
use entries::{EntryRow, write_entries};
use offsets::{store_dead_letters, store_offsets};
#[cfg(test)]
use statuses::BACKWARD_TRANSITIONS;
#[cfg(test)]
pub use statuses::status_ranks;
use statuses::{write_exceptions, write_statuses};

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
                paystream_common::security::redact_url(&sink.database_url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use paystream_common::dead_letter::ERROR_HEADER_BYTES_MAX;
    use paystream_schemas::{JournalEntryKind, Posting, ReconciliationExceptionKind};

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
            merchant_id: None,
            psp: None,
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
            merchant_id: None,
            psp: None,
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
    fn the_ledger_tables_accept_every_status_and_kind_of_the_schemas() {
        // The CHECK constraints of the latest migration that lists them.
        let migration = include_str!("../../migrations/0005_lifecycle_symbols.sql");
        let names = PaymentStatus::ALL
            .map(PaymentStatus::as_str)
            .into_iter()
            .chain(JournalEntryKind::ALL.map(JournalEntryKind::as_str))
            .chain(ReconciliationExceptionKind::ALL.map(ReconciliationExceptionKind::as_str));
        for name in names {
            assert!(migration.contains(&format!("'{name}'")), "{name}");
        }
    }

    #[test]
    fn status_ranks_follow_the_lifecycle_transitions() {
        let ranks: HashMap<PaymentStatus, i32> = status_ranks().into_iter().collect();
        // Every status a transition reaches has exactly one rank.
        assert_eq!(ranks.len(), status_ranks().len());
        let reached: Vec<PaymentStatus> = PaymentStatus::ALL
            .into_iter()
            .filter(|&to| {
                transition(None, to).is_ok()
                    || PaymentStatus::ALL
                        .into_iter()
                        .any(|from| transition(Some(from), to).is_ok())
            })
            .collect();
        assert_eq!(ranks.len(), reached.len());
        let backward: Vec<(&str, &str)> = BACKWARD_TRANSITIONS
            .0
            .iter()
            .copied()
            .zip(BACKWARD_TRANSITIONS.1.iter().copied())
            .collect();
        for &to in &reached {
            // A status a payment starts in has rank 0 ...
            if transition(None, to).is_ok() {
                assert_eq!(ranks[&to], 0, "{to}");
            }
            for &from in &reached {
                let legal = transition(Some(from), to).is_ok();
                // ... a legal transition goes up in rank or is one the upsert lets
                // through by name ...
                if legal && ranks[&to] <= ranks[&from] {
                    assert!(
                        backward.contains(&(from.as_str(), to.as_str())),
                        "{from}→{to}"
                    );
                }
                // ... and anything else that goes back is refused: a replayed earlier
                // status never undoes a later one.
                if ranks[&to] < ranks[&from] && !legal {
                    assert!(
                        !backward.contains(&(from.as_str(), to.as_str())),
                        "{from}→{to}"
                    );
                }
            }
        }
        // The ranks of the first statuses are what the SQL CASE said before they were
        // derived.
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
        assert!(
            backward.contains(&("SETTLED", "CAPTURED"))
                && backward.contains(&("REFUNDED", "PARTIALLY_REFUNDED")),
            "{backward:?}"
        );
        assert!(!backward.contains(&("SETTLED", "AUTHORIZED")));
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
