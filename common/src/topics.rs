//! Topic names, roles and the settings of dead-letter topics (docs/architecture.md,
//! "Topology"); the stream runtime creates and checks them (its `topic_admin.rs`).
//!
//! Input and output topics carry the configured `topics.prefix`; internal topics are
//! named after the application id, as in Kafka Streams: `<app>-<name>` (repartition
//! topics) and `<app>-<store>-changelog` (compacted). Each input topic has a
//! dead-letter queue `<topic>.dlq`, and so has each topic an external reader reads.

use crate::config::Config;

/// A topic by its logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicRef {
    /// A topic shared with other teams (ingress producers, downstream consumers):
    /// `<topics.prefix><name>`.
    External(&'static str),
    /// A topic this application owns: `<application_id>-<name>`, e.g. a repartition
    /// topic.
    Internal(&'static str),
}

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
    /// `<app>-liveness`: every instance's heartbeat, a few times a second (key = its
    /// instance id), so that instances notice a dead peer sooner than the group's
    /// session does (one partition, kept an hour).
    Liveness,
}

/// How one application names its topics.
#[derive(Debug, Clone)]
pub struct TopicNames {
    /// The redrive log (see [`TopicRole::RedriveLog`]).
    pub dlq_redrives: String,
    /// The instances' heartbeats (see [`TopicRole::Liveness`]).
    pub liveness: String,
    application_id: String,
    prefix: String,
}

impl TopicNames {
    /// Names for `config`'s prefix and application id.
    pub fn new(config: &Config) -> Self {
        TopicNames {
            dlq_redrives: format!("{}-dlq-redrives", config.application_id),
            liveness: format!("{}-liveness", config.application_id),
            prefix: config.topics.prefix.clone(),
            application_id: config.application_id.clone(),
        }
    }

    /// The full name of a topic a processor declares: `<topics.prefix><name>` for an
    /// external topic, `<application_id>-<name>` for an internal one.
    pub fn resolve(&self, topic: TopicRef) -> String {
        match topic {
            TopicRef::External(name) => self.external(name),
            TopicRef::Internal(name) => self.internal(name),
        }
    }

    /// The full name of external topic `name`: `<topics.prefix><name>`.
    pub fn external(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The full name of internal topic `name`: `<application_id>-<name>`.
    pub fn internal(&self, name: &str) -> String {
        format!("{}-{name}", self.application_id)
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

/// `message.max.bytes` of every producer that writes dead letters (the pipeline's, the
/// ledger sink's, `dlq redrive`'s): [`DEAD_LETTER_RECORD_BYTES_MAX`] (2 MiB) plus room
/// for the batch framing, so any dead letter a dead-letter topic takes can be sent.
pub const PRODUCER_RECORD_BYTES_MAX: &str = "2162688";

/// Retention of dead-letter topics: 30 days from when a record was dead-lettered.
pub const DEAD_LETTER_RETENTION_MS: &str = "2592000000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_topics_take_the_prefix_and_internal_ones_the_application_id() {
        let mut config = Config {
            application_id: "app".into(),
            ..Config::default()
        };
        config.topics.prefix = "t1.".into();
        let names = TopicNames::new(&config);
        assert_eq!(names.resolve(TopicRef::External("orders")), "t1.orders");
        assert_eq!(names.resolve(TopicRef::Internal("by-id")), "app-by-id");
        assert_eq!(names.changelog("seen"), "app-seen-changelog");
        assert_eq!(names.dlq_redrives, "app-dlq-redrives");
        assert_eq!(TopicNames::dead_letter("t1.orders"), "t1.orders.dlq");
    }
}
