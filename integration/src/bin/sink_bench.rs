//! `sink_bench`: how fast the ledger sink writes journal entries to PostgreSQL. A
//! benchmark, not a test: it prints figures and fails only when the ledger it wrote does
//! not verify.
//!
//! It creates a fresh database on the server of `--database-url` (default: the local
//! stack's, `PAYSTREAM_DATABASE_URL`), applies the migrations, generates `--entries`
//! journal entries shaped like the pipeline's (an authorization entry per payment, two
//! postings; a settlement entry for most payments some records later, three postings;
//! a handful of PSPs, `--merchants` merchants, three currencies), and writes them through
//! the sink's own write path — `LedgerDatabase::stage_batch` then `StagedBatch::commit`,
//! rows and offsets in one transaction per batch of `--batch` records, exactly what the
//! sink does once it has read and decoded a batch. Not included: reading from Kafka and
//! Avro decoding. It then checks the ledger with `paystream ledger verify`'s checks
//! (balanced, balances exact, sequence numbers 1..n per account) and drops the database
//! unless `--keep`.
//!
//! Printed: entries, postings, rows (entries + postings), wall time of the writes,
//! entries/s, rows/s, µs per entry, batch latency p50/p99/max, and how many row updates
//! the `accounts` table saw (one per distinct account per batch is the floor). With
//! `--statements`, the server's `pg_stat_statements` (when installed) per statement.
//!
//! `--insert-methods` instead compares ways to insert the same postings-shaped rows
//! (same columns, keys and indexes as `postings`, no foreign key) into a fresh table:
//! one `INSERT … SELECT FROM UNNEST(…)` per batch as the sink does, or `COPY … FROM
//! STDIN` (text format) per batch, at several batch sizes, one transaction per batch.
//!
//! ```sh
//! . ~/.cache/paystream-stack/stack.env; export PAYSTREAM_DATABASE_URL
//! cargo build --workspace --bins
//! $CARGO_TARGET_DIR/debug/sink_bench --entries 200000 --batch 5000
//! $CARGO_TARGET_DIR/debug/sink_bench --insert-methods --entries 200000
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use paystream_ledger_sink::LedgerDatabase;
use paystream_ledger_sink::SinkConfig;
use paystream_ledger_sink::service::{Batch, BatchRecord, Content, create_database_if_missing};
use paystream_processors::Origin;
use paystream_processors::ledger::{authorization_entry, settlement_entry};
use paystream_schemas::{JournalEntry, PostingSide, SettlementReported};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::{AssertSqlSafe, Connection, Row};

#[derive(Debug, Parser)]
#[command(about = "Ledger sink write benchmark: journal entries per second into a fresh database")]
struct Args {
    /// Journal entries to write.
    #[arg(long, default_value_t = 200_000)]
    entries: usize,
    /// Records per batch (one transaction each), as `sink.batch_rows_max`.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Merchants (one `merchant_payable:` account each).
    #[arg(long, default_value_t = 500)]
    merchants: usize,
    /// Seed of the generated entries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A PostgreSQL URL whose server to use; the benchmark creates its own database there.
    /// Default: `PAYSTREAM_DATABASE_URL`, else the local stack's.
    #[arg(long)]
    database_url: Option<String>,
    /// `synchronous_commit` for the benchmark's database (`ALTER DATABASE … SET`), e.g.
    /// `off`; default: the server's setting.
    #[arg(long)]
    synchronous_commit: Option<String>,
    /// Write the last `--replay` entries a second time at the end (a replay: skipped,
    /// compared with the stored entries, no new rows), timed separately.
    #[arg(long, default_value_t = 0)]
    replay: usize,
    /// Print `pg_stat_statements` per statement (reset before the run; needs the
    /// extension installed in the server's `postgres` database).
    #[arg(long)]
    statements: bool,
    /// Compare insert methods (UNNEST vs COPY) instead of running the sink's write path.
    #[arg(long)]
    insert_methods: bool,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
}

