//! Records a run produced, by topic and kind, counted by reading every topic of the run
//! back with `isolation.level=read_committed`: committed records only (aborted ones and
//! transaction markers take offsets but are not counted), whatever the binary reports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use paystream_integration::{TestEnv, bootstrap};

/// What one topic holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicCount {
    /// The topic's name without the run's prefix or application id.
    pub topic: String,
    /// `input`, `output`, `repartition`, `changelog` or `dead-letter`.
    pub kind: &'static str,
    pub records: u64,
}

const TIMEOUT: Duration = Duration::from_secs(600);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The base names of the input topics.
pub const INPUTS: [&str; 8] = [
    "payment_initiated",
    "auth_success",
    "auth_failure",
    "settlement",
    "capture",
    "void",
    "refund",
    "chargeback",
];

/// Counts the committed records of every topic of `env`'s run (named with its prefix or
/// its application id).
///
/// # Errors
/// Kafka errors, or when the topics cannot be read to their end within 10 minutes.
pub fn count(env: &TestEnv) -> anyhow::Result<Vec<TopicCount>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("{}-bench-count", env.id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "104857600")
        .create()
        .context("creating the counting consumer")?;
    let metadata = consumer.fetch_metadata(None, CLIENT_TIMEOUT)?;
    let app_prefix = format!("{}-", env.application_id);
    let started = Instant::now();
    let mut counts = Vec::new();
    for topic in metadata.topics() {
        let name = topic.name();
        let Some(base) = name
            .strip_prefix(&env.prefix)
            .or_else(|| name.strip_prefix(&app_prefix))
        else {
            continue;
        };
        // One topic at a time: an end-of-partition event names the partition only.
        let mut assignment = TopicPartitionList::new();
        let mut unfinished = BTreeSet::new();
        for partition in topic.partitions() {
            let (_, high) = consumer.fetch_watermarks(name, partition.id(), CLIENT_TIMEOUT)?;
            if high > 0 {
                assignment.add_partition_offset(name, partition.id(), Offset::Beginning)?;
                unfinished.insert(partition.id());
            }
        }
        let mut records = 0u64;
        consumer.assign(&assignment)?;
        while !unfinished.is_empty() {
            anyhow::ensure!(
                started.elapsed() < TIMEOUT,
                "counting records: {name} not read to its end within {} s",
                TIMEOUT.as_secs()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => records += 1,
                // The end of a partition (read_committed: of its committed records;
                // transaction markers and aborted records are skipped, not returned).
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    unfinished.remove(&partition);
                }
                Some(Err(e)) => return Err(e).context(format!("counting the records of {name}")),
                None => {}
            }
        }
        counts.push(TopicCount {
            topic: base.to_string(),
            kind: kind(base),
            records,
        });
    }
    counts.sort_by(|a, b| (a.kind, &a.topic).cmp(&(b.kind, &b.topic)));
    Ok(counts)
}

fn kind(base: &str) -> &'static str {
    if base.ends_with(".dlq") {
        "dead-letter"
    } else if base.ends_with("-changelog") {
        "changelog"
    } else if INPUTS.contains(&base) {
        "input"
    } else if base.contains("by-") || base.ends_with("-repartition") {
        "repartition"
    } else {
        "output"
    }
}
