//! Starting the stream thread: its consumer (the group's settings, the range assignor,
//! static membership, the fetch sizes the partition queues need), the topic checks, the
//! exactly-once producer and every role the loop sequences.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use paystream_avro::Codec;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::info;

use super::transaction::Transaction;
use super::{Pipeline, STATISTICS_INTERVAL_MS};
use crate::config::Config;
use crate::eos_producer::ExactlyOnceProducer;
use crate::health::Health;
use crate::interactive_queries::InteractiveQueries;
use crate::kafka::{client_config, read_committed_consumer_config};
use crate::lag::{EndOffsets, LagTracker, RebalanceListener};
use crate::metrics::Metrics;
use crate::partition_group::PartitionGroups;
use crate::poison::PoisonRecords;
use crate::record_collector::RecordCollector;
use crate::source::Source;
use crate::task_manager::TaskManager;
use crate::topic_admin::check_topics;
use crate::topology::Topology;
use crate::{Error, Result, RunSummary};

/// The longest interval between two heartbeats to the group coordinator, milliseconds.
/// A member learns of a rebalance at its next heartbeat, and an eager rebalance waits
/// for every member to rejoin: a rolling restart, two rebalances, stopped every
/// instance's partitions up to twice this long more (docs/benchmarks.md, "Failover").
const HEARTBEAT_INTERVAL_MS_MAX: u64 = 200;

/// Per sub-topology with a repartition source, the other sub-topologies writing it.
fn upstream_of(topology: &Topology) -> HashMap<u8, Vec<u8>> {
    let mut upstream = HashMap::new();
    for sub in &topology.sub_topologies {
        let Some(internal) = sub.internal_source() else {
            continue;
        };
        let writers: Vec<u8> = topology
            .sub_topologies
            .iter()
            .filter(|w| w.id != sub.id && w.sinks.iter().any(|s| s.topic == internal))
            .map(|w| w.id)
            .collect();
        upstream.insert(sub.id, writers);
    }
    upstream
}

