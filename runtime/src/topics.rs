//! Topic names, roles and the settings of dead-letter topics (docs/architecture.md,
//! "Topology"); creating and checking them is [`crate::topic_admin`].
//!
//! Input and output topics carry the configured `topics.prefix`; internal topics are
//! named after the application id, as in Kafka Streams: `<app>-payments-by-id` (the
//! repartition topic) and `<app>-<store>-changelog` (compacted). Each input topic has a
//! dead-letter queue `<topic>.dlq`, and so has each topic the ledger sink reads.

use crate::config::Config;

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
