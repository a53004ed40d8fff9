//! Validation: every value checked without connecting anywhere; the first bad key is
//! reported with its fix.

use super::{Config, ConfigError, KafkaConfig};
use crate::security::{RESERVED_CLIENT_PROPERTIES, check_readable, url_has_password};

impl Config {
    /// Checks values without connecting anywhere.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: String, fix: &'static str) -> ConfigError {
            ConfigError::Invalid { key, problem, fix }
        }
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !id_ok(&self.application_id) {
            return Err(invalid(
                "application_id",
                format!("{:?} is not a valid id", self.application_id),
                "use 1-100 characters of [A-Za-z0-9._-]",
            ));
        }
        if !id_ok(&self.instance_id) {
            return Err(invalid(
                "instance_id",
                format!("{:?} is not a valid id", self.instance_id),
                "use 1-100 characters of [A-Za-z0-9._-]",
            ));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "is empty".into(),
                "set it to host:port[,host:port...]",
            ));
        }
        if !self.topics.prefix.is_empty() && !id_ok(&self.topics.prefix) {
            return Err(invalid(
                "topics.prefix",
                format!(
                    "{:?} has characters Kafka topic names cannot hold",
                    self.topics.prefix
                ),
                "use characters of [A-Za-z0-9._-]",
            ));
        }
        if !(1..=10_000).contains(&self.topics.partitions) {
            return Err(invalid(
                "topics.partitions",
                format!("{} is out of range", self.topics.partitions),
                "use 1 to 10000",
            ));
        }
        if !(1..=16).contains(&self.topics.replication_factor) {
            return Err(invalid(
                "topics.replication_factor",
                format!("{} is out of range", self.topics.replication_factor),
                "use 1 (local stack) to 16; 3 in production",
            ));
        }
        if !(self.schema_registry.url.starts_with("http://")
            || self.schema_registry.url.starts_with("https://"))
        {
            return Err(invalid(
                "schema_registry.url",
                format!("{:?} is not an http(s) URL", self.schema_registry.url),
                "set it to http(s)://host:port[/path]",
            ));
        }
        validate_kafka(&self.kafka)?;
        if url_has_password(&self.schema_registry.url) {
            return Err(invalid(
                "schema_registry.url",
                "holds a password".into(),
                "remove it from the URL; set schema_registry.basic_auth_username and PAYSTREAM_SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD",
            ));
        }
        if self.schema_registry.basic_auth_password.is_some()
            && self.schema_registry.basic_auth_username.is_empty()
        {
            return Err(invalid(
                "schema_registry.basic_auth_username",
                "is empty but a basic-auth password is set".into(),
                "set the user (Confluent Cloud: the API key)",
            ));
        }
        if let Some(ca) = &self.schema_registry.ca_location {
            check_readable("schema_registry.ca_location", ca)?;
        }
        if self.state.idempotency_retention_ms <= 0 {
            return Err(invalid(
                "state.idempotency_retention_ms",
                format!("{} must be > 0", self.state.idempotency_retention_ms),
                "use e.g. 259200000 (72 h)",
            ));
        }
        if !(10..=60_000).contains(&self.processing.commit_interval_ms) {
            return Err(invalid(
                "processing.commit_interval_ms",
                format!("{} is out of range", self.processing.commit_interval_ms),
                "use 10 to 60000 (100 is Kafka Streams' exactly-once default)",
            ));
        }
        if self.processing.commit_interval_idle_ms > self.processing.commit_interval_ms {
            return Err(invalid(
                "processing.commit_interval_idle_ms",
                format!(
                    "{} exceeds processing.commit_interval_ms ({})",
                    self.processing.commit_interval_idle_ms, self.processing.commit_interval_ms
                ),
                "use 0 to processing.commit_interval_ms (20 is the default; equal turns early \
                 commits off)",
            ));
        }
        if self.processing.transaction_records_max == 0 {
            return Err(invalid(
                "processing.transaction_records_max",
                "must be > 0".into(),
                "use e.g. 20000",
            ));
        }
        if self.processing.max_task_idle_ms > 60_000 {
            return Err(invalid(
                "processing.max_task_idle_ms",
                format!("{} is out of range", self.processing.max_task_idle_ms),
                "use 0 to 60000 (500 is the default; 0 never holds back)",
            ));
        }
        if !(16..=1_000_000).contains(&self.processing.buffered_records_per_partition) {
            return Err(invalid(
                "processing.buffered_records_per_partition",
                format!(
                    "{} is out of range",
                    self.processing.buffered_records_per_partition
                ),
                "use 16 to 1000000 (1000 is the default)",
            ));
        }
        if self.processing.transaction_timeout_ms <= self.processing.commit_interval_ms {
            return Err(invalid(
                "processing.transaction_timeout_ms",
                "must exceed processing.commit_interval_ms".into(),
                "use e.g. 60000",
            ));
        }
        let peer_timeout_ms = self.processing.peer_timeout_ms;
        if peer_timeout_ms != 0
            && !(500..self.processing.session_timeout_ms).contains(&peer_timeout_ms)
        {
            return Err(invalid(
                "processing.peer_timeout_ms",
                format!(
                    "{peer_timeout_ms} is out of range: at least 500, and below \
                     processing.session_timeout_ms ({})",
                    self.processing.session_timeout_ms
                ),
                "use about 1500 (the default), or 0 to leave dead instances to the session \
                 timeout",
            ));
        }
        if !(6_000..=300_000).contains(&self.processing.session_timeout_ms) {
            return Err(invalid(
                "processing.session_timeout_ms",
                format!("{} is out of range", self.processing.session_timeout_ms),
                "use 6000 to 300000 (the broker's group.min/max.session.timeout.ms)",
            ));
        }
        for (key, value, fix) in [
            (
                "processing.orphan_timeout_ms",
                self.processing.orphan_timeout_ms,
                "use e.g. 600000 (10 minutes)",
            ),
            (
                "processing.settlement_window_ms",
                self.processing.settlement_window_ms,
                "use e.g. 259200000 (3 days)",
            ),
            (
                "processing.event_time_skew_max_ms",
                self.processing.event_time_skew_max_ms,
                "use e.g. 3600000 (1 h)",
            ),
        ] {
            if value <= 0 {
                return Err(invalid(key, format!("{value} must be > 0"), fix));
            }
        }
        if self.processing.pending_retention_ms < self.processing.orphan_timeout_ms {
            return Err(invalid(
                "processing.pending_retention_ms",
                format!(
                    "{} is shorter than processing.orphan_timeout_ms ({})",
                    self.processing.pending_retention_ms, self.processing.orphan_timeout_ms
                ),
                "use e.g. 259200000 (72 h)",
            ));
        }
        if !self.http.listen_address.is_empty()
            && self
                .http
                .listen_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(invalid(
                "http.listen_address",
                format!("{:?} is not host:port", self.http.listen_address),
                "use an IP and port such as 127.0.0.1:9464, or \"\" to turn it off",
            ));
        }
        let advertised = &self.http.advertised_address;
        if !advertised.is_empty()
            && advertised
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(invalid(
                "http.advertised_address",
                format!("{advertised:?} is not host:port"),
                "use the host name or IP and port the other instances dial, such as \
                 paystream-0.paystream:9464, or \"\" for the listen address",
            ));
        }
        Ok(())
    }
}

