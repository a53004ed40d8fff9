//! DLQ depth: dead letters written and not yet redriven, per dead-letter topic
//! (`paystream_dlq_depth_records{topic}`).
//!
//! A background thread reads every partition of the `<input>.dlq` topics and of the
//! redrive log `<app>-dlq-redrives` from the beginning with `read_committed` (so aborted
//! dead letters never count), and keeps following them: depth = dead letters read −
//! distinct dead letters named in the redrive log. Offsets cannot be used instead of
//! counting: transactional topics also hold commit markers. Every instance reports the
//! whole application's depth (dashboards take `max`). Dead letters that the 30-day
//! retention deleted before this instance started are not counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use crate::background::BackgroundThread;
use crate::config::Config;
use crate::kafka::partition_count;
use crate::kafka::read_committed_consumer_config;
use crate::metrics::Metrics;
use crate::topics::TopicNames;
use crate::{Error, Result};

/// How often the gauges are refreshed, at most.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The running monitor; dropping it stops the thread.
pub type DlqDepthMonitor = BackgroundThread;

/// Starts following `dead_letter_topics` and the redrive log of `config`'s application.
///
/// # Errors
/// [`Error::Kafka`] when the consumer cannot be created or assigned;
/// [`Error::Common`] when a topic is missing.
pub fn spawn(
    config: &Config,
    dead_letter_topics: Vec<String>,
    metrics: Metrics,
) -> Result<DlqDepthMonitor> {
    let names = TopicNames::new(config);
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let consumer: BaseConsumer =
        read_committed_consumer_config(config, &format!("{}-dlq-depth", config.application_id))
            .create()
            .map_err(|e| Error::kafka("creating the DLQ depth consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    for topic in dead_letter_topics.iter().chain([&names.dlq_redrives]) {
        for partition in 0..partition_count(&consumer, topic, timeout)? {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| Error::kafka("building the DLQ depth assignment", e))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka("assigning the DLQ depth consumer", e))?;
    let redrive_log = names.dlq_redrives.clone();
    BackgroundThread::spawn("dlq-depth", "the DLQ depth thread", move |stopping| {
        let mut written: BTreeMap<String, i64> =
            dead_letter_topics.iter().map(|t| (t.clone(), 0)).collect();
        let mut redriven: BTreeMap<String, i64> = BTreeMap::new();
        let mut redriven_keys: HashSet<Vec<u8>> = HashSet::new();
        let mut published = Instant::now() - PUBLISH_INTERVAL;
        while !stopping.load(Ordering::SeqCst) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) if message.topic() == redrive_log => {
                    // Key: `<dlq topic>:<partition>:<offset>`.
                    if let Some(key) = message.key()
                        && redriven_keys.insert(key.to_vec())
                        && let Some(topic) = String::from_utf8_lossy(key).rsplitn(3, ':').nth(2)
                    {
                        *redriven.entry(topic.to_string()).or_insert(0) += 1;
                    }
                }
                Some(Ok(message)) => {
                    *written.entry(message.topic().to_string()).or_insert(0) += 1;
                }
                Some(Err(e)) => warn!(error = %e, "DLQ depth consumer error (retrying)"),
                None => {}
            }
            if published.elapsed() >= PUBLISH_INTERVAL {
                published = Instant::now();
                for (topic, n) in &written {
                    let done = redriven.get(topic).copied().unwrap_or(0);
                    metrics
                        .dlq_depth
                        .with_label_values(&[topic.as_str()])
                        .set((n - done).max(0));
                }
            }
        }
    })
}
