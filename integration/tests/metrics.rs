//! `/metrics`, scraped from a running `paystream run` on real parts (Apache Kafka,
//! Apicurio's Confluent-compatible registry, PostgreSQL) fed traffic with injected bad
//! records, and compared with the traffic plan's expected outcome and with the ledger
//! database the sink wrote: consumer lag falls to 0 after catch-up, DLQ depth equals the
//! dead letters injected, records read = processed + dropped + dead-lettered = produced,
//! sink lag 0 and rows written, and the business metrics (payments by status, amounts by
//! status and currency, reconciliation exceptions by kind).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use paystream_integration::{Running, TestEnv, scrape};
use paystream_testkit::traffic::{ExpectedOutcome, TrafficOptions, default_start_ms, plan};
use prometheus_parse::{Scrape, Value};

/// `metric{labels}` → value, summed over the labels not named in `by`.
fn totals(scrape: &Scrape, metric: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => continue,
        };
        let key = by
            .iter()
            .map(|label| sample.labels.get(label).unwrap_or_default().to_string())
            .collect();
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

fn one(map: &BTreeMap<Vec<String>, f64>, key: &[&str]) -> u64 {
    let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    map.get(&key).copied().unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_metrics_match_the_traffic_and_the_ledger() -> anyhow::Result<()> {
    let env = TestEnv::new("metrics");
    let count = 2_000;
    let start_ms = default_start_ms(count);
    let options = TrafficOptions {
        count,
        seed: 77,
        start_ms,
        mismatch_rate: 0.05,
        malformed_rate: 0.01,
        // The mix before captures, voids, refunds and chargebacks: every authorized
        // payment is counted AUTHORIZED once and SETTLED when settled.
        manual_capture_rate: 0.0,
        void_rate: 0.0,
        refund_rate: 0.0,
        chargeback_rate: 0.0,
        illegal_movement_rate: 0.0,
        ..TrafficOptions::default()
    };
    let expected: ExpectedOutcome = plan(&options).expected;
    env.prepare()?;
    env.paystream(&[
        "produce",
        "--quiet",
        "--count",
        &count.to_string(),
        "--seed",
        "77",
        "--start-ms",
        &start_ms.to_string(),
        "--mismatch-rate",
        "0.05",
        "--malformed-rate",
        "0.01",
        "--classic-mix",
    ])?;

    // A free port for the metrics endpoint of this test's instance.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{address}/metrics");
    let mut run = Running::spawn(
        env.command(&["run"])
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    let pool = sqlx::PgPool::connect(&env.database_url).await?;

    // Wait until every payment is counted and the sink has written them all.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = String::new();
    let metrics = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "metrics did not catch up in time; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(metrics) = scrape(&url).await else {
            continue;
        };
        let initiated = one(
            &totals(&metrics, "paystream_payments_total", &["status"]),
            &["INITIATED"],
        );
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&pool)
            .await?;
        let settled_stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = 'SETTLED'")
                .fetch_one(&pool)
                .await?;
        let settled_expected = expected.payments_by_status.get("SETTLED").copied();
        let lag: f64 = totals(&metrics, "paystream_consumer_lag_records", &[])
            .values()
            .sum();
        let lag_reported = metrics
            .samples
            .iter()
            .any(|s| s.metric == "paystream_consumer_lag_records");
        let depth: f64 = totals(&metrics, "paystream_dlq_depth_records", &[])
            .values()
            .sum();
        let sink_lag: f64 = totals(&metrics, "paystream_sink_lag_records", &[])
            .values()
            .sum();
        last = format!(
            "initiated {initiated}/{} stored {stored} settled {settled_stored}/{settled_expected:?} \
             lag {lag} (reported {lag_reported}) dlq depth {depth}/{} sink lag {sink_lag}",
            expected.payments,
            expected.dead_letters.values().sum::<u64>()
        );
        if initiated == expected.payments
            && sink_lag == 0.0
            && stored as u64 == expected.payments
            && Some(settled_stored as u64) == settled_expected
            && lag_reported
            && lag == 0.0
            && depth as u64 == expected.dead_letters.values().sum::<u64>()
        {
            // One more scrape after a commit interval, so nothing is in flight.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break scrape(&url).await?;
        }
    };
    let status = run.stop()?;
    assert!(
        status.success(),
        "paystream run stopped cleanly on SIGTERM: {status}"
    );

    // Payments that reached each status.
    let by_status = totals(&metrics, "paystream_payments_total", &["status"]);
    let status = |s: &str| expected.payments_by_status.get(s).copied().unwrap_or(0);
    assert_eq!(one(&by_status, &["INITIATED"]), expected.payments);
    assert_eq!(
        one(&by_status, &["AUTHORIZED"]),
        status("AUTHORIZED") + status("SETTLED")
    );
    assert_eq!(one(&by_status, &["DECLINED"]), status("DECLINED"));
    assert_eq!(one(&by_status, &["SETTLED"]), status("SETTLED"));

    // Amounts by status and currency, against the ledger database.
    let amounts = totals(
        &metrics,
        "paystream_payment_amount_minor_total",
        &["status", "currency"],
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency::text, sum(amount_minor)::int8 FROM payments GROUP BY currency",
    )
    .fetch_all(&pool)
    .await?;
    assert!(!rows.is_empty());
    for (currency, sum_minor) in rows {
        assert_eq!(
            one(&amounts, &["INITIATED", &currency]),
            sum_minor as u64,
            "{currency}"
        );
    }
    let settled_rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency::text, sum(amount_minor)::int8 FROM payments
         WHERE status = 'SETTLED' GROUP BY currency",
    )
    .fetch_all(&pool)
    .await?;
    for (currency, sum_minor) in settled_rows {
        assert_eq!(
            one(&amounts, &["SETTLED", &currency]),
            sum_minor as u64,
            "{currency}"
        );
    }

    // Money movements by kind: one authorization per authorized payment, one settlement
    // per settled one.
    let movements = totals(&metrics, "paystream_money_movements_total", &["kind"]);
    assert_eq!(
        one(&movements, &["AUTHORIZATION"]),
        status("AUTHORIZED") + status("SETTLED")
    );
    assert_eq!(one(&movements, &["SETTLEMENT"]), status("SETTLED"));

    // Exceptions, dead letters and duplicates.
    let exceptions = totals(
        &metrics,
        "paystream_reconciliation_exceptions_total",
        &["kind"],
    );
    for kind in ["AMOUNT_MISMATCH", "CURRENCY_MISMATCH"] {
        assert_eq!(
            one(&exceptions, &[kind]),
            expected.exceptions.get(kind).copied().unwrap_or(0),
            "{kind}"
        );
    }
    assert!(expected.exceptions.values().sum::<u64>() > 0);
    let dead_letters = totals(
        &metrics,
        "paystream_records_dead_lettered_total",
        &["reason"],
    );
    for (reason, n) in &expected.dead_letters {
        assert_eq!(one(&dead_letters, &[reason]), *n, "{reason}");
    }
    let duplicates = totals(&metrics, "paystream_records_duplicate_dropped_total", &[]);
    assert_eq!(one(&duplicates, &[]), expected.duplicates);

    // Every produced record read once: processed + dropped + dead-lettered = produced.
    let consumed = totals(&metrics, "paystream_records_consumed_total", &["topic"]);
    let read: u64 = [
        "payment_initiated",
        "auth_success",
        "auth_failure",
        "settlement",
    ]
    .iter()
    .map(|base| one(&consumed, &[&env.topic(base)]))
    .sum();
    assert_eq!(read, expected.records, "input records read");
    let dead: u64 = one(
        &totals(&metrics, "paystream_records_dead_lettered_total", &[]),
        &[],
    );
    assert!(dead > 0, "bad records were injected");
    assert!(read >= expected.duplicates + dead);
    // DLQ depth: exactly the dead letters injected, per dead-letter topic.
    let depth = totals(&metrics, "paystream_dlq_depth_records", &["topic"]);
    assert_eq!(
        depth.values().sum::<f64>() as u64,
        expected.dead_letters.values().sum::<u64>()
    );
    // The sink: everything written, nothing left.
    let sink_lag: f64 = totals(&metrics, "paystream_sink_lag_records", &[])
        .values()
        .sum();
    assert_eq!(sink_lag, 0.0, "sink lag");
    let rows = totals(&metrics, "paystream_sink_rows_written_total", &["table"]);
    assert_eq!(one(&rows, &["journal_entries"]), expected.journal_entries);
    assert_eq!(one(&rows, &["postings"]), expected.postings);
    // State, restore and latency are reported.
    let keys = totals(&metrics, "paystream_state_store_keys", &["store"]);
    assert!(one(&keys, &["payments"]) > 0, "{keys:?}");
    assert!(
        metrics
            .samples
            .iter()
            .any(|s| s.metric == "paystream_end_to_end_latency_seconds_count"),
        "end-to-end latency histogram"
    );
    // Every commit is timed by phase: each phase has a sample per commit (one more when
    // the scrape fell inside a commit, whose phases are observed before its total).
    let commits = one(
        &totals(&metrics, "paystream_commit_latency_seconds_count", &[]),
        &[],
    );
    let phase_counts = totals(&metrics, "paystream_commit_phase_seconds_count", &["phase"]);
    assert!(commits > 0);
    for phase in paystream_runtime::metrics::COMMIT_PHASES {
        let count = one(&phase_counts, &[phase]);
        assert!(
            (commits..=commits + 1).contains(&count),
            "{phase}: {count} samples for {commits} commits"
        );
    }
    Ok(())
}
