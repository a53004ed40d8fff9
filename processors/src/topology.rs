//! The payments topology on the stream runtime (docs/architecture.md, "Topology"): the
//! topics each processor reads with the deserializer of their events, its sinks, and
//! [`payments_topology`], the one registration — dedupe, then the payment lifecycle,
//! and the ledger sink as the external reader of the outputs.
//!
//! An input event is read in the Confluent wire format with the runtime's Avro serde and
//! validated ([`paystream_schemas::validate`]) before a processor sees it
//! ([`EventDeserializer`]); an output goes out through the Avro serde, a journal entry
//! only once it balances ([`JournalEntrySerializer`]).

use std::marker::PhantomData;

use futures::future::BoxFuture;
use paystream_runtime::config::Config;
use paystream_runtime::serde::{AvroSerde, Deserializer, RawRecord, SerdeContext, SerdeError};
use paystream_runtime::topology::Topology;
use paystream_runtime::{Serializer, Stage};
use paystream_schemas::validate::{Violation, check_event_time, validate};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, AvroRecord, InputEvent, JournalEntry, PaymentInitiated,
    SettlementReported,
};
use serde::de::DeserializeOwned;

use crate::DeadLetterReason;
use crate::dedupe::DedupeProcessor;
use crate::lifecycle::{LifecycleProcessor, LifecycleSettings};
use crate::metrics::PaymentMetrics;

/// The topics of the payments application, by logical name.
pub mod topics {
    use paystream_runtime::TopicRef;

    pub const PAYMENT_INITIATED: TopicRef = TopicRef::External("payment_initiated");
    pub const AUTH_SUCCESS: TopicRef = TopicRef::External("auth_success");
    pub const AUTH_FAILURE: TopicRef = TopicRef::External("auth_failure");
    pub const SETTLEMENT: TopicRef = TopicRef::External("settlement");
    pub const PAYMENT_STATUS: TopicRef = TopicRef::External("payment_status");
    pub const LEDGER_ENTRIES: TopicRef = TopicRef::External("ledger_entries");
    pub const RECONCILIATION_EXCEPTIONS: TopicRef = TopicRef::External("reconciliation_exceptions");
    /// Deduplicated payments, re-keyed by payment id (`<app>-payments-by-id`).
    pub const PAYMENTS_BY_ID: TopicRef = TopicRef::Internal("payments-by-id");
}

/// The names processors forward to ([`paystream_runtime::Forward::To`]).
pub mod sinks {
    /// Deduplicated payments to the repartition topic, passed through byte for byte.
    pub const REPARTITION: &str = "repartition";
    pub const PAYMENT_STATUS: &str = "payment_status";
    pub const JOURNAL_ENTRY: &str = "journal_entry";
    pub const RECONCILIATION_EXCEPTION: &str = "reconciliation_exception";
}

/// The PostgreSQL tables the ledger sink writes.
pub const LEDGER_SINK_TABLES: [&str; 7] = [
    "journal_entries",
    "postings",
    "accounts",
    "account_balances",
    "payments",
    "reconciliation_exceptions",
    "sink_offsets",
];

/// Types a processor can take, converted from a decoded [`InputEvent`].
pub trait FromInputEvent: Sized {
    /// The value, or `None` when the event is of another type.
    fn from_input_event(event: InputEvent) -> Option<Self>;
}

impl FromInputEvent for InputEvent {
    fn from_input_event(event: InputEvent) -> Option<Self> {
        Some(event)
    }
}

impl FromInputEvent for PaymentInitiated {
    fn from_input_event(event: InputEvent) -> Option<Self> {
        match event {
            InputEvent::PaymentInitiated(value) => Some(value),
            _ => None,
        }
    }
}

/// An input event type: its Avro record and how it becomes an [`InputEvent`].
pub trait Event: AvroRecord + DeserializeOwned + Send + Sync + 'static {
    /// The event as an [`InputEvent`].
    fn into_input_event(self) -> InputEvent;
}

macro_rules! event {
    ($($variant:ident),*) => {$(
        impl Event for $variant {
            fn into_input_event(self) -> InputEvent {
                InputEvent::$variant(self)
            }
        }
    )*};
}

event!(
    PaymentInitiated,
    AuthSucceeded,
    AuthFailed,
    SettlementReported
);

/// Reads events of type `E` (Avro, Confluent wire format), validates them — the event's
/// contract, then its event time against the record's broker timestamp — and hands them
/// to the processor as `O` (the event itself or an [`InputEvent`]). A violation is the
/// record's data: it is dead-lettered with its reason at the `validate` stage.
pub struct EventDeserializer<E, O> {
    event_time_skew_max_ms: i64,
    _types: PhantomData<fn() -> (E, O)>,
}

impl<E, O> EventDeserializer<E, O> {
    /// Events at most `event_time_skew_max_ms` ahead of their record's timestamp pass.
    pub fn new(event_time_skew_max_ms: i64) -> Self {
        EventDeserializer {
            event_time_skew_max_ms,
            _types: PhantomData,
        }
    }
}

