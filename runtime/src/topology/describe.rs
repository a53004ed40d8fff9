//! `paystream topology`: the topology as indented text (in the manner of Kafka
//! Streams' `TopologyDescription`) or as a Mermaid flowchart.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::Topology;

impl Topology {
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
            let sources: Vec<String> = sub
                .sources
                .iter()
                .map(|s| format!("{} ({})", s.topic, s.deserializer.type_name()))
                .collect();
            let _ = writeln!(out, "    Sources:    {}", sources.join(", "));
            let _ = writeln!(out, "    Processor:  {}", sub.processor);
            for store in &sub.stores {
                let _ = writeln!(
                    out,
                    "    Store:      {} (changelog {})",
                    store.name, store.changelog
                );
            }
            let sinks: Vec<&str> = sub.sinks.iter().map(|s| s.topic.as_str()).collect();
            let _ = writeln!(out, "    Sinks:      {}", sinks.join(", "));
            let _ = writeln!(
                out,
                "    Dead letters: {}",
                sub.dead_letter_topics.join(", ")
            );
        }
        for reader in &self.external_readers {
            let _ = writeln!(out, "  External reader: {}", reader.name);
            let _ = writeln!(out, "    Sources:    {}", reader.sources.join(", "));
            let _ = writeln!(out, "    {}: {}", reader.target, reader.writes.join(", "));
        }
        let _ = writeln!(
            out,
            "  Internal topics: {}",
            self.internal_topics().join(", ")
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
        let mut topics = BTreeSet::new();
        for sub in &self.sub_topologies {
            let processor = id(sub.processor);
            let _ = writeln!(out, "  {processor}[{}]", sub.processor);
            for source in &sub.sources {
                topics.insert(source.topic.clone());
                let _ = writeln!(out, "  t_{} --> {processor}", id(&source.topic));
            }
            for store in &sub.stores {
                let _ = writeln!(
                    out,
                    "  {processor} --- s_{}[({})]",
                    id(store.name),
                    store.name
                );
            }
            for sink in &sub.sinks {
                topics.insert(sink.topic.clone());
                let _ = writeln!(out, "  {processor} --> t_{}", id(&sink.topic));
            }
            let _ = writeln!(
                out,
                "  {processor} -. bad input .-> dlq[(\"&lt;input&gt;.dlq\")]"
            );
        }
        for reader in &self.external_readers {
            let node = id(reader.name);
            let _ = writeln!(out, "  {node}[{}]", reader.name);
            for source in &reader.sources {
                let _ = writeln!(out, "  t_{} --> {node}", id(source));
            }
            let _ = writeln!(
                out,
                "  {node} --> x_{}[({})]",
                id(reader.target),
                reader.target
            );
        }
        for topic in topics {
            let _ = writeln!(out, "  t_{}([{topic}])", id(&topic));
        }
        out
    }
}
