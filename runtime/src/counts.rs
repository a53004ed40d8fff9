//! What the stream thread did: the counts of the open transaction
//! ([`TransactionCounts`], kept by the record collector), published to the Prometheus
//! metrics and to the run summary ([`RunSummary`], what `paystream run` prints) only
//! once the transaction commits, so an aborted and re-processed record counts once.

use std::collections::BTreeMap;

use tracing::warn;

use crate::metrics::Metrics;

/// What the open transaction did.
#[derive(Debug, Default)]
pub struct TransactionCounts {
    pub consumed: BTreeMap<String, u64>,
    pub duplicates: BTreeMap<String, u64>,
    pub dead_lettered: BTreeMap<(String, &'static str), u64>,
    pub produced: BTreeMap<String, u64>,
    /// Input records on another partition than their key's murmur2 partition, by topic.
    pub misrouted: BTreeMap<String, u64>,
    pub input_records: u64,
}

/// Counts of one run, for the summary `paystream run` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from the input topics.
    pub input_records: u64,
    /// Records dropped as duplicates (idempotency key retries and repeated event ids).
    pub duplicates_dropped: u64,
    /// Records written to dead-letter queues, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Input records on another partition than their key's murmur2 partition (auths and
    /// settlements among them were rerouted to their payment's task).
    pub misrouted: u64,
    /// Records produced in committed transactions, by topic: outputs, repartition
    /// topics, changelogs and dead-letter queues.
    pub produced: BTreeMap<String, u64>,
    /// Committed transactions.
    pub commits: u64,
    /// Records processed after their task held back for `processing.max_task_idle_ms`
    /// (docs/architecture.md, "Processing order").
    pub enforced_processing: u64,
    /// From the first record processed to the last commit, milliseconds. A task's
    /// restore comes before its first record is processed and is not included.
    pub processing_ms: u64,
    /// Time the stream thread spent in commits, milliseconds, summed over all of them:
    /// the changelog records' produce, the transaction commit, the store writes and the
    /// checkpoint (the sum of `paystream_commit_latency_seconds`). No record is processed
    /// meanwhile: the commit stall.
    pub commit_ms: u64,
    /// `commit_ms` by phase, milliseconds, in the order of
    /// [`crate::metrics::COMMIT_PHASES`] (the sums of `paystream_commit_phase_seconds`).
    pub commit_phases_ms: Vec<(&'static str, u64)>,
    /// When the first input record was read, milliseconds since the Unix epoch (the
    /// start of the end-to-end figure `paystream run` prints).
    pub first_record_unix_ms: Option<i64>,
}

impl TransactionCounts {
    /// Adds a committed transaction's counts to the metrics and to `summary`, and logs
    /// its dead letters by topic and reason.
    pub fn publish(self, metrics: &Metrics, summary: &mut RunSummary) {
        if !self.dead_lettered.is_empty() {
            let by_reason: Vec<String> = self
                .dead_lettered
                .iter()
                .map(|((topic, reason), n)| format!("{topic}/{reason}={n}"))
                .collect();
            warn!(
                records = self.dead_lettered.values().sum::<u64>(),
                by_topic_and_reason = %by_reason.join(","),
                "dead-lettered in the committed transaction"
            );
        }
        for (topic, n) in &self.consumed {
            metrics
                .records_consumed
                .with_label_values(&[topic])
                .inc_by(*n);
        }
        for (topic, n) in &self.duplicates {
            metrics
                .duplicates_dropped
                .with_label_values(&[topic])
                .inc_by(*n);
            summary.duplicates_dropped += n;
        }
        for ((topic, reason), n) in &self.dead_lettered {
            metrics
                .dead_lettered
                .with_label_values(&[topic.as_str(), reason])
                .inc_by(*n);
            *summary.dead_lettered.entry(reason.to_string()).or_insert(0) += n;
        }
        for (topic, n) in &self.produced {
            metrics
                .records_produced
                .with_label_values(&[topic])
                .inc_by(*n);
            *summary.produced.entry(topic.clone()).or_insert(0) += n;
        }
        for (topic, n) in &self.misrouted {
            metrics
                .records_misrouted
                .with_label_values(&[topic])
                .inc_by(*n);
            summary.misrouted += n;
        }
        summary.input_records += self.input_records;
    }
}
