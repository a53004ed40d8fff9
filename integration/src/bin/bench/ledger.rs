//! When ledger rows were committed, from PostgreSQL itself: `pg_xact_commit_timestamp` of
//! each row's inserting transaction (needs `track_commit_timestamp = on`, which
//! `scripts/stack` sets).

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// The last ledger commit of a run.
pub struct LastCommit {
    /// Milliseconds since the Unix epoch.
    pub last_commit_ms: i64,
    pub journal_entries: u64,
}

/// Connects to `database_url` and checks that commit timestamps are tracked.
///
/// # Errors
/// When PostgreSQL cannot be reached, or `track_commit_timestamp` is off.
pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    let tracked: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        tracked == "on",
        "PostgreSQL's track_commit_timestamp is off: the benchmark reads ledger commit times \
         from it; start PostgreSQL with -c track_commit_timestamp=on (scripts/stack pg-restart does)"
    );
    Ok(pool)
}

/// The commit time of the newest ledger row (journal entries, payment statuses and
/// reconciliation exceptions) and the number of journal entries.
///
/// # Errors
/// Database errors, or when the ledger is empty.
pub async fn last_commit(database_url: &str) -> anyhow::Result<LastCommit> {
    let pool = connect(database_url).await?;
    let row = sqlx::query(
        "SELECT (extract(epoch FROM max(t)) * 1000)::bigint AS last_ms,
                (SELECT count(*) FROM journal_entries) AS entries
         FROM (SELECT max(pg_xact_commit_timestamp(xmin)) AS t FROM journal_entries
               UNION ALL SELECT max(pg_xact_commit_timestamp(xmin)) FROM payments
               UNION ALL SELECT max(pg_xact_commit_timestamp(xmin)) FROM reconciliation_exceptions) AS l",
    )
    .fetch_one(&pool)
    .await?;
    let last_commit_ms: Option<i64> = row.try_get("last_ms")?;
    let entries: i64 = row.try_get("entries")?;
    pool.close().await;
    Ok(LastCommit {
        last_commit_ms: last_commit_ms.context("the run wrote no ledger row")?,
        journal_entries: entries as u64,
    })
}

/// Every journal entry's causing event id with its commit time (milliseconds since the
/// Unix epoch).
///
/// # Errors
/// Database errors.
pub async fn entry_commit_times(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT caused_by_event_id,
                (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::bigint AS committed_ms
         FROM journal_entries",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Journal entries written so far.
///
/// # Errors
/// Database errors.
pub async fn journal_entries(pool: &PgPool) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// Waits until PostgreSQL holds `expected` journal entries or `timeout` passes; returns
/// how many it holds.
///
/// # Errors
/// Database errors.
pub async fn wait_for_entries(
    pool: &PgPool,
    expected: u64,
    timeout: std::time::Duration,
) -> anyhow::Result<u64> {
    let waited = std::time::Instant::now();
    let mut written = journal_entries(pool).await?;
    while written < expected && waited.elapsed() < timeout {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        written = journal_entries(pool).await?;
    }
    Ok(written)
}

/// `(sent, latency)` of each journal entry whose causing event is in `sent_ms` (event id
/// → send time, milliseconds since the Unix epoch): its send time and the milliseconds
/// from it to the entry's commit, sorted.
///
/// # Errors
/// Database errors.
pub async fn latencies(
    pool: &PgPool,
    sent_ms: &std::collections::HashMap<String, i64>,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut sent_and_latency: Vec<(i64, i64)> = entry_commit_times(pool)
        .await?
        .into_iter()
        .filter_map(|(event_id, committed_ms)| {
            sent_ms
                .get(&event_id)
                .map(|sent| (*sent, committed_ms - sent))
        })
        .collect();
    sent_and_latency.sort_unstable();
    Ok(sent_and_latency)
}
