//! paystream's benchmark: one command, one table. A benchmark, not a test: run it on the
//! local stack with `integration/bench` (docs/benchmarks.md explains every figure).
//!
//! Phases, each on its own topics, consumer groups and ledger database:
//! 1. preload `--events` input events (the demo's traffic mix, `paystream produce`);
//! 2. the ceiling (`ceiling.rs`): a raw transactional consume→produce loop over them;
//! 3. paystream exactly-once end to end (`throughput.rs`): `paystream run
//!    --until-caught-up` over them into PostgreSQL, with CPU per input event of paystream,
//!    the broker and PostgreSQL sampled from /proc (`cpu.rs`), and the records it produced
//!    by kind, counted read_committed (`produced.rs`);
//! 4. latency at fixed offered rates (`latency.rs`);
//! 5. restore of `--restore-keys` keys (the `restore_bench` binary);
//! 6. failover (`failover.rs`): `--failover-instances` instances under a steady rate; an
//!    instance killed, returning, restarted (a rolling deploy), one joining; payment
//!    lookups asked all through it (`lookup.rs`).
//!
//! `PAYSTREAM_BIN` selects the paystream binary to measure (e.g. an older build, for a
//! before/after table); `--smoke` runs every phase on tiny inputs (CI: it must run, its
//! figures mean nothing).

mod ceiling;
mod cpu;
mod failover;
mod latency;
mod ledger;
mod lookup;
mod produced;
mod throughput;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use paystream_integration::{TestEnv, field, output_within};
use serde_json::json;

use crate::cpu::StackProcesses;

