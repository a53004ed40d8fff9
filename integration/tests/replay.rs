//! Replay (backfill) on real parts: after a day of traffic has been processed, the
//! operator resets the group with `paystream replay --by-duration` and runs the pipeline
//! again. With state kept, every replayed record is recognised: nothing is posted twice
//! and no output topic gets a record again. `replay` refuses while an instance runs.
//! With `--reset-state`, the state is rebuilt from the input: every event is processed
//! again and every output emitted again, and the ledger stays exactly as it was.

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, BTreeSet};

use paystream_integration::{
    ReadRecord, Running, TestEnv, field, ledger_snapshot, read_committed, registry_url,
};
use paystream_schemas::{Codec, PaymentStatusChanged};
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};

const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn output_counts(env: &TestEnv) -> anyhow::Result<Vec<usize>> {
    [
        "payment_status",
        "ledger_entries",
        "reconciliation_exceptions",
    ]
    .iter()
    .map(|base| Ok(read_committed(&env.topic(base), READ_TIMEOUT)?.len()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_day_posts_nothing_twice_and_emits_no_duplicates() -> anyhow::Result<()> {
    let env = TestEnv::new("replay");
    let count = 3_000;
    // Payments over the last day and their settlements a day later: a day of input.
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed: 5,
        start_ms,
        mismatch_rate: 0.02,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    env.paystream(&[
        "produce",
        "--quiet",
        "--count",
        &count.to_string(),
        "--seed",
        "5",
        "--start-ms",
        &start_ms.to_string(),
        "--mismatch-rate",
        "0.02",
    ])?;
    let first = env.paystream(&["run", "--until-caught-up"])?;
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(
        field(&first, "events read"),
        Some(expected.records.to_string().as_str())
    );
    let ledger = ledger_snapshot(&env.database_url).await?;
    let outputs = output_counts(&env)?;
    assert!(outputs.iter().all(|n| *n > 0), "{outputs:?}");

    // While an instance runs, replay refuses.
    let mut running = Running::spawn(
        env.command(&["run", "--no-sink"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let refused =
            env.paystream_unchecked(&["replay", "--by-duration", "3days", "--dry-run"])?;
        let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
        if !refused.status.success() {
            assert!(stderr.contains("live member"), "{stderr}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the running instance never joined the group"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    running.stop()?;

    // Once it has left the group (static members leave at the session timeout), the
    // dry run shows each partition's current → new offset.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dry = loop {
        let dry = env.paystream_unchecked(&["replay", "--by-duration", "3days", "--dry-run"])?;
        if dry.status.success() {
            break String::from_utf8_lossy(&dry.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the stopped instance never left the group"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!("{dry}");
    let settlement = env.topic("settlement");
    let rows: Vec<Vec<&str>> = dry
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.iter()
            .filter(|r| r[0] == settlement)
            .all(|r| r[3] == "0" && r[2] != "0"),
        "every settlement partition goes back to its first record: {dry}"
    );

    env.paystream(&["replay", "--by-duration", "3days"])?;
    let second = env.paystream(&["run", "--until-caught-up"])?;
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    println!("{second}");
    assert_eq!(
        field(&second, "events read"),
        Some(expected.records.to_string().as_str()),
        "the whole day was read again"
    );
    assert_eq!(field(&second, "status changes emitted"), Some("0"));
    assert_eq!(field(&second, "journal entries emitted"), Some("0"));
    assert_eq!(
        ledger_snapshot(&env.database_url).await?,
        ledger,
        "nothing posted twice"
    );
    assert_eq!(
        output_counts(&env)?,
        outputs,
        "no output record emitted again"
    );
    Ok(())
}

/// `replay`, retried while the group still has the member of the run that just ended
/// (a static member leaves at its session timeout).
async fn replay_when_the_group_is_empty(env: &TestEnv, args: &[&str]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replayed = env.paystream_unchecked(args)?;
        let stderr = String::from_utf8_lossy(&replayed.stderr).into_owned();
        if replayed.status.success() {
            return Ok(stderr);
        }
        assert!(stderr.contains("live member"), "replay failed: {stderr}");
        assert!(
            Instant::now() < deadline,
            "the stopped instance never left the group"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each payment's status changes among `records` (`from → to` caused by an event id), in
/// topic order: a payment's changes are on one partition.
async fn status_changes(records: &[&ReadRecord]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let mut changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        let change: PaymentStatusChanged = codec.decode(record.value.as_deref()).await?;
        changes.entry(change.payment_id).or_default().push(format!(
            "{:?} -> {} by {}",
            change.previous_status, change.status, change.caused_by_event_id
        ));
    }
    Ok(changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_reset_state_processes_everything_again_and_leaves_the_ledger()
-> anyhow::Result<()> {
    let env = TestEnv::new("replay_reset");
    let count = 500;
    let expected = plan(&TrafficOptions {
        count,
        seed: 11,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    env.paystream(&[
        "produce",
        "--quiet",
        "--count",
        &count.to_string(),
        "--seed",
        "11",
    ])?;
    let first = env.paystream(&["run", "--until-caught-up"])?;
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    let records = expected.records.to_string();
    assert_eq!(field(&first, "events read"), Some(records.as_str()));
    let statuses = field(&first, "status changes emitted").map(str::to_string);
    let entries = field(&first, "journal entries emitted").map(str::to_string);
    assert!(statuses.as_deref().is_some_and(|n| n != "0"), "{first}");
    let ledger = ledger_snapshot(&env.database_url).await?;
    let outputs = output_counts(&env)?;
    let first_statuses = read_committed(&env.topic("payment_status"), READ_TIMEOUT)?;

    let said =
        replay_when_the_group_is_empty(&env, &["replay", "--to-earliest", "--reset-state"]).await?;
    assert!(said.contains("recreated 6 changelog topics"), "{said}");
    let second = env.paystream(&["run", "--until-caught-up"])?;
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    println!("{second}");
    assert_eq!(
        field(&second, "events read"),
        Some(records.as_str()),
        "every event read again"
    );
    // The same status changes, payment by payment, as the first run's.
    let seen: BTreeSet<(i32, i64)> = first_statuses
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    let all_statuses = read_committed(&env.topic("payment_status"), READ_TIMEOUT)?;
    let again: Vec<&ReadRecord> = all_statuses
        .iter()
        .filter(|r| !seen.contains(&(r.partition, r.offset)))
        .collect();
    let before = status_changes(&first_statuses.iter().collect::<Vec<_>>()).await?;
    let after = status_changes(&again).await?;
    let differing: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|id| before.get(*id) != after.get(*id))
        .map(|id| format!("{id}: {:?} then {:?}", before.get(id), after.get(id)))
        .collect();
    assert!(
        differing.is_empty(),
        "payments whose status changes differ between the runs:\n{}",
        differing.join("\n")
    );
    assert_eq!(
        field(&second, "status changes emitted").map(str::to_string),
        statuses,
        "the state was rebuilt: every status change emitted again"
    );
    assert_eq!(
        field(&second, "journal entries emitted").map(str::to_string),
        entries
    );
    let again = output_counts(&env)?;
    for (before, after) in outputs.iter().zip(&again) {
        assert_eq!(
            *after,
            2 * before,
            "every output emitted again: {outputs:?} -> {again:?}"
        );
    }
    assert_eq!(
        ledger_snapshot(&env.database_url).await?,
        ledger,
        "the ledger is exactly as it was: deterministic ids, nothing posted twice"
    );
    Ok(())
}
