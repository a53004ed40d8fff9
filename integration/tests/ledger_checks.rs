//! The ledger tables' own checks on a real PostgreSQL (migration 0004,
//! docs/architecture.md "Ledger tables and their checks"):
//!
//! - a posting must name a journal entry: an insert statement with one posting that does
//!   not is refused whole with SQLSTATE 23503 (foreign_key_violation), even beside
//!   valid postings;
//! - journal entries and postings are append-only: `UPDATE`, `DELETE` and `TRUNCATE` are
//!   refused with SQLSTATE 23001 (restrict_violation);
//! - with the posting check disabled on purpose, `ledger verify` still finds the posting
//!   without an entry;
//! - the sink's connections have `TCP_NODELAY` (sqlx 0.9.0 leaves Nagle's algorithm on,
//!   which stalls a large statement up to 40 ms; `paystream_ledger_sink::nodelay`).

use paystream_integration::TestEnv;
use std::collections::HashSet;

use paystream_ledger_sink::LedgerDatabase;
use paystream_ledger_sink::SinkConfig;
use paystream_ledger_sink::nodelay::{NodelaySockets, canonical, set_nodelay_on_sockets_to};
use paystream_ledger_sink::service::{connect_options, create_database_if_missing};
use paystream_ledger_sink::verify::verify;
use sqlx::PgPool;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

/// The SQLSTATE of a failed statement (panics when it succeeded or failed otherwise).
async fn sqlstate(pool: &PgPool, sql: &str) -> String {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
    {
        Ok(_) => panic!("PostgreSQL accepted: {sql}"),
        Err(sqlx::Error::Database(e)) => e.code().map(|c| c.to_string()).unwrap_or_default(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// One balanced journal entry with two postings, as the sink writes them.
fn entry_sql(id: Uuid) -> String {
    format!(
        "INSERT INTO journal_entries (id, payment_id, kind, occurred_at, caused_by_event_id,
                                      source_topic, source_partition, source_offset)
         VALUES ('{id}', 'pay-1', 'AUTHORIZATION', now(), 'evt-1', 'ledger_entries', 0, 0);
         INSERT INTO postings (journal_entry_id, line, account, side, amount_minor, currency,
                               account_sequence)
         VALUES ('{id}', 0, 'psp_receivable:psp-a', 'DEBIT', 1250, 'EUR', 1),
                ('{id}', 1, 'merchant_payable:m-1', 'CREDIT', 1250, 'EUR', 1);
         INSERT INTO accounts (account, last_sequence)
         VALUES ('psp_receivable:psp-a', 1), ('merchant_payable:m-1', 1);
         INSERT INTO account_balances (account, currency, debit_total_minor,
                                       credit_total_minor, balance_minor)
         VALUES ('psp_receivable:psp-a', 'EUR', 1250, 0, 1250),
                ('merchant_payable:m-1', 'EUR', 0, 1250, -1250);"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_orphan_postings_and_rewrites() -> anyhow::Result<()> {
    let env = TestEnv::new("ledger_checks");
    let sink = SinkConfig {
        database_url: env.database_url.clone(),
        ..SinkConfig::default()
    };
    create_database_if_missing(&sink).await?;
    let options = connect_options(&sink)?;
    let server: HashSet<_> = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await?
        .map(canonical)
        .collect();

    // A connection opened by sqlx alone has Nagle's algorithm on; the sink's have not.
    let plain = options.connect().await?;
    assert_eq!(
        set_nodelay_on_sockets_to(&server)?,
        NodelaySockets {
            connected: 1,
            newly_set: 1
        },
        "sqlx now sets TCP_NODELAY itself: remove ledger-sink/src/nodelay.rs"
    );
    plain.close().await?;
    let database = LedgerDatabase::connect(&sink, 2).await?;
    let pool = database.pool();
    let (first, second) = (pool.acquire().await?, pool.acquire().await?);
    assert_eq!(
        set_nodelay_on_sockets_to(&server)?,
        NodelaySockets {
            connected: 2,
            newly_set: 0
        },
        "both pool connections were set when they connected"
    );
    drop((first, second));

    let posted = Uuid::new_v4();
    sqlx::raw_sql(sqlx::AssertSqlSafe(entry_sql(posted)))
        .execute(pool)
        .await?;
    assert!(verify(pool).await?.is_verified());

    // A posting naming no entry, in one statement with a valid one: all refused.
    let orphan = Uuid::new_v4();
    let insert_orphan = format!(
        "INSERT INTO postings (journal_entry_id, line, account, side, amount_minor, currency,
                               account_sequence)
         VALUES ('{posted}', 2, 'fees:x', 'DEBIT', 1, 'EUR', 1),
                ('{orphan}', 0, 'fees:x', 'CREDIT', 1, 'EUR', 2)"
    );
    assert_eq!(sqlstate(pool, &insert_orphan).await, "23503");
    let postings: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
        .fetch_one(pool)
        .await?;
    assert_eq!(postings, 2, "the refused statement wrote nothing");

    for rewrite in [
        "UPDATE journal_entries SET kind = 'SETTLEMENT'",
        "DELETE FROM journal_entries",
        "TRUNCATE journal_entries CASCADE",
        "UPDATE postings SET amount_minor = amount_minor + 1",
        "DELETE FROM postings",
        "TRUNCATE postings",
    ] {
        assert_eq!(sqlstate(pool, rewrite).await, "23001", "{rewrite}");
    }
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(pool)
        .await?;
    assert_eq!(entries, 1);

    // An operator who disables the check can write an orphan; verify finds it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE postings DISABLE TRIGGER postings_name_entries;
         INSERT INTO postings (journal_entry_id, line, account, side, amount_minor, currency,
                               account_sequence)
         VALUES ('{orphan}', 0, 'fees:x', 'CREDIT', 1, 'EUR', 1);
         ALTER TABLE postings ENABLE TRIGGER postings_name_entries;"
    )))
    .execute(pool)
    .await?;
    let report = verify(pool).await?;
    assert_eq!(report.postings_without_entry, 1);
    assert!(!report.is_verified());
    Ok(())
}
