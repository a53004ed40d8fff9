//! Restore speed of a state store from its changelog. A benchmark, not a test: run it on
//! the local stack with `integration/bench-restore`.
//!
//! - Default mode: fills a compacted changelog topic with `--keys` records, then times a
//!   full restore into an empty RocksDB store with the runtime's own restore code alone,
//!   and prints keys/s.
//! - `--while-processing` (see `while_processing.rs`): the restore of a big store inside
//!   a running `paystream run`, while its other tasks keep processing seeded traffic;
//!   observed only from outside (logs, `/metrics`, `/readyz`), so it measures any
//!   version of the runtime unchanged.

mod while_processing;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use paystream_integration::{bootstrap, fill_changelog, payment_value};
use paystream_runtime::Config;
use paystream_runtime::restore::{RestoreControl, restore_store};
use paystream_state::{KeyValueStore, RocksDbStore};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

#[derive(Debug, Parser)]
#[command(about = "Time a full state store restore from its changelog")]
pub struct Args {
    /// Distinct keys written to the changelog.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Bytes per value (a payment state is about 300).
    #[arg(long, default_value_t = 300)]
    value_bytes: usize,
    /// Restore the `payments` store of task 1_1 inside a running `paystream run` while
    /// its other tasks process seeded traffic, and report commits and readiness during
    /// the restore.
    #[arg(long)]
    while_processing: bool,
    /// With --while-processing: input records per second produced for the whole run
    /// (about half land on partition 0).
    #[arg(long, default_value_t = 400)]
    rate: u64,
    /// With --while-processing: seed of the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// With --while-processing: seconds of traffic kept up after the restore finished
    /// (shows commits resuming).
    #[arg(long, default_value_t = 10)]
    tail_s: u64,
    /// With --while-processing: longest the instance may run before the benchmark gives
    /// up on the restore, seconds.
    #[arg(long, default_value_t = 1_200)]
    timeout_s: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.while_processing {
        return while_processing::run(&args).await;
    }
    let run = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut config = Config {
        application_id: run.clone(),
        ..Config::default()
    };
    config.kafka.bootstrap_servers = bootstrap();
    let topic = format!("{run}-payments-changelog");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")],
            &AdminOptions::new(),
        )
        .await?;

    fill_changelog(
        &topic,
        None,
        args.keys,
        &payment_value(args.value_bytes),
        "payment-",
    )
    .await?;

    // Peak RSS from here on: writing 5 to clear_refs resets VmHWM to the current RSS
    // (Linux proc(5)), so the changelog fill's buffers do not count as the restore's.
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let dir = tempfile::tempdir()?;
    let mut store = RocksDbStore::open("payments", dir.path())?;
    let started = Instant::now();
    let restored = tokio::task::block_in_place(|| {
        restore_store(
            &config,
            &topic,
            0,
            None,
            &mut store,
            RestoreControl::default(),
        )
    })
    .context("restoring")?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        restored.records == args.keys,
        "restored {} records, wrote {}",
        restored.records,
        args.keys
    );
    anyhow::ensure!(
        store.get(b"payment-000000000000")?.is_some(),
        "first key present"
    );
    let keys_per_s = restored.records as f64 / elapsed.as_secs_f64();
    // Peak resident set of this process during the restore (VmHWM since the reset
    // above; memory the fill freed but the allocator kept is included).
    let peak_rss_bytes = procfs::process::Process::myself()
        .ok()
        .and_then(|p| p.status().ok())
        .and_then(|s| s.vmhwm)
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    println!(
        "restore: {} keys in {:.2} s = {:.0} keys/s ({:.1} MB/s of values), peak RSS {:.0} MB",
        restored.records,
        elapsed.as_secs_f64(),
        keys_per_s,
        (restored.records as f64 * args.value_bytes as f64) / elapsed.as_secs_f64() / 1e6,
        peak_rss_bytes as f64 / 1e6
    );
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "mode": "alone",
            "keys": args.keys,
            "value_bytes": args.value_bytes,
            "restore_s": elapsed.as_secs_f64(),
            "restore_keys_per_s": keys_per_s,
            "peak_rss_bytes": peak_rss_bytes,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    admin.delete_topics(&[&topic], &AdminOptions::new()).await?;
    Ok(())
}
