//! `bench-restore --while-processing`: the restore of a big state store inside a running
//! `paystream run` while its other tasks keep processing.
//!
//! 1. A fresh application (own topic prefix and application id, see [`TestEnv`]) with
//!    2 partitions per topic: `paystream topics create` and `schemas register`.
//! 2. Partition 1 of `<app>-payments-changelog` is filled with `--keys` distinct keys
//!    (`restore-bench-<n>`, never a payment id) — the `payments` store of task 1_1.
//! 3. One `paystream run --no-sink` starts on an empty state directory with a metrics
//!    port of its own, while `paystream produce --rate R` sends seeded traffic for the
//!    whole run: about half of it lands on partition 0, so task 1_0 has work while
//!    task 1_1 restores.
//! 4. `/metrics` and `/readyz` are sampled every 250 ms and the instance's JSON log is
//!    read as it comes. The restore is timed from its `store restored` log line
//!    (`elapsed_ms`), cross-checked with `paystream_restore_records_total` and
//!    `paystream_restore_remaining_records`; commits during it from
//!    `paystream_commits_total`.
//! 5. `--tail-s` seconds after the restore finished, traffic and instance stop, the
//!    figures are printed (and written to `--json`), and the application's topics and
//!    consumer groups are deleted.
//!
//! Only the binary's logs, metrics and HTTP endpoints are used, so the same benchmark
//! measures an inline restore and one in a background thread alike. It asserts only that
//! the restore finished and that the store's key count is plausible.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use paystream_common::topics::TopicNames;
use paystream_integration::{Running, TestEnv, bootstrap};
use paystream_processors::stores;
use prometheus_parse::{Scrape, Value};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::Args;
use paystream_integration::{fill_changelog, payment_value};

/// Partitions of every topic of the benchmark's application.
const PARTITIONS: &str = "2";
/// The partition whose `payments` store is big (task 1_1).
const BIG_PARTITION: i32 = 1;
/// How often `/metrics` and `/readyz` are read.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Keys of the filled changelog: never a payment id (those are UUIDs).
const KEY_PREFIX: &str = "restore-bench-";
/// Log events kept (store restores, task changes, warnings and errors).
const LOG_EVENTS_MAX: usize = 10_000;

/// What one sample of `/metrics` holds, summed over labels.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    commits: f64,
    aborts: f64,
    rebalances: f64,
    /// Input and repartition records of committed transactions.
    consumed: f64,
    /// `paystream_restore_records_total{store="payments"}`.
    restored: f64,
    /// `paystream_restore_remaining_records{store="payments"}`.
    remaining: f64,
    /// `paystream_state_store_keys{store="payments"}`, once reported.
    store_keys: Option<f64>,
}

/// One sample, `t` seconds after the instance was started.
#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    metrics: Option<Figures>,
    /// `/readyz` status and body; `None` when it did not answer.
    readyz: Option<(u16, String)>,
}

/// One line of the instance's JSON log, `t` seconds after it was started.
#[derive(Debug, Clone)]
struct LogEvent {
    t: f64,
    level: String,
    message: String,
    fields: serde_json::Value,
}

/// The big store's restore as its log line reports it.
#[derive(Debug, Clone, Copy)]
struct LoggedRestore {
    /// When the line was read.
    end: f64,
    records: u64,
    elapsed_ms: u64,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.keys > 0, "--keys must be at least 1");
    anyhow::ensure!(args.rate > 0, "--rate must be at least 1");
    let env = TestEnv::new("bench_restore");
    let logs = logs_dir(&env.id)?;
    println!(
        "restore while processing: {} keys of {} value bytes, traffic {} records/s (seed {}), run {} (logs in {})",
        args.keys,
        args.value_bytes,
        args.rate,
        args.seed,
        env.id,
        logs.display()
    );
    let measured = measure(args, &env, &logs).await;
    if let Err(e) = cleanup(&env).await {
        eprintln!("cleaning up the topics of {} failed: {e:#}", env.id);
    }
    measured?.check(args)
}

