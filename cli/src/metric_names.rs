//! The dashboard and the alert rules this repository ships (`config/`) use only metrics
//! that paystream exports: the runtime's, the payments application's and the ledger
//! sink's, registered in one registry as `paystream run` does.

use paystream_ledger_sink::SinkMetrics;
use paystream_processors::metrics::PaymentMetrics;

/// Every `paystream_*` name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("paystream_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[test]
fn dashboards_and_alerts_use_only_metrics_that_exist() {
    let registry = paystream_runtime::metrics::Metrics::new().registry;
    PaymentMetrics::register(&registry);
    SinkMetrics::register(&registry);
    let registered: std::collections::BTreeSet<String> = registry
        .gather()
        .iter()
        .map(|family| family.name().to_string())
        .collect();
    let mut used = metric_names(include_str!("../../config/prometheus/alerts.yml"));
    used.extend(metric_names(include_str!(
        "../../config/grafana/paystream-dashboard.json"
    )));
    assert!(used.len() > 10, "{used:?}");
    let declared_in = [
        include_str!("../../runtime/src/metrics.rs"),
        include_str!("../../processors/src/metrics.rs"),
        include_str!("../../ledger-sink/src/metrics.rs"),
    ];
    for name in used {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| registered.contains(*base))
            .unwrap_or(&name);
        // Vectors without samples yet are not gathered: check the declared names too.
        let declared = declared_in
            .iter()
            .any(|source| source.contains(&format!("\"{base}\"")));
        assert!(
            registered.contains(base) || declared,
            "{name} is used in config/ but paystream does not export it"
        );
    }
}
