//! Consumer lag and the caught-up check: the consumer's context counts rebalances and
//! turns librdkafka's statistics into the consumer lag gauge, and [`caught_up`] tells
//! `paystream run --until-caught-up` when the whole application has consumed and
//! committed everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use tracing::{info, warn};

use crate::config::Config;
use crate::{Error, Result};
pub use paystream_common::offsets::{EndOffsets, offsets};

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
    pub(crate) fn record_commit<S: std::hash::BuildHasher>(
        &self,
        offsets: &HashMap<(String, i32), i64, S>,
    ) {
        let mut committed = self.committed.lock().expect("lag tracker lock");
        for (key, offset) in offsets {
            committed.insert(key.clone(), *offset);
        }
    }
}

/// A partition's end for `read_committed` readers in librdkafka's statistics: its last
/// stable offset, else its high watermark; `None` before either is known.
pub(crate) fn committed_end(partition: &rdkafka::statistics::Partition) -> Option<i64> {
    let end = if partition.ls_offset >= 0 {
        partition.ls_offset
    } else {
        partition.hi_offset
    };
    (end >= 0).then_some(end)
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
                let Some(end) = committed_end(p) else {
                    continue;
                };
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

/// The ends of the input partitions, listed again every `interval` on a thread of its
/// own (one ListOffsets request each time), for the processing order
/// ([`crate::partition_group`]): a partition whose end lies beyond what was read has
/// records on their way. Stopped when dropped.
pub struct KnownEnds {
    ends: Arc<std::sync::Mutex<HashMap<(String, i32), i64>>>,
    /// Dropped to stop the thread: its wait between two listings ends at once.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KnownEnds {
    /// Starts listing the ends of `partitions` every `interval`.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when librdkafka refuses the configuration;
    /// [`crate::Error::Thread`] when the thread cannot be started.
    pub fn spawn(
        config: &Config,
        partitions: Vec<(String, i32)>,
        interval: Duration,
        timeout: Duration,
    ) -> crate::Result<Self> {
        let client = EndOffsets::new(config, &config.application_id)
            .map_err(|e| crate::Error::kafka("creating the partition-ends client", e))?;
        let ends: Arc<std::sync::Mutex<HashMap<(String, i32), i64>>> = Arc::default();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let ends = ends.clone();
            std::thread::Builder::new()
                .name("known-ends".into())
                .spawn(move || {
                    loop {
                        if let Ok(listed) = client.ends(&partitions, timeout) {
                            *ends.lock().expect("known ends lock") = listed;
                        }
                        if stopped.recv_timeout(interval)
                            != Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                        {
                            break;
                        }
                    }
                })
                .map_err(|source| crate::Error::Thread {
                    what: "the known-ends thread",
                    source,
                })?
        };
        Ok(KnownEnds {
            ends,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The ends last listed, by topic and partition (empty before the first answer).
    pub fn snapshot(&self) -> HashMap<(String, i32), i64> {
        self.ends.lock().expect("known ends lock").clone()
    }
}

impl Drop for KnownEnds {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every partition of `sources` (topics with their partition counts).
pub fn each_partition(sources: &[(String, i32)]) -> Vec<(String, i32)> {
    sources
        .iter()
        .flat_map(|(topic, partitions)| (0..*partitions).map(move |p| (topic.clone(), p)))
        .collect()
}

/// True when the whole application has caught up: every partition of `sources` (every
/// topic the pipeline reads with its partition count) — not only this instance's — has
/// been consumed to its end and committed. Partitions this instance reads count from
/// its position (or, before it read any record of one, the group's committed offset);
/// the others (held by other instances, or by a stopped static member until its session
/// times out) count from the group's committed offset. Costs one ListOffsets request,
/// and one OffsetFetch when some partition has no position.
///
/// # Errors
/// [`Error::Kafka`] when the assignment cannot be read or the broker does not answer.
pub fn caught_up(
    consumer: &StreamConsumer<RebalanceListener>,
    end_offsets: &EndOffsets,
    sources: &[(String, i32)],
    records_in_transaction: usize,
    timeout: Duration,
) -> Result<bool> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("reading the assignment", e))?;
    if assignment.count() == 0 || records_in_transaction > 0 {
        return Ok(false);
    }
    let positions = offsets(
        &consumer
            .position()
            .map_err(|e| Error::kafka("reading positions", e))?,
    );
    let all = each_partition(sources);
    let ends = end_offsets
        .ends(&all, timeout)
        .map_err(|e| Error::kafka("listing the ends of the input partitions", e))?;
    let without_position: Vec<(String, i32)> = all
        .iter()
        .filter(|key| !positions.contains_key(*key))
        .cloned()
        .collect();
    let committed = if without_position.is_empty() {
        HashMap::new()
    } else {
        end_offsets
            .committed(&without_position, timeout)
            .map_err(|e| Error::kafka("reading committed offsets", e))?
    };
    // Never read and never committed: counts from the first offset retention kept.
    let unread: Vec<(String, i32)> = without_position
        .into_iter()
        .filter(|key| !committed.contains_key(key))
        .collect();
    let starts = if unread.is_empty() {
        HashMap::new()
    } else {
        end_offsets
            .starts(&unread, timeout)
            .map_err(|e| Error::kafka("listing the starts of the input partitions", e))?
    };
    // A partition whose end the broker did not list (its leader not elected yet, just
    // after the topics were created) is not caught up: counting it as 0 let a run stop
    // at once, before it had read anything.
    Ok(all.iter().all(|key| {
        let Some(end) = ends.get(key).copied() else {
            return false;
        };
        let at = positions
            .get(key)
            .or_else(|| committed.get(key))
            .or_else(|| starts.get(key))
            .copied()
            .unwrap_or(0);
        at >= end
    }))
}
