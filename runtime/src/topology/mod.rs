//! The topology: the one definition of what runs (docs/architecture.md, "Topology").
//!
//! A [`Topology`] is built from registered processors ([`TopologyBuilder`]); each
//! processor declares the topics it reads, the stores it owns and where its outputs go
//! (`paystream_processors::Processor`). Each processor with its inputs is a
//! sub-topology, whose tasks are `<id>_<partition>`. Everything else is derived here:
//! which sub-topology a consumed record belongs to, which stores a task opens (with
//! their changelogs and TTLs), which topics exist with which role
//! ([`Topology::topics`], used for creation and the start-up check), which topics must
//! be co-partitioned, and `paystream topology` ([`Topology::to_text`],
//! [`Topology::to_mermaid`]).
//!
//! [`Topology::payments`] is paystream's registration: dedupe, then the payment
//! lifecycle.

mod builder;
mod describe;

use std::collections::BTreeMap;
use std::sync::Arc;

use paystream_processors::dedupe::DedupeProcessor;
use paystream_processors::lifecycle::LifecycleProcessor;
use paystream_processors::{EventType, OutputKind, TaskProcessor};

pub use builder::{TopologyBuilder, TopologyError};

use crate::config::Config;
use crate::topics::{TopicNames, TopicRole};

/// Makes one processor instance; the runtime calls it once per task.
pub type ProcessorFactory = Arc<dyn Fn() -> Box<dyn TaskProcessor> + Send + Sync>;

/// A task id, written `<sub-topology>_<partition>` as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology's id in the [`Topology`].
    pub sub_topology: u8,
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.sub_topology, self.partition)
    }
}

/// A topic a sub-topology reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopic {
    /// Full topic name.
    pub topic: String,
    /// What its records decode to.
    pub event: EventType,
    /// True for a topic this application owns (a repartition topic).
    pub internal: bool,
}

/// A state store of a sub-topology's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub name: &'static str,
    /// Full name of its changelog topic.
    pub changelog: String,
    /// Time to live of its keys, milliseconds of stream time (`None`: kept).
    pub ttl_ms: Option<i64>,
}

/// One processor with its sources, stores and sinks.
#[derive(Clone)]
pub struct SubTopology {
    /// Position in the topology; task ids are `<id>_<partition>`.
    pub id: u8,
    /// The processor's name.
    pub processor: &'static str,
    pub sources: Vec<SourceTopic>,
    pub stores: Vec<Store>,
    /// Where each kind of output goes (full topic names), in declaration order.
    pub sinks: Vec<(OutputKind, String)>,
    /// Where records that cannot be processed go: the dead-letter queue of each input
    /// topic whose records reach this processor (for a repartition topic, those of the
    /// topics its writer reads).
    pub dead_letter_topics: Vec<String>,
    factory: ProcessorFactory,
}

impl std::fmt::Debug for SubTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubTopology")
            .field("id", &self.id)
            .field("processor", &self.processor)
            .field("sources", &self.sources)
            .field("stores", &self.stores)
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

impl SubTopology {
    /// A new instance of the processor, for one task.
    pub fn processor(&self) -> Box<dyn TaskProcessor> {
        (self.factory)()
    }

    /// The topic outputs of `kind` go to, if the processor declares one.
    pub fn sink(&self, kind: OutputKind) -> Option<&str> {
        self.sinks
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, topic)| topic.as_str())
    }

    /// The sub-topology's repartition source, if it has one: the internal topic that
    /// records of its other sources are forwarded through when they arrive on another
    /// partition than their key's.
    pub fn internal_source(&self) -> Option<&str> {
        self.sources
            .iter()
            .find(|s| s.internal)
            .map(|s| s.topic.as_str())
    }
}

/// The whole topology of one application.
#[derive(Debug, Clone)]
pub struct Topology {
    pub application_id: String,
    pub sub_topologies: Vec<SubTopology>,
    /// The ledger sink: topics it reads and the PostgreSQL tables it writes.
    pub ledger_sink_sources: Vec<String>,
    pub ledger_sink_tables: Vec<&'static str>,
    /// `<app>-dlq-redrives`, written by `paystream dlq redrive`.
    pub redrive_log: String,
}

