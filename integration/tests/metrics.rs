//! The business metrics on `/metrics`, scraped from a running `paystream run` on real
//! parts (Apache Kafka, Apicurio's Confluent-compatible registry, PostgreSQL) and compared
//! with the traffic plan's expected outcome and with the ledger database the sink wrote:
//! payments by status, amounts by status and currency, reconciliation exceptions by kind,
//! dead letters by reason and duplicates.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use paystream::traffic::{ExpectedOutcome, TrafficOptions, default_start_ms, plan};
use paystream_integration::TestEnv;
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

async fn scrape(url: &str) -> anyhow::Result<Scrape> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?)
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
        ..TrafficOptions::default()
    };
    let expected: ExpectedOutcome = plan(&options).expected;
    env.paystream(&["topics", "create"])?;
    env.paystream(&["schemas", "register"])?;
    env.paystream(&["ledger", "init"])?;
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
    ])?;

    // A free port for the metrics endpoint of this test's instance.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{address}/metrics");
    let mut run = env
        .command(&["run"])
        .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pool = sqlx::PgPool::connect(&env.database_url).await?;

    // Wait until every payment is counted and the sink has written them all.
    let deadline = Instant::now() + Duration::from_secs(180);
    let metrics = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "metrics did not catch up in time"
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
        if initiated == expected.payments
            && stored as u64 == expected.payments
            && Some(settled_stored as u64) == settled_expected
        {
            // One more scrape after a commit interval, so nothing is in flight.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break scrape(&url).await?;
        }
    };
    std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()?;
    let status = run.wait()?;
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
    Ok(())
}
