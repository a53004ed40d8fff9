//! Topic names and topic creation (docs/architecture.md, "Topology").
//!
//! Input and output topics carry the configured `topics.prefix`; internal topics are
//! named after the application id, as in Kafka Streams: `<app>-payments-by-id` (the
//! repartition topic) and `<app>-<store>-changelog` (compacted). Each input topic has a
//! dead-letter queue `<topic>.dlq`, and so has each topic the ledger sink reads.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::kafka::{client_config, partition_count};
use crate::topology::Topology;
use crate::{Error, Result};

/// What a topic is for; decides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    Input,
    Output,
    Repartition,
    Changelog,
    DeadLetter,
    /// `<app>-dlq-redrives`: which dead letters were redriven (compacted, key = the dead
    /// letter's `topic:partition:offset`), written by `paystream dlq redrive`.
    RedriveLog,
}

/// All topic names of one application.
#[derive(Debug, Clone)]
pub struct TopicNames {
    pub payment_initiated: String,
    pub auth_success: String,
    pub auth_failure: String,
    pub settlement: String,
    pub payment_status: String,
    pub ledger_entries: String,
    pub reconciliation_exceptions: String,
    pub payments_by_id: String,
    /// The redrive log (see [`TopicRole::RedriveLog`]).
    pub dlq_redrives: String,
    application_id: String,
    prefix: String,
}

impl TopicNames {
    /// Names for `config`'s prefix and application id.
    pub fn new(config: &Config) -> Self {
        let p = &config.topics.prefix;
        let app = &config.application_id;
        TopicNames {
            payment_initiated: format!("{p}payment_initiated"),
            auth_success: format!("{p}auth_success"),
            auth_failure: format!("{p}auth_failure"),
            settlement: format!("{p}settlement"),
            payment_status: format!("{p}payment_status"),
            ledger_entries: format!("{p}ledger_entries"),
            reconciliation_exceptions: format!("{p}reconciliation_exceptions"),
            payments_by_id: format!("{app}-payments-by-id"),
            dlq_redrives: format!("{app}-dlq-redrives"),
            prefix: p.clone(),
            application_id: app.clone(),
        }
    }

    /// The full name of a topic a processor declares: `<topics.prefix><name>` for an
    /// external topic, `<application_id>-<name>` for an internal one.
    pub fn resolve(&self, topic: paystream_processors::TopicRef) -> String {
        match topic {
            paystream_processors::TopicRef::External(name) => format!("{}{name}", self.prefix),
            paystream_processors::TopicRef::Internal(name) => self.internal(name),
        }
    }

    /// The full name of internal topic `name`: `<application_id>-<name>`.
    pub fn internal(&self, name: &str) -> String {
        format!("{}-{name}", self.application_id)
    }

    /// The four input topics.
    pub fn inputs(&self) -> [&str; 4] {
        [
            &self.payment_initiated,
            &self.auth_success,
            &self.auth_failure,
            &self.settlement,
        ]
    }

    /// The three topics the ledger sink reads (the outputs it writes to PostgreSQL).
    pub fn sink_inputs(&self) -> [&str; 3] {
        [
            &self.ledger_entries,
            &self.payment_status,
            &self.reconciliation_exceptions,
        ]
    }

    /// The seven dead-letter topics: one per input topic (the pipeline's), then one per
    /// topic the ledger sink reads (the sink's, for records PostgreSQL refuses).
    pub fn dead_letter_topics(&self) -> Vec<String> {
        self.inputs()
            .iter()
            .chain(self.sink_inputs().iter())
            .map(|t| Self::dead_letter(t))
            .collect()
    }

    /// The input topic a user named: by base name (`settlement`), full name
    /// (`<prefix>settlement`) or its dead-letter topic's name (`<prefix>settlement.dlq`).
    pub fn resolve_input(&self, name: &str) -> Option<&str> {
        let name = name.strip_suffix(".dlq").unwrap_or(name);
        let prefixed = format!("{}{name}", self.prefix);
        self.inputs()
            .into_iter()
            .find(|input| *input == name || *input == prefixed)
    }

    /// Topics keyed by payment id that one lifecycle task reads together; they must have
    /// equal partition counts.
    pub fn co_partitioned(&self) -> [&str; 4] {
        [
            &self.payments_by_id,
            &self.auth_success,
            &self.auth_failure,
            &self.settlement,
        ]
    }

    /// The changelog topic of state store `store`.
    pub fn changelog(&self, store: &str) -> String {
        self.internal(&format!("{store}-changelog"))
    }

    /// The dead-letter queue of `source_topic`.
    pub fn dead_letter(source_topic: &str) -> String {
        format!("{source_topic}.dlq")
    }
}

/// `max.message.bytes` of dead-letter topics: twice Kafka's default record limit
/// (1 MiB), so any record an input topic with default limits accepted fits with its
/// dead-letter headers. The pipeline's producer allows records this large.
pub const DEAD_LETTER_RECORD_BYTES_MAX: &str = "2097152";

/// Retention of dead-letter topics: 30 days from when a record was dead-lettered.
pub const DEAD_LETTER_RETENTION_MS: &str = "2592000000";

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
            let topic = NewTopic::new(
                name,
                config.topics.partitions,
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
/// [`Error::TopicMissing`], [`Error::NotCoPartitioned`] or [`Error::TooFewPartitions`].
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
    for source in &topology.ledger_sink_sources {
        at_least.push((TopicNames::dead_letter(source), count(source)));
    }
    for (topic, needed) in at_least {
        let found = count(&topic);
        if found < needed {
            return Err(Error::TooFewPartitions {
                topic,
                found,
                needed,
            });
        }
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_product_brief() {
        let mut config = Config {
            application_id: "app".into(),
            ..Config::default()
        };
        config.topics.prefix = "t1.".into();
        let names = TopicNames::new(&config);
        assert_eq!(names.payment_initiated, "t1.payment_initiated");
        assert_eq!(names.payments_by_id, "app-payments-by-id");
        assert_eq!(names.changelog("payments"), "app-payments-changelog");
        assert_eq!(
            TopicNames::dead_letter("t1.settlement"),
            "t1.settlement.dlq"
        );
        let all = crate::topology::Topology::payments(&config).topics();
        assert!(all.contains(&("t1.ledger_entries.dlq".into(), TopicRole::DeadLetter)));
        assert!(all.contains(&("app-dlq-redrives".into(), TopicRole::RedriveLog)));
        assert!(all.contains(&("app-idempotency-changelog".into(), TopicRole::Changelog)));
    }

    #[test]
    fn inputs_resolve_by_base_full_and_dead_letter_name() {
        let mut config = Config::default();
        config.topics.prefix = "t1.".into();
        let names = TopicNames::new(&config);
        for given in ["settlement", "t1.settlement", "t1.settlement.dlq"] {
            assert_eq!(names.resolve_input(given), Some("t1.settlement"), "{given}");
        }
        assert_eq!(names.resolve_input("ledger_entries"), None);
        assert_eq!(names.dead_letter_topics().len(), 4 + 3);
        assert!(
            names
                .dead_letter_topics()
                .contains(&"t1.payment_status.dlq".to_string())
        );
    }
}
