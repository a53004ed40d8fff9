//! paystream exactly-once, end to end: `paystream run --until-caught-up` (pipeline and
//! ledger sink in one process) over the preloaded input topics, into a fresh ledger
//! database. The end of the figure is the commit of the last ledger row, read from
//! PostgreSQL (`pg_xact_commit_timestamp`, needs `track_commit_timestamp = on`); its start
//! is the first record read (printed by `paystream run`), the process start, or the
//! first event produced.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use paystream_integration::{Running, TestEnv, field};

use crate::cpu::{CpuUse, Sampler, StackProcesses};
use crate::ledger;

/// What one run measured. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub events: u64,
    pub produce_started_ms: i64,
    pub process_started_ms: i64,
    /// `None` when the binary does not print it (releases before the end-to-end figure).
    pub first_record_read_ms: Option<i64>,
    pub last_ledger_commit_ms: i64,
    pub process_exited_ms: i64,
    /// Events per second from the first record read to the last ledger commit.
    pub events_per_s_from_first_read: Option<f64>,
    pub events_per_s_from_process_start: f64,
    pub events_per_s_from_first_produced: f64,
    /// CPU in the window first record read (or process start) → last ledger commit.
    pub cpu: CpuUse,
    pub paystream_cpu_us_per_event: f64,
    pub broker_cpu_us_per_event: f64,
    pub postgres_cpu_us_per_event: f64,
    pub paystream_peak_rss_bytes: u64,
    pub journal_entries: u64,
    pub commits: Option<u64>,
    /// The run's processing time (first record read to the last pipeline commit) and the
    /// part of it spent in commits, seconds, as `paystream run` printed them.
    pub processing_s: Option<f64>,
    pub commit_s: Option<f64>,
}

/// Runs the pipeline over `env`'s preloaded topics until caught up, sampling CPU.
///
/// # Errors
/// When the run fails, or wrote no ledger row.
pub async fn run(
    env: &TestEnv,
    stack: StackProcesses,
    produce_started_ms: i64,
    logs: &Path,
) -> anyhow::Result<Throughput> {
    let stdout_path = logs.join("run.stdout");
    let process_started_ms = crate::now_ms();
    let mut running = Running::spawn(
        env.command(&["run", "--until-caught-up"])
            // Quiet unless the caller asks for more (e.g. `paystream_ledger_sink=debug`).
            .env(
                "PAYSTREAM_LOG",
                std::env::var("PAYSTREAM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(logs.join("run.stderr"))?),
    )?;
    let pid = running.child().id() as i32;
    let sampler = Sampler::start(Some(pid), stack);
    let status = tokio::task::spawn_blocking(move || {
        let status = running.child().wait();
        (running, status)
    })
    .await?
    .1?;
    let process_exited_ms = crate::now_ms();
    let samples = sampler.finish();
    let stdout = std::fs::read_to_string(&stdout_path)?;
    anyhow::ensure!(
        status.success(),
        "paystream run exited {status}; see {}",
        logs.display()
    );
    let number = |label: &str| -> Option<u64> { first_word(&stdout, label) };
    let seconds = |label: &str| -> Option<f64> { first_word(&stdout, label) };
    let events = number("events read").context("the run printed no `events read`")?;
    let first_record_read_ms = number("first record read").map(|n| n as i64);
    let ledger = ledger::last_commit(&env.database_url).await?;
    let last = ledger.last_commit_ms;
    let rate = |from: i64| events as f64 * 1000.0 / (last - from).max(1) as f64;
    let window_start = first_record_read_ms.unwrap_or(process_started_ms);
    let cpu = samples.cpu_between(window_start, last);
    let per_event = |us: u64| us as f64 / events.max(1) as f64;
    Ok(Throughput {
        events,
        produce_started_ms,
        process_started_ms,
        first_record_read_ms,
        last_ledger_commit_ms: last,
        process_exited_ms,
        events_per_s_from_first_read: first_record_read_ms.map(rate),
        events_per_s_from_process_start: rate(process_started_ms),
        events_per_s_from_first_produced: rate(produce_started_ms),
        cpu,
        paystream_cpu_us_per_event: per_event(cpu.paystream_us),
        broker_cpu_us_per_event: per_event(cpu.broker_us),
        postgres_cpu_us_per_event: per_event(cpu.postgres_us),
        paystream_peak_rss_bytes: samples.paystream_peak_rss_bytes(),
        journal_entries: ledger.journal_entries,
        commits: number("transactions committed"),
        processing_s: seconds("processing time_s"),
        commit_s: seconds("commit time_s"),
    })
}

/// The first word after `label` on the line of `stdout` that starts with it, parsed.
fn first_word<T: std::str::FromStr>(stdout: &str, label: &str) -> Option<T> {
    field(stdout, label)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