impl Topology {
    /// A builder with no processor yet, for `config`'s topic prefix and application id.
    pub fn builder(config: &Config) -> TopologyBuilder {
        TopologyBuilder {
            names: TopicNames::new(config),
            application_id: config.application_id.clone(),
            processors: Vec::new(),
        }
    }

    /// paystream's topology: `payment_initiated` → dedupe → the repartition topic →
    /// payment lifecycle (with the auth and settlement topics) → status, journal
    /// entries and reconciliation exceptions.
    pub fn payments(config: &Config) -> Topology {
        let retention_ms = config.state.idempotency_retention_ms;
        let settings = config.processing.lifecycle_settings();
        Topology::builder(config)
            .processor(move || DedupeProcessor::new(retention_ms))
            .processor(move || {
                LifecycleProcessor::new(settings).with_event_id_retention_ms(retention_ms)
            })
            .build()
            .expect("paystream's processors make a valid topology")
    }

    /// The sub-topology `id`.
    ///
    /// # Panics
    /// When there is none: task ids are made from this topology.
    pub fn sub_topology(&self, id: u8) -> &SubTopology {
        &self.sub_topologies[id as usize]
    }

    /// The sub-topology that reads `topic`.
    pub fn reader_of(&self, topic: &str) -> Option<&SubTopology> {
        self.sub_topologies
            .iter()
            .find(|sub| sub.sources.iter().any(|s| s.topic == topic))
    }

    /// Every topic the application consumes (its subscription).
    pub fn source_topics(&self) -> Vec<&str> {
        self.sub_topologies
            .iter()
            .flat_map(|sub| sub.sources.iter().map(|s| s.topic.as_str()))
            .collect()
    }

    /// The event records of input `topic` decode to (`None`: not an input).
    pub fn event_of(&self, topic: &str) -> Option<EventType> {
        self.sub_topologies
            .iter()
            .flat_map(|sub| &sub.sources)
            .find(|s| s.topic == topic)
            .map(|s| s.event)
    }

    /// The changelog topic of store `store` of sub-topology `id`.
    ///
    /// # Panics
    /// When the sub-topology has no such store: store names come from this topology.
    pub fn changelog_of(&self, id: u8, store: &str) -> &str {
        self.sub_topology(id)
            .stores
            .iter()
            .find(|s| s.name == store)
            .map(|s| s.changelog.as_str())
            .expect("a task's stores are its sub-topology's")
    }

