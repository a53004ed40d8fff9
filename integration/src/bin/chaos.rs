//! `integration/chaos`: the crash test. Produces seeded payment traffic while
//! `paystream run` instances are killed with SIGKILL at random moments and restarted,
//! then checks with a `read_committed` reader that every expected output record is
//! present exactly once and that the PostgreSQL ledger is exactly what the traffic must
//! produce. The seed fixes the traffic and the kill schedule.
//!
//! Phase 1 runs one instance and kills it; phase 2 (with `--instances` ≥ 2) runs that
//! many instances sharing the partitions and kills one at a time. A final instance then
//! runs until caught up. Instances other than `0` run without the ledger sink.
//!
//! With `--broker-bounces N` and `--pg-outages N`, Kafka brokers are restarted and
//! PostgreSQL is stopped for tens of seconds at random moments as well (through
//! `scripts/stack`); the guarantees must hold through those too. With `--stalls N`, a
//! running instance is paused (SIGSTOP) for longer than its transaction timeout and the
//! group's session timeout, then resumed: the coordinator aborts its transaction and the
//! group moves its partitions meanwhile, and it must replace its producer and go on.
//!
//! The last line printed is `lost=<n> duplicated=<n> postings_exact=<yes|no>`; the exit
//! status is non-zero on any loss, duplicate or ledger difference.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use paystream_integration::{TestEnv, ledger_snapshot, read_committed, registry_url, signal};
use paystream_processors::ledger::{journal_entry_id, movement_entry_id};
use paystream_schemas::{
    CaptureMode, ChargebackStage, Codec, InputEvent, JournalEntry, JournalEntryKind, PaymentStatus,
    PaymentStatusChanged,
};
use paystream_testkit::traffic::{ExpectedOutcome, PlannedRecord, TrafficOptions, plan};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Parser)]
#[command(
    about = "Crash test: kill -9 paystream at random moments, then check nothing was lost or duplicated"
)]
struct Args {
    /// Input records to produce.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// SIGKILLs in all (split between the phases when --instances ≥ 2).
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// Instances in phase 2; 1 skips phase 2.
    #[arg(long, default_value_t = 2)]
    instances: u32,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Instances killed at the same moment in phase 2 (distinct ones, fewer than
    /// --instances); each kill counts towards --kills.
    #[arg(long, default_value_t = 1)]
    kills_at_once: u32,
    /// Seed of the traffic and of the kill schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shortest run before a kill, milliseconds.
    #[arg(long, default_value_t = 1_500)]
    kill_after_min_ms: u64,
    /// Longest run before a kill, milliseconds.
    #[arg(long, default_value_t = 6_000)]
    kill_after_max_ms: u64,
    /// Kafka broker restarts during the run (`scripts/stack kafka-restart`), on random
    /// brokers of `PAYSTREAM_KAFKA_BROKERS` (default 1).
    #[arg(long, default_value_t = 0)]
    broker_bounces: u32,
    /// PostgreSQL outages during the run (`scripts/stack pg-stop`, then `pg-start`).
    #[arg(long, default_value_t = 0)]
    pg_outages: u32,
    /// Longest PostgreSQL outage, milliseconds (the shortest is half of it).
    #[arg(long, default_value_t = 30_000)]
    pg_outage_max_ms: u64,
    /// Pauses of a running instance (SIGSTOP, then SIGCONT) during the run.
    #[arg(long, default_value_t = 0)]
    stalls: u32,
    /// How long a pause lasts, milliseconds: longer than the default transaction timeout
    /// (10 s) plus the broker's sweep of timed-out transactions (1 s on the stack), and
    /// than the session timeout (6 s).
    #[arg(long, default_value_t = 14_000)]
    stall_ms: u64,
    /// Event time of the first payment, milliseconds since the Unix epoch (default: all
    /// events in the recent past; printed, to verify a run again).
    #[arg(long)]
    start_ms: Option<i64>,
    /// Skip producing and killing: verify the outputs of the earlier run with this id
    /// (printed by that run), with the same --events, --seed and --start-ms.
    #[arg(long)]
    verify_only: Option<String>,
    /// Keep the run's topics and ledger database afterwards (for --verify-only later);
    /// by default they are deleted when the run ends.
    #[arg(long)]
    keep: bool,
}

/// A fault injected between kills: outside paystream's process, or a pause of it.
#[derive(Debug, Clone, Copy)]
enum Fault {
    BrokerBounce,
    PgOutage,
    Stall,
}

/// `scripts/stack` of this repository (or `PAYSTREAM_STACK_SCRIPT`).
fn stack_script() -> PathBuf {
    std::env::var("PAYSTREAM_STACK_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack"))
}

