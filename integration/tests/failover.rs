//! Failover on real parts: two `paystream run` instances of one application share the
//! partitions while traffic flows, and one of them goes silent in the middle of its
//! transactions. The other hears no heartbeat from it for `processing.peer_timeout_ms`
//! and takes it over (`runtime/src/liveness.rs`): it fences the silent instance's
//! transactional id, which aborts its open transaction, and removes it from the group
//! (`runtime/src/fencing.rs`). The session timeout here is 30 s and the transaction
//! timeout a minute, so without the takeover the silent instance would keep its
//! partitions that long.
//!
//! - Killed (SIGKILL): the survivor takes it over and the ledger is exact; the killed
//!   instance's tasks start on the survivor from its standby replicas
//!   (`runtime/src/standby.rs`), so their restore replays next to nothing of what the
//!   standbys had read.
//! - Paused (SIGSTOP for 5 s, then SIGCONT): taken over the same way; when it resumes,
//!   its consumer is no longer a member and its producer is fenced: it rejoins the group,
//!   replaces its producer and goes on — it must not exit — and the ledger is exact.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paystream_integration::{
    LedgerSnapshot, Running, TestEnv, metric_total, pause, scrape, wait_for_ledger,
    wait_for_log_line,
};
use paystream_testkit::traffic::{ExpectedOutcome, TrafficOptions, default_start_ms, plan};

/// Changelog records instance 0's standbys must have applied before instance 1 is
/// silenced.
const STANDBY_RECORDS_BEFORE_SILENCE: f64 = 1_000.0;

/// How the second instance goes silent.
enum Silence {
    Kill,
    Pause(Duration),
}

/// What a run of the scenario leaves to check.
struct Outcome {
    env: TestEnv,
    expected: ExpectedOutcome,
    ledger: LedgerSnapshot,
    /// The logs of instance 0 (the one that takes over) and instance 1.
    logs: [String; 2],
    /// Instance 0's metrics, scraped just before instance 1 went silent and once the
    /// ledger was complete.
    metrics: [prometheus_parse::Scrape; 2],
}

/// Two instances, about 8 s of traffic at 2,000 records/s from when instance 1 runs
/// tasks, and instance 1 silenced 4 s in; returns once the ledger has every journal entry (instance 0 runs the sink).
async fn run(name: &str, seed: u64, silence: Silence) -> anyhow::Result<Outcome> {
    let env = TestEnv::new(name);
    let count = 16_000;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    // Outside the test's directories, so that they are there to read after a failure.
    let log_paths: [PathBuf; 2] =
        ["0", "1"].map(|id| std::env::temp_dir().join(format!("{}-{id}.log", env.id)));
    let instance = |id: &str, log: &PathBuf| -> anyhow::Result<Command> {
        let mut command = env.command(&["run"]);
        command
            .env("PAYSTREAM_INSTANCE_ID", id)
            .env("PAYSTREAM_STATE__DIR", env.state_dir.path().join(id))
            .env("PAYSTREAM_PROCESSING__SESSION_TIMEOUT_MS", "30000")
            .env("PAYSTREAM_PROCESSING__TRANSACTION_TIMEOUT_MS", "60000")
            .stdout(Stdio::null())
            .stderr(File::create(log)?);
        Ok(command)
    };
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut first = Running::spawn(
        instance("0", &log_paths[0])?.env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string()),
    )?;
    // Only instance 0 writes the ledger, so that silencing instance 1 cannot hold it up.
    let mut second = Running::spawn(instance("1", &log_paths[1])?.arg("--no-sink"))?;
    // Traffic starts once instance 1 runs tasks of its own: silenced before it joined,
    // it would leave nothing to take over (a CI run killed it while it was starting).
    wait_for_log_line(
        &log_paths[1],
        "task running",
        &mut second,
        Duration::from_secs(60),
    )
    .await?;
    let mut producer = env.produce_at_rate(count, seed, start_ms, 2_000)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics_url = format!("http://{address}/metrics");
    // And once instance 0's standbys of instance 1's tasks have caught some of it up (on
    // a busy machine they open and read later; the kill test compares with it).
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let scraped = scrape(&metrics_url).await?;
        let standby = metric_total(&scraped, "paystream_standby_records_total").unwrap_or(0.0);
        if standby > STANDBY_RECORDS_BEFORE_SILENCE || Instant::now() > deadline {
            break scraped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let silenced_at = Instant::now();
    match silence {
        Silence::Kill => {
            second.child().kill()?; // SIGKILL
            second.child().wait()?;
        }
        Silence::Pause(duration) => {
            pause(second.child().id(), duration).await?;
        }
    }
    anyhow::ensure!(producer.wait()?.success(), "paystream produce failed");

    let ledger = wait_for_ledger(
        &env.database_url,
        expected.journal_entries,
        &mut first,
        Duration::from_secs(180),
        &format!(
            "logs: {}, {}",
            log_paths[0].display(),
            log_paths[1].display()
        ),
    )
    .await?;
    println!(
        "the ledger caught up {} ms after instance 1 went silent",
        silenced_at.elapsed().as_millis()
    );
    if matches!(silence, Silence::Pause(_)) {
        assert!(
            second.child().try_wait()?.is_none(),
            "the paused instance exited after it resumed; see {}",
            log_paths[1].display()
        );
        second.stop()?;
    }
    let metrics = [before, scrape(&metrics_url).await?];
    first.stop()?;
    let logs = [
        std::fs::read_to_string(&log_paths[0])?,
        std::fs::read_to_string(&log_paths[1])?,
    ];
    Ok(Outcome {
        env,
        expected,
        ledger,
        logs,
        metrics,
    })
}

