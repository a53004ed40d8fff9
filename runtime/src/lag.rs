//! Consumer lag and the caught-up check: the consumer's context counts rebalances and
//! turns librdkafka's statistics into the consumer lag gauge, and [`caught_up`] tells
//! `paystream run --until-caught-up` when the whole application has consumed and
//! committed everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::kafka::partition_count;
use crate::{Error, Result};

/// How often librdkafka reports statistics, from which consumer lag is set.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// Counts and logs partition assignment changes. The processing loop notices a changed
/// count after the consumer returns and discards its open transaction (see
/// `Pipeline::on_rebalance`). It also receives librdkafka's statistics, from which it
/// sets consumer lag.
pub struct RebalanceListener {
    pub(crate) rebalances: Arc<AtomicU64>,
    pub(crate) lag: LagTracker,
}

/// Consumer lag per assigned input partition: the partition's end for `read_committed`
/// readers (last stable offset) minus the offset the application committed — as this
/// process committed it, else as the group had it at assignment — and never below the
/// low watermark (an offset that retention deleted). Set from librdkafka's statistics
/// (`statistics.interval.ms`, every 5 s), so measuring it costs no request.
#[derive(Clone)]
pub struct LagTracker {
    pub(crate) committed: Arc<std::sync::Mutex<HashMap<(String, i32), i64>>>,
    pub(crate) gauge: prometheus::IntGaugeVec,
}

impl LagTracker {
    pub(crate) fn record_commit(&self, offsets: &HashMap<(String, i32), i64>) {
        let mut committed = self.committed.lock().expect("lag tracker lock");
        for (key, offset) in offsets {
            committed.insert(key.clone(), *offset);
        }
    }
}

impl ClientContext for RebalanceListener {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let committed = self.lag.committed.lock().expect("lag tracker lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition < 0 || p.fetch_state == "none" || p.fetch_state == "stopped" {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if end < 0 {
                    continue;
                }
                let from = committed
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .or((p.committed_offset >= 0).then_some(p.committed_offset))
                    .unwrap_or(p.lo_offset)
                    .max(p.lo_offset.max(0));
                self.lag
                    .gauge
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set((end - from).max(0));
            }
        }
    }
}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(partitions = tpl.count(), "partitions revoked");
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "partitions assigned");
                self.rebalances.fetch_add(1, Ordering::SeqCst);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}

/// True when the whole application has caught up: every partition of every topic
/// the pipeline reads — not only this instance's — has been consumed to its end and
/// committed. Partitions this instance reads count from its position; the others
/// (held by other instances, or by a stopped static member until its session times
/// out) count from the group's committed offset.
pub fn caught_up(
    consumer: &StreamConsumer<RebalanceListener>,
    topics: &[&str],
    records_in_transaction: usize,
    timeout: Duration,
) -> Result<bool> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("reading the assignment", e))?;
    if assignment.count() == 0 || records_in_transaction > 0 {
        return Ok(false);
    }
    let positions = consumer
        .position()
        .map_err(|e| Error::kafka("reading positions", e))?;
    let mut all = TopicPartitionList::new();
    for topic in topics.iter().copied() {
        let partitions = tokio::task::block_in_place(|| partition_count(consumer, topic, timeout))?;
        for partition in 0..partitions {
            all.add_partition(topic, partition);
        }
    }
    let committed = tokio::task::block_in_place(|| consumer.committed_offsets(all, timeout))
        .map_err(|e| Error::kafka("reading committed offsets", e))?;
    let offset_of = |list: &TopicPartitionList, topic: &str, partition: i32| {
        list.find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
    };
    let mut all_caught_up = true;
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) =
            tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, partition, timeout))
                .map_err(|e| Error::kafka("fetching watermarks", e))?;
        let position = offset_of(&positions, topic, partition)
            .or_else(|| offset_of(&committed, topic, partition))
            .unwrap_or(low);
        let lag = (high - position).max(0);
        if lag > 0 {
            all_caught_up = false;
        }
    }
    Ok(all_caught_up)
}
