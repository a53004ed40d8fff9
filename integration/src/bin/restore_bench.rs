//! Restore speed: fills a compacted changelog topic with `--keys` records,
//! then times a full restore into an empty RocksDB store with the runtime's own restore
//! code, and prints keys/s. A benchmark, not a test: run it on the local stack with
//! `integration/bench-restore`.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use paystream_integration::bootstrap;
use paystream_runtime::Config;
use paystream_runtime::state_manager::{RestoreControl, restore_store};
use paystream_state::{KeyValueStore, RocksDbStore};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Parser)]
#[command(about = "Time a full state store restore from its changelog")]
struct Args {
    /// Distinct keys written to the changelog.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Bytes per value (a payment state is about 300).
    #[arg(long, default_value_t = 300)]
    value_bytes: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let value = vec![b'v'; args.value_bytes];
    let filled = Instant::now();
    let mut deliveries = Vec::with_capacity(100_000);
    for i in 0..args.keys {
        let key = format!("payment-{i:012}");
        loop {
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&value)) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if deliveries.len() == 100_000 {
            for d in deliveries.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in deliveries.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    println!(
        "changelog {topic}: {} keys of {} value bytes written in {:.1} s",
        args.keys,
        args.value_bytes,
        filled.elapsed().as_secs_f64()
    );

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
    println!(
        "restore: {} keys in {:.2} s = {:.0} keys/s ({:.1} MB/s of values)",
        restored.records,
        elapsed.as_secs_f64(),
        restored.records as f64 / elapsed.as_secs_f64(),
        (restored.records as f64 * args.value_bytes as f64) / elapsed.as_secs_f64() / 1e6
    );
    admin.delete_topics(&[&topic], &AdminOptions::new()).await?;
    Ok(())
}