fn stack(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(stack_script())
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("running scripts/stack")?;
    anyhow::ensure!(
        status.success(),
        "scripts/stack {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

async fn inject(
    fault: Fault,
    rng: &mut ChaCha8Rng,
    args: &Args,
    running: &[Instance],
) -> anyhow::Result<()> {
    match fault {
        Fault::Stall => {
            // Mid-run, with a transaction open: not while the instance starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let victim = &running[rng.random_range(0..running.len())];
            let pid = victim.child.id();
            signal("-STOP", pid)?;
            tokio::time::sleep(Duration::from_millis(args.stall_ms)).await;
            signal("-CONT", pid)?;
            println!(
                "paused instance {} (pid {pid}) for {} ms",
                victim.id, args.stall_ms
            );
        }
        Fault::BrokerBounce => {
            let brokers: u32 = std::env::var("PAYSTREAM_KAFKA_BROKERS")
                .ok()
                .and_then(|b| b.parse().ok())
                .unwrap_or(1);
            let broker = rng.random_range(0..brokers).to_string();
            let started = Instant::now();
            stack(&["kafka-restart", &broker])?;
            println!(
                "bounced broker {broker} ({} ms until it answered again)",
                started.elapsed().as_millis()
            );
        }
        Fault::PgOutage => {
            let outage = Duration::from_millis(
                rng.random_range(args.pg_outage_max_ms / 2..=args.pg_outage_max_ms),
            );
            stack(&["pg-stop"])?;
            tokio::time::sleep(outage).await;
            stack(&["pg-start"])?;
            println!("PostgreSQL was down for {} ms", outage.as_millis());
        }
    }
    Ok(())
}

/// One running `paystream run` process.
struct Instance {
    id: u32,
    child: Child,
    started: Instant,
    /// Its log file.
    log: PathBuf,
}

/// Whether `instance` exited on its own (it must not: only the chaos run stops
/// instances); says so if it did.
fn exited_on_its_own(instance: &mut Instance) -> anyhow::Result<bool> {
    let Some(status) = instance.child.try_wait()? else {
        return Ok(false);
    };
    println!(
        "instance {} (pid {}) had exited on its own: {status} (log: {})",
        instance.id,
        instance.child.id(),
        instance.log.display()
    );
    Ok(true)
}

fn start(
    env: &TestEnv,
    logs: &Path,
    id: u32,
    restarts: &mut HashMap<u32, u32>,
) -> anyhow::Result<Instance> {
    let n = restarts.entry(id).or_insert(0);
    *n += 1;
    let log = logs.join(format!("instance-{id}-run-{n}.log"));
    let mut args = vec!["run"];
    if id != 0 {
        args.push("--no-sink");
    }
    let child = env
        .command(&args)
        .env("PAYSTREAM_INSTANCE_ID", id.to_string())
        .env(
            "PAYSTREAM_STATE__DIR",
            env.state_dir.path().join(format!("instance-{id}")),
        )
        .stdout(Stdio::null())
        .stderr(File::create(&log)?)
        .spawn()
        .context("starting paystream run")?;
    Ok(Instance {
        id,
        child,
        started: Instant::now(),
        log,
    })
}

/// SIGKILLs `instance`; returns whether it had exited on its own before.
fn kill(instance: &mut Instance) -> anyhow::Result<bool> {
    let exited = exited_on_its_own(instance)?;
    instance.child.kill()?; // SIGKILL
    instance.child.wait()?;
    println!(
        "killed instance {} (pid {}) after {} ms",
        instance.id,
        instance.child.id(),
        instance.started.elapsed().as_millis()
    );
    Ok(exited)
}

/// SIGTERMs `instance`; returns whether it had exited on its own before.
fn stop(instance: &mut Instance) -> anyhow::Result<bool> {
    let exited = exited_on_its_own(instance)?;
    // SIGTERM: the instance commits and leaves the group.
    paystream_integration::stop_within(&mut instance.child, paystream_integration::STOP_TIMEOUT)?;
    Ok(exited)
}

/// Lines containing `needle` in the instances' logs in `logs`.
fn count_in_logs(logs: &Path, needle: &str) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(logs)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            count += text.lines().filter(|l| l.contains(needle)).count();
        }
    }
    Ok(count)
}