impl<E: Event, O: FromInputEvent + Send + Sync + 'static> Deserializer for EventDeserializer<E, O> {
    type Value = O;

    fn type_name(&self) -> &'static str {
        Deserializer::type_name(&AvroSerde::<E>::new())
    }

    fn deserialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        record: RawRecord<'a>,
    ) -> BoxFuture<'a, Result<O, SerdeError>> {
        Box::pin(async move {
            let event = AvroSerde::<E>::decode(ctx, record.value)
                .await?
                .into_input_event();
            validate(&event)
                .and_then(|()| {
                    check_event_time(
                        event.event_time_ms(),
                        record.timestamp_ms,
                        self.event_time_skew_max_ms,
                    )
                })
                .map_err(violation)?;
            O::from_input_event(event).ok_or_else(|| SerdeError::Record {
                reason: DeadLetterReason::ProcessingFailed.into(),
                stage: Stage::Decode,
                message: format!(
                    "{} is not what the processor reading {} takes",
                    E::FULL_NAME,
                    record.topic
                ),
            })
        })
    }
}

/// The dead letter of a violation: its reason at the `validate` stage.
fn violation(violation: Violation) -> SerdeError {
    let reason = match &violation {
        Violation::InvalidValue(_) => DeadLetterReason::InvalidValue,
        Violation::PanDetected { .. } => DeadLetterReason::PanDetected,
        Violation::SecretDetected { .. } => DeadLetterReason::SecretDetected,
        Violation::ValueOutOfRange(_) => DeadLetterReason::ValueOutOfRange,
        Violation::EventTimeInFuture { .. } => DeadLetterReason::EventTimeInFuture,
    };
    SerdeError::Record {
        reason: reason.into(),
        stage: Stage::Validate,
        message: violation.to_string(),
    }
}

/// Writes journal entries (Avro, Confluent wire format) once they balance per currency;
/// one that does not fails the record that caused it (`processing_failed`), so an
/// unbalanced entry never reaches `ledger_entries`.
#[derive(Debug, Default)]
pub struct JournalEntrySerializer;

impl Serializer for JournalEntrySerializer {
    type Value = JournalEntry;

    fn serialize<'a>(
        &'a self,
        ctx: &'a SerdeContext,
        topic: &'a str,
        entry: &'a JournalEntry,
    ) -> BoxFuture<'a, Result<Vec<u8>, SerdeError>> {
        if !entry.is_balanced() {
            return Box::pin(std::future::ready(Err(SerdeError::Record {
                reason: DeadLetterReason::ProcessingFailed.into(),
                stage: Stage::Process,
                message: format!("journal entry {} does not balance per currency", entry.id),
            })));
        }
        AVRO_JOURNAL_ENTRY.serialize(ctx, topic, entry)
    }
}

/// The Avro serde of journal entries.
static AVRO_JOURNAL_ENTRY: AvroSerde<JournalEntry> = AvroSerde::new();

/// The lifecycle's timer settings and input checks from `config`.
pub fn lifecycle_settings(config: &Config) -> LifecycleSettings {
    LifecycleSettings {
        orphan_timeout_ms: config.processing.orphan_timeout_ms,
        settlement_window_ms: config.processing.settlement_window_ms,
        pending_retention_ms: config.processing.pending_retention_ms,
        event_time_skew_max_ms: config.processing.event_time_skew_max_ms,
    }
}

/// paystream's topology: `payment_initiated` → dedupe → the repartition topic →
/// payment lifecycle (with the auth and settlement topics) → status, journal entries and
/// reconciliation exceptions, which the ledger sink writes to PostgreSQL. Business
/// counts of committed outputs go to `metrics`.
pub fn payments_topology(config: &Config, metrics: &PaymentMetrics) -> Topology {
    let retention_ms = config.state.idempotency_retention_ms;
    let settings = lifecycle_settings(config);
    let skew_ms = settings.event_time_skew_max_ms;
    let metrics = metrics.clone();
    Topology::builder(config)
        .processor(move || DedupeProcessor::new(retention_ms).with_event_time_skew_max_ms(skew_ms))
        .processor(move || {
            LifecycleProcessor::new(settings)
                .with_event_id_retention_ms(retention_ms)
                .with_metrics(metrics.clone())
        })
        .external_reader(
            "ledger sink",
            &[
                topics::LEDGER_ENTRIES,
                topics::PAYMENT_STATUS,
                topics::RECONCILIATION_EXCEPTIONS,
            ],
            "PostgreSQL",
            &LEDGER_SINK_TABLES,
        )
        .build()
        .expect("paystream's processors make a valid topology")
}

/// The payments topology with metrics nobody reads (descriptions, topic creation).
pub fn payments_topology_description(config: &Config) -> Topology {
    payments_topology(config, &PaymentMetrics::unregistered())
}

