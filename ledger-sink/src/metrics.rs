//! The ledger sink's metric names live here and nowhere else, registered in the
//! process's one Prometheus registry (served at `/metrics` with the runtime's). Labels
//! are bounded: table, topic, partition, reason — never an id.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The ledger sink's metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Rows the ledger sink wrote, by table.
    pub rows_written: IntCounterVec,
    /// Records of the sink's input partitions not yet written to PostgreSQL, by topic
    /// and partition.
    pub lag: IntGaugeVec,
    /// Failed sink writes (each was retried or stopped the sink).
    pub errors: IntCounter,
    /// Records the ledger sink dead-lettered to `<source topic>.dlq` instead of writing
    /// them (PostgreSQL refused their data, or they did not decode or balance), by source
    /// topic and reason; counted once their batch committed.
    pub dead_lettered: IntCounterVec,
}

impl SinkMetrics {
    /// Creates the sink's metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When they are registered twice in the same registry (names are constants).
    pub fn register(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let rows_written = counter_vec(
            "paystream_sink_rows_written_total",
            "Rows the ledger sink wrote to PostgreSQL, by table",
            &["table"],
        );
        let dead_lettered = counter_vec(
            "paystream_sink_dead_lettered_total",
            "Records the ledger sink dead-lettered instead of writing, by source topic and reason",
            &["topic", "reason"],
        );
        let lag = IntGaugeVec::new(
            Opts::new(
                "paystream_sink_lag_records",
                "Records of the sink's input partitions not yet written to PostgreSQL",
            ),
            &["topic", "partition"],
        )
        .expect("metric");
        registry.register(Box::new(lag.clone())).expect("register");
        let errors = IntCounter::new(
            "paystream_sink_errors_total",
            "Failed ledger sink writes (retried, or stopping the sink)",
        )
        .expect("metric");
        registry
            .register(Box::new(errors.clone()))
            .expect("register");
        SinkMetrics {
            rows_written,
            lag,
            errors,
            dead_lettered,
        }
    }
}
