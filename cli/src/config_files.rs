//! The configuration files this repository ships (`config/`) and the variables
//! `docker-compose.yml` sets: each loads with the runtime's sections, the payments
//! application's `[payments]` and the ledger sink's `[sink]`, and validates.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use paystream_common::config::{ConfigSources, SecurityProtocol};
use paystream_ledger_sink::SinkConfig;
use paystream_processors::PaymentsConfig;

#[test]
fn the_shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config");
    // The production example names secret and certificate files that exist only in
    // a deployment: stand-ins at those paths' file names here.
    let stand_ins = tempfile::tempdir().unwrap();
    for file in ["paystream.local.toml", "paystream.production.toml"] {
        let path = root.join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for prefix in ["/run/secrets/", "/etc/paystream/tls/"] {
            while let Some(at) = text.find(prefix) {
                let end = at + text[at..].find(['"', '&']).unwrap();
                let name = text[at + prefix.len()..end].to_string();
                let stand_in = stand_ins.path().join(&name);
                std::fs::write(&stand_in, "stand-in").unwrap();
                text.replace_range(at..end, &stand_in.display().to_string());
            }
        }
        let sources = ConfigSources::from_figment(Figment::new().merge(Toml::string(&text)));
        sources
            .config(&[SinkConfig::SECTION, PaymentsConfig::SECTION])
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        SinkConfig::load(&sources).unwrap_or_else(|e| panic!("{file}: {e}"));
        let payments = PaymentsConfig::load(&sources).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            payments,
            PaymentsConfig::default(),
            "{file} shows the defaults"
        );
    }
}

#[test]
// figment::Jail's closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn the_compose_file_sets_only_existing_config_keys() {
    let compose = include_str!("../../docker-compose.yml");
    let vars: Vec<(String, String)> = compose
        .lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once(": ")?;
            (key.starts_with("PAYSTREAM_") && key != "PAYSTREAM_CONFIG")
                .then(|| (key.to_string(), value.trim().to_string()))
        })
        .collect();
    assert!(vars.len() >= 5, "{vars:?}");
    figment::Jail::expect_with(|jail| {
        for (key, value) in &vars {
            // Files exist only in the containers: stand-ins with the same role here.
            if key.ends_with("_FILE") || key.ends_with("_LOCATION") {
                let name = key.to_ascii_lowercase();
                jail.create_file(&name, "stand-in")?;
                jail.set_env(key, jail.directory().join(&name).display());
            } else {
                jail.set_env(key, value);
            }
        }
        // The compose file mounts config/paystream.local.toml as the config file.
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/paystream.local.toml");
        let sources = ConfigSources::load(Some(&file)).map_err(|e| e.to_string())?;
        let config = sources
            .config(&[SinkConfig::SECTION, PaymentsConfig::SECTION])
            .map_err(|e| e.to_string())?;
        let sink = SinkConfig::load(&sources).map_err(|e| e.to_string())?;
        assert_eq!(config.http.listen_address, "0.0.0.0:9464");
        assert_eq!(config.kafka.bootstrap_servers, "kafka:9094");
        assert_eq!(config.kafka.security_protocol, SecurityProtocol::SaslSsl);
        assert!(config.kafka.sasl_password.is_some());
        assert!(sink.database_password.is_some());
        Ok(())
    });
}
