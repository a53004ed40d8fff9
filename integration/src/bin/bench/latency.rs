//! Latency at a fixed offered rate: a running `paystream run` (pipeline and ledger sink)
//! receives the demo's traffic mix at `rate` events/s, each record stamped with its send
//! time; an event's latency is from that send time to the PostgreSQL commit of the
//! journal entry it caused (`pg_xact_commit_timestamp`). Entries caused by events sent
//! before their payment (out-of-order traffic) wait for the payment by design and are
//! included.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use paystream_common::kafka::PARTITIONER;
use paystream_integration::{Running, TestEnv, bootstrap, registry_url};
use paystream_schemas::{Codec, InputEvent};
use paystream_testkit::traffic::{PlannedRecord, TrafficOptions, default_start_ms, plan};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::{ledger, now_ms};

/// Latency figures at one offered rate, milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub offered_events_per_s: u64,
    /// What the load generator achieved (it shares the machine).
    pub sent_events_per_s: f64,
    pub events: u64,
    pub journal_entries: u64,
    /// Journal entries that had not reached PostgreSQL when the benchmark stopped waiting.
    pub entries_missing: u64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    /// The same, over the entries of events sent after the first [`WARM_UP`] of traffic:
    /// the steady state, without the instance's first transactions.
    pub steady_p50_ms: i64,
    pub steady_p99_ms: i64,
    pub steady_max_ms: i64,
}

/// The start of the traffic the steady-state figures leave out. A fresh instance's first
/// few hundred milliseconds of traffic wait longer (its first transactions and offset
/// commits, the first produce to each partition); the headline figures include them.
const WARM_UP: Duration = Duration::from_secs(2);

/// Longest to wait for the pipeline to become ready, and for the last entry after the
/// traffic ended.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// One record, encoded before the timed loop.
pub(crate) struct Encoded {
    topic: String,
    key: String,
    value: Vec<u8>,
    /// Set for the events whose journal entries are timed.
    causes_entry: Option<String>,
}

/// Encodes every record of `records` for `env`'s topics (Confluent wire format, the
/// registry's ids), marking the events `timed` picks as the causes of the entries to
/// time.
///
/// # Errors
/// When the registry cannot be reached or a record not encoded.
pub(crate) async fn encode(
    env: &TestEnv,
    records: &[PlannedRecord],
    timed: impl Fn(&InputEvent) -> bool,
) -> anyhow::Result<Vec<Encoded>> {
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let mut encoded = Vec::with_capacity(records.len());
    for record in records {
        let topic = env.topic(record.topic().base_name());
        encoded.push(match record {
            PlannedRecord::Event { key, event, .. } => {
                let value = paystream_schemas::encode_input_event(&codec, &topic, event).await?;
                Encoded {
                    topic,
                    key: key.clone(),
                    value,
                    causes_entry: timed(event).then(|| event.event_id().to_string()),
                }
            }
            PlannedRecord::Malformed { key, value, .. } => Encoded {
                topic,
                key: key.clone(),
                value: value.clone(),
                causes_entry: None,
            },
        });
    }
    Ok(encoded)
}

