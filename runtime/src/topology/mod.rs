//! The topology: the one definition of what runs (docs/architecture.md, "Topology").
//!
//! A [`Topology`] is built from registered processors ([`TopologyBuilder`]); each
//! processor declares the topics it reads with their deserializers, the stores it owns
//! and its sinks ([`crate::processor::Processor`]). Each processor with its inputs is a
//! sub-topology, whose tasks are `<id>_<partition>`. Everything else is derived here:
//! which sub-topology a consumed record belongs to, which stores a task opens (with
//! their changelogs and TTLs), which topics exist with which role
//! ([`Topology::topics`], used for creation and the start-up check), which topics must
//! be co-partitioned, and `paystream topology` ([`Topology::to_text`],
//! [`Topology::to_mermaid`]).
//!
//! An application registers its processors, and the external readers of its outputs
//! (e.g. a database writer) for the description and topic creation, in one function.

mod builder;
mod describe;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use builder::{ExternalReader, TopologyBuilder, TopologyError};

use crate::config::Config;
use crate::processor::{SinkFormat, TaskProcessor};
use crate::serde::ErasedDeserializer;
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

impl std::str::FromStr for TaskId {
    type Err = String;

    /// Parses `<sub_topology>_<partition>`, as [`TaskId`] displays.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{s:?} is not a task id (<sub_topology>_<partition>)");
        let (sub, partition) = s.split_once('_').ok_or_else(invalid)?;
        Ok(TaskId {
            sub_topology: sub.parse().map_err(|_| invalid())?,
            partition: partition.parse().map_err(|_| invalid())?,
        })
    }
}

/// A topic a sub-topology reads.
#[derive(Clone)]
pub struct SourceTopic {
    /// Full topic name.
    pub topic: String,
    /// What turns its values into the processor's input type.
    pub deserializer: Arc<dyn ErasedDeserializer>,
    /// True for a topic this application owns (a repartition topic).
    pub internal: bool,
}

impl std::fmt::Debug for SourceTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTopic")
            .field("topic", &self.topic)
            .field("type", &self.deserializer.type_name())
            .field("internal", &self.internal)
            .finish()
    }
}

/// A sink of a sub-topology: where its processor forwards records of one name.
#[derive(Clone)]
pub struct SinkTopic {
    /// The name the processor forwards to.
    pub name: &'static str,
    /// Full topic name.
    pub topic: String,
    pub format: SinkFormat,
    /// True when a sub-topology of the application reads the topic (a repartition
    /// topic): its reader may hold back until what was written is read back.
    pub repartition: bool,
}

impl std::fmt::Debug for SinkTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTopic")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field(
                "pass_through",
                &matches!(self.format, SinkFormat::PassThrough),
            )
            .finish()
    }
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
    /// Where forwarded records go, in declaration order.
    pub sinks: Vec<SinkTopic>,
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

    /// The sink named `name`, if the processor declares one.
    pub fn sink(&self, name: &str) -> Option<&SinkTopic> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// The position of `topic` among the sub-topology's sources (its input index).
    pub fn input_index(&self, topic: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.topic == topic)
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
    /// Readers of the application's outputs outside the topology (e.g. a database
    /// writer), for the description and topic creation.
    pub external_readers: Vec<ExternalReader>,
    /// `<app>-dlq-redrives`, written by `paystream dlq redrive`.
    pub redrive_log: String,
    /// The instances' heartbeats (`liveness.rs`).
    pub liveness: String,
}

impl Topology {
    /// A builder with no processor yet, for `config`'s topic prefix and application id.
    pub fn builder(config: &Config) -> TopologyBuilder {
        TopologyBuilder {
            names: TopicNames::new(config),
            application_id: config.application_id.clone(),
            processors: Vec::new(),
            external_readers: Vec::new(),
        }
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

    /// The name of the type records of source `topic` decode to (`None`: no processor
    /// reads it).
    pub fn type_of(&self, topic: &str) -> Option<&'static str> {
        self.sub_topologies
            .iter()
            .flat_map(|sub| &sub.sources)
            .find(|s| s.topic == topic)
            .map(|s| s.deserializer.type_name())
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
            .any(|sink| self.reader_of(&sink.topic).is_some())
    }

    /// Every topic of the application with its role: inputs with their dead-letter
    /// queues, outputs, repartition topics, changelogs, the dead-letter queues of the
    /// external readers' sources and the redrive log.
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
            for sink in &sub.sinks {
                let role = if self.reader_of(&sink.topic).is_some() {
                    TopicRole::Repartition
                } else {
                    TopicRole::Output
                };
                all.entry(sink.topic.clone()).or_insert(role);
            }
            for store in &sub.stores {
                all.insert(store.changelog.clone(), TopicRole::Changelog);
            }
        }
        for source in self.external_readers.iter().flat_map(|r| &r.sources) {
            all.entry(source.clone()).or_insert(TopicRole::Output);
            all.insert(TopicNames::dead_letter(source), TopicRole::DeadLetter);
        }
        all.insert(self.redrive_log.clone(), TopicRole::RedriveLog);
        all.insert(self.liveness.clone(), TopicRole::Liveness);
        all.into_iter().collect()
    }

    /// Every dead-letter queue: of the inputs, then of the external readers' sources.
    pub fn dead_letter_topics(&self) -> Vec<String> {
        self.topics()
            .into_iter()
            .filter(|(_, role)| *role == TopicRole::DeadLetter)
            .map(|(topic, _)| topic)
            .collect()
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
