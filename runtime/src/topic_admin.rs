//! Creating and checking the topics of a [`Topology`] (docs/architecture.md, "Topic
//! settings that matter"): every topic with its role's settings, and the start-up checks
//! that the topics fit the topology.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;

use crate::config::Config;
use crate::kafka::{client_config, partition_count};
use crate::topics::{
    DEAD_LETTER_RECORD_BYTES_MAX, DEAD_LETTER_RETENTION_MS, TopicNames, TopicRole,
};
use crate::topology::Topology;
use crate::{Error, Result};

/// Outcome of [`create_topics`] for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExisted,
}

/// Creates every topic of the application that does not exist yet: `topics.partitions`
/// partitions, `topics.replication_factor` replicas; changelogs compacted (docs/architecture.md, "Topic settings that matter");
/// the repartition topic without time retention; dead-letter topics timestamped on
/// append and kept 30 days.
///
/// # Errors
/// [`Error::Kafka`] when the admin request fails for another reason than "exists".
pub async fn create_topics(
    config: &Config,
    topology: &Topology,
) -> Result<Vec<(String, TopicRole, Created)>> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let all = topology.topics();
    let new_topics: Vec<NewTopic<'_>> = all
        .iter()
        .map(|(name, role)| {
            let partitions = match role {
                TopicRole::Liveness => 1,
                _ => config.topics.partitions,
            };
            let topic = NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(config.topics.replication_factor),
            );
            match role {
                TopicRole::Changelog | TopicRole::RedriveLog => {
                    topic.set("cleanup.policy", "compact")
                }
                // Records keep their event time; an old event must not be deleted by
                // retention before the lifecycle has read it (as in Kafka Streams).
                TopicRole::Repartition => topic.set("retention.ms", "-1"),
                // Dead letters are kept by when they were dead-lettered, not by the
                // age of the event.
                // Room for any input record plus the dead-letter headers.
                TopicRole::DeadLetter => topic
                    .set("message.timestamp.type", "LogAppendTime")
                    .set("retention.ms", DEAD_LETTER_RETENTION_MS)
                    .set("max.message.bytes", DEAD_LETTER_RECORD_BYTES_MAX),
                // Heartbeats matter for seconds.
                TopicRole::Liveness => topic.set("retention.ms", "3600000"),
                TopicRole::Input | TopicRole::Output => topic,
            }
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_millis(config.kafka.request_timeout_ms)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| Error::kafka("creating topics", e))?;
    let mut outcome = Vec::new();
    for ((name, role), result) in all.into_iter().zip(results) {
        match result {
            Ok(_) => outcome.push((name, role, Created::Created)),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                outcome.push((name, role, Created::AlreadyExisted))
            }
            Err((topic, code)) => {
                return Err(Error::TopicCreation { topic, code });
            }
        }
    }
    Ok(outcome)
}

/// Checks that every topic of `topology` exists, that the sources of each
/// sub-topology are co-partitioned (equal partition counts: one task reads the same
/// partition of each), and that the topics a task writes to by partition number — its
/// changelogs and its inputs' dead-letter queues — have at least as many partitions as
/// its sources. Returns each sub-topology's partition count (its task count).
///
/// # Errors
/// [`Error::Common`] (a topic missing or with too few partitions) or
/// [`Error::NotCoPartitioned`].
pub fn check_topics<C: ConsumerContext>(
    config: &Config,
    topology: &Topology,
    consumer: &impl Consumer<C>,
) -> Result<Vec<i32>> {
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for (topic, _) in topology.topics() {
        let n = partition_count(consumer, &topic, timeout)?;
        counts.insert(topic, n);
    }
    let count = |topic: &str| counts.get(topic).copied().unwrap_or(0);
    let mut partitions = Vec::new();
    let mut at_least: Vec<(String, i32)> = Vec::new();
    for sub in &topology.sub_topologies {
        let sources: Vec<(&str, i32)> = sub
            .sources
            .iter()
            .map(|s| (s.topic.as_str(), count(&s.topic)))
            .collect();
        if sources.iter().any(|(_, n)| *n != sources[0].1) {
            let listed: Vec<String> = sources.iter().map(|(t, n)| format!("{t}={n}")).collect();
            return Err(Error::NotCoPartitioned {
                counts: listed.join(", "),
            });
        }
        let tasks = sources[0].1;
        partitions.push(tasks);
        for store in &sub.stores {
            at_least.push((store.changelog.clone(), tasks));
        }
        for source in sub.sources.iter().filter(|s| !s.internal) {
            at_least.push((TopicNames::dead_letter(&source.topic), tasks));
        }
    }
    for source in topology.external_readers.iter().flat_map(|r| &r.sources) {
        at_least.push((TopicNames::dead_letter(source), count(source)));
    }
    for (topic, needed) in at_least {
        let found = count(&topic);
        if found < needed {
            return Err(paystream_common::Error::TooFewPartitions {
                topic,
                found,
                needed,
            }
            .into());
        }
    }
    Ok(partitions)
}
