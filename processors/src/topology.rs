//! The payments topology on the stream runtime (docs/architecture.md, "Topology"):
//! [`payments_topology`], the one registration — dedupe, then the payment lifecycle,
//! and the ledger sink as the external reader of the outputs. The processors declare
//! their topics ([`crate::names`]) and serdes ([`crate::serdes`]) themselves.

use paystream_common::config::Config;
use paystream_runtime::topology::Topology;

use crate::PaymentsConfig;
use crate::dedupe::DedupeProcessor;
use crate::lifecycle::{LifecycleProcessor, LifecycleSettings};
use crate::metrics::PaymentMetrics;
use crate::names::{LEDGER_SINK_TABLES, topics};

/// The lifecycle's timer settings and input checks from the runtime's `config` and the
/// application's `payments` section.
pub fn lifecycle_settings(config: &Config, payments: &PaymentsConfig) -> LifecycleSettings {
    LifecycleSettings {
        orphan_timeout_ms: config.processing.orphan_timeout_ms,
        settlement_window_ms: config.processing.settlement_window_ms,
        pending_retention_ms: config.processing.pending_retention_ms,
        event_time_skew_max_ms: config.processing.event_time_skew_max_ms,
        stuck_payment_timeout_ms: payments.stuck_payment_timeout_ms,
        uncaptured_authorization_timeout_ms: payments.uncaptured_authorization_timeout_ms,
        movement_reorder_wait_ms: payments.movement_reorder_wait_ms,
    }
}

/// paystream's topology: `payment_initiated` → dedupe → the repartition topic →
/// payment lifecycle (with the auth and settlement topics) → status, journal entries and
/// reconciliation exceptions, which the ledger sink writes to PostgreSQL. The
/// application's own settings come from `payments`; business counts of committed
/// outputs go to `metrics`.
pub fn payments_topology(
    config: &Config,
    payments: &PaymentsConfig,
    metrics: &PaymentMetrics,
) -> Topology {
    let retention_ms = config.state.idempotency_retention_ms;
    let settings = lifecycle_settings(config, payments);
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

/// The payments topology with the default `[payments]` settings and metrics nobody
/// reads (descriptions, topic creation).
pub fn payments_topology_description(config: &Config) -> Topology {
    payments_topology(
        config,
        &PaymentsConfig::default(),
        &PaymentMetrics::unregistered(),
    )
}

#[cfg(test)]
mod tests {
    use paystream_common::topics::TopicRole;
    use paystream_runtime::topology::TopologyBuilder;

    use super::*;
    use crate::names::{PaymentTopics, sinks};

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
                "t1.settlement.dlq",
                "t1.capture.dlq",
                "t1.void.dlq",
                "t1.refund.dlq",
                "t1.chargeback.dlq"
            ]
        );
        let topics = topology.topics();
        // inputs and their DLQs, outputs and the sink's DLQs, repartition, redrive log,
        // liveness, six changelogs
        assert_eq!(topics.len(), 8 * 2 + 3 * 2 + 1 + 1 + 1 + 6, "{topics:?}");
        assert!(topics.contains(&("app-liveness".into(), TopicRole::Liveness)));
        assert!(topics.contains(&("app-payments-by-id".into(), TopicRole::Repartition)));
        assert!(topics.contains(&("t1.ledger_entries".into(), TopicRole::Output)));
        assert!(topics.contains(&("t1.ledger_entries.dlq".into(), TopicRole::DeadLetter)));
        assert!(topics.contains(&("app-dlq-redrives".into(), TopicRole::RedriveLog)));
        assert!(topics.contains(&("app-idempotency-changelog".into(), TopicRole::Changelog)));
        assert_eq!(topology.dead_letter_topics().len(), 8 + 3);
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
