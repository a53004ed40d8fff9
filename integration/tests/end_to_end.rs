//! The whole chain on real parts: Apache Kafka (KRaft), Apicurio Registry's
//! Confluent-compatible API, PostgreSQL, and the real `paystream` binary.
//!
//! A known, seeded set of events with duplicate retries, declines, settlements,
//! out-of-order arrival, idempotency-key conflicts and malformed records is produced;
//! the pipeline runs until caught up; then the test checks exactly: the PostgreSQL
//! ledger against the traffic plan's expected outcome (computed from the plan, not from
//! the pipeline), every output topic read back with `read_committed` for duplicates,
//! the dead-letter queues by reason, and `paystream ledger verify`. A second run must
//! find nothing new to do.
//!
//! Also: a pipeline with nothing left to process commits early
//! (`processing.commit_interval_idle_ms`), and `ledger verify` fails on a tampered ledger.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use paystream_integration::{
    Running, TestEnv, field, ledger_snapshot, read_committed, registry_url,
};
use paystream_schemas::{
    Codec, JournalEntry, PaymentStatus, PaymentStatusChanged, ReconciliationException,
    ReconciliationExceptionKind,
};
use paystream_testkit::traffic::{ExpectedOutcome, TrafficOptions, default_start_ms, plan};

const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Timer settings short enough for this traffic (see the run below).
const TIMERS: &[(&str, &str)] = &[
    ("PAYSTREAM_PROCESSING__SETTLEMENT_WINDOW_MS", "86415000"),
    ("PAYSTREAM_PROCESSING__ORPHAN_TIMEOUT_MS", "5000"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_turns_known_traffic_into_the_exact_ledger() -> anyhow::Result<()> {
    let env = TestEnv::new("e2e");
    let seed = 20261122;
    let count = 4_000;
    let start_ms = paystream_testkit::traffic::default_start_ms(count);
    let options = TrafficOptions {
        count,
        seed,
        start_ms,
        duplicate_rate: 0.08,
        decline_rate: 0.15,
        settlement_rate: 0.7,
        out_of_order_rate: 0.1,
        conflict_rate: 0.01,
        malformed_rate: 0.005,
        mismatch_rate: 0.03,
        manual_capture_rate: 0.3,
        void_rate: 0.1,
        refund_rate: 0.15,
        chargeback_rate: 0.05,
        illegal_movement_rate: 0.02,
        orphan_events: 6,
    };
    let expected: ExpectedOutcome = plan(&options).expected;
    println!(
        "test {} seed {seed}: {} records, {} payments, {} duplicates, dead letters {:?}, statuses {:?}",
        env.id,
        expected.records,
        expected.payments,
        expected.duplicates,
        expected.dead_letters,
        expected.payments_by_status
    );
    assert!(expected.duplicates > 0 && !expected.dead_letters.is_empty());
    assert!(
        expected.exceptions.len() == 7,
        "the plan has every predictable exception kind but CHARGEBACK_EXCEEDS_CAPTURED: {:?}",
        expected.exceptions
    );

    env.prepare()?;
    let expect_file = env.work_dir.path().join("expected.json");
    let produced = env.paystream(&[
        "produce",
        "--quiet",
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--start-ms",
        &start_ms.to_string(),
        "--duplicate-rate",
        "0.08",
        "--decline-rate",
        "0.15",
        "--settlement-rate",
        "0.7",
        "--out-of-order-rate",
        "0.1",
        "--conflict-rate",
        "0.01",
        "--malformed-rate",
        "0.005",
        "--mismatch-rate",
        "0.03",
        "--manual-capture-rate",
        "0.3",
        "--void-rate",
        "0.1",
        "--refund-rate",
        "0.15",
        "--chargeback-rate",
        "0.05",
        "--illegal-movement-rate",
        "0.02",
        "--orphan-events",
        "6",
        "--expect-out",
        expect_file.to_str().unwrap(),
    ])?;
    let from_cli: ExpectedOutcome = serde_json::from_slice(&std::fs::read(&expect_file)?)?;
    assert_eq!(from_cli, expected, "the CLI produced the planned traffic");
    println!("{}", String::from_utf8_lossy(&produced.stdout));

    // Run the pipeline and the sink until everything is consumed and written.
    // Payments are 20 ms apart and settled a day later. A settlement window of a day
    // and 15 s (settlements arrive at most ~5 s of settlement time after their auth's
    // turn) makes early unsettled authorizations raise MISSING_IN_PSP within this run and
    // no settled one; an orphan timeout of 5 s (250 payments) lets the orphans sent
    // first raise theirs, while payments sent up to 12 slots after their auth do not.
    let run = env.paystream_with_env(&["run", "--until-caught-up"], TIMERS)?;
    let summary = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{summary}");
    assert_eq!(
        field(&summary, "events read").map(str::to_string),
        Some(expected.records.to_string())
    );
    assert_eq!(
        field(&summary, "duplicates dropped").map(str::to_string),
        Some(expected.duplicates.to_string())
    );
    assert_eq!(
        field(&summary, "journal entries emitted").map(str::to_string),
        Some(expected.journal_entries.to_string())
    );

    // The ledger in PostgreSQL, exactly.
    let ledger = ledger_snapshot(&env.database_url).await?;
    assert_eq!(ledger.journal_entries, expected.journal_entries);
    assert_eq!(ledger.postings, expected.postings);
    assert_eq!(
        ledger.balances_minor, expected.balances_minor,
        "every account balance"
    );
    assert_eq!(
        ledger.payments_by_status, expected.payments_by_status,
        "payments by status"
    );

    // Output topics, read_committed: complete and without duplicates.
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let ledger_records = read_committed(&env.topic("ledger_entries"), READ_TIMEOUT)?;
    let mut entry_ids = HashSet::new();
    for record in &ledger_records {
        let entry: JournalEntry = codec.decode(record.value.as_deref()).await?;
        assert!(entry.is_balanced(), "entry {} balances", entry.id);
        assert!(
            entry_ids.insert(entry.id.clone()),
            "duplicate journal entry {}",
            entry.id
        );
    }
    assert_eq!(entry_ids.len() as u64, expected.journal_entries);
    let status_records = read_committed(&env.topic("payment_status"), READ_TIMEOUT)?;
    let mut transitions = HashSet::new();
    // A payment's changes are on one partition, in order: the last one is its status.
    let mut last_status: BTreeMap<String, String> = BTreeMap::new();
    for record in &status_records {
        let change: PaymentStatusChanged = codec.decode(record.value.as_deref()).await?;
        assert!(
            transitions.insert((change.payment_id.clone(), change.status)),
            "duplicate status change {} {}",
            change.payment_id,
            change.status
        );
        last_status.insert(
            change.payment_id.clone(),
            change.status.as_str().to_string(),
        );
    }
    let count_of =
        |status: PaymentStatus| transitions.iter().filter(|(_, s)| *s == status).count() as u64;
    assert_eq!(count_of(PaymentStatus::Initiated), expected.payments);
    assert_eq!(
        count_of(PaymentStatus::Authorized) + count_of(PaymentStatus::Declined),
        expected.payments,
        "one auth outcome per payment"
    );
    let mut final_statuses: BTreeMap<String, u64> = BTreeMap::new();
    for status in last_status.values() {
        *final_statuses.entry(status.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        final_statuses, expected.payments_by_status,
        "the last status change of each payment on the topic"
    );

    // Reconciliation exceptions: on the topic once per payment and kind, and in
    // PostgreSQL exactly as on the topic.
    let exception_records = read_committed(&env.topic("reconciliation_exceptions"), READ_TIMEOUT)?;
    let mut exceptions_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut exception_keys = HashSet::new();
    let mut missing_in_psp = Vec::new();
    for record in &exception_records {
        let exception: ReconciliationException = codec.decode(record.value.as_deref()).await?;
        assert!(
            exception_keys.insert((exception.payment_id.clone(), exception.kind)),
            "exception raised twice: {exception:?}"
        );
        if exception.kind == ReconciliationExceptionKind::MissingInPsp {
            missing_in_psp.push(exception.payment_id.clone());
        }
        *exceptions_by_kind
            .entry(exception.kind.as_str().to_string())
            .or_insert(0) += 1;
    }
    let predicted: BTreeMap<String, u64> = exceptions_by_kind
        .iter()
        .filter(|(kind, _)| kind.as_str() != "MISSING_IN_PSP")
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert_eq!(predicted, expected.exceptions, "exceptions by kind");
    assert!(
        !missing_in_psp.is_empty(),
        "early unsettled authorizations are reported"
    );
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let settled_but_missing: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT payment_id) FROM journal_entries
         WHERE payment_id = ANY($1) AND kind = 'SETTLEMENT'",
    )
    .bind(&missing_in_psp)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        settled_but_missing, 0,
        "MISSING_IN_PSP only for payments not settled, never for settled ones"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reconciliation_exceptions")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        stored as usize,
        exception_records.len(),
        "sink wrote each exception once"
    );

    // Dead-letter queues: every expected record, with its reason and origin.
    let mut dead_letters: BTreeMap<String, u64> = BTreeMap::new();
    for base in [
        "payment_initiated",
        "auth_success",
        "auth_failure",
        "settlement",
        "capture",
        "void",
        "refund",
        "chargeback",
    ] {
        let dlq = format!("{}.dlq", env.topic(base));
        for record in read_committed(&dlq, READ_TIMEOUT)? {
            assert_eq!(
                record.headers.get("paystream.dlq.source.topic"),
                Some(&env.topic(base))
            );
            assert!(record.headers.contains_key("paystream.dlq.source.offset"));
            assert!(record.value.is_some(), "original bytes kept");
            *dead_letters
                .entry(record.headers["paystream.dlq.reason"].clone())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(
        dead_letters, expected.dead_letters,
        "dead letters by reason"
    );
    // The SRE's view: `dlq inspect` finds and decodes the same dead letters.
    let inspect = env.paystream(&["dlq", "inspect", "--format", "json", "--limit", "100000"])?;
    let listed = String::from_utf8_lossy(&inspect.stdout)
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?;
    let mut inspected: BTreeMap<String, u64> = BTreeMap::new();
    for entry in &listed {
        *inspected
            .entry(entry["reason"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
        if entry["reason"] == "idempotency_key_reused" {
            assert!(
                entry["decoded"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("PaymentInitiated"),
                "{entry}"
            );
        }
    }
    assert_eq!(inspected, expected.dead_letters, "dlq inspect by reason");

    // ledger verify agrees, including against the produced traffic.
    let verify = env.paystream(&[
        "ledger",
        "verify",
        "--expect",
        expect_file.to_str().unwrap(),
    ])?;
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(report.contains("ledger verified: yes"), "{report}");
    assert!(report.contains("matches produced traffic: yes"), "{report}");

    // `ledger balance`: now it is the expected balance per currency; before the first
    // event there is nothing.
    let balance = env.paystream(&[
        "ledger",
        "balance",
        "--account",
        "psp_receivable:adyen",
        "--json",
    ])?;
    let balances: Vec<serde_json::Value> = serde_json::from_slice(&balance.stdout)?;
    assert!(!balances.is_empty());
    for b in &balances {
        let key = format!("psp_receivable:adyen|{}", b["currency"].as_str().unwrap());
        assert_eq!(
            b["balance_minor"].as_i64(),
            expected.balances_minor.get(&key).copied(),
            "{key}"
        );
    }
    let before = env.paystream_unchecked(&[
        "ledger",
        "balance",
        "--account",
        "psp_receivable:adyen",
        "--at",
        &(start_ms - 1).to_string(),
    ])?;
    assert_eq!(
        before.status.code(),
        Some(1),
        "no postings before the first event"
    );

    // The repartition topic (no time retention) was purged up to what was committed.
    let config = {
        let mut c = paystream_runtime::Config::default();
        c.kafka.bootstrap_servers = paystream_integration::bootstrap();
        c
    };
    let repartition = format!("{}-payments-by-id", env.application_id);
    let purged =
        paystream_common::kafka::read_committed_to_end(&config, &repartition, READ_TIMEOUT)?;
    assert!(
        purged.is_empty(),
        "{} repartition records left after the final commit",
        purged.len()
    );

    // A second run resumes from the committed offsets: nothing is read or posted again.
    let rerun = env.paystream_with_env(&["run", "--until-caught-up"], TIMERS)?;
    let rerun = String::from_utf8_lossy(&rerun.stdout).into_owned();
    assert_eq!(field(&rerun, "events read"), Some("0"), "{rerun}");
    assert_eq!(ledger_snapshot(&env.database_url).await?, ledger);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_fails_on_a_tampered_ledger() -> anyhow::Result<()> {
    let env = TestEnv::new("verify");
    env.paystream(&["ledger", "init"])?;
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    // An entry whose debit and credit differ, written behind the sink's back.
    sqlx::query(
        "INSERT INTO journal_entries (id, payment_id, kind, occurred_at, caused_by_event_id,
             source_topic, source_partition, source_offset)
         VALUES ('00000000-0000-0000-0000-000000000001', 'p', 'AUTHORIZATION', now(), 'e', 't', 0, 0)",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO postings
            (journal_entry_id, line, account, side, amount_minor, currency, account_sequence)
         VALUES
            ('00000000-0000-0000-0000-000000000001', 0, 'psp_receivable:x', 'DEBIT', 100, 'EUR', 1),
            ('00000000-0000-0000-0000-000000000001', 1, 'merchant_payable:y', 'CREDIT', 99, 'EUR', 1)",
    )
    .execute(&pool)
    .await?;
    let output = env.paystream_unchecked(&["ledger", "verify"])?;
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("unbalanced entries       1"), "{report}");
    assert!(report.contains("ledger verified: no"), "{report}");
    Ok(())
}

/// At low load the open transaction commits once the thread has nothing left to process
/// (`processing.commit_interval_idle_ms`, docs/architecture.md "Commits"), not only every
/// `processing.commit_interval_ms`. With a 60 s interval, a few events still reach the
/// ledger well within 30 s, through both transactions (the repartition hop and the
/// lifecycle's outputs); committing only on the interval would take over 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_nothing_to_process_commits_early() -> anyhow::Result<()> {
    let env = TestEnv::new("idle_commit");
    let count = 30;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed: 5,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    assert!(expected.journal_entries > 0);
    env.prepare()?;
    let mut run = Running::spawn(
        env.command(&["run"])
            .env("PAYSTREAM_PROCESSING__COMMIT_INTERVAL_MS", "60000")
            .env("PAYSTREAM_PROCESSING__TRANSACTION_TIMEOUT_MS", "120000")
            .env("PAYSTREAM_PROCESSING__COMMIT_INTERVAL_IDLE_MS", "20")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    env.paystream(&[
        "produce",
        "--quiet",
        "--count",
        &count.to_string(),
        "--seed",
        "5",
        "--start-ms",
        &start_ms.to_string(),
    ])?;
    let produced = Instant::now();
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let mut written: i64 = 0;
    while produced.elapsed() < Duration::from_secs(30) {
        written = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
            .fetch_one(&pool)
            .await?;
        if written as u64 == expected.journal_entries {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.stop()?;
    assert_eq!(
        written as u64, expected.journal_entries,
        "journal entries in the ledger 30 s after the traffic, with a 60 s commit interval"
    );
    Ok(())
}
