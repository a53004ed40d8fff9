//! Per-account posting sequence numbers on a real PostgreSQL, through the sink's own
//! write path (`LedgerDatabase::stage_batch`, then commit: rows and offsets in one
//! transaction per batch), without Kafka, so that batch boundaries are exact.
//!
//! 1. Across several batches — new entries, replays of posted entries among new ones, an
//!    entry twice in one batch, a whole batch written again (a commit whose outcome was
//!    unknown), a record PostgreSQL refuses (the batch is bisected) and an id already
//!    posted with other content (a conflict) — each account's postings are numbered
//!    1, 2, 3, … exactly in write order (batch order, then record order, then line), an
//!    entry that was already posted takes no number, `accounts.last_sequence` is the
//!    last number handed out, and an account only a refused record named has no row.
//! 2. Two writers writing the same entries at the same time, in different orders, serialise
//!    per account without a deadlock: every entry is posted once and the numbers stay
//!    gapless.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paystream_integration::TestEnv;
use paystream_ledger_sink::LedgerDatabase;
use paystream_ledger_sink::SinkConfig;
use paystream_ledger_sink::service::{
    Batch, BatchOutcome, BatchRecord, Content, create_database_if_missing,
};
use paystream_processors::Origin;
use paystream_schemas::{JournalEntry, JournalEntryKind, Posting, PostingSide};
use sqlx::Row;
use uuid::Uuid;

const TOPIC: &str = "ledger_entries";

fn posting(account: &str, side: PostingSide, amount_minor: i64) -> Posting {
    Posting {
        account: account.to_string(),
        side,
        amount_minor,
        currency: "EUR".into(),
    }
}

/// An authorization entry of payment `n`: debit the PSP, credit the merchant.
fn authorization(n: usize, psp: &str, merchant: &str, amount: i64) -> JournalEntry {
    JournalEntry {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("auth-{n}").as_bytes()).to_string(),
        payment_id: format!("pay-{n}"),
        kind: JournalEntryKind::Authorization,
        postings: vec![
            posting(&format!("psp_receivable:{psp}"), PostingSide::Debit, amount),
            posting(
                &format!("merchant_payable:{merchant}"),
                PostingSide::Credit,
                amount,
            ),
        ],
        occurred_at: 1_767_225_600_000 + n as i64,
        caused_by_event_id: format!("evt-{n}"),
        merchant_id: None,
        psp: None,
    }
}

/// A settlement entry of payment `n`: debit the bank net and the fees, credit the PSP.
fn settlement(n: usize, psp: &str, amount: i64) -> JournalEntry {
    let fee = amount / 10;
    JournalEntry {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("settle-{n}").as_bytes()).to_string(),
        payment_id: format!("pay-{n}"),
        kind: JournalEntryKind::Settlement,
        postings: vec![
            posting("bank:settlement", PostingSide::Debit, amount - fee),
            posting(&format!("expense:psp_fees:{psp}"), PostingSide::Debit, fee),
            posting(
                &format!("psp_receivable:{psp}"),
                PostingSide::Credit,
                amount,
            ),
        ],
        occurred_at: 1_767_225_700_000 + n as i64,
        caused_by_event_id: format!("settle-evt-{n}"),
        merchant_id: None,
        psp: None,
    }
}

/// A batch of `entries`, read at consecutive offsets of partition 0 from `first_offset`.
fn batch(entries: &[JournalEntry], first_offset: i64) -> Batch {
    let mut batch = Batch::default();
    for (i, entry) in entries.iter().enumerate() {
        let offset = first_offset + i as i64;
        batch.records.push(BatchRecord {
            origin: Origin {
                topic: TOPIC.into(),
                partition: 0,
                offset,
                timestamp_ms: entry.occurred_at,
                key: Some(entry.payment_id.clone().into_bytes()),
                value: None,
            },
            content: Content::Entry(entry.clone()),
        });
        batch
            .next_offsets
            .insert((TOPIC.to_string(), 0), offset + 1);
    }
    batch
}

/// A fresh ledger database for this test, migrated; it is dropped with the returned
/// environment.
async fn database(name: &str) -> anyhow::Result<(TestEnv, SinkConfig, LedgerDatabase)> {
    let env = TestEnv::new(name);
    let sink = SinkConfig {
        database_url: env.database_url.clone(),
        ..SinkConfig::default()
    };
    create_database_if_missing(&sink).await?;
    let database = LedgerDatabase::connect(&sink, 4).await?;
    Ok((env, sink, database))
}

/// The sequence numbers the ledger must hold: each account's postings numbered in the
/// order they were written, for the entries that were posted.
#[derive(Default)]
struct Model {
    posted: HashSet<Uuid>,
    last: BTreeMap<String, i64>,
    sequences: BTreeMap<(Uuid, i16), (String, i64)>,
}

