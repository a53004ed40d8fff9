//! The ceiling: a raw transactional consume→produce loop (rdkafka, one thread) over the
//! same preloaded input topics, on the same broker, with the same partitions and commit
//! interval as paystream: each input record is copied (key and value bytes, same
//! partition) to one output topic, and its offset is committed in the transaction
//! (KIP-98 / KIP-447, `send_offsets_to_transaction`). It decodes nothing, keeps no state
//! and writes no ledger: what the broker and librdkafka allow exactly-once on this
//! machine, the bound paystream's figure is compared with.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::now_ms;
use paystream_integration::bootstrap;

/// What the loop measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub records: u64,
    pub commits: u64,
    /// First record read to the last commit, milliseconds.
    pub elapsed_ms: u64,
    pub records_per_s: f64,
    /// CPU time of the loop's own process in that time, microseconds per record.
    pub cpu_us_per_record: f64,
}

/// Longest the loop may take before the benchmark gives up.
const TIMEOUT: Duration = Duration::from_secs(900);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies every record of `inputs` (`records` in all) to `output` exactly-once, committing
/// every `commit_interval`.
///
/// # Errors
/// Any Kafka error (the loop does not retry), or when it has not read `records` within
/// 15 minutes.
pub fn run(
    run_id: &str,
    inputs: &[String],
    output: &str,
    records: u64,
    commit_interval: Duration,
) -> anyhow::Result<Ceiling> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("{run_id}-ceiling"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the ceiling's consumer")?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", format!("{run_id}-ceiling"))
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .context("creating the ceiling's producer")?;
    producer.init_transactions(CLIENT_TIMEOUT)?;
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let cpu_before = own_cpu_us();
    let started = Instant::now();
    let mut first_read_ms: Option<i64> = None;
    let mut read = 0u64;
    let mut commits = 0u64;
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_commit = Instant::now();
    producer.begin_transaction()?;
    loop {
        anyhow::ensure!(
            started.elapsed() < TIMEOUT,
            "the ceiling loop read {read} of {records} records in {} s",
            TIMEOUT.as_secs()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message.context("reading an input record")?;
            first_read_ms.get_or_insert_with(now_ms);
            let mut record = BaseRecord::<[u8], [u8]>::to(output).partition(message.partition());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(value) = message.payload() {
                record = record.payload(value);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(e).context("producing to the ceiling's output"),
                }
            }
            offsets.insert(
                (message.topic().to_string(), message.partition()),
                message.offset() + 1,
            );
            read += 1;
        }
        producer.poll(Duration::ZERO);
        let done = read >= records;
        if (done || last_commit.elapsed() >= commit_interval) && !offsets.is_empty() {
            // Deliveries first, polled here, so the commit does not wait on a poll slice.
            while producer.in_flight_count() > 0 {
                producer.poll(Duration::from_millis(1));
            }
            let mut list = TopicPartitionList::new();
            for ((topic, partition), offset) in offsets.drain() {
                list.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            let metadata = consumer
                .group_metadata()
                .context("the consumer's group metadata")?;
            producer.send_offsets_to_transaction(&list, &metadata, CLIENT_TIMEOUT)?;
            producer.commit_transaction(CLIENT_TIMEOUT)?;
            commits += 1;
            last_commit = Instant::now();
            if done {
                break;
            }
            producer.begin_transaction()?;
        }
    }
    let last_commit_ms = now_ms();
    let elapsed_ms = (last_commit_ms - first_read_ms.unwrap_or(last_commit_ms)).max(1) as u64;
    let cpu_us = own_cpu_us().saturating_sub(cpu_before);
    Ok(Ceiling {
        records: read,
        commits,
        elapsed_ms,
        records_per_s: read as f64 * 1000.0 / elapsed_ms as f64,
        cpu_us_per_record: cpu_us as f64 / read.max(1) as f64,
    })
}

/// CPU time of this process so far, microseconds (the loop runs alone in it).
fn own_cpu_us() -> u64 {
    let ticks_per_s = procfs::ticks_per_second().max(1);
    procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map(|s| (s.utime + s.stime) * 1_000_000 / ticks_per_s)
        .unwrap_or(0)
}