/// What the traffic must produce, record by record.
struct ExpectedRecords {
    journal_entry_ids: Vec<String>,
    /// Status changes every correct run makes.
    status_changes: Vec<(String, String)>,
    /// Status changes a correct run may make, depending on how topics interleave
    /// (`payment_id|STATUS`).
    possible_status_changes: HashSet<String>,
    outcome: ExpectedOutcome,
}

fn expected_records(options: &TrafficOptions) -> ExpectedRecords {
    let plan = plan(options);
    let mut initiated = BTreeMap::new();
    let mut manual = HashSet::new();
    let mut statuses = BTreeMap::new();
    let mut possible = HashSet::new();
    let mut entries = BTreeMap::new();
    // Capture modes first: a payment may be sent after its auth (out of order).
    for record in &plan.records {
        if let PlannedRecord::Event {
            event: InputEvent::PaymentInitiated(p),
            ..
        } = record
            && p.capture_mode == CaptureMode::Manual
        {
            manual.insert(p.payment_id.clone());
        }
    }
    for record in &plan.records {
        let PlannedRecord::Event { event, .. } = record else {
            continue;
        };
        if plan.refused_event_ids.contains(event.event_id()) {
            // Dead-lettered: it posts nothing and changes no status.
            continue;
        }
        let payment_id = event.payment_id().to_string();
        let mut entry = |id: String| {
            entries.insert(id, ());
        };
        match event {
            // The first request per idempotency key is the payment; conflicts are not.
            InputEvent::PaymentInitiated(p) => {
                initiated
                    .entry(p.key())
                    .or_insert_with(|| p.payment_id.clone());
            }
            InputEvent::AuthSucceeded(a) => {
                statuses.insert((a.payment_id.clone(), "AUTHORIZED".to_string()), ());
                let kind = if manual.contains(&a.payment_id) {
                    JournalEntryKind::AuthorizationHold
                } else {
                    JournalEntryKind::Authorization
                };
                entry(journal_entry_id(&a.payment_id, kind));
            }
            InputEvent::AuthFailed(f) => {
                statuses.insert((f.payment_id.clone(), "DECLINED".to_string()), ());
            }
            InputEvent::SettlementReported(s) => {
                entry(journal_entry_id(
                    &s.payment_id,
                    JournalEntryKind::Settlement,
                ));
            }
            InputEvent::PaymentCaptured(c) => {
                entry(movement_entry_id(
                    &payment_id,
                    JournalEntryKind::Capture,
                    &c.capture_id,
                ));
            }
            InputEvent::AuthorizationVoided(_) => {
                entry(journal_entry_id(&payment_id, JournalEntryKind::Void));
            }
            InputEvent::RefundIssued(r) => {
                entry(movement_entry_id(
                    &payment_id,
                    JournalEntryKind::Refund,
                    &r.refund_id,
                ));
            }
            InputEvent::ChargebackReported(c) => {
                let kind = match c.stage {
                    ChargebackStage::Opened => JournalEntryKind::ChargebackOpened,
                    ChargebackStage::Won => JournalEntryKind::ChargebackWon,
                    ChargebackStage::Lost => JournalEntryKind::ChargebackLost,
                };
                entry(movement_entry_id(&payment_id, kind, &c.dispute_id));
            }
        }
        // Which statuses a payment passes through after its authorization depends on
        // the order its topics' records interleave (a refund before or after the
        // settlement): any of them may be seen, once.
        if !matches!(
            event,
            InputEvent::PaymentInitiated(_)
                | InputEvent::AuthSucceeded(_)
                | InputEvent::AuthFailed(_)
        ) {
            for status in PaymentStatus::ALL {
                possible.insert(format!("{payment_id}|{status}"));
            }
        }
    }
    for payment_id in initiated.values() {
        statuses.insert((payment_id.clone(), "INITIATED".to_string()), ());
    }
    ExpectedRecords {
        journal_entry_ids: entries.into_keys().collect(),
        status_changes: statuses.into_keys().collect(),
        possible_status_changes: possible,
        outcome: plan.expected,
    }
}

