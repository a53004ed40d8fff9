//! Unit tests of loading and validation, including the shipped config files and the
//! compose file's `PAYSTREAM_*` variables.

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

    config.schema_registry.basic_auth_username = "sr".into();
    config.schema_registry.basic_auth_password = Some(SecretString::from("hunter2-sr".to_string()));

    let printed = format!("{config:?}");
    for secret in ["hunter2-kafka", "hunter2-sr"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[kafka]\nbootstrap_server = \"x:1\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("bootstrap_server"), "{err}");
    std::fs::write(&path, "[kafkaa]\nbootstrap_servers = \"x:1\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("unknown key `kafkaa`"), "{err}");
    // A section an application owns is set aside for it, and only then.
    std::fs::write(&path, "[ledger]\nurl = \"x\"\n").unwrap();
    let sources = ConfigSources::load(Some(&path)).unwrap();
    sources.config(&["ledger"]).unwrap();
    assert!(sources.config(&[]).is_err());
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
    for bad in ["paystream-0", ":9464", "host:port"] {
        let mut c = Config::default();
        c.http.advertised_address = bad.into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("http.advertised_address") && err.contains("use"),
            "{err}"
        );
    }
    let mut c = Config::default();
    c.http.advertised_address = "paystream-0.paystream:9464".into();
    c.validate().expect("a host name and port");
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
