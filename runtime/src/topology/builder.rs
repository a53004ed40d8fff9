//! Building a [`Topology`] from processors, in the manner of Kafka Streams'
//! `Topology.addProcessor`: each processor's declarations are resolved to full topic
//! names, and the dead-letter queues of each sub-topology derived from its inputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::processor::{TaskProcessor, TopicRef};

use super::{ProcessorFactory, SinkTopic, SourceTopic, Store, SubTopology, Topology};
use crate::topics::TopicNames;

/// Why processors do not make a topology.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("topic {topic} is read by both {first} and {second}; a topic has one reader")]
    TopicReadTwice {
        topic: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("state store {store} is declared by both {first} and {second}")]
    StoreDeclaredTwice {
        store: &'static str,
        first: &'static str,
        second: &'static str,
    },
    #[error("processor {processor} declares no input topic")]
    NoInputs { processor: &'static str },
    #[error("processor {processor} declares sink {sink} twice")]
    SinkDeclaredTwice {
        processor: &'static str,
        sink: &'static str,
    },
}

/// A reader of the application's outputs outside the topology (e.g. a database writer):
/// shown in the description, and its sources get dead-letter queues of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalReader {
    /// Its name, e.g. `ledger sink`.
    pub name: &'static str,
    /// Full names of the topics it reads.
    pub sources: Vec<String>,
    /// What it writes to, e.g. `PostgreSQL`.
    pub target: &'static str,
    /// What it writes there, e.g. table names.
    pub writes: Vec<&'static str>,
}

/// Builds a [`Topology`] from processors, in the manner of Kafka Streams'
/// `Topology.addProcessor`.
pub struct TopologyBuilder {
    pub(super) names: TopicNames,
    pub(super) application_id: String,
    pub(super) processors: Vec<ProcessorFactory>,
    pub(super) external_readers: Vec<ExternalReader>,
}

impl TopologyBuilder {
    /// Adds a processor; `factory` makes one instance per task.
    pub fn processor<P, F>(mut self, factory: F) -> Self
    where
        P: TaskProcessor + 'static,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.processors.push(Arc::new(move || {
            Box::new(factory()) as Box<dyn TaskProcessor>
        }));
        self
    }

    /// Adds a reader of `sources` outside the topology, writing `writes` to `target`
    /// (see [`ExternalReader`]).
    pub fn external_reader(
        mut self,
        name: &'static str,
        sources: &[TopicRef],
        target: &'static str,
        writes: &[&'static str],
    ) -> Self {
        let sources = sources.iter().map(|t| self.names.resolve(*t)).collect();
        self.external_readers.push(ExternalReader {
            name,
            sources,
            target,
            writes: writes.to_vec(),
        });
        self
    }

    /// The topology of the processors added, in order (sub-topology ids `0..`).
    ///
    /// # Errors
    /// [`TopologyError`] when two processors read one topic or declare one store, or a
    /// processor reads nothing.
    pub fn build(self) -> Result<Topology, TopologyError> {
        let names = &self.names;
        let mut readers: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut owners: BTreeMap<&'static str, &'static str> = BTreeMap::new();
        let mut sub_topologies: Vec<SubTopology> = Vec::new();
        for (id, factory) in self.processors.into_iter().enumerate() {
            let prototype = factory();
            let processor = prototype.name();
            let inputs = prototype.inputs();
            if inputs.is_empty() {
                return Err(TopologyError::NoInputs { processor });
            }
            let mut sources = Vec::new();
            for (topic_ref, deserializer) in inputs {
                let topic = names.resolve(topic_ref);
                if let Some(first) = readers.insert(topic.clone(), processor) {
                    return Err(TopologyError::TopicReadTwice {
                        topic,
                        first,
                        second: processor,
                    });
                }
                sources.push(SourceTopic {
                    topic,
                    deserializer,
                    internal: matches!(topic_ref, TopicRef::Internal(_)),
                });
            }
            let mut stores = Vec::new();
            for spec in prototype.stores() {
                if let Some(first) = owners.insert(spec.name, processor) {
                    return Err(TopologyError::StoreDeclaredTwice {
                        store: spec.name,
                        first,
                        second: processor,
                    });
                }
                stores.push(Store {
                    name: spec.name,
                    changelog: names.internal(&spec.changelog()),
                    ttl_ms: spec.ttl_ms,
                });
            }
            let mut sinks: Vec<SinkTopic> = Vec::new();
            for sink in prototype.sinks() {
                if sinks.iter().any(|s| s.name == sink.name) {
                    return Err(TopologyError::SinkDeclaredTwice {
                        processor,
                        sink: sink.name,
                    });
                }
                sinks.push(SinkTopic {
                    name: sink.name,
                    topic: names.resolve(sink.topic),
                    format: sink.format,
                    repartition: false,
                });
            }
            sub_topologies.push(SubTopology {
                id: id as u8,
                processor,
                sources,
                stores,
                sinks,
                dead_letter_topics: Vec::new(),
                factory,
            });
        }
        let read: Vec<String> = sub_topologies
            .iter()
            .flat_map(|sub| sub.sources.iter().map(|s| s.topic.clone()))
            .collect();
        for sink in sub_topologies
            .iter_mut()
            .flat_map(|sub| sub.sinks.iter_mut())
        {
            sink.repartition = read.contains(&sink.topic);
        }
        // Dead letters go to the queue of the record's origin: for a repartition topic,
        // the inputs of the sub-topology writing it.
        let writers: Vec<(String, Vec<String>)> = sub_topologies
            .iter()
            .flat_map(|sub| {
                let inputs: Vec<String> = sub
                    .sources
                    .iter()
                    .filter(|s| !s.internal)
                    .map(|s| s.topic.clone())
                    .collect();
                sub.sinks
                    .iter()
                    .map(move |sink| (sink.topic.clone(), inputs.clone()))
            })
            .collect();
        for sub in &mut sub_topologies {
            let mut dead_letter = Vec::new();
            for source in &sub.sources {
                let origins = if source.internal {
                    writers
                        .iter()
                        .filter(|(topic, _)| *topic == source.topic)
                        .flat_map(|(_, inputs)| inputs.clone())
                        .collect()
                } else {
                    vec![source.topic.clone()]
                };
                for origin in origins {
                    let topic = TopicNames::dead_letter(&origin);
                    if !dead_letter.contains(&topic) {
                        dead_letter.push(topic);
                    }
                }
            }
            sub.dead_letter_topics = dead_letter;
        }
        Ok(Topology {
            application_id: self.application_id,
            sub_topologies,
            external_readers: self.external_readers,
            redrive_log: names.dlq_redrives.clone(),
            liveness: names.liveness.clone(),
        })
    }
}
