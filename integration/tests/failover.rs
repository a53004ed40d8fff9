//! Failover on real parts: two `paystream run` instances of one application share the
//! partitions while traffic flows, and one is killed with SIGKILL in the middle of its
//! transactions. When the group moves the dead instance's partitions, the survivor
//! fences the dead instance's transactional id, which aborts its open transaction at once
//! (`runtime/src/stream_thread/fencing.rs`); the transaction timeout here is a minute, so
//! without the fence the dead transaction would hold those partitions' offsets for that
//! long. The survivor must say it fenced the dead instance, and the ledger must be
//! exactly what the traffic makes.

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use paystream_integration::{Running, TestEnv, ledger_snapshot};
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_fences_a_killed_instance_and_takes_its_partitions() -> anyhow::Result<()> {
    let env = TestEnv::new("failover");
    let count = 16_000;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed: 31,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    let survivor_log = env.work_dir.path().join("survivor.log");
    let instance = |id: &str, log: File| {
        let mut command = env.command(&["run"]);
        command
            .env("PAYSTREAM_INSTANCE_ID", id)
            .env("PAYSTREAM_STATE__DIR", env.state_dir.path().join(id))
            .env("PAYSTREAM_PROCESSING__SESSION_TIMEOUT_MS", "6000")
            .env("PAYSTREAM_PROCESSING__TRANSACTION_TIMEOUT_MS", "60000")
            .stdout(Stdio::null())
            .stderr(log);
        command
    };
    let mut survivor = Running::spawn(&mut instance("0", File::create(&survivor_log)?))?;
    // Only the survivor writes the ledger, so that the kill cannot leave it behind.
    let mut victim = Running::spawn(
        instance("1", File::create(env.work_dir.path().join("victim.log"))?).arg("--no-sink"),
    )?;
    // About 8 s of traffic; the kill comes 4 s in.
    let mut producer = env
        .command(&[
            "produce",
            "--quiet",
            "--count",
            &count.to_string(),
            "--seed",
            "31",
            "--start-ms",
            &start_ms.to_string(),
            "--rate",
            "2000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    victim.child().kill()?; // SIGKILL
    victim.child().wait()?;
    anyhow::ensure!(producer.wait()?.success(), "paystream produce failed");

    let deadline = Instant::now() + Duration::from_secs(180);
    let ledger = loop {
        let ledger = ledger_snapshot(&env.database_url).await?;
        if ledger.journal_entries >= expected.journal_entries {
            break ledger;
        }
        assert!(
            survivor.child().try_wait()?.is_none(),
            "the survivor exited; see {}",
            survivor_log.display()
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ledger did not catch up: {} of {} journal entries",
            ledger.journal_entries,
            expected.journal_entries
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    survivor.stop()?;
    let log = std::fs::read_to_string(&survivor_log)?;
    let transactional_id = format!("{}-1", env.application_id);
    assert!(
        log.lines()
            .any(|line| line.contains("fenced the transactional id")
                && line.contains(&transactional_id)),
        "the survivor fenced {transactional_id}; its log:\n{log}"
    );
    assert_eq!(ledger.journal_entries, expected.journal_entries);
    assert_eq!(ledger.postings, expected.postings);
    assert_eq!(ledger.balances_minor, expected.balances_minor);
    Ok(())
}