impl Pipeline {
    /// Connects to Kafka, checks `topology`'s topics, and initialises the transactional
    /// producer (which fences any earlier incarnation with the same transactional id).
    ///
    /// # Errors
    /// [`Error::Kafka`] when a client cannot be created or the broker does not answer;
    /// [`Error::Common`] (a topic missing or with too few partitions) or [`Error::NotCoPartitioned`]
    /// when the topics do not fit the topology.
    pub async fn new(
        config: Config,
        topology: Topology,
        codec: Arc<Codec>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Result<Self> {
        let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
        let rebalances = Arc::new(AtomicU64::new(0));
        let lag = LagTracker {
            committed: Arc::default(),
            gauge: metrics.consumer_lag.clone(),
        };
        let consumer: StreamConsumer<RebalanceListener> =
            read_committed_consumer_config(&config, &config.application_id)
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                // The range assignor gives one member the same partition numbers of every
                // co-partitioned topic, so a task sees the same partition of each source.
                .set("partition.assignment.strategy", "range")
                .set(
                    "group.instance.id",
                    format!("{}-{}", config.application_id, config.instance_id),
                )
                .set(
                    "session.timeout.ms",
                    config.processing.session_timeout_ms.to_string(),
                )
                // At least three heartbeats per session (one lost is not a departure),
                // and one every 200 ms at most: a member learns of a rebalance at its
                // next heartbeat, and a takeover (`liveness.rs`) should not wait for it.
                .set(
                    "heartbeat.interval.ms",
                    (config.processing.session_timeout_ms / 3)
                        .min(HEARTBEAT_INTERVAL_MS_MAX)
                        .to_string(),
                )
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
                // Records wait in the partition queues (`partition_group/`), so
                // librdkafka needs a small prefetch only, and fetches again soon after its
                // queue drains: a lagging repartition partition is fetched without waiting
                // behind megabytes of other partitions' records.
                .set("queued.min.messages", "20000")
                .set("queued.max.messages.kbytes", "32768")
                .set("fetch.queue.backoff.ms", "10")
                // One fetch request is in flight per broker: a long poll on an idle
                // partition would delay the fetch of a partition resumed meanwhile.
                .set("fetch.wait.max.ms", "25")
                // A fetch brings a partition's queue below its capacity.
                .set("max.partition.fetch.bytes", "262144")
                .create_with_context(RebalanceListener {
                    rebalances: rebalances.clone(),
                    lag: lag.clone(),
                })
                .map_err(|e| Error::kafka("creating the consumer", e))?;
        let partitions =
            tokio::task::block_in_place(|| check_topics(&config, &topology, &consumer))?;
        let producer = ExactlyOnceProducer::new(&config)?;
        let admin: AdminClient<DefaultClientContext> = client_config(&config)
            .create()
            .map_err(|e| Error::kafka("creating the admin client", e))?;
        let inputs = topology.source_topics();
        let source_partitions = inputs
            .iter()
            .map(|topic| {
                let sub = topology.reader_of(topic).map_or(0, |sub| sub.id);
                let count = partitions.get(sub as usize).copied().unwrap_or(1);
                (topic.to_string(), count)
            })
            .collect();
        let end_offsets = EndOffsets::new(&config, &config.application_id)
            .map_err(|e| Error::kafka("creating the end-offsets client", e))?;
        consumer
            .subscribe(&inputs)
            .map_err(|e| Error::kafka("subscribing to the input topics", e))?;
        info!(
            application_id = %config.application_id,
            transactional_id = %producer.transactional_id(),
            topics = ?inputs,
            "pipeline started"
        );
        let serde = crate::serde::SerdeContext { registry: codec };
        let collector = RecordCollector::new(
            producer.producer().clone(),
            serde.clone(),
            config.application_id.clone(),
        );
        let tasks = TaskManager::new(
            topology.clone(),
            &partitions,
            config.clone(),
            metrics.clone(),
            health.clone(),
        );
        let source = Source::new(
            topology.clone(),
            partitions,
            serde,
            config.schema_registry.url.clone(),
        );
        let upstream = upstream_of(&topology);
        let transaction = Transaction::new(
            producer,
            collector,
            metrics.transaction_aborts.clone(),
            metrics.producer_resets.clone(),
        );
        Ok(Pipeline {
            topology: Arc::new(topology),
            consumer,
            rebalances,
            rebalances_seen: 0,
            group_members: crate::fencing::GroupMembers::new(),
            health,
            admin,
            last_purge_at: Instant::now(),
            end_offsets,
            source_partitions,
            metrics,
            tasks,
            paused: BTreeSet::new(),
            dropped_while_restoring: HashMap::new(),
            queues: PartitionGroups::new(
                config.processing.buffered_records_per_partition,
                Duration::from_millis(config.processing.max_task_idle_ms),
                upstream,
            ),
            known_ends: None,
            transaction,
            source,
            poison: PoisonRecords::default(),
            timeout,
            summary: RunSummary::default(),
            first_record_at: None,
            last_commit_at: None,
            lag,
            queries: None,
            config,
        })
    }

    /// Serves interactive queries through `queries` (docs/architecture.md, "Interactive
    /// queries"): the running tasks and the standbys register their stores there, and
    /// the heartbeats carry this instance's HTTP address and active tasks.
    pub fn with_interactive_queries(mut self, queries: Arc<InteractiveQueries>) -> Self {
        let mut partitions = vec![1; self.topology.sub_topologies.len()];
        for (topic, count) in &self.source_partitions {
            if let Some(sub) = self.topology.reader_of(topic) {
                partitions[sub.id as usize] = *count;
            }
        }
        queries.set_layout(&self.topology, &partitions);
        queries.set_peer_timeout(Duration::from_millis(
            self.config.processing.peer_timeout_ms,
        ));
        self.tasks.set_interactive_queries(queries.clone());
        self.queries = Some(queries);
        self
    }
}