#[derive(Debug, Parser)]
#[command(about = "paystream's end-to-end benchmark on the local stack")]
struct Args {
    /// Input events preloaded for the ceiling and the end-to-end run (the demo's mix).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The traffic mix before captures, voids, refunds and chargebacks (`paystream
    /// produce --classic-mix`), to compare with earlier releases and with the full mix.
    #[arg(long)]
    classic_mix: bool,
    /// Offered rates of the latency phase, events/s, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
    rates: Vec<u64>,
    /// Seconds of traffic at each offered rate.
    #[arg(long, default_value_t = 15)]
    rate_seconds: u64,
    /// Keys of the restore phase, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
    restore_keys: Vec<u64>,
    /// Instances of the failover phase (at least 3).
    #[arg(long, default_value_t = 3)]
    failover_instances: u32,
    /// Offered rate of the failover phase, events/s (about 3.5 events per payment).
    #[arg(long, default_value_t = 700)]
    failover_rate: u64,
    /// Seconds between the failover phase's events (a kill, a return, a rolling restart,
    /// a new instance); the latency before each is taken over half of it, after over all.
    #[arg(long, default_value_t = 25)]
    failover_window_seconds: u64,
    /// Payments in the state before the failover phase's traffic: written to the
    /// `payments` changelog (about 300 bytes each) and restored by the instances as they
    /// start, so a task that moves has that much state to bring up.
    #[arg(long, default_value_t = 1_000_000)]
    failover_state_payments: u64,
    /// `state.standby_replicas` of the failover phase's instances: `all` or `none`.
    #[arg(long, default_value = "all")]
    failover_standby_replicas: String,
    /// Phases to leave out: ceiling, paystream, latency, restore, failover
    /// (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Tiny inputs for every phase (CI runs it to keep the command working; the figures
    /// mean nothing).
    #[arg(long)]
    smoke: bool,
    /// A label for this run in the table and the JSON (e.g. `before`, a commit).
    #[arg(long, default_value = "")]
    label: String,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Now, milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    paystream_testkit::traffic::now_ms()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.events = 2_000;
        args.rates = vec![200];
        args.rate_seconds = 3;
        args.restore_keys = vec![20_000];
        args.failover_rate = 100;
        args.failover_window_seconds = 4;
        args.failover_state_payments = 1_000;
    }
    let skip = |phase: &str| args.skip.iter().any(|s| s == phase);
    let stack_dir = std::env::var_os("PAYSTREAM_STACK_DIR")
        .map(PathBuf::from)
        .context("PAYSTREAM_STACK_DIR is not set: run the benchmark with integration/bench")?;
    let stack = StackProcesses::find(&stack_dir)?;
    let logs = stack_dir.join("bench").join(format!("bench_{}", now_ms()));
    std::fs::create_dir_all(&logs)?;
    eprintln!("bench: logs in {}", logs.display());
    let machine = machine();
    let binary = TestEnv::binary();

    let env = TestEnv::new("bench");
    let mut report = json!({
        "label": args.label,
        "machine": machine,
        "paystream_binary": binary.display().to_string(),
        "events": args.events,
        "seed": args.seed,
        "mix": if args.classic_mix { "classic" } else { "full" },
    });

    let mut preloaded: Option<(u64, i64)> = None;
    if !(skip("ceiling") && skip("paystream")) {
        eprintln!("bench: preloading {} events ...", args.events);
        env.prepare()?;
        let produce_started_ms = now_ms();
        let events = args.events.to_string();
        let seed = args.seed.to_string();
        let mut produce = vec!["produce", "--quiet", "--count", &events, "--seed", &seed];
        if args.classic_mix {
            produce.push("--classic-mix");
        }
        let produced = env.paystream(&produce)?;
        let produced = String::from_utf8_lossy(&produced.stdout).to_string();
        let records: u64 = field(&produced, "produced")
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .context("paystream produce printed no record count")?;
        let preload_s = (now_ms() - produce_started_ms) as f64 / 1000.0;
        eprintln!("bench: preloaded {records} records in {preload_s:.1} s");
        report["preload"] = json!({ "records": records, "seconds": preload_s });
        preloaded = Some((records, produce_started_ms));
    }

    if let (false, Some((records, _))) = (skip("ceiling"), preloaded) {
        eprintln!("bench: the ceiling (raw transactional consume→produce) ...");
        let inputs: Vec<String> = produced::INPUTS.iter().map(|t| env.topic(t)).collect();
        let output = env.topic("ceiling_out");
        create_topic(&env, &output).await?;
        let interval = Duration::from_millis(
            paystream_runtime::Config::default()
                .processing
                .commit_interval_ms,
        );
        let ceiling = tokio::task::block_in_place(|| {
            ceiling::run(&env.id, &inputs, &output, records, interval)
        })?;
        eprintln!("bench: ceiling {:.0} records/s", ceiling.records_per_s);
        report["ceiling"] = serde_json::to_value(&ceiling)?;
    }

    if let (false, Some((_, produce_started_ms))) = (skip("paystream"), preloaded) {
        eprintln!("bench: paystream exactly-once, end to end ...");
        let run = throughput::run(&env, stack.clone(), produce_started_ms, &logs).await?;
        eprintln!(
            "bench: paystream {:.0} events/s end to end; counting produced records ...",
            run.events_per_s_from_first_read
                .unwrap_or(run.events_per_s_from_process_start)
        );
        let counts = tokio::task::block_in_place(|| produced::count(&env))?;
        report["paystream"] = serde_json::to_value(&run)?;
        report["produced"] = serde_json::to_value(&counts)?;
    }

    if !skip("latency") {
        let mut rows = Vec::new();
        for rate in &args.rates {
            eprintln!(
                "bench: latency at {rate} events/s for {} s ...",
                args.rate_seconds
            );
            rows.push(latency::measure(*rate, args.rate_seconds, args.seed, &logs).await?);
        }
        report["latency"] = serde_json::to_value(&rows)?;
    }

    if !skip("restore") {
        let mut rows = Vec::new();
        for keys in &args.restore_keys {
            eprintln!("bench: restore of {keys} keys ...");
            rows.push(restore(*keys, &logs)?);
        }
        report["restore"] = serde_json::Value::Array(rows);
    }

    if !skip("failover") {
        eprintln!(
            "bench: failover of {} instances at {} events/s ...",
            args.failover_instances, args.failover_rate
        );
        let run = failover::measure(
            &failover::Options {
                instances: args.failover_instances,
                rate: args.failover_rate,
                window_s: args.failover_window_seconds,
                state_payments: args.failover_state_payments,
                standby_replicas: args.failover_standby_replicas.clone(),
                seed: args.seed,
            },
            &logs,
        )
        .await?;
        report["failover"] = serde_json::to_value(&run)?;
    }

    print!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    Ok(())
}