const PSPS: [&str; 4] = ["adyen", "stripe", "checkout", "worldpay"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
const TOPIC: &str = "ledger_entries";
const PARTITIONS: i32 = 3;

/// `count` journal entries in the order the pipeline would produce them: each payment's
/// authorization entry, and for 80 % of payments a settlement entry 20 to 2,000 records
/// later.
fn generate(count: usize, merchants: usize, seed: u64) -> Vec<JournalEntry> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut entries = Vec::with_capacity(count);
    // (due index, settlement) waiting to be emitted.
    let mut waiting: VecDeque<(usize, String, String, SettlementReported)> = VecDeque::new();
    let mut payment = 0usize;
    while entries.len() < count {
        if let Some((due, _, _, _)) = waiting.front()
            && *due <= entries.len()
        {
            let (_, psp, merchant, settlement) = waiting.pop_front().expect("front");
            entries.push(settlement_entry(&psp, &merchant, &settlement));
            continue;
        }
        payment += 1;
        let payment_id = format!("pay-{seed}-{payment}");
        let psp = PSPS[rng.random_range(0..PSPS.len())];
        let merchant = format!("m-{}", rng.random_range(0..merchants));
        let currency = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
        let amount: i64 = rng.random_range(100..500_000);
        let at = 1_767_225_600_000 + payment as i64 * 10;
        entries.push(authorization_entry(
            &payment_id,
            psp,
            &merchant,
            amount,
            currency,
            at,
            &format!("auth-{payment_id}"),
        ));
        if rng.random_bool(0.8) {
            let fee = amount / 50;
            let due = entries.len() + rng.random_range(20..2_000);
            let position = waiting.partition_point(|(d, _, _, _)| *d <= due);
            waiting.insert(
                position,
                (
                    due,
                    psp.to_string(),
                    merchant.clone(),
                    SettlementReported {
                        event_id: format!("settle-{payment_id}"),
                        payment_id: payment_id.clone(),
                        psp_reference: format!("ref-{payment}"),
                        settlement_batch_id: "batch-1".into(),
                        gross_amount_minor: amount,
                        fee_minor: fee,
                        net_amount_minor: amount - fee,
                        currency: currency.to_string(),
                        settled_at: at + 60_000,
                    },
                ),
            );
        }
    }
    entries
}