/// Checks the `kafka.*` security keys without connecting.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the first bad key and the fix.
fn validate_kafka(kafka: &KafkaConfig) -> Result<(), ConfigError> {
    let invalid = |key: &'static str, problem: String, fix: &'static str| ConfigError::Invalid {
        key,
        problem,
        fix,
    };
    for key in kafka.client_properties.keys() {
        let lower = key.to_ascii_lowercase();
        if RESERVED_CLIENT_PROPERTIES.contains(&lower.as_str())
            || lower.contains("password")
            || lower.contains("secret")
        {
            return Err(invalid(
                "kafka.client_properties",
                format!(
                    "sets {key:?}, which the kafka.* security keys own or which holds a secret"
                ),
                "use kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password(_file) and kafka.ssl_* instead",
            ));
        }
    }
    let protocol = kafka.security_protocol;
    if protocol.uses_sasl() {
        if kafka.sasl_username.trim().is_empty() {
            return Err(invalid(
                "kafka.sasl_username",
                format!("is empty but kafka.security_protocol is {protocol}"),
                "set the SASL user name",
            ));
        }
        if kafka.sasl_password.is_none() {
            return Err(invalid(
                "kafka.sasl_password",
                format!("is not set but kafka.security_protocol is {protocol}"),
                "set PAYSTREAM_KAFKA__SASL_PASSWORD or kafka.sasl_password_file",
            ));
        }
    } else if !kafka.sasl_username.is_empty() || kafka.sasl_password.is_some() {
        return Err(invalid(
            "kafka.security_protocol",
            format!("is {protocol} but SASL credentials are set"),
            "use SASL_SSL (or SASL_PLAINTEXT), or remove kafka.sasl_username/kafka.sasl_password",
        ));
    }
    let tls_files = [
        ("kafka.ssl_ca_location", &kafka.ssl_ca_location),
        (
            "kafka.ssl_certificate_location",
            &kafka.ssl_certificate_location,
        ),
        ("kafka.ssl_key_location", &kafka.ssl_key_location),
    ];
    for (key, path) in tls_files {
        let Some(path) = path else { continue };
        if !protocol.uses_tls() {
            return Err(invalid(
                key,
                format!("is set but kafka.security_protocol is {protocol} (no TLS)"),
                "use SSL or SASL_SSL, or remove the TLS file settings",
            ));
        }
        check_readable(key, path)?;
    }
    if kafka.ssl_certificate_location.is_some() != kafka.ssl_key_location.is_some() {
        return Err(invalid(
            "kafka.ssl_key_location",
            "a client certificate needs its key and the other way round".into(),
            "set both kafka.ssl_certificate_location and kafka.ssl_key_location (mutual TLS), or neither",
        ));
    }
    if kafka.ssl_key_password.is_some() && kafka.ssl_key_location.is_none() {
        return Err(invalid(
            "kafka.ssl_key_password",
            "is set without kafka.ssl_key_location".into(),
            "set the key file too, or remove the key password",
        ));
    }
    Ok(())
}
