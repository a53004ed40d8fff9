//! The runtime's metric names live here and nowhere else; an application registers its
//! own in the same [`Registry`]. Labels are bounded: topic, partition, store, reason,
//! stage — never an id.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The phases of a commit, in order, as `paystream_commit_phase_seconds{phase}` labels
/// them: due timers and TTL purges (`punctuate`); producing the stores' changelog records
/// (`changelog`); reading positions and sending the offsets to the transaction
/// (`offsets`, KIP-447); waiting for every record's delivery report (`deliveries`);
/// EndTxn, the broker writing its markers (`end_txn`, KIP-98); writing the stores' batches
/// to RocksDB (`stores`); the checkpoint, with a flush every 10,000 changelog records
/// (`checkpoint`).
pub const COMMIT_PHASES: [&str; 7] = [
    "punctuate",
    "changelog",
    "offsets",
    "deliveries",
    "end_txn",
    "stores",
    "checkpoint",
];

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
    /// Input records that arrived on a partition other than the one their key maps to
    /// under Kafka's default (murmur2) partitioner, by topic: an ingress producer on
    /// another partitioner. Auth and settlement records are rerouted to their payment's
    /// task through the repartition topic.
    pub records_misrouted: IntCounterVec,
    /// Committed transactions.
    pub commits: IntCounter,
    /// Records a task processed after holding back for `processing.max_task_idle_ms`
    /// (Kafka Streams' enforced processing): the partition it waited for stayed empty.
    pub enforced_processing: IntCounter,
    /// Aborted transactions.
    pub transaction_aborts: IntCounter,
    /// Transactional producers replaced after a fatal error (a transaction the
    /// coordinator aborted at its timeout, or a fencing); each aborted its transaction.
    pub producer_resets: IntCounter,
    /// Breaks of the stream thread longer than [`crate::STREAM_THREAD_STALL_MS`] (the
    /// process paused, a call that blocked); each restarted its tasks' reorder waits.
    pub stream_thread_stalls: IntCounter,
    /// Tasks of other instances this one keeps a standby of (`standby.rs`).
    pub standby_tasks: IntGauge,
    /// Changelog records the standbys applied.
    pub standby_records: IntCounter,
    /// Changelog records the standbys are behind the changelogs' committed ends (from
    /// librdkafka's statistics, every 5 s).
    pub standby_lag_records: IntGauge,
    /// From a task's assignment to it running: the restore of its stores and its
    /// processor's `init`, seconds.
    pub task_restore_seconds: Histogram,
    /// Other instances whose heartbeat arrived within `processing.peer_timeout_ms`.
    pub peers_alive: IntGauge,
    /// Silent instances this one took over (fenced and removed from the group).
    pub peer_takeovers: IntCounter,
    /// Time to send offsets and commit a transaction, seconds.
    pub commit_latency_seconds: Histogram,
    /// The parts of a commit, seconds, by phase ([`COMMIT_PHASES`]).
    pub commit_phase_seconds: HistogramVec,
    /// High watermark minus committed offset per assigned input partition, records
    /// (updated every 5 s; an offset that retention deleted counts from the low watermark).
    pub consumer_lag: IntGaugeVec,
    /// State store operations, by store and operation (get, put, delete, range).
    pub store_operations: IntCounterVec,
    /// Consumer group rebalances seen by this instance.
    pub rebalances: IntCounter,
    /// From a record's timestamp (event time) to the commit of its transaction, seconds.
    pub end_to_end_latency_seconds: Histogram,
    /// Changelog records restored into local stores, by store.
    pub restore_records: IntCounterVec,
    /// Changelog offsets still to restore, by store (0 when no restore runs).
    pub restore_remaining_records: IntGaugeVec,
    /// Keys in this instance's state stores, by store: RocksDB's `estimate-num-keys`,
    /// which counts overwritten and deleted keys until compaction (an upper bound).
    pub store_keys: IntGaugeVec,
    /// Dead letters written and not redriven, by dead-letter topic.
    pub dlq_depth: IntGaugeVec,
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
        let records_misrouted = counter_vec(
            "paystream_records_misrouted_total",
            "Input records on a partition other than their key's murmur2 partition, by topic",
            &["topic"],
        );
        let store_operations = counter_vec(
            "paystream_state_store_operations_total",
            "State store operations, by store and operation",
            &["store", "operation"],
        );
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let rebalances = counter(
            "paystream_rebalances_total",
            "Consumer group rebalances seen by this instance",
        );
        let end_to_end_latency_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "paystream_end_to_end_latency_seconds",
                "From a record's timestamp (event time) to the commit of its transaction",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                21600.0, 86400.0, 259200.0,
            ]),
        )
        .expect("metric");
        registry
            .register(Box::new(end_to_end_latency_seconds.clone()))
            .expect("register");
        let restore_records = counter_vec(
            "paystream_restore_records_total",
            "Changelog records restored into local state stores, by store",
            &["store"],
        );
        let restore_remaining_records = gauge_vec(
            "paystream_restore_remaining_records",
            "Changelog offsets still to restore, by store",
            &["store"],
        );
        let store_keys = gauge_vec(
            "paystream_state_store_keys",
            "Keys in this instance's state stores, by store: RocksDB's estimate, which counts overwritten and deleted keys until compaction",
            &["store"],
        );
        let dlq_depth = gauge_vec(
            "paystream_dlq_depth_records",
            "Dead letters written and not redriven, by dead-letter topic",
            &["topic"],
        );
        let commits =
            IntCounter::new("paystream_commits_total", "Committed transactions").expect("metric");
        registry
            .register(Box::new(commits.clone()))
            .expect("register");
        let enforced_processing = IntCounter::new(
            "paystream_enforced_processing_total",
            "Records processed after their task held back for max_task_idle_ms",
        )
        .expect("metric");
        registry
            .register(Box::new(enforced_processing.clone()))
            .expect("register");
        let transaction_aborts =
            IntCounter::new("paystream_transaction_aborts_total", "Aborted transactions")
                .expect("metric");
        registry
            .register(Box::new(transaction_aborts.clone()))
            .expect("register");
        let producer_resets = IntCounter::new(
            "paystream_producer_resets_total",
            "Transactional producers replaced after a fatal error",
        )
        .expect("metric");
        registry
            .register(Box::new(producer_resets.clone()))
            .expect("register");
        let stream_thread_stalls = IntCounter::new(
            "paystream_stream_thread_stalls_total",
            "Breaks of the stream thread longer than 500 ms (the process paused, a call that blocked)",
        )
        .expect("metric");
        registry
            .register(Box::new(stream_thread_stalls.clone()))
            .expect("register");
        let standby_tasks = IntGauge::new(
            "paystream_standby_tasks",
            "Tasks of other instances this one keeps a standby of",
        )
        .expect("metric");
        registry
            .register(Box::new(standby_tasks.clone()))
            .expect("register");
        let standby_records = IntCounter::new(
            "paystream_standby_records_total",
            "Changelog records the standbys applied",
        )
        .expect("metric");
        registry
            .register(Box::new(standby_records.clone()))
            .expect("register");
        let standby_lag_records = IntGauge::new(
            "paystream_standby_lag_records",
            "Changelog records the standbys are behind the changelogs' committed ends",
        )
        .expect("metric");
        registry
            .register(Box::new(standby_lag_records.clone()))
            .expect("register");
        let task_restore_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "paystream_task_restore_seconds",
                "From a task's assignment to it running (restore and init), seconds",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )
        .expect("metric");
        registry
            .register(Box::new(task_restore_seconds.clone()))
            .expect("register");
        let peers_alive = IntGauge::new(
            "paystream_peers_alive",
            "Other instances whose heartbeat arrived within processing.peer_timeout_ms",
        )
        .expect("metric");
        registry
            .register(Box::new(peers_alive.clone()))
            .expect("register");
        let peer_takeovers = IntCounter::new(
            "paystream_peer_takeovers_total",
            "Silent instances this one fenced and removed from the group",
        )
        .expect("metric");
        registry
            .register(Box::new(peer_takeovers.clone()))
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
        let commit_phase_seconds = HistogramVec::new(
            HistogramOpts::new(
                "paystream_commit_phase_seconds",
                "The parts of a commit: punctuate, changelog, offsets, deliveries, end_txn, \
                 stores, checkpoint",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["phase"],
        )
        .expect("metric");
        registry
            .register(Box::new(commit_phase_seconds.clone()))
            .expect("register");
        for phase in COMMIT_PHASES {
            commit_phase_seconds.with_label_values(&[phase]);
        }
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
            records_misrouted,
            commits,
            enforced_processing,
            transaction_aborts,
            producer_resets,
            stream_thread_stalls,
            standby_tasks,
            standby_records,
            standby_lag_records,
            task_restore_seconds,
            peers_alive,
            peer_takeovers,
            commit_latency_seconds,
            commit_phase_seconds,
            consumer_lag,
            store_operations,
            rebalances,
            end_to_end_latency_seconds,
            restore_records,
            restore_remaining_records,
            store_keys,
            dlq_depth,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