    /// Every state store of every sub-topology.
    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.sub_topologies.iter().flat_map(|sub| &sub.stores)
    }

    /// True when some sub-topology reads what `sub` writes (its outputs stay inside the
    /// application, as the repartition topic does).
    pub fn feeds_another(&self, sub: &SubTopology) -> bool {
        sub.sinks
            .iter()
            .any(|(_, topic)| self.reader_of(topic).is_some())
    }

    /// Every topic of the application with its role: inputs with their dead-letter
    /// queues, outputs, repartition topics, changelogs, the ledger sink's dead-letter
    /// queues and the redrive log.
    pub fn topics(&self) -> Vec<(String, TopicRole)> {
        let mut all: BTreeMap<String, TopicRole> = BTreeMap::new();
        for sub in &self.sub_topologies {
            for source in &sub.sources {
                if source.internal {
                    all.insert(source.topic.clone(), TopicRole::Repartition);
                } else {
                    all.insert(source.topic.clone(), TopicRole::Input);
                    all.insert(
                        TopicNames::dead_letter(&source.topic),
                        TopicRole::DeadLetter,
                    );
                }
            }
            for (_, sink) in &sub.sinks {
                let role = if self.reader_of(sink).is_some() {
                    TopicRole::Repartition
                } else {
                    TopicRole::Output
                };
                all.entry(sink.clone()).or_insert(role);
            }
            for store in &sub.stores {
                all.insert(store.changelog.clone(), TopicRole::Changelog);
            }
        }
        for source in &self.ledger_sink_sources {
            all.entry(source.clone()).or_insert(TopicRole::Output);
            all.insert(TopicNames::dead_letter(source), TopicRole::DeadLetter);
        }
        all.insert(self.redrive_log.clone(), TopicRole::RedriveLog);
        all.into_iter().collect()
    }

    /// Topics the application owns besides changelogs: repartition topics and the
    /// redrive log.
    pub fn internal_topics(&self) -> Vec<String> {
        let mut internal: Vec<String> = self
            .sub_topologies
            .iter()
            .flat_map(|sub| &sub.sources)
            .filter(|s| s.internal)
            .map(|s| s.topic.clone())
            .collect();
        internal.push(self.redrive_log.clone());
        internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_names_every_store_changelog_and_topic() {
        let topology = Topology::payments(&Config::default());
        let text = topology.to_text();
        for expected in [
            "payment_initiated",
            "paystream-payments-by-id",
            "paystream-idempotency-changelog",
            "paystream-timers-changelog",
            "reconciliation_exceptions",
            "settlement.dlq",
            "paystream-dlq-redrives",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }

    #[test]
    fn the_readme_shows_the_current_topology() {
        let mermaid = Topology::payments(&Config::default()).to_mermaid();
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&mermaid),
            "README.md must contain the output of `paystream topology --format mermaid`:\n{mermaid}"
        );
    }

    #[test]
    fn routing_stores_and_topics_come_from_the_processors() {
        let mut config = Config {
            application_id: "app".into(),
            ..Config::default()
        };
        config.topics.prefix = "t1.".into();
        let topology = Topology::payments(&config);
        assert_eq!(topology.reader_of("t1.payment_initiated").unwrap().id, 0);
        assert_eq!(topology.reader_of("app-payments-by-id").unwrap().id, 1);
        assert_eq!(topology.reader_of("t1.settlement").unwrap().id, 1);
        assert!(topology.reader_of("t1.payment_status").is_none());
        assert_eq!(
            topology.event_of("t1.auth_failure"),
            Some(EventType::AuthFailed)
        );
        let lifecycle = topology.sub_topology(1);
        assert_eq!(lifecycle.internal_source(), Some("app-payments-by-id"));
        assert_eq!(
            lifecycle.sink(OutputKind::JournalEntry),
            Some("t1.ledger_entries")
        );
        assert!(topology.feeds_another(topology.sub_topology(0)));
        assert!(!topology.feeds_another(lifecycle));
        let seen = lifecycle
            .stores
            .iter()
            .find(|s| s.name == "seen_events")
            .unwrap();
        assert_eq!(seen.changelog, "app-seen_events-changelog");
        assert_eq!(seen.ttl_ms, Some(config.state.idempotency_retention_ms));
        assert_eq!(
            lifecycle.dead_letter_topics,
            [
                "t1.payment_initiated.dlq",
                "t1.auth_success.dlq",
                "t1.auth_failure.dlq",
                "t1.settlement.dlq"
            ]
        );
        let topics = topology.topics();
        // inputs and their DLQs, outputs and the sink's DLQs, repartition, redrive log,
        // six changelogs
        assert_eq!(topics.len(), 4 * 2 + 3 * 2 + 1 + 1 + 6, "{topics:?}");
        assert!(topics.contains(&("app-payments-by-id".into(), TopicRole::Repartition)));
        assert!(topics.contains(&("t1.ledger_entries".into(), TopicRole::Output)));
        assert!(topics.contains(&("t1.ledger_entries.dlq".into(), TopicRole::DeadLetter)));
        assert!(topics.contains(&("app-dlq-redrives".into(), TopicRole::RedriveLog)));
        assert!(topics.contains(&("app-idempotency-changelog".into(), TopicRole::Changelog)));
    }

    #[test]
    fn a_topic_has_one_reader() {
        let config = Config::default();
        let error = Topology::builder(&config)
            .processor(DedupeProcessor::default)
            .processor(DedupeProcessor::default)
            .build()
            .unwrap_err();
        assert!(
            matches!(error, TopologyError::TopicReadTwice { .. }),
            "{error}"
        );
    }
}