/// `$PAYSTREAM_STACK_DIR/bench-restore/<run>/` (default stack directory
/// `~/.cache/paystream-stack`), for the instance's and the producer's logs.
fn logs_dir(id: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var("PAYSTREAM_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/paystream-stack")
        })
        .join("bench-restore")
        .join(id);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn measure(args: &Args, env: &TestEnv, logs: &Path) -> anyhow::Result<Report> {
    let vars = [("PAYSTREAM_TOPICS__PARTITIONS", PARTITIONS)];
    env.paystream_with_env(&["topics", "create"], &vars)?;
    env.paystream_with_env(&["schemas", "register"], &vars)?;
    let changelog = TopicNames::new(&env.config()).changelog(stores::PAYMENTS);
    let fill_s = fill_changelog(
        &changelog,
        Some(BIG_PARTITION),
        args.keys,
        &payment_value(args.value_bytes),
        KEY_PREFIX,
    )
    .await?;

    // An empty state directory: every task restores in full.
    let state_dir = env.state_dir.path().join("instance-0");
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)?;
    }
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let started = Instant::now();
    let mut instance = Running::spawn(
        env.command(&["--log-format", "json", "run", "--no-sink"])
            .envs(vars)
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string())
            .env("PAYSTREAM_STATE__DIR", &state_dir)
            .stdout(File::create(logs.join("run.stdout"))?)
            .stderr(Stdio::piped()),
    )?;
    let events: Arc<Mutex<Vec<LogEvent>>> = Arc::default();
    let reader = read_log(
        instance.child().stderr.take().context("instance stderr")?,
        File::create(logs.join("run.log"))?,
        started,
        events.clone(),
    );
    // Traffic for longer than the run can last; stopped when the run ends.
    let count = args.rate * (args.timeout_s + args.tail_s + 60);
    let produce_log = File::create(logs.join("produce.log"))?;
    let mut producer = Running::spawn(
        env.command(&[
            "produce",
            "--quiet",
            "--count",
            &count.to_string(),
            "--rate",
            &args.rate.to_string(),
            "--seed",
            &args.seed.to_string(),
        ])
        .envs(vars)
        .stdout(produce_log.try_clone()?)
        .stderr(produce_log),
    )?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let metrics_url = format!("http://{address}/metrics");
    let readyz_url = format!("http://{address}/readyz");
    let mut samples: Vec<Sample> = Vec::new();
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut restore_done_at: Option<f64> = None;
    let mut exited: Option<(f64, ExitStatus)> = None;
    let mut traffic_stopped: Option<(f64, ExitStatus)> = None;
    let mut timed_out = false;
    let mut next_progress = 5.0;
    loop {
        ticker.tick().await;
        let t = started.elapsed().as_secs_f64();
        let (metrics, readyz) =
            tokio::join!(scrape(&client, &metrics_url), readyz(&client, &readyz_url));
        samples.push(Sample { t, metrics, readyz });
        if let Some(status) = instance.child().try_wait()? {
            exited = Some((started.elapsed().as_secs_f64(), status));
            break;
        }
        if traffic_stopped.is_none()
            && let Some(status) = producer.child().try_wait()?
        {
            eprintln!("paystream produce stopped at {t:.1} s ({status}): the traffic ended");
            traffic_stopped = Some((t, status));
        }
        if restore_done_at.is_none() {
            let logged = logged_restore(&events.lock().expect("log events"), &changelog);
            restore_done_at = logged
                .map(|l| l.end)
                .or_else(|| metrics_window(&samples, args.keys).map(|(_, end)| end));
        }
        if t >= next_progress {
            next_progress += 5.0;
            print_progress(samples.last().expect("pushed above"), args.keys);
        }
        if restore_done_at.is_some_and(|done| t - done >= args.tail_s as f64) {
            break;
        }
        if t >= args.timeout_s as f64 {
            timed_out = true;
            break;
        }
    }
    let _ = producer.child().kill();
    let _ = producer.child().wait();
    let stopped = if exited.is_none() {
        Some(instance.stop()?)
    } else {
        None
    };
    let _ = reader.join();
    let events = std::mem::take(&mut *events.lock().expect("log events"));
    let report = Report::new(
        args,
        RunFacts {
            id: env.id.clone(),
            changelog,
            fill_s,
            samples,
            events,
            exited,
            stopped,
            traffic_stopped,
            timed_out,
        },
    );
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(report)
}