/// Measures latency at `rate` events/s for `seconds` in a fresh run.
///
/// # Errors
/// When the run cannot start, become ready, or the traffic cannot be sent.
pub async fn measure(rate: u64, seconds: u64, seed: u64, logs: &Path) -> anyhow::Result<Latency> {
    let env = TestEnv::new(&format!("bench_latency_{rate}"));
    env.prepare()?;
    let count = rate * seconds;
    let plan = plan(&TrafficOptions {
        count,
        seed,
        start_ms: default_start_ms(count),
        ..TrafficOptions::default()
    });
    let records = encode(&env, &plan.records, |event| {
        matches!(
            event,
            InputEvent::AuthSucceeded(_) | InputEvent::SettlementReported(_)
        )
    })
    .await?;

    let (mut running, ready_url) = spawn_run(
        env.command(&["run"]),
        &logs.join(format!("latency_{rate}.log")),
    )?;
    wait_ready(&ready_url, &mut running).await?;

    let (sent_ms, sent_per_s) =
        tokio::task::spawn_blocking(move || send_at_rate(&records, rate)).await??;

    let pool = ledger::connect(&env.database_url).await?;
    let expected = plan.expected.journal_entries;
    let written = ledger::wait_for_entries(&pool, expected, DRAIN_TIMEOUT).await?;
    let sent_and_latency = ledger::latencies(&pool, &sent_ms).await?;
    // Each entry's send time and latency, for a look at when the slow ones happened.
    let mut csv = std::io::BufWriter::new(File::create(logs.join(format!("latency_{rate}.csv")))?);
    writeln!(csv, "sent_unix_ms,latency_ms")?;
    for (sent, latency) in &sent_and_latency {
        writeln!(csv, "{sent},{latency}")?;
    }
    csv.flush()?;
    let first_sent = sent_and_latency.first().map_or(0, |(sent, _)| *sent);
    let steady_from = first_sent + WARM_UP.as_millis() as i64;
    let mut steady: Vec<i64> = sent_and_latency
        .iter()
        .filter(|(sent, _)| *sent >= steady_from)
        .map(|(_, l)| *l)
        .collect();
    steady.sort_unstable();
    let mut latencies: Vec<i64> = sent_and_latency.iter().map(|(_, l)| *l).collect();
    pool.close().await;
    running.stop()?;
    latencies.sort_unstable();
    let at = |q: f64| quantile(&latencies, q);
    Ok(Latency {
        offered_events_per_s: rate,
        sent_events_per_s: sent_per_s,
        events: plan.records.len() as u64,
        journal_entries: written,
        entries_missing: expected.saturating_sub(written),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().copied().unwrap_or(0),
        steady_p50_ms: quantile(&steady, 0.50),
        steady_p99_ms: quantile(&steady, 0.99),
        steady_max_ms: steady.last().copied().unwrap_or(0),
    })
}

/// Starts `command` (a `paystream run`) on an HTTP port of its own, its output into
/// `log_path`, logging at `PAYSTREAM_LOG` (default `warn`); returns it with the URL of its
/// `/readyz`.
///
/// # Errors
/// When no port is free, the log cannot be created or the process not started.
pub(crate) fn spawn_run(
    mut command: std::process::Command,
    log_path: &Path,
) -> anyhow::Result<(Running, String)> {
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = File::create(log_path)?;
    let running = Running::spawn(
        command
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", address.to_string())
            .env(
                "PAYSTREAM_LOG",
                std::env::var("PAYSTREAM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    Ok((running, format!("http://{address}/readyz")))
}

/// The `q` quantile of `sorted` (nearest rank); 0 when empty.
pub(crate) fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Waits until `url` (an instance's `/readyz`) answers 200.
///
/// # Errors
/// When the process exits first or [`READY_TIMEOUT`] passes.
pub(crate) async fn wait_ready(url: &str, running: &mut Running) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let started = Instant::now();
    loop {
        if let Some(status) = running.child().try_wait()? {
            anyhow::bail!("paystream run exited {status} before it was ready");
        }
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "paystream run not ready after {} s ({url})",
            READY_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `records` at `rate` per second, stamping each with its send time; returns the
/// send time of each entry-causing event (its first send, for retried duplicates) and
/// the rate achieved.
pub(crate) fn send_at_rate(
    records: &[Encoded],
    rate: u64,
) -> anyhow::Result<(HashMap<String, i64>, f64)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", PARTITIONER)
        .set("linger.ms", "1")
        .create()
        .context("creating the traffic producer")?;
    let mut sent_ms = HashMap::new();
    let started = Instant::now();
    for (index, record) in records.iter().enumerate() {
        let due = Duration::from_secs_f64(index as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        let now = now_ms();
        let mut pending = BaseRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.value)
            .timestamp(now);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    pending = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context(format!("producing to {}", record.topic)),
            }
        }
        if let Some(event_id) = &record.causes_entry {
            sent_ms.entry(event_id.clone()).or_insert(now);
        }
    }
    let sending_s = started.elapsed().as_secs_f64();
    producer
        .flush(Duration::from_secs(60))
        .context("delivering the traffic")?;
    Ok((sent_ms, records.len() as f64 / sending_s.max(0.001)))
}
