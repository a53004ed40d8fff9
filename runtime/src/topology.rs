//! The topology as data (`paystream topology`): sub-topologies with their source topics,
//! processors, state stores with changelogs, and sink topics, plus the internal topics.
//! Built from the same definitions the runtime uses ([`TopicNames`], [`SubTopology`]),
//! so what it prints is what runs. Rendered as text or as a Mermaid flowchart.

use std::fmt::Write as _;

use crate::config::Config;
use crate::task::SubTopology;
use crate::topics::TopicNames;

/// One sub-topology: tasks `<id>_<partition>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopologyDescription {
    pub id: u8,
    pub sources: Vec<String>,
    pub processor: &'static str,
    /// `(store, changelog topic)`.
    pub stores: Vec<(&'static str, String)>,
    pub sinks: Vec<String>,
    /// Where records that cannot be processed go.
    pub dead_letter_topics: Vec<String>,
}

/// The whole topology of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub application_id: String,
    pub sub_topologies: Vec<SubTopologyDescription>,
    /// The ledger sink: topics it reads and the PostgreSQL tables it writes.
    pub ledger_sink_sources: Vec<String>,
    pub ledger_sink_tables: Vec<&'static str>,
    /// Topics the application owns besides changelogs: repartition and redrive log.
    pub internal_topics: Vec<String>,
}

impl Topology {
    /// The topology `config` runs.
    pub fn of(config: &Config) -> Topology {
        let names = TopicNames::new(config);
        let stores = |sub: SubTopology| {
            sub.stores()
                .iter()
                .map(|s| (*s, names.changelog(s)))
                .collect()
        };
        let dead_letter =
            |topics: &[&str]| topics.iter().map(|t| TopicNames::dead_letter(t)).collect();
        Topology {
            application_id: config.application_id.clone(),
            sub_topologies: vec![
                SubTopologyDescription {
                    id: SubTopology::Dedupe as u8,
                    sources: vec![names.payment_initiated.clone()],
                    processor: "dedupe",
                    stores: stores(SubTopology::Dedupe),
                    sinks: vec![names.payments_by_id.clone()],
                    dead_letter_topics: dead_letter(&[&names.payment_initiated]),
                },
                SubTopologyDescription {
                    id: SubTopology::Lifecycle as u8,
                    sources: vec![
                        names.payments_by_id.clone(),
                        names.auth_success.clone(),
                        names.auth_failure.clone(),
                        names.settlement.clone(),
                    ],
                    processor: "payment-lifecycle",
                    stores: stores(SubTopology::Lifecycle),
                    sinks: vec![
                        names.payment_status.clone(),
                        names.ledger_entries.clone(),
                        names.reconciliation_exceptions.clone(),
                    ],
                    dead_letter_topics: dead_letter(&[
                        &names.payment_initiated,
                        &names.auth_success,
                        &names.auth_failure,
                        &names.settlement,
                    ]),
                },
            ],
            ledger_sink_sources: vec![
                names.ledger_entries.clone(),
                names.payment_status.clone(),
                names.reconciliation_exceptions.clone(),
            ],
            ledger_sink_tables: vec![
                "journal_entries",
                "postings",
                "accounts",
                "account_balances",
                "payments",
                "reconciliation_exceptions",
                "sink_offsets",
            ],
            internal_topics: vec![names.payments_by_id.clone(), names.dlq_redrives.clone()],
        }
    }

    /// The topology as indented text, in the manner of Kafka Streams'
    /// `TopologyDescription`.
    pub fn to_text(&self) -> String {
        let mut out = format!("Topology of {}\n", self.application_id);
        for sub in &self.sub_topologies {
            let _ = writeln!(
                out,
                "  Sub-topology {} (tasks {}_<partition>)",
                sub.id, sub.id
            );
            let _ = writeln!(out, "    Sources:    {}", sub.sources.join(", "));
            let _ = writeln!(out, "    Processor:  {}", sub.processor);
            for (store, changelog) in &sub.stores {
                let _ = writeln!(out, "    Store:      {store} (changelog {changelog})");
            }
            let _ = writeln!(out, "    Sinks:      {}", sub.sinks.join(", "));
            let _ = writeln!(
                out,
                "    Dead letters: {}",
                sub.dead_letter_topics.join(", ")
            );
        }
        let _ = writeln!(out, "  Ledger sink");
        let _ = writeln!(
            out,
            "    Sources:    {}",
            self.ledger_sink_sources.join(", ")
        );
        let _ = writeln!(
            out,
            "    PostgreSQL: {}",
            self.ledger_sink_tables.join(", ")
        );
        let _ = writeln!(
            out,
            "  Internal topics: {}",
            self.internal_topics.join(", ")
        );
        out
    }

    /// The topology as a Mermaid flowchart (topics as rounded boxes, processors as
    /// rectangles, stores as cylinders).
    pub fn to_mermaid(&self) -> String {
        let id = |name: &str| {
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        };
        let mut out = String::from("flowchart LR\n");
        let mut topics = std::collections::BTreeSet::new();
        for sub in &self.sub_topologies {
            let processor = id(sub.processor);
            let _ = writeln!(out, "  {processor}[{}]", sub.processor);
            for source in &sub.sources {
                topics.insert(source.clone());
                let _ = writeln!(out, "  t_{} --> {processor}", id(source));
            }
            for (store, _) in &sub.stores {
                let _ = writeln!(out, "  {processor} --- s_{}[({store})]", id(store));
            }
            for sink in &sub.sinks {
                topics.insert(sink.clone());
                let _ = writeln!(out, "  {processor} --> t_{}", id(sink));
            }
            let _ = writeln!(
                out,
                "  {processor} -. bad input .-> dlq[(\"&lt;input&gt;.dlq\")]"
            );
        }
        let _ = writeln!(out, "  ledger_sink[ledger sink]");
        for source in &self.ledger_sink_sources {
            let _ = writeln!(out, "  t_{} --> ledger_sink", id(source));
        }
        let _ = writeln!(out, "  ledger_sink --> pg[(PostgreSQL)]");
        for topic in topics {
            let _ = writeln!(out, "  t_{}([{topic}])", id(&topic));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_names_every_store_changelog_and_topic() {
        let topology = Topology::of(&Config::default());
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
        let mermaid = Topology::of(&Config::default()).to_mermaid();
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&mermaid),
            "README.md must contain the output of `paystream topology --format mermaid`:\n{mermaid}"
        );
    }
}