/// Creates `topic` with the run's partitions and replication (the ceiling's output).
async fn create_topic(env: &TestEnv, topic: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let config = env.config();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                config.topics.partitions,
                TopicReplication::Fixed(config.topics.replication_factor),
            )],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// Runs `restore_bench --keys KEYS` (beside this binary) and returns its JSON figures.
fn restore(keys: u64, logs: &Path) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let restore_bench = exe.with_file_name("restore_bench");
    let json_path = logs.join(format!("restore_{keys}.json"));
    let output = output_within(
        Command::new(&restore_bench)
            .args(["--keys", &keys.to_string(), "--json"])
            .arg(&json_path),
        Duration::from_secs(1_800),
    )?;
    anyhow::ensure!(
        output.status.success(),
        "restore_bench --keys {keys} exited {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&std::fs::read(&json_path)?)?)
}

/// What this machine is: CPUs, memory, kernel (for docs/benchmarks.md).
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let memory_bytes = procfs::Current::current()
        .map(|m: procfs::Meminfo| m.mem_total)
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_bytes": memory_bytes,
        "kernel": kernel,
    })
}

/// The report as one plain-text table.
fn table(report: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let label = report["label"].as_str().unwrap_or("");
    let _ = writeln!(
        out,
        "\n== paystream benchmark{} ({} events, {} CPUs)",
        if label.is_empty() {
            String::new()
        } else {
            format!(" [{label}]")
        },
        report["events"],
        report["machine"]["cpus"]
    );
    let ceiling = &report["ceiling"];
    if !ceiling.is_null() {
        let _ = writeln!(
            out,
            "ceiling: raw EOS consume→produce        {:>9.0} events/s  ({} commits, {:.1} µs CPU/record)",
            f(&ceiling["records_per_s"]),
            ceiling["commits"],
            f(&ceiling["cpu_us_per_record"])
        );
    }
    let run = &report["paystream"];
    if !run.is_null() {
        let from_read = &run["events_per_s_from_first_read"];
        if !from_read.is_null() {
            let ratio = if ceiling.is_null() {
                String::new()
            } else {
                format!(
                    "  ({:.0} % of the ceiling)",
                    100.0 * f(from_read) / f(&ceiling["records_per_s"]).max(1.0)
                )
            };
            let _ = writeln!(
                out,
                "paystream EOS, first read → last ledger  {:>9.0} events/s{ratio}",
                f(from_read)
            );
        }
        let _ = writeln!(
            out,
            "paystream EOS, process start → ledger    {:>9.0} events/s",
            f(&run["events_per_s_from_process_start"])
        );
        let _ = writeln!(
            out,
            "paystream EOS, first produced → ledger   {:>9.0} events/s",
            f(&run["events_per_s_from_first_produced"])
        );
        let _ = writeln!(
            out,
            "CPU per input event                      paystream {:.1} µs, broker {:.1} µs, PostgreSQL {:.1} µs",
            f(&run["paystream_cpu_us_per_event"]),
            f(&run["broker_cpu_us_per_event"]),
            f(&run["postgres_cpu_us_per_event"])
        );
        let _ = writeln!(
            out,
            "paystream peak RSS                       {:.0} MB",
            f(&run["paystream_peak_rss_bytes"]) / 1e6
        );
        if let (Some(commit_s), Some(processing_s)) =
            (run["commit_s"].as_f64(), run["processing_s"].as_f64())
        {
            let _ = writeln!(
                out,
                "commit stall                             {:.0} % of processing ({commit_s:.1} s of {processing_s:.1} s)",
                100.0 * commit_s / processing_s.max(0.001)
            );
        }
    }
    if let Some(counts) = report["produced"].as_array() {
        let kind = |c: &serde_json::Value| c["kind"].as_str().unwrap_or("").to_string();
        let records = |c: &serde_json::Value| c["records"].as_u64().unwrap_or(0);
        // The ceiling's output shares the run's prefix; it is not paystream's.
        let ours = |c: &&serde_json::Value| c["topic"].as_str() != Some("ceiling_out");
        let inputs: u64 = counts
            .iter()
            .filter(|c| kind(c) == "input")
            .map(records)
            .sum();
        let produced: Vec<&serde_json::Value> = counts
            .iter()
            .filter(ours)
            .filter(|c| kind(c) != "input" && records(c) > 0)
            .collect();
        let total: u64 = produced.iter().map(|c| records(c)).sum();
        let _ = writeln!(
            out,
            "produced records per input event         {:.2} ({total} for {inputs} inputs)",
            total as f64 / inputs.max(1) as f64
        );
        for c in produced {
            let _ = writeln!(
                out,
                "  {:<11} {:<36} {:>5.2} ({})",
                kind(c),
                c["topic"].as_str().unwrap_or(""),
                records(c) as f64 / inputs.max(1) as f64,
                records(c)
            );
        }
    }
    if let Some(rows) = report["latency"].as_array() {
        let _ = writeln!(out, "latency, event sent → ledger row committed (ms):");
        for row in rows {
            let _ = writeln!(
                out,
                "  offered {:>6}/s (sent {:>6.0}/s): p50 {:>6}  p99 {:>6}  max {:>6}   \
                 after the first 2 s: p50 {:>6}  p99 {:>6}  max {:>6}{}",
                row["offered_events_per_s"],
                f(&row["sent_events_per_s"]),
                row["p50_ms"],
                row["p99_ms"],
                row["max_ms"],
                row["steady_p50_ms"],
                row["steady_p99_ms"],
                row["steady_max_ms"],
                match row["entries_missing"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(n) => format!("  ({n} entries still missing)"),
                }
            );
        }
    }
    let failover = &report["failover"];
    if !failover.is_null() {
        let _ = writeln!(
            out,
            "failover, {} instances, 6 partitions, {} payments of state, standby replicas {}, \
             offered {}/s (sent {:.0}/s); auth sent → ledger row committed (ms), half a \
             window before / the {} s after:",
            failover["instances"],
            failover["state_payments"],
            failover["standby_replicas"].as_str().unwrap_or(""),
            failover["offered_events_per_s"],
            f(&failover["sent_events_per_s"]),
            failover["window_s"]
        );
        for row in failover["windows"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<16} at {:>5.1} s: before p50 {:>5} p99 {:>5} max {:>5}  after p50 {:>5} \
                 p99 {:>6} longest stop {:>6}  ({} / {} auths; action {} ms)",
                row["event"].as_str().unwrap_or(""),
                f(&row["at_ms"]) / 1000.0,
                row["before_p50_ms"],
                row["before_p99_ms"],
                row["before_max_ms"],
                row["after_p50_ms"],
                row["after_p99_ms"],
                row["after_max_ms"],
                row["before_auths"],
                row["after_auths"],
                row["action_ms"]
            );
        }
        let _ = writeln!(
            out,
            "  journal entries {} of {} expected (ids unique in PostgreSQL: none twice)",
            failover["journal_entries_written"], failover["journal_entries_expected"]
        );
        for row in failover["lookups"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  payment lookup on instance 0, {:<11} {:<10}: {:>5} lookups, p50 {:>6.2} ms p99 {:>6.2} ms max {:>7.2} ms",
                row["during"].as_str().unwrap_or(""),
                row["served"].as_str().unwrap_or(""),
                row["lookups"],
                f(&row["p50_us"]) / 1000.0,
                f(&row["p99_us"]) / 1000.0,
                f(&row["max_us"]) / 1000.0,
            );
        }
        for exit in failover["unexpected_exits"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let _ = writeln!(
                out,
                "  FAILED: {} (see its log)",
                exit.as_str().unwrap_or("")
            );
        }
    }
    if let Some(rows) = report["restore"].as_array() {
        for row in rows {
            let _ = writeln!(
                out,
                "restore of {:>8} keys                   {:>9.0} keys/s  ({:.1} s, peak RSS {:.0} MB)",
                row["keys"],
                f(&row["restore_keys_per_s"]),
                f(&row["restore_s"]),
                f(&row["peak_rss_bytes"]) / 1e6
            );
        }
    }
    out
}