/// Copies the instance's stderr to `log` and keeps the events the report needs.
fn read_log(
    stderr: ChildStderr,
    mut log: File,
    started: Instant,
    events: Arc<Mutex<Vec<LogEvent>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let t = started.elapsed().as_secs_f64();
            let _ = writeln!(log, "{line}");
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let level = value["level"].as_str().unwrap_or_default().to_string();
            let message = value["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let kept = message.contains("restor")
                || message.starts_with("task ")
                || level == "WARN"
                || level == "ERROR";
            let mut events = events.lock().expect("log events");
            if kept && events.len() < LOG_EVENTS_MAX {
                events.push(LogEvent {
                    t,
                    level,
                    message,
                    fields: value["fields"].clone(),
                });
            }
        }
    })
}

async fn scrape(client: &reqwest::Client, url: &str) -> Option<Figures> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).ok()?;
    let sum = |metric: &str, store: Option<&str>| -> Option<f64> {
        let mut found = None;
        for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
            if store.is_some_and(|store| sample.labels.get("store") != Some(store)) {
                continue;
            }
            if let Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) = sample.value {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    };
    let payments = Some(stores::PAYMENTS);
    Some(Figures {
        commits: sum("paystream_commits_total", None).unwrap_or(0.0),
        aborts: sum("paystream_transaction_aborts_total", None).unwrap_or(0.0),
        rebalances: sum("paystream_rebalances_total", None).unwrap_or(0.0),
        consumed: sum("paystream_records_consumed_total", None).unwrap_or(0.0),
        restored: sum("paystream_restore_records_total", payments).unwrap_or(0.0),
        remaining: sum("paystream_restore_remaining_records", payments).unwrap_or(0.0),
        store_keys: sum("paystream_state_store_keys", payments),
    })
}

async fn readyz(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?.trim().to_string()))
}

fn print_progress(sample: &Sample, keys: u64) {
    let metrics = match &sample.metrics {
        Some(m) => format!(
            "restored {:.0}/{keys} keys, {:.0} commits",
            m.restored, m.commits
        ),
        None => "/metrics not answering".to_string(),
    };
    let readyz = match &sample.readyz {
        Some((_, body)) => body.clone(),
        None => "no answer".to_string(),
    };
    println!("  {:6.1} s: {metrics}; /readyz: {readyz}", sample.t);
}

/// The `store restored` line of the big store (the largest, should it restore twice).
fn logged_restore(events: &[LogEvent], changelog: &str) -> Option<LoggedRestore> {
    events
        .iter()
        .filter(|e| {
            e.message == "store restored"
                && e.fields["changelog"].as_str() == Some(changelog)
                && e.fields["partition"].as_i64() == Some(i64::from(BIG_PARTITION))
        })
        .filter_map(|e| {
            Some(LoggedRestore {
                end: e.t,
                records: e.fields["records"].as_u64()?,
                elapsed_ms: e.fields["elapsed_ms"].as_u64()?,
            })
        })
        .max_by_key(|l| l.records)
}

/// From the log line saying task 1_1 was assigned (and starts restoring) to the one
/// saying it runs, when the runtime logs both.
fn task_open_window(events: &[LogEvent]) -> Option<(f64, f64)> {
    let task = format!("1_{BIG_PARTITION}");
    let of_task = |prefix: &'static str| {
        events
            .iter()
            .filter(|e| e.fields["task"].as_str() == Some(task.as_str()))
            .find(move |e| e.message.starts_with(prefix))
            .map(|e| e.t)
    };
    let start = of_task("task assigned")?;
    let end = of_task("task running")?;
    (end >= start).then_some((start, end))
}