impl Model {
    /// Writes `entries` in order, as the sink must: an id already posted is skipped.
    /// Returns how many were posted.
    fn write(&mut self, entries: &[&JournalEntry]) -> u64 {
        let mut written = 0;
        for entry in entries {
            let id = Uuid::parse_str(&entry.id).unwrap();
            if !self.posted.insert(id) {
                continue;
            }
            written += 1;
            for (line, posting) in entry.postings.iter().enumerate() {
                let n = self.last.entry(posting.account.clone()).or_insert(0);
                *n += 1;
                self.sequences
                    .insert((id, line as i16), (posting.account.clone(), *n));
            }
        }
        written
    }

    async fn check(&self, pool: &sqlx::PgPool, step: &str) -> anyhow::Result<()> {
        let stored: BTreeMap<(Uuid, i16), (String, i64)> =
            sqlx::query("SELECT journal_entry_id, line, account, account_sequence FROM postings")
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| {
                    Ok((
                        (row.try_get("journal_entry_id")?, row.try_get("line")?),
                        (row.try_get("account")?, row.try_get("account_sequence")?),
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?;
        assert_eq!(
            stored, self.sequences,
            "{step}: postings numbered in write order"
        );
        let last: BTreeMap<String, i64> =
            sqlx::query("SELECT account, last_sequence FROM accounts")
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| Ok((row.try_get("account")?, row.try_get("last_sequence")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        assert_eq!(last, self.last, "{step}: accounts.last_sequence");
        let report = paystream_ledger_sink::verify(pool).await?;
        assert!(report.is_verified(), "{step}: {report:?}");
        Ok(())
    }
}

async fn write(database: &LedgerDatabase, batch: &Batch) -> anyhow::Result<BatchOutcome> {
    let staged = database.stage_batch(batch).await?;
    let (outcome, _) = staged.commit().await?;
    Ok(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_numbers_are_gapless_and_in_write_order_across_batches_and_replays()
-> anyhow::Result<()> {
    let (_env, _, database) = database("sinkseq").await?;
    let pool = database.pool().clone();
    let psps = ["adyen", "stripe"];
    let merchants = ["m-1", "m-2", "m-3"];
    let auth = |n: usize| {
        authorization(
            n,
            psps[n % psps.len()],
            merchants[n % merchants.len()],
            1_000 + n as i64,
        )
    };
    let settle = |n: usize| settlement(n, psps[n % psps.len()], 1_000 + n as i64);
    let mut model = Model::default();
    let mut offset = 0i64;

    // 1. New entries, in an order where accounts interleave.
    let first: Vec<JournalEntry> = (1..=8)
        .flat_map(|n| {
            if n % 3 == 0 {
                vec![auth(n), settle(n - 1)]
            } else {
                vec![auth(n)]
            }
        })
        .collect();
    let outcome = write(&database, &batch(&first, offset)).await?;
    offset += first.len() as i64;
    assert_eq!(
        outcome.entries_written,
        model.write(&first.iter().collect::<Vec<_>>())
    );
    model.check(&pool, "first batch").await?;

    // 2. New entries with replays of posted ones among them, and one entry twice.
    let second = vec![
        auth(9),
        auth(2),
        settle(9),
        auth(10),
        settle(2),
        auth(5),
        auth(10),
        auth(11),
        settle(11),
    ];
    let outcome = write(&database, &batch(&second, offset)).await?;
    assert_eq!(
        outcome.entries_written,
        model.write(&second.iter().collect::<Vec<_>>())
    );
    assert_eq!(outcome.entries_skipped, 4, "{outcome:?}");
    model.check(&pool, "second batch").await?;

    // 3. The same batch again, as after a commit whose outcome was unknown: nothing new.
    let outcome = write(&database, &batch(&second, offset)).await?;
    offset += second.len() as i64;
    assert_eq!(outcome.entries_written, 0, "{outcome:?}");
    assert_eq!(outcome.entries_skipped, second.len() as u64, "{outcome:?}");
    model.check(&pool, "second batch replayed").await?;

    // 4. New entries around a record PostgreSQL refuses (a NUL byte: the batch is written
    //    again in halves), and an id already posted with other amounts (a conflict).
    let mut nul = auth(100);
    nul.payment_id = "pay-\0-100".into();
    let mut conflict = auth(3);
    for posting in &mut conflict.postings {
        posting.amount_minor += 1;
    }
    // A conflict naming an account the ledger does not have: it gets no `accounts` row.
    let mut conflict_elsewhere = auth(4);
    conflict_elsewhere.postings[1].account = "merchant_payable:m-new".into();
    let fourth = vec![
        auth(12),
        settle(12),
        auth(13),
        nul,
        settle(5),
        conflict,
        auth(14),
        conflict_elsewhere,
        settle(13),
        auth(15),
    ];
    let outcome = write(&database, &batch(&fourth, offset)).await?;
    offset += fourth.len() as i64;
    assert_eq!(outcome.dead_lettered, 3, "{outcome:?}");
    let written: Vec<&JournalEntry> = [0, 1, 2, 4, 6, 8, 9].iter().map(|&i| &fourth[i]).collect();
    assert_eq!(outcome.entries_written, model.write(&written));
    model
        .check(&pool, "batch with a refused record and a conflict")
        .await?;

    // 5. A replay of everything so far, new entries before, between and after.
    let mut fifth = vec![auth(16)];
    fifth.extend(first.iter().cloned());
    fifth.push(settle(14));
    fifth.extend(second.iter().cloned());
    fifth.extend([auth(12), settle(12), auth(17), settle(16)]);
    let outcome = write(&database, &batch(&fifth, offset)).await?;
    assert_eq!(
        outcome.entries_written,
        model.write(&fifth.iter().collect::<Vec<_>>())
    );
    assert_eq!(outcome.entries_written, 4, "{outcome:?}");
    model.check(&pool, "replay with new entries").await?;
    database.pool().close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_the_same_entries_serialise_per_account_without_deadlock()
-> anyhow::Result<()> {
    let (_env, sink, first) = database("sinkseq2").await?;
    let second = LedgerDatabase::connect(&sink, 4).await?;
    // Entries sharing a few hot accounts, as the pipeline's do; batches big enough that
    // the two writers' statements overlap.
    const ENTRIES: usize = 6_000;
    const BATCH: usize = 500;
    let entries: Vec<JournalEntry> = (1..=ENTRIES)
        .map(|n| {
            let psp = ["adyen", "stripe", "checkout"][n % 3];
            if n % 4 == 0 {
                settlement(n - 1, psp, 500 + n as i64)
            } else {
                authorization(n, psp, &format!("m-{}", n % 17), 500 + n as i64)
            }
        })
        .collect();
    let batches: Vec<Vec<JournalEntry>> = entries.chunks(BATCH).map(<[_]>::to_vec).collect();
    let deadlocks = Arc::new(AtomicU64::new(0));
    let writer = |database: LedgerDatabase, reverse: bool| {
        let batches = batches.clone();
        let deadlocks = deadlocks.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for (i, entries) in batches.iter().enumerate() {
                // The other writer reads the same records in another order.
                let mut entries = entries.clone();
                if reverse {
                    entries.reverse();
                }
                let batch = batch(&entries, (i * BATCH) as i64);
                loop {
                    match write(&database, &batch).await {
                        Ok(outcome) => {
                            assert_eq!(outcome.dead_lettered, 0, "{outcome:?}");
                            written += outcome.entries_written;
                            break;
                        }
                        Err(e) => {
                            let sqlstate = e
                                .downcast_ref::<paystream_ledger_sink::SinkError>()
                                .and_then(|e| e.sqlstate());
                            // The sink retries a deadlock; count it here, as a failure.
                            if sqlstate.as_deref() == Some("40P01") {
                                deadlocks.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            return Err(e);
                        }
                    }
                }
            }
            anyhow::Ok(written)
        })
    };
    let a = writer(first.clone(), false);
    let b = writer(second.clone(), true);
    let (a, b) = (a.await??, b.await??);
    assert_eq!(a + b, entries.len() as u64, "every entry posted once");
    let pool = first.pool().clone();
    let report = paystream_ledger_sink::verify(&pool).await?;
    assert!(report.is_verified(), "{report:?}");
    assert_eq!(report.journal_entries, entries.len() as i64);
    // Each writer's entries are numbered in its own write order, gapless overall.
    let mut per_account: HashMap<String, Vec<i64>> = HashMap::new();
    for row in sqlx::query("SELECT account, account_sequence FROM postings")
        .fetch_all(&pool)
        .await?
    {
        per_account
            .entry(row.try_get("account")?)
            .or_default()
            .push(row.try_get("account_sequence")?);
    }
    for (account, mut sequences) in per_account {
        sequences.sort();
        assert_eq!(
            sequences,
            (1..=sequences.len() as i64).collect::<Vec<_>>(),
            "{account}"
        );
    }
    assert_eq!(
        deadlocks.load(Ordering::Relaxed),
        0,
        "writers deadlocked (and retried)"
    );
    first.pool().close().await;
    second.pool().close().await;
    Ok(())
}
