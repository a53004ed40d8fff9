//! An instance paused past its transaction timeout, on real parts: while traffic flows,
//! `paystream run` is stopped with SIGSTOP for longer than its
//! `processing.transaction_timeout_ms` (2 s here) plus the broker's sweep of timed-out
//! transactions (1 s on the stack), and shorter than its session timeout (30 s here), so
//! the group does not move its partitions. The coordinator aborts its open transaction
//! meanwhile; on SIGCONT its producer is fenced for good, and the instance must replace
//! it (`paystream_producer_resets_total`) — or, when the records in flight timed out in
//! the client first, librdkafka's abort bumps the epoch itself. Either way it must
//! reprocess from its committed offsets and go on, see the pause as a stall of its
//! stream thread (so the reorder wait starts again: records that arrived during the
//! pause are still put in order), and the ledger must be exactly what the traffic makes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use paystream_integration::{Running, TestEnv, metric_total, pause, scrape, wait_for_ledger};
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_paused_past_its_transaction_timeout_replaces_its_producer_and_goes_on()
-> anyhow::Result<()> {
    let env = TestEnv::new("stall");
    let count = 24_000;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed: 29,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{address}/metrics");
    let mut run = Running::spawn(
        env.command(&["run"])
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string())
            .env("PAYSTREAM_PROCESSING__TRANSACTION_TIMEOUT_MS", "2000")
            .env("PAYSTREAM_PROCESSING__SESSION_TIMEOUT_MS", "30000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    // Traffic for about 12 s, so that a transaction is open whenever the pause begins.
    let mut producer = env.produce_at_rate(count, 29, start_ms, 2_000)?;

    // Paused once it commits.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the instance never committed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(metrics) = scrape(&url).await else {
            continue;
        };
        if metric_total(&metrics, "paystream_commits_total").unwrap_or(0.0) >= 20.0 {
            break;
        }
    }
    pause(run.child().id(), Duration::from_secs(6)).await?;
    anyhow::ensure!(producer.wait()?.success(), "paystream produce failed");

    // It goes on: every journal entry reaches the ledger, with the instance still running.
    let ledger = wait_for_ledger(
        &env.database_url,
        expected.journal_entries,
        &mut run,
        Duration::from_secs(180),
        "after the pause",
    )
    .await?;
    let metrics = scrape(&url).await?;
    let resets = metric_total(&metrics, "paystream_producer_resets_total");
    let stalls = metric_total(&metrics, "paystream_stream_thread_stalls_total");
    run.stop()?;
    assert!(
        stalls.is_some_and(|n| n >= 1.0),
        "the pause was seen as a stall of the stream thread: {stalls:?}"
    );
    assert!(
        matches!(resets, Some(n) if n <= 1.0),
        "the producer fenced by the aborted transaction was replaced at most once: {resets:?}"
    );
    assert_eq!(ledger.journal_entries, expected.journal_entries);
    assert_eq!(ledger.postings, expected.postings);
    assert_eq!(ledger.balances_minor, expected.balances_minor);
    Ok(())
}