/// The restore as `/metrics` shows it: from the first sample with progress on the
/// `payments` store to the first with all `keys` restored and nothing remaining.
fn metrics_window(samples: &[Sample], keys: u64) -> Option<(f64, f64)> {
    let with_metrics = || samples.iter().filter_map(|s| Some((s.t, s.metrics?)));
    let start = with_metrics()
        .find(|(_, m)| m.restored > 0.0 || m.remaining > 0.0)?
        .0;
    let end = with_metrics()
        .find(|(_, m)| m.restored >= keys as f64 && m.remaining == 0.0)?
        .0;
    Some((start, end))
}

/// The value of a counter at `t`: that of the last sample at or before `t` (0 before
/// the first).
fn counter_at(samples: &[Sample], t: f64, counter: impl Fn(&Figures) -> f64) -> f64 {
    samples
        .iter()
        .filter(|s| s.t <= t)
        .filter_map(|s| s.metrics.as_ref().map(&counter))
        .next_back()
        .unwrap_or(0.0)
}

/// How much a counter grew between samples that both lie in `[from, to]`: what
/// certainly happened within it (a lower bound, 250 ms short at most at either end).
fn growth_within(samples: &[Sample], from: f64, to: f64, counter: impl Fn(&Figures) -> f64) -> f64 {
    let inside: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= from && s.t <= to)
        .filter_map(|s| s.metrics.as_ref().map(&counter))
        .collect();
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) => last - first,
        _ => 0.0,
    }
}

/// When commits were seen: for each sample at which `paystream_commits_total` had
/// grown, the time of the sample before it (0 for the first) and its own; the commit
/// happened in between.
fn commit_times(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut times = Vec::new();
    let (mut last, mut last_t) = (0.0, 0.0);
    for (t, m) in samples.iter().filter_map(|s| Some((s.t, s.metrics?))) {
        if m.commits > last {
            times.push((last_t, t));
        }
        (last, last_t) = (m.commits, t);
    }
    times
}