impl Outcome {
    /// Instance 0 fenced instance 1's transactional id and took it over.
    fn assert_taken_over(&self) {
        let log = &self.logs[0];
        let transactional_id = format!("{}-1", self.env.application_id);
        assert!(
            log.lines()
                .any(|line| line.contains("fenced the transactional id")
                    && line.contains(&transactional_id)),
            "instance 0 fenced {transactional_id}; its log:\n{log}"
        );
        // Field names and values are apart in the colored log: look for the value.
        assert!(
            log.lines()
                .any(|line| line.contains("took over a silent instance") && line.contains("\"1\"")),
            "instance 0 took instance 1 over; its log:\n{log}"
        );
    }

    /// Instance 0 kept standbys of instance 1's tasks, and the tasks it took over
    /// started from them: their restore (after the silence; the restores at start-up
    /// do not count) replayed a small part of what the standbys had read (without
    /// standbys it replays all of it).
    fn assert_started_from_standbys(&self) {
        let total = |n: usize, metric| metric_total(&self.metrics[n], metric).unwrap_or(0.0);
        let standby = total(0, "paystream_standby_records_total");
        let restored = total(1, "paystream_restore_records_total")
            - total(0, "paystream_restore_records_total");
        assert!(
            standby > STANDBY_RECORDS_BEFORE_SILENCE,
            "instance 0 kept standbys of instance 1's tasks: {standby} records applied \
             before the kill"
        );
        assert!(
            restored < standby / 10.0,
            "the tasks taken over restored {restored} records, the standbys had read {standby}"
        );
    }

    fn assert_ledger_exact(&self) {
        assert_eq!(self.ledger.journal_entries, self.expected.journal_entries);
        assert_eq!(self.ledger.postings, self.expected.postings);
        assert_eq!(self.ledger.balances_minor, self.expected.balances_minor);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_taken_over_before_its_session_times_out() -> anyhow::Result<()> {
    let outcome = run("failover_kill", 31, Silence::Kill).await?;
    outcome.assert_taken_over();
    outcome.assert_started_from_standbys();
    outcome.assert_ledger_exact();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_taken_over_rejoins_when_it_resumes() -> anyhow::Result<()> {
    let outcome = run("failover_pause", 37, Silence::Pause(Duration::from_secs(5))).await?;
    outcome.assert_taken_over();
    let log = &outcome.logs[1];
    assert!(
        log.lines()
            .any(|line| line.contains("the producer is in a fatal state")),
        "the paused instance replaced its fenced producer; its log:\n{log}"
    );
    outcome.assert_ledger_exact();
    Ok(())
}