/// The full names of the payments application's topics under one configuration.
#[derive(Debug, Clone)]
pub struct PaymentTopics {
    pub payment_initiated: String,
    pub auth_success: String,
    pub auth_failure: String,
    pub settlement: String,
    pub payment_status: String,
    pub ledger_entries: String,
    pub reconciliation_exceptions: String,
    pub payments_by_id: String,
    /// `topics.prefix`.
    prefix: String,
}

impl PaymentTopics {
    /// Names for `config`'s prefix and application id.
    pub fn new(config: &Config) -> Self {
        let names = paystream_runtime::topics::TopicNames::new(config);
        PaymentTopics {
            payment_initiated: names.resolve(topics::PAYMENT_INITIATED),
            auth_success: names.resolve(topics::AUTH_SUCCESS),
            auth_failure: names.resolve(topics::AUTH_FAILURE),
            settlement: names.resolve(topics::SETTLEMENT),
            payment_status: names.resolve(topics::PAYMENT_STATUS),
            ledger_entries: names.resolve(topics::LEDGER_ENTRIES),
            reconciliation_exceptions: names.resolve(topics::RECONCILIATION_EXCEPTIONS),
            payments_by_id: names.resolve(topics::PAYMENTS_BY_ID),
            prefix: config.topics.prefix.clone(),
        }
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

    /// The input topic a user named: by base name (`settlement`), full name
    /// (`<prefix>settlement`) or its dead-letter topic's name (`<prefix>settlement.dlq`).
    pub fn resolve_input(&self, name: &str) -> Option<&str> {
        let name = name.strip_suffix(".dlq").unwrap_or(name);
        let prefixed = format!("{}{name}", self.prefix);
        self.inputs()
            .into_iter()
            .find(|input| *input == name || *input == prefixed)
    }
}

#[cfg(test)]
mod tests {
    use paystream_runtime::topics::TopicRole;
    use paystream_runtime::topology::TopologyBuilder;

    use super::*;

    fn config() -> Config {
        let mut config = Config {
            application_id: "app".into(),
            ..Config::default()
        };
        config.topics.prefix = "t1.".into();
        config
    }

    #[test]
    fn the_topology_names_every_store_changelog_and_topic() {
        let topology = payments_topology_description(&Config::default());
        let text = topology.to_text();
        for expected in [
            "payment_initiated (PaymentInitiated)",
            "paystream-payments-by-id",
            "paystream-idempotency-changelog",
            "paystream-timers-changelog",
            "reconciliation_exceptions",
            "settlement.dlq",
            "paystream-dlq-redrives",
            "External reader: ledger sink",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }

    #[test]
    fn the_readme_shows_the_current_topology() {
        let mermaid = payments_topology_description(&Config::default()).to_mermaid();
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&mermaid),
            "README.md must contain the output of `paystream topology --format mermaid`:\n{mermaid}"
        );
    }

    #[test]
    fn routing_stores_and_topics_come_from_the_processors() {
        let config = config();
        let topology = payments_topology_description(&config);
        assert_eq!(topology.reader_of("t1.payment_initiated").unwrap().id, 0);
        assert_eq!(topology.reader_of("app-payments-by-id").unwrap().id, 1);
        assert_eq!(topology.reader_of("t1.settlement").unwrap().id, 1);
        assert!(topology.reader_of("t1.payment_status").is_none());
        assert_eq!(topology.type_of("t1.auth_failure"), Some("AuthFailed"));
        let lifecycle = topology.sub_topology(1);
        assert_eq!(lifecycle.internal_source(), Some("app-payments-by-id"));
        assert_eq!(
            lifecycle.input_index("t1.settlement"),
            Some(crate::lifecycle::inputs::SETTLEMENT)
        );
        assert_eq!(
            lifecycle
                .sink(sinks::JOURNAL_ENTRY)
                .map(|s| s.topic.as_str()),
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
        assert_eq!(topology.dead_letter_topics().len(), 4 + 3);
    }

    #[test]
    fn a_topic_has_one_reader() {
        let config = Config::default();
        let builder: TopologyBuilder = Topology::builder(&config);
        let error = builder
            .processor(DedupeProcessor::default)
            .processor(DedupeProcessor::default)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                error,
                paystream_runtime::topology::TopologyError::TopicReadTwice { .. }
            ),
            "{error}"
        );
    }

    #[test]
    fn names_follow_the_product_brief_and_inputs_resolve_by_any_name() {
        let names = PaymentTopics::new(&config());
        assert_eq!(names.payment_initiated, "t1.payment_initiated");
        assert_eq!(names.payments_by_id, "app-payments-by-id");
        for given in ["settlement", "t1.settlement", "t1.settlement.dlq"] {
            assert_eq!(names.resolve_input(given), Some("t1.settlement"), "{given}");
        }
        assert_eq!(names.resolve_input("ledger_entries"), None);
    }
}