/// The entries as sink batches of `size` records, on `PARTITIONS` partitions of one
/// topic (offsets continuing from `offsets`).
fn batches(entries: &[JournalEntry], size: usize, offsets: &mut BTreeMap<i32, i64>) -> Vec<Batch> {
    entries
        .chunks(size)
        .map(|chunk| {
            let mut batch = Batch::default();
            for entry in chunk {
                let partition = (entry.payment_id.bytes().map(i32::from).sum::<i32>()) % PARTITIONS;
                let offset = offsets.entry(partition).or_insert(0);
                batch.records.push(BatchRecord {
                    origin: Origin {
                        topic: TOPIC.into(),
                        partition,
                        offset: *offset,
                        timestamp_ms: entry.occurred_at,
                        key: None,
                        value: None,
                    },
                    content: Content::Entry(entry.clone()),
                });
                *offset += 1;
                batch
                    .next_offsets
                    .insert((TOPIC.to_string(), partition), *offset);
            }
            batch
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `url` with its database swapped for `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
    format!("{base}/{name}{query}")
}

async fn admin(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    Ok(sqlx::PgConnection::connect(&with_database(url, "postgres")).await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = args
        .database_url
        .clone()
        .or_else(|| std::env::var("PAYSTREAM_DATABASE_URL").ok())
        .unwrap_or_else(|| SinkConfig::default().database_url);
    let name = format!(
        "sinkbench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = with_database(&server, &name);
    let sink = SinkConfig {
        database_url: url.clone(),
        ..SinkConfig::default()
    };
    create_database_if_missing(&sink).await?;
    let mut admin = admin(&server).await?;
    if let Some(setting) = &args.synchronous_commit {
        if !["on", "off", "local", "remote_write", "remote_apply"].contains(&setting.as_str()) {
            bail!("--synchronous-commit {setting}: not a synchronous_commit value");
        }
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" SET synchronous_commit = {setting}"
        )))
        .execute(&mut admin)
        .await?;
    }
    let result = if args.insert_methods {
        insert_methods(&args, &url).await
    } else {
        sink_writes(&args, &sink, &mut admin).await
    };
    if !args.keep {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    } else {
        println!("database kept: {url}");
    }
    result
}

/// The sink's write path: every batch staged and committed, then the ledger verified.
async fn sink_writes(
    args: &Args,
    sink: &SinkConfig,
    admin: &mut sqlx::PgConnection,
) -> anyhow::Result<()> {
    let database = LedgerDatabase::connect(sink, 4).await?;
    let pool = database.pool().clone();
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    let entries = generate(args.entries, args.merchants, args.seed);
    let postings: usize = entries.iter().map(|e| e.postings.len()).sum();
    let mut offsets = BTreeMap::new();
    let all = batches(&entries, args.batch, &mut offsets);
    let replayed = batches(
        &entries[entries.len().saturating_sub(args.replay)..],
        args.batch,
        &mut offsets,
    );
    let statements = args.statements
        && sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut *admin)
            .await
            .is_ok();

    let mut latencies = Vec::with_capacity(all.len());
    let started = Instant::now();
    let mut written = 0;
    for batch in &all {
        let t = Instant::now();
        let staged = database.stage_batch(batch).await?;
        if !staged.rejections.is_empty() {
            bail!("rejected: {:?}", staged.rejections);
        }
        let (outcome, _) = staged.commit().await?;
        written += outcome.entries_written;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    if written != entries.len() as u64 {
        bail!("{written} entries written of {}", entries.len());
    }
    let replay_started = Instant::now();
    let mut skipped = 0;
    for batch in &replayed {
        let staged = database.stage_batch(batch).await?;
        let (outcome, _) = staged.commit().await?;
        skipped += outcome.entries_skipped;
        if outcome.entries_written != 0 || outcome.dead_lettered != 0 {
            bail!("the replay wrote or rejected: {outcome:?}");
        }
    }
    let replay_elapsed = replay_started.elapsed();

    let accounts_stats = sqlx::query(
        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
         WHERE relname = 'accounts'",
    )
    .fetch_optional(&pool)
    .await?;
    let distinct_accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&pool)
        .await?;
    let report = paystream_ledger_sink::verify(&pool).await?;
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await?;

    latencies.sort();
    let secs = elapsed.as_secs_f64();
    let rows = entries.len() + postings;
    println!(
        "sink_bench: PostgreSQL {version}, fsync={fsync}, synchronous_commit={synchronous_commit}"
    );
    println!(
        "entries {} postings {postings} rows {rows} accounts {distinct_accounts} batches {} of {} records",
        entries.len(),
        all.len(),
        args.batch
    );
    println!(
        "written in {secs:.2} s: {:.0} entries/s, {:.0} rows/s, {:.1} µs/entry",
        entries.len() as f64 / secs,
        rows as f64 / secs,
        secs * 1e6 / entries.len() as f64
    );
    println!(
        "batch latency ms: p50 {:.1} p99 {:.1} max {:.1}",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if args.replay > 0 {
        println!(
            "replay of {} entries: {skipped} skipped in {:.2} s ({:.1} µs/entry)",
            args.replay,
            replay_elapsed.as_secs_f64(),
            replay_elapsed.as_secs_f64() * 1e6 / args.replay.max(1) as f64
        );
    }
    if let Some(row) = accounts_stats {
        let (ins, upd, hot): (i64, i64, i64) = (
            row.try_get("n_tup_ins")?,
            row.try_get("n_tup_upd")?,
            row.try_get("n_tup_hot_upd")?,
        );
        println!(
            "accounts table: {ins} inserts, {upd} updates ({hot} HOT) for {} batches \
             ({:.1} updates per batch)",
            all.len() + replayed.len(),
            upd as f64 / (all.len() + replayed.len()).max(1) as f64
        );
    }
    println!("database size {} MB", size / 1_000_000);
    if statements {
        print_statements(admin).await?;
    }
    println!(
        "ledger verified: {}",
        if report.is_verified() { "yes" } else { "NO" }
    );
    database.pool().close().await;
    if !report.is_verified() {
        bail!("the ledger does not verify: {report:?}");
    }
    Ok(())
}

/// The top statements of `pg_stat_statements` by total execution time.
async fn print_statements(admin: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let rows = sqlx::query(
        "SELECT calls, total_exec_time, rows,
                regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query
         FROM pg_stat_statements
         WHERE query !~* 'pg_stat_statements'
         ORDER BY total_exec_time DESC LIMIT 14",
    )
    .fetch_all(&mut *admin)
    .await
    .context("reading pg_stat_statements")?;
    println!(
        "{:>8} {:>10} {:>10}  statement",
        "calls", "total ms", "rows"
    );
    for row in rows {
        println!(
            "{:>8} {:>10.0} {:>10}  {}",
            row.try_get::<i64, _>("calls")?,
            row.try_get::<f64, _>("total_exec_time")?,
            row.try_get::<i64, _>("rows")?,
            row.try_get::<String, _>("query")?
        );
    }
    Ok(())
}

/// Postings-shaped rows: `(entry id, line, account, side, amount, currency, sequence)`.
type PostingRow = (uuid::Uuid, i16, String, &'static str, i64, String, i64);

fn posting_rows(entries: &[JournalEntry]) -> Vec<PostingRow> {
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    let mut rows = Vec::new();
    for entry in entries {
        let id = uuid::Uuid::parse_str(&entry.id).expect("uuid");
        for (line, posting) in entry.postings.iter().enumerate() {
            let sequence = next.entry(posting.account.clone()).or_insert(0);
            *sequence += 1;
            rows.push((
                id,
                line as i16,
                posting.account.clone(),
                match posting.side {
                    PostingSide::Debit => "DEBIT",
                    PostingSide::Credit => "CREDIT",
                },
                posting.amount_minor,
                posting.currency.clone(),
                *sequence,
            ));
        }
    }
    rows
}

/// UNNEST against COPY for postings-shaped rows, per batch size.
async fn insert_methods(args: &Args, url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let entries = generate(args.entries, args.merchants, args.seed);
    let rows = posting_rows(&entries);
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await?;
    println!(
        "insert methods: {} postings rows of {} entries, fsync={fsync}, synchronous_commit={synchronous_commit}",
        rows.len(),
        entries.len()
    );
    println!(
        "{:>8} {:>8} {:>10} {:>12}",
        "method", "batch", "seconds", "rows/s"
    );
    for batch_rows in [1_000usize, 5_000, 12_000, 50_000] {
        for method in ["unnest", "copy"] {
            sqlx::query("DROP TABLE IF EXISTS bench_postings")
                .execute(&mut conn)
                .await?;
            // The columns, keys and indexes of `postings` (migrations 0001, 0002, 0004).
            sqlx::query(
                "CREATE TABLE bench_postings (
                    journal_entry_id uuid NOT NULL, line smallint NOT NULL,
                    account text NOT NULL,
                    side text NOT NULL CHECK (side IN ('DEBIT', 'CREDIT')),
                    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
                    currency char(3) NOT NULL, account_sequence bigint NOT NULL,
                    PRIMARY KEY (journal_entry_id, line),
                    UNIQUE (account, account_sequence))",
            )
            .execute(&mut conn)
            .await?;
            sqlx::query("CHECKPOINT").execute(&mut conn).await?;
            let started = Instant::now();
            for chunk in rows.chunks(batch_rows) {
                let mut tx = conn.begin().await?;
                match method {
                    "unnest" => insert_unnest(&mut tx, chunk).await?,
                    _ => insert_copy(&mut tx, chunk).await?,
                }
                tx.commit().await?;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{method:>8} {batch_rows:>8} {secs:>10.2} {:>12.0}",
                rows.len() as f64 / secs
            );
        }
    }
    sqlx::query("DROP TABLE IF EXISTS bench_postings")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn insert_unnest(conn: &mut sqlx::PgConnection, rows: &[PostingRow]) -> anyhow::Result<()> {
    let (mut e, mut l, mut a, mut s, mut m, mut c, mut q) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for row in rows {
        e.push(row.0);
        l.push(row.1);
        a.push(row.2.clone());
        s.push(row.3);
        m.push(row.4);
        c.push(row.5.clone());
        q.push(row.6);
    }
    sqlx::query(
        "INSERT INTO bench_postings
            (journal_entry_id, line, account, side, amount_minor, currency, account_sequence)
         SELECT * FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::text[], $5::int8[],
                              $6::text[], $7::int8[])",
    )
    .bind(&e)
    .bind(&l)
    .bind(&a)
    .bind(&s)
    .bind(&m)
    .bind(&c)
    .bind(&q)
    .execute(conn)
    .await?;
    Ok(())
}

/// COPY's text format: tab-separated, `\` escapes for backslash, tab, newline, CR.
fn copy_text(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(ch),
        }
    }
}

async fn insert_copy(conn: &mut sqlx::PgConnection, rows: &[PostingRow]) -> anyhow::Result<()> {
    let mut data = String::with_capacity(rows.len() * 100);
    for row in rows {
        let _ = write!(data, "{}\t{}\t", row.0, row.1);
        copy_text(&row.2, &mut data);
        let _ = write!(data, "\t{}\t{}\t", row.3, row.4);
        copy_text(&row.5, &mut data);
        let _ = writeln!(data, "\t{}", row.6);
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY bench_postings
                (journal_entry_id, line, account, side, amount_minor, currency, account_sequence)
             FROM STDIN",
        )
        .await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}