/// The longest stretch of `[from, to]` without a commit that certainly happened within
/// it (see [`commit_times`]), seconds: an upper bound, 250 ms long at most.
fn longest_gap(commits: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let mut points = vec![from];
    points.extend(
        commits
            .iter()
            .filter(|(before, t)| *before >= from && *t <= to)
            .map(|(_, t)| *t),
    );
    points.push(to);
    points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// What the run left behind, for [`Report::new`].
struct RunFacts {
    id: String,
    changelog: String,
    fill_s: f64,
    samples: Vec<Sample>,
    events: Vec<LogEvent>,
    /// When and how the instance exited by itself.
    exited: Option<(f64, ExitStatus)>,
    /// Its exit status when the benchmark stopped it.
    stopped: Option<ExitStatus>,
    traffic_stopped: Option<(f64, ExitStatus)>,
    timed_out: bool,
}

/// The figures: printed as a table and written as JSON.
struct Report {
    rows: Vec<(String, String)>,
    json: serde_json::Value,
    restore_finished: bool,
    /// Keys the store holds after the restore: the key estimate, else records restored.
    store_keys: Option<f64>,
    run_s: f64,
}

impl Report {
    fn new(args: &Args, facts: RunFacts) -> Report {
        let samples = &facts.samples;
        let logged = logged_restore(&facts.events, &facts.changelog);
        let by_metrics = metrics_window(samples, args.keys);
        // The log line's elapsed time is exact; /metrics shows batches, 250 ms apart.
        let window = logged
            .map(|l| (l.end - l.elapsed_ms as f64 / 1000.0, l.end))
            .or(by_metrics);
        let restored_records = logged
            .map(|l| l.records as f64)
            .or_else(|| by_metrics.map(|(_, end)| counter_at(samples, end, |m| m.restored)));
        let run_s = samples.last().map_or(0.0, |s| s.t);
        let commits = commit_times(samples);
        let first_commit = commits.first().map(|(_, t)| *t);
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |name: &str, value: String| rows.push((name.to_string(), value));
        let na = || "n/a".to_string();

        row(
            "keys in the changelog partition",
            format!(
                "{} ({} value bytes)",
                thousands(args.keys as f64),
                args.value_bytes
            ),
        );
        row("traffic", format!("{} records/s", args.rate));
        let restore_s = window.map(|(start, end)| end - start);
        let keys_per_s = restore_s
            .zip(restored_records)
            .filter(|(s, _)| *s > 0.0)
            .map(|(s, records)| records / s);
        row(
            "restore time",
            restore_s.map_or_else(na, |s| {
                format!(
                    "{s:.2} s (from {})",
                    if logged.is_some() {
                        "the `store restored` line's elapsed_ms"
                    } else {
                        "/metrics"
                    }
                )
            }),
        );
        row(
            "restore rate",
            keys_per_s.map_or_else(na, |k| format!("{} keys/s", thousands(k))),
        );
        let task_open = task_open_window(&facts.events);
        row(
            "task 1_1 from assigned to running (log)",
            task_open.map_or_else(na, |(start, end)| format!("{:.2} s", end - start)),
        );
        row(
            "restore seen in /metrics",
            by_metrics.map_or_else(na, |(start, end)| {
                format!(
                    "{start:.2} s to {end:.2} s after start ({:.2} s)",
                    end - start
                )
            }),
        );
        let during = window.map(|(start, end)| {
            (
                growth_within(samples, start, end, |m| m.commits),
                growth_within(samples, start, end, |m| m.consumed),
                longest_gap(&commits, start, end),
            )
        });
        row(
            "commits during the restore",
            during.map_or_else(na, |(c, _, _)| thousands(c)),
        );
        row(
            "records committed during the restore",
            during.map_or_else(na, |(_, r, _)| thousands(r)),
        );
        row(
            "longest interval without a commit during the restore",
            during.map_or_else(na, |(_, _, gap)| format!("{:.0} ms", gap * 1000.0)),
        );
        let (restoring_s, restoring_from, restoring_to) = readyz_restoring(samples);
        row(
            "/readyz reported restoring",
            if restoring_s > 0.0 {
                format!(
                    "{restoring_s:.2} s (between {restoring_from:.2} s and {restoring_to:.2} s after start)"
                )
            } else {
                "never".to_string()
            },
        );
        let after = window.map(|(_, end)| {
            let span = (run_s - end).max(0.0);
            (span, growth_within(samples, end, run_s, |m| m.commits))
        });
        row(
            "commits after the restore",
            after.map_or_else(na, |(span, c)| format!("{} in {span:.1} s", thousands(c))),
        );
        let whole_run_gap = first_commit.map(|first| longest_gap(&commits, first, run_s));
        row(
            "longest interval without a commit, first commit to end",
            whole_run_gap.map_or_else(
                || "no commit".to_string(),
                |g| format!("{:.0} ms", g * 1000.0),
            ),
        );
        let last = samples.iter().rev().find_map(|s| s.metrics);
        row(
            "transaction aborts / rebalances",
            last.map_or_else(na, |m| format!("{:.0} / {:.0}", m.aborts, m.rebalances)),
        );
        // The key estimate is published at commits: the last one reported after the
        // restore, if a commit came after it (before, it is a stale value).
        let committed_after = window.is_some_and(|(_, end)| {
            counter_at(samples, run_s, |m| m.commits) > counter_at(samples, end, |m| m.commits)
        });
        let store_keys_estimate = samples
            .iter()
            .filter(|s| committed_after && window.is_some_and(|(_, end)| s.t >= end))
            .filter_map(|s| s.metrics?.store_keys)
            .next_back();
        row(
            "payments store keys",
            match (store_keys_estimate, restored_records) {
                (Some(n), _) => format!("{} (RocksDB estimate)", thousands(n)),
                (None, Some(r)) => format!(
                    "{} restored (no estimate reported after the restore)",
                    thousands(r)
                ),
                (None, None) => na(),
            },
        );
        let errors: Vec<&LogEvent> = facts.events.iter().filter(|e| e.level == "ERROR").collect();
        let warnings = facts.events.iter().filter(|e| e.level == "WARN").count();
        let instance = match (&facts.exited, &facts.stopped) {
            (Some((t, status)), _) => format!(
                "exited by itself {t:.1} s after start ({status}){}",
                errors
                    .last()
                    .map(|e| format!(": {}", error_text(e)))
                    .unwrap_or_default()
            ),
            (None, Some(status)) => {
                format!("stopped by the benchmark after {run_s:.1} s ({status})")
            }
            (None, None) => "unknown".to_string(),
        };
        row("instance", instance);
        row("errors logged", errors.len().to_string());
        if let Some((t, status)) = &facts.traffic_stopped {
            row(
                "traffic stopped",
                format!("early, {t:.1} s after start ({status})"),
            );
        }
        if facts.timed_out {
            row(
                "timeout",
                format!("gave up after {} s (--timeout-s)", args.timeout_s),
            );
        }

        let json = json!({
            "mode": "while_processing",
            "run": facts.id,
            "changelog": facts.changelog,
            "partition": BIG_PARTITION,
            "keys": args.keys,
            "value_bytes": args.value_bytes,
            "rate": args.rate,
            "seed": args.seed,
            "fill_s": facts.fill_s,
            "restore_finished": window.is_some(),
            "restore_source": if logged.is_some() { "log" } else if by_metrics.is_some() { "metrics" } else { "none" },
            "restore_start_s": window.map(|w| w.0),
            "restore_end_s": window.map(|w| w.1),
            "restore_s": restore_s,
            "restored_records": restored_records,
            "restore_keys_per_s": keys_per_s,
            "task_open_s": task_open.map(|(start, end)| end - start),
            "metrics_restore_start_s": by_metrics.map(|w| w.0),
            "metrics_restore_end_s": by_metrics.map(|w| w.1),
            "commits_during_restore": during.map(|d| d.0),
            "records_committed_during_restore": during.map(|d| d.1),
            "longest_commit_gap_during_restore_ms": during.map(|d| (d.2 * 1000.0).round()),
            "readyz_restoring_s": restoring_s,
            "commits_after_restore": after.map(|a| a.1),
            "after_restore_s": after.map(|a| a.0),
            "longest_commit_gap_run_ms": whole_run_gap.map(|g| (g * 1000.0).round()),
            "transaction_aborts": last.map(|m| m.aborts),
            "rebalances": last.map(|m| m.rebalances),
            "store_keys_estimate": store_keys_estimate,
            "instance_exited_by_itself": facts.exited.as_ref().map(|(t, s)| json!({"at_s": t, "status": s.to_string()})),
            "errors": errors.iter().map(|e| error_text(e)).collect::<Vec<_>>(),
            "warnings": warnings,
            "traffic_stopped_early": facts.traffic_stopped.is_some(),
            "timed_out": facts.timed_out,
            "run_s": run_s,
            "sample_interval_ms": SAMPLE_INTERVAL.as_millis() as u64,
            // One row per sample: seconds since start, then the counters (null when
            // /metrics did not answer) and /readyz's status (null: no answer).
            "samples_columns": ["t_s", "commits", "records_committed", "restored", "remaining", "readyz_status"],
            "samples": samples.iter().map(|s| json!([
                (s.t * 1000.0).round() / 1000.0,
                s.metrics.map(|m| m.commits),
                s.metrics.map(|m| m.consumed),
                s.metrics.map(|m| m.restored),
                s.metrics.map(|m| m.remaining),
                s.readyz.as_ref().map(|r| r.0),
            ])).collect::<Vec<_>>(),
        });
        Report {
            rows,
            json,
            restore_finished: window.is_some(),
            store_keys: store_keys_estimate.or(restored_records),
            run_s,
        }
    }

    fn print(&self) {
        let width = self.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        println!();
        println!("| {:width$} | value |", "figure");
        println!("|{}|---|", "-".repeat(width + 2));
        for (name, value) in &self.rows {
            println!("| {name:width$} | {value} |");
        }
    }

    /// The only assertions: the restore finished, and the store holds about the keys
    /// written (plus at most the payments the traffic created).
    fn check(&self, args: &Args) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.restore_finished,
            "the restore of the payments store of task 1_{BIG_PARTITION} did not finish"
        );
        let keys = args.keys as f64;
        let most = keys * 1.1 + args.rate as f64 * self.run_s;
        let store_keys = self.store_keys.unwrap_or(0.0);
        anyhow::ensure!(
            store_keys >= keys * 0.9 && store_keys <= most,
            "the payments store holds {store_keys} keys; expected about {keys}"
        );
        Ok(())
    }
}