/// Compares `seen` (id → times read) with the `expected` ids, any of `possible` being
/// allowed too: (lost, duplicated — read twice, or not expected at all).
fn compare(
    expected: &[String],
    possible: &HashSet<String>,
    seen: &HashMap<String, u64>,
) -> (u64, u64) {
    let lost = expected.iter().filter(|id| !seen.contains_key(*id)).count() as u64;
    let duplicated: u64 = seen.values().map(|n| n.saturating_sub(1)).sum();
    let expected: HashSet<&String> = expected.iter().collect();
    let unexpected = seen
        .keys()
        .filter(|id| !expected.contains(id) && !possible.contains(*id))
        .count() as u64;
    (lost, duplicated + unexpected)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let mut args = Args::parse();
    args.start_ms = Some(
        args.start_ms
            .unwrap_or_else(|| paystream_testkit::traffic::default_start_ms(args.events)),
    );
    anyhow::ensure!(args.kills >= 1, "--kills must be at least 1");
    anyhow::ensure!(args.instances >= 1, "--instances must be at least 1");
    anyhow::ensure!(args.partitions >= 1, "--partitions must be at least 1");
    anyhow::ensure!(
        args.kills_at_once >= 1 && (args.kills_at_once == 1 || args.kills_at_once < args.instances),
        "--kills-at-once must be at least 1, and below --instances"
    );
    anyhow::ensure!(
        args.kill_after_min_ms < args.kill_after_max_ms,
        "--kill-after-min-ms must be below --kill-after-max-ms"
    );
    let env = match &args.verify_only {
        Some(id) => TestEnv::with_id(id.clone()).with_partitions(args.partitions),
        None => {
            let mut env = TestEnv::new("chaos").with_partitions(args.partitions);
            if args.keep {
                env.keep();
            }
            env
        }
    };
    let logs = std::env::var("PAYSTREAM_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/paystream-stack")
        })
        .join("chaos")
        .join(&env.id);
    std::fs::create_dir_all(&logs)?;
    println!(
        "chaos: seed {} start-ms {} events {} kills {} ({} at once) instances {} partitions {} run {} (logs in {})",
        args.seed,
        args.start_ms.expect("set above"),
        args.events,
        args.kills,
        args.kills_at_once,
        args.instances,
        args.partitions,
        env.id,
        logs.display()
    );
    let options = TrafficOptions {
        count: args.events,
        seed: args.seed,
        start_ms: args.start_ms.expect("set above"),
        ..TrafficOptions::default()
    };
    let expected = expected_records(&options);
    if args.verify_only.is_none() {
        run_with_faults(&env, &logs, &args).await?;
    }
    verify(&env, &args, &expected).await
}

