//! Metric names live here and nowhere else (STYLE 13). Labels are bounded: topic,
//! partition, store, reason — never an id.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The runtime's metrics, registered in one [`Registry`].
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Input records handed to a processor or dead-lettered, by source topic.
    pub records_consumed: IntCounterVec,
    /// Records dropped as duplicates, by source topic.
    pub duplicates_dropped: IntCounterVec,
    /// Records written to a dead-letter queue, by source topic and reason.
    pub dead_lettered: IntCounterVec,
    /// Records produced to output and internal topics, by topic.
    pub records_produced: IntCounterVec,
    /// Committed transactions.
    pub commits: IntCounter,
    /// Aborted transactions.
    pub transaction_aborts: IntCounter,
    /// Time to send offsets and commit a transaction, seconds.
    pub commit_latency_seconds: Histogram,
    /// High watermark minus position per assigned partition, records.
    pub consumer_lag: IntGaugeVec,
    /// State store operations, by store and operation (get, put, delete, range).
    pub store_operations: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: names are constants and unique.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let records_consumed = counter_vec(
            "paystream_records_consumed_total",
            "Input records read, by source topic",
            &["topic"],
        );
        let duplicates_dropped = counter_vec(
            "paystream_records_duplicate_dropped_total",
            "Records dropped as duplicates, by source topic",
            &["topic"],
        );
        let dead_lettered = counter_vec(
            "paystream_records_dead_lettered_total",
            "Records written to a dead-letter queue, by source topic and reason",
            &["topic", "reason"],
        );
        let records_produced = counter_vec(
            "paystream_records_produced_total",
            "Records produced, by destination topic",
            &["topic"],
        );
        let store_operations = counter_vec(
            "paystream_state_store_operations_total",
            "State store operations, by store and operation",
            &["store", "operation"],
        );
        let commits =
            IntCounter::new("paystream_commits_total", "Committed transactions").expect("metric");
        registry
            .register(Box::new(commits.clone()))
            .expect("register");
        let transaction_aborts =
            IntCounter::new("paystream_transaction_aborts_total", "Aborted transactions")
                .expect("metric");
        registry
            .register(Box::new(transaction_aborts.clone()))
            .expect("register");
        let commit_latency_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "paystream_commit_latency_seconds",
                "Time to send offsets and commit one transaction",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("metric");
        registry
            .register(Box::new(commit_latency_seconds.clone()))
            .expect("register");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "paystream_consumer_lag_records",
                "High watermark minus consumed position, per input partition",
            ),
            &["topic", "partition"],
        )
        .expect("metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("register");
        Metrics {
            registry,
            records_consumed,
            duplicates_dropped,
            dead_lettered,
            records_produced,
            commits,
            transaction_aborts,
            commit_latency_seconds,
            consumer_lag,
            store_operations,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