/// Seconds `/readyz` said a task was restoring, and the first and last sample saying so.
fn readyz_restoring(samples: &[Sample]) -> (f64, f64, f64) {
    let mut total = 0.0;
    let (mut first, mut last) = (f64::NAN, 0.0);
    for (i, sample) in samples.iter().enumerate() {
        let restoring = sample
            .readyz
            .as_ref()
            .is_some_and(|(_, body)| body.contains("restoring"));
        if restoring {
            let next = samples
                .get(i + 1)
                .map_or(sample.t + SAMPLE_INTERVAL.as_secs_f64(), |n| n.t);
            total += next - sample.t;
            if first.is_nan() {
                first = sample.t;
            }
            last = next;
        }
    }
    (total, if first.is_nan() { 0.0 } else { first }, last)
}

fn error_text(event: &LogEvent) -> String {
    match event.fields["error"].as_str() {
        Some(error) => format!("{} ({error})", event.message),
        None => event.message.clone(),
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// Deletes every topic and consumer group of the run: topics named with its prefix or
/// after its application id, groups named after its application id.
async fn cleanup(env: &TestEnv) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let timeout = Duration::from_secs(30);
    let app = format!("{}-", env.application_id);
    let metadata = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout))?;
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(&env.prefix) || name.starts_with(&app))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    if !topics.is_empty() {
        for result in admin.delete_topics(&topics, &options).await? {
            if let Err((topic, code)) = result {
                eprintln!("deleting topic {topic}: {code}");
            }
        }
    }
    let group_list = tokio::task::block_in_place(|| admin.inner().fetch_group_list(None, timeout))?;
    let groups: Vec<&str> = group_list
        .groups()
        .iter()
        .map(|g| g.name())
        .filter(|name| *name == env.application_id || name.starts_with(&app))
        .collect();
    if !groups.is_empty() {
        for result in admin.delete_groups(&groups, &options).await? {
            if let Err((group, code)) = result {
                eprintln!("deleting consumer group {group}: {code}");
            }
        }
    }
    println!(
        "deleted {} topics and {} consumer groups of {}",
        topics.len(),
        groups.len(),
        env.id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, commits: f64) -> Sample {
        Sample {
            t,
            metrics: Some(Figures {
                commits,
                ..Figures::default()
            }),
            readyz: None,
        }
    }

    #[test]
    fn commit_gaps_are_measured_within_the_window() {
        let samples: Vec<Sample> = [(0.0, 0.0), (0.25, 1.0), (0.5, 2.0), (0.75, 2.0)]
            .into_iter()
            .chain((4..40).map(|i| (f64::from(i) * 0.25, 2.0)))
            .chain([(10.0, 3.0), (10.25, 4.0)])
            .map(|(t, c)| sample(t, c))
            .collect();
        let commits = commit_times(&samples);
        assert_eq!(
            commits,
            vec![(0.0, 0.25), (0.25, 0.5), (9.75, 10.0), (10.0, 10.25)]
        );
        assert!((longest_gap(&commits, 1.0, 9.0) - 8.0).abs() < 1e-9);
        assert!((longest_gap(&commits, 0.25, 10.25) - 9.5).abs() < 1e-9);
        // The commit seen at 0.5 s may have happened before 0.3 s: not within.
        assert!((longest_gap(&commits, 0.3, 9.0) - 8.7).abs() < 1e-9);
        assert_eq!(counter_at(&samples, 9.9, |m| m.commits), 2.0);
        assert_eq!(counter_at(&samples, -1.0, |m| m.commits), 0.0);
        // The commit seen at 0.5 s may have happened before 0.3 s: not counted.
        assert_eq!(growth_within(&samples, 0.3, 9.9, |m| m.commits), 0.0);
        assert_eq!(growth_within(&samples, 0.25, 10.0, |m| m.commits), 2.0);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