/// Produces the traffic while killing instances and injecting faults, then lets one
/// instance catch up.
async fn run_with_faults(env: &TestEnv, logs: &Path, args: &Args) -> anyhow::Result<()> {
    env.paystream(&["topics", "create"])?;
    env.paystream(&["schemas", "register"])?;
    env.paystream(&["ledger", "init"])?;

    // Traffic arrives while instances are killed: about 4 s of traffic per kill.
    let rate = (args.events / (u64::from(args.kills) * 4)).max(500);
    let mut producer = env
        .command(&[
            "produce",
            "--quiet",
            "--count",
            &args.events.to_string(),
            "--seed",
            &args.seed.to_string(),
            "--start-ms",
            &args.start_ms.expect("set in main").to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .stdout(File::create(logs.join("produce.log"))?)
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting paystream produce")?;
    println!("producing at {rate} records/s");

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut restarts = HashMap::new();
    let phase_one_kills = if args.instances >= 2 {
        args.kills.div_ceil(2)
    } else {
        args.kills
    };
    let pause = |rng: &mut ChaCha8Rng| {
        Duration::from_millis(rng.random_range(args.kill_after_min_ms..args.kill_after_max_ms))
    };
    // Faults outside our process go after randomly chosen kills (kills at once are one).
    let kill_events = phase_one_kills as usize
        + (args.kills - phase_one_kills).div_ceil(args.kills_at_once) as usize;
    let mut faults: Vec<Vec<Fault>> = vec![Vec::new(); kill_events];
    for fault in std::iter::repeat_n(Fault::BrokerBounce, args.broker_bounces as usize)
        .chain(std::iter::repeat_n(
            Fault::PgOutage,
            args.pg_outages as usize,
        ))
        .chain(std::iter::repeat_n(Fault::Stall, args.stalls as usize))
    {
        let slot = rng.random_range(0..kill_events);
        faults[slot].push(fault);
    }
    let mut slot = 0usize;
    let mut exits = 0u32;

    // Phase 1: one instance, killed and restarted.
    let mut running = vec![start(env, logs, 0, &mut restarts)?];
    for _ in 0..phase_one_kills {
        tokio::time::sleep(pause(&mut rng)).await;
        exits += u32::from(kill(&mut running[0])?);
        running[0] = start(env, logs, 0, &mut restarts)?;
        for fault in &faults[slot] {
            inject(*fault, &mut rng, args, &running).await?;
        }
        slot += 1;
    }
    // Phase 2: several instances share the partitions; one at a time is killed.
    if args.instances >= 2 {
        for id in 1..args.instances {
            running.push(start(env, logs, id, &mut restarts)?);
        }
        let mut kills = phase_one_kills;
        while kills < args.kills {
            tokio::time::sleep(pause(&mut rng)).await;
            let at_once = (args.kills_at_once.min(args.kills - kills)) as usize;
            let victims =
                rand::seq::index::sample(&mut rng, running.len(), at_once.min(running.len()))
                    .into_vec();
            // Killed together, then started again together.
            for &victim in &victims {
                exits += u32::from(kill(&mut running[victim])?);
            }
            if victims.len() > 1 {
                println!(
                    "killed instances {:?} at once",
                    victims.iter().map(|&v| running[v].id).collect::<Vec<_>>()
                );
            }
            for &victim in &victims {
                let id = running[victim].id;
                running[victim] = start(env, logs, id, &mut restarts)?;
            }
            for fault in &faults[slot] {
                inject(*fault, &mut rng, args, &running).await?;
            }
            slot += 1;
            kills += victims.len() as u32;
        }
    }
    let status = producer.wait()?;
    anyhow::ensure!(status.success(), "paystream produce failed: {status}");
    let restarts_total: u32 = restarts.values().map(|n| n - 1).sum();
    println!("restarts after kills: {restarts_total}");
    for instance in &mut running {
        exits += u32::from(stop(instance)?);
    }
    println!("instances that exited on their own: {exits}");
    let resets = count_in_logs(logs, "replacing it, which aborts the open transaction")?;
    println!("producer replacements (in the instances' logs): {resets}");
    println!("final run: one instance until caught up");
    let run = env.paystream(&["run", "--until-caught-up"])?;
    print!("{}", String::from_utf8_lossy(&run.stdout));
    Ok(())
}

/// Reads every output back with read_committed and compares it with `expected`.
async fn verify(
    env: &TestEnv,
    args: &Args,
    expected: &ExpectedRecords,
) -> anyhow::Result<ExitCode> {
    // Read every output back with read_committed.
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let timeout = Duration::from_secs(300);
    let mut entries: HashMap<String, u64> = HashMap::new();
    for record in read_committed(&env.topic("ledger_entries"), timeout)? {
        let entry: JournalEntry = codec.decode(record.value.as_deref()).await?;
        *entries.entry(entry.id).or_insert(0) += 1;
    }
    let mut statuses: HashMap<String, u64> = HashMap::new();
    for record in read_committed(&env.topic("payment_status"), timeout)? {
        let change: PaymentStatusChanged = codec.decode(record.value.as_deref()).await?;
        *statuses
            .entry(format!("{}|{}", change.payment_id, change.status))
            .or_insert(0) += 1;
    }
    let mut dead_letters: HashMap<String, u64> = HashMap::new();
    let mut dead_letter_ids = Vec::new();
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
        for record in read_committed(&format!("{}.dlq", env.topic(base)), timeout)? {
            let id = format!(
                "{}/{}/{}",
                record.headers["paystream.dlq.source.topic"],
                record.headers["paystream.dlq.source.partition"],
                record.headers["paystream.dlq.source.offset"]
            );
            *dead_letters.entry(id).or_insert(0) += 1;
        }
    }
    // Dead letters are identified by their source record; the plan knows only how many.
    let dead_letters_expected: u64 = expected.outcome.dead_letters.values().sum();
    dead_letter_ids.extend(dead_letters.keys().cloned());

    let expected_statuses: Vec<String> = expected
        .status_changes
        .iter()
        .map(|(p, s)| format!("{p}|{s}"))
        .collect();
    let (entries_lost, entries_duplicated) =
        compare(&expected.journal_entry_ids, &HashSet::new(), &entries);
    let (statuses_lost, statuses_duplicated) = compare(
        &expected_statuses,
        &expected.possible_status_changes,
        &statuses,
    );
    let dead_letters_duplicated: u64 = dead_letters.values().map(|n| n - 1).sum();
    let dead_letters_lost = dead_letters_expected.saturating_sub(dead_letter_ids.len() as u64);
    let dead_letters_unexpected =
        (dead_letter_ids.len() as u64).saturating_sub(dead_letters_expected);
    println!(
        "ledger_entries: {} expected, {entries_lost} lost, {entries_duplicated} duplicated",
        expected.journal_entry_ids.len()
    );
    println!(
        "payment_status: {} expected, {statuses_lost} lost, {statuses_duplicated} duplicated",
        expected_statuses.len()
    );
    println!(
        "dead letters:   {dead_letters_expected} expected, {dead_letters_lost} lost, {} duplicated",
        dead_letters_duplicated + dead_letters_unexpected
    );

    // The ledger in PostgreSQL against the traffic's expected outcome.
    let ledger = ledger_snapshot(&env.database_url).await?;
    let (journal_entries, postings, balances) = (
        ledger.journal_entries,
        ledger.postings,
        ledger.balances_minor,
    );
    let verify = env.paystream_unchecked(&["ledger", "verify"])?;
    let postings_exact = journal_entries == expected.outcome.journal_entries
        && postings == expected.outcome.postings
        && balances == expected.outcome.balances_minor
        && verify.status.success();
    println!(
        "postgresql: {journal_entries} journal entries (expected {}), {postings} postings (expected {}), balances {}, ledger verify {}",
        expected.outcome.journal_entries,
        expected.outcome.postings,
        if balances == expected.outcome.balances_minor {
            "exact"
        } else {
            "DIFFER"
        },
        if verify.status.success() {
            "passed"
        } else {
            "FAILED"
        }
    );
    println!("seed {} replays this run", args.seed);
    let lost = entries_lost + statuses_lost + dead_letters_lost;
    let duplicated = entries_duplicated
        + statuses_duplicated
        + dead_letters_duplicated
        + dead_letters_unexpected;
    println!(
        "lost={lost} duplicated={duplicated} postings_exact={}",
        if postings_exact { "yes" } else { "no" }
    );
    Ok(if lost == 0 && duplicated == 0 && postings_exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
