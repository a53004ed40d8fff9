//! Unit tests of loading and validation, including the shipped config files and the
//! compose file's `PAYSTREAM_*` variables.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

fn key_of(result: Result<(), ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn security_settings_are_checked_and_secrets_never_printed() {
    let mut config = Config::default();
    config.kafka.security_protocol = SecurityProtocol::SaslSsl;
    config.kafka.sasl_username = "paystream".into();
    assert_eq!(key_of(config.validate()), "kafka.sasl_password");
    config.kafka.sasl_password = Some(SecretString::from("hunter2-kafka".to_string()));
    config.validate().unwrap();

    config.kafka.ssl_ca_location = Some("/nonexistent/ca.pem".into());
    assert_eq!(key_of(config.validate()), "kafka.ssl_ca_location");
    config.kafka.ssl_ca_location = None;

    config
        .kafka
        .client_properties
        .insert("sasl.password".into(), "hunter2-kafka".into());
    assert_eq!(key_of(config.validate()), "kafka.client_properties");
    config.kafka.client_properties.clear();

    config.kafka.security_protocol = SecurityProtocol::Plaintext;
    assert_eq!(key_of(config.validate()), "kafka.security_protocol");
    config.kafka.security_protocol = SecurityProtocol::SaslSsl;

    config.sink.database_url = "postgres://ledger:hunter2-pg@db/ledger".into();
    config.sink.database_password = Some(SecretString::from("hunter2-pg".to_string()));
    assert_eq!(key_of(config.validate()), "sink.database_url");
    config.schema_registry.basic_auth_username = "sr".into();
    config.schema_registry.basic_auth_password = Some(SecretString::from("hunter2-sr".to_string()));

    let printed = format!("{config:?}");
    for secret in ["hunter2-kafka", "hunter2-pg", "hunter2-sr"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("postgres://ledger:***@db/ledger"),
        "{printed}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[kafka]\nbootstrap_server = \"x:1\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("bootstrap_server"), "{err}");
}

#[test]
fn numeric_ids_from_the_environment_are_accepted() {
    let config: Config = Figment::new()
        .merge(Toml::string("instance_id = 3\napplication_id = \"app\""))
        .extract()
        .unwrap();
    assert_eq!(config.instance_id, "3");
}

#[test]
fn invalid_values_name_the_key_and_the_fix() {
    let mut c = Config::default();
    c.processing.commit_interval_ms = 0;
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("processing.commit_interval_ms") && err.contains("use"),
        "{err}"
    );
    let mut c = Config::default();
    c.processing.commit_interval_idle_ms = c.processing.commit_interval_ms + 1;
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("processing.commit_interval_idle_ms") && err.contains("use 0 to"),
        "{err}"
    );
    let mut c = Config::default();
    c.processing.commit_interval_idle_ms = c.processing.commit_interval_ms;
    c.validate()
        .expect("an idle interval equal to the interval turns early commits off");
    let mut c = Config::default();
    c.topics.prefix = "bad prefix".into();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("topics.prefix")
    );
}

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
        let mut config: Config = Figment::new()
            .merge(Toml::string(&text))
            .extract()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        config
            .read_secret_files()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
// figment::Jail's closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn the_compose_file_sets_only_existing_config_keys() {
    let compose = include_str!("../../../docker-compose.yml");
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
        let config = Config::load(Some(&file)).map_err(|e| e.to_string())?;
        assert_eq!(config.http.listen_address, "0.0.0.0:9464");
        assert_eq!(config.kafka.bootstrap_servers, "kafka:9094");
        assert_eq!(config.kafka.security_protocol, SecurityProtocol::SaslSsl);
        assert!(config.kafka.sasl_password.is_some());
        assert!(config.sink.database_password.is_some());
        Ok(())
    });
}

#[test]
fn processing_order_settings_are_checked() {
    let mut c = Config::default();
    c.processing.max_task_idle_ms = 600_000;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("processing.max_task_idle_ms"), "{err}");
    let mut c = Config::default();
    c.processing.buffered_records_per_partition = 0;
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("processing.buffered_records_per_partition"),
        "{err}"
    );
}
