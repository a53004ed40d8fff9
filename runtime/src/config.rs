//! paystream configuration: one TOML file plus environment overrides, validated before
//! anything connects.
//!
//! Sources, later wins: built-in defaults (the `Default` impls below, the one place
//! defaults live) → the TOML file (`--config`, see `config/paystream.local.toml`) →
//! environment variables `PAYSTREAM_<SECTION>__<KEY>` (double underscore between
//! section and key, e.g. `PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS`, `PAYSTREAM_APPLICATION_ID`).
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

pub use crate::config_error::ConfigError;
use crate::security::{
    RESERVED_CLIENT_PROPERTIES, check_readable, redact_url, resolve_secret, url_has_password,
};
pub use crate::security::{SaslMechanism, SecurityProtocol};

/// The whole configuration of a paystream process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Names the consumer group, the internal topics (`<app>-payments-by-id`,
    /// `<app>-<store>-changelog`) and the state directory. Instances with the same id
    /// share the work.
    #[serde(deserialize_with = "string_or_number")]
    pub application_id: String,
    /// Distinguishes instances of one application: the transactional id is
    /// `<application_id>-<instance_id>`. Must be unique per running instance and stable
    /// across its restarts (so a restart fences its previous incarnation). Numbers are
    /// accepted too (`PAYSTREAM_INSTANCE_ID=0`).
    #[serde(deserialize_with = "string_or_number")]
    pub instance_id: String,
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub schema_registry: SchemaRegistryConfig,
    pub state: StateConfig,
    pub processing: ProcessingConfig,
    pub sink: SinkConfig,
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            application_id: "paystream".to_string(),
            instance_id: "0".to_string(),
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            schema_registry: SchemaRegistryConfig::default(),
            state: StateConfig::default(),
            processing: ProcessingConfig::default(),
            sink: SinkConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// Accepts `"7"` and `7` alike for identifiers: environment variables holding digits
/// arrive as numbers.
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    })
}

/// Connection to the Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Extra librdkafka client properties applied to every client this process creates
    /// (consumer, transactional producer, admin, sink consumer), e.g.
    /// `"socket.keepalive.enable" = "true"`. paystream's own exactly-once settings cannot
    /// be overridden here.
    pub client_properties: BTreeMap<String, String>,
    /// Timeout of admin and transaction-control calls, milliseconds.
    pub request_timeout_ms: u64,
    /// `PLAINTEXT` (default, the local stack), `SSL` (TLS; mutual TLS with a client
    /// certificate), `SASL_PLAINTEXT` or `SASL_SSL` (production).
    pub security_protocol: SecurityProtocol,
    /// `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN`; with a `SASL_*` protocol.
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name.
    pub sasl_username: String,
    /// SASL password: from `PAYSTREAM_KAFKA__SASL_PASSWORD`, never the config file in
    /// production; or use `sasl_password_file`.
    pub sasl_password: Option<SecretString>,
    /// File holding the SASL password (e.g. a mounted secret).
    pub sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign the brokers' certificates; unset, the
    /// system's trust store.
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `ssl_key_location`).
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of an encrypted private key; or use `ssl_key_password_file`.
    pub ssl_key_password: Option<SecretString>,
    /// File holding the private key's password.
    pub ssl_key_password_file: Option<PathBuf>,
    /// Verify that the broker's certificate names the host connected to (librdkafka
    /// `ssl.endpoint.identification.algorithm=https`). On by default; turn off only for
    /// brokers whose certificates cannot name their hosts.
    pub ssl_endpoint_identification: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:19092".to_string(),
            client_properties: BTreeMap::new(),
            request_timeout_ms: 30_000,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: String::new(),
            sasl_password: None,
            sasl_password_file: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            ssl_key_password_file: None,
            ssl_endpoint_identification: true,
        }
    }
}

/// Topic names and layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Prepended to every input and output topic name (not to internal topics, which are
    /// named by `application_id`). Empty in production; tests use it for isolation.
    pub prefix: String,
    /// Partitions of every topic `paystream topics create` makes. Input topics keyed by
    /// payment id and the repartition topic must have the same count (co-partitioning).
    pub partitions: i32,
    /// Replication factor of created topics (1 for the local single-node stack, 3 in
    /// production).
    pub replication_factor: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            prefix: String::new(),
            partitions: 3,
            replication_factor: 1,
        }
    }
}

/// The Confluent-compatible Schema Registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL; clients append `/subjects/...` and `/schemas/ids/...`.
    pub url: String,
    /// Timeout per registry HTTP call, milliseconds.
    pub timeout_ms: u64,
    /// User of HTTP basic authentication (Confluent Cloud: the API key); empty for none.
    pub basic_auth_username: String,
    /// Its password (Confluent Cloud: the API secret): from
    /// `PAYSTREAM_SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD` or `basic_auth_password_file`.
    pub basic_auth_password: Option<SecretString>,
    /// File holding the basic-auth password.
    pub basic_auth_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates trusted for an `https://` registry; unset, the
    /// Mozilla root store (webpki-roots).
    pub ca_location: Option<PathBuf>,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: "http://127.0.0.1:18081".to_string(),
            timeout_ms: 10_000,
            basic_auth_username: String::new(),
            basic_auth_password: None,
            basic_auth_password_file: None,
            ca_location: None,
        }
    }
}

/// Local state stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the RocksDB stores: `<dir>/<application_id>/<task>/<store>`.
    pub dir: PathBuf,
    /// How long an idempotency key is remembered, milliseconds of stream time (72 h).
    pub idempotency_retention_ms: i64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/var/lib/paystream/state"),
            idempotency_retention_ms: 72 * 60 * 60 * 1000,
        }
    }
}

/// The processing loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// How often the open transaction commits (outputs, changelog writes and consumed
    /// offsets together), milliseconds. Kafka Streams' exactly-once default is 100.
    pub commit_interval_ms: u64,
    /// Upper bound on records processed in one transaction, whatever the interval.
    pub transaction_records_max: usize,
    /// Kafka `transaction.timeout.ms`: the broker aborts a transaction open longer (a
    /// crashed instance's open transaction blocks `read_committed` readers until then).
    /// Kafka Streams' exactly-once default is 10000.
    pub transaction_timeout_ms: u64,
    /// Consumer group session timeout: how long a crashed instance keeps its partitions
    /// before the group moves them. Instances use static membership
    /// (`group.instance.id = <application_id>-<instance_id>`, KIP-345), so a restarted
    /// instance takes its partitions back at once without a rebalance.
    pub session_timeout_ms: u64,
    /// Stream time an auth or settlement event waits for its payment before an
    /// `ORPHAN_EVENT` / `MISSING_IN_LEDGER` exception is raised, milliseconds.
    pub orphan_timeout_ms: i64,
    /// Stream time an authorized payment may wait for its settlement before a
    /// `MISSING_IN_PSP` exception is raised, milliseconds.
    pub settlement_window_ms: i64,
    /// Stream time events may wait for a payment that never appears before they leave
    /// the `pending` store for the dead-letter queue as `orphan_expired` (redrivable),
    /// milliseconds. At least `orphan_timeout_ms`.
    pub pending_retention_ms: i64,
    /// How far an event's own time (`occurred_at`, `settled_at`) may be ahead of its
    /// record's broker timestamp, milliseconds; an event further ahead (a producer clock
    /// running fast) is dead-lettered as `event_time_in_future`. Default 3600000 (1 h,
    /// as Kafka's own `message.timestamp.after.max.ms`).
    pub event_time_skew_max_ms: i64,
}

impl ProcessingConfig {
    /// The lifecycle processor's timer settings.
    pub fn lifecycle_settings(&self) -> paystream_processors::lifecycle::LifecycleSettings {
        paystream_processors::lifecycle::LifecycleSettings {
            orphan_timeout_ms: self.orphan_timeout_ms,
            settlement_window_ms: self.settlement_window_ms,
            pending_retention_ms: self.pending_retention_ms,
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            commit_interval_ms: 100,
            transaction_records_max: 20_000,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            orphan_timeout_ms: 10 * 60 * 1_000,
            settlement_window_ms: 3 * 24 * 60 * 60 * 1_000,
            pending_retention_ms: 72 * 60 * 60 * 1_000,
            event_time_skew_max_ms: 60 * 60 * 1_000,
        }
    }
}

/// The PostgreSQL ledger sink.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Run the sink in the same process as the pipeline.
    pub enabled: bool,
    /// PostgreSQL connection URL, `postgres://user@host:port/database`, with libpq's TLS
    /// parameters: `?sslmode=verify-full&sslrootcert=/path/ca.pem` (production; also
    /// `sslcert`/`sslkey` for client certificates). Keep the password out of it: use
    /// `database_password`.
    pub database_url: String,
    /// The database user's password: from `PAYSTREAM_SINK__DATABASE_PASSWORD` or
    /// `database_password_file`.
    pub database_password: Option<SecretString>,
    /// File holding the database password.
    pub database_password_file: Option<PathBuf>,
    /// Most rows (records) written in one database transaction.
    pub batch_rows_max: usize,
    /// How long a batch waits for more records before it is written, milliseconds.
    pub batch_linger_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            enabled: true,
            database_url: "postgres://postgres@127.0.0.1:15432/paystream".to_string(),
            database_password: None,
            database_password_file: None,
            batch_rows_max: 5_000,
            batch_linger_ms: 200,
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    /// The URL's password, if one was put there after all, is redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkConfig")
            .field("enabled", &self.enabled)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_password", &self.database_password)
            .field("database_password_file", &self.database_password_file)
            .field("batch_rows_max", &self.batch_rows_max)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .finish()
    }
}

/// The `/healthz`, `/readyz` and `/metrics` endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to serve on; port 0 picks a free port (tests); empty turns it off.
    pub listen_address: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen_address: "127.0.0.1:9464".to_string(),
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (when given), then `PAYSTREAM_*` environment variables,
    /// and validates the result.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for a missing file, bad TOML or an unknown key;
    /// [`ConfigError::Invalid`] for a value out of range.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "file {} does not exist; pass an existing file with --config (see config/)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only PAYSTREAM_SECTION__KEY and the top-level keys are configuration; other
        // PAYSTREAM_* variables (e.g. the local stack's) are not ours to reject.
        let env = Env::prefixed("PAYSTREAM_")
            .filter(|key| {
                key.as_str().contains("__") || key == "application_id" || key == "instance_id"
            })
            .split("__");
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces each `<secret>_file` setting by the secret it holds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a secret is set both ways or its file is unreadable.
    pub fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret(
            &mut self.kafka.sasl_password,
            &self.kafka.sasl_password_file,
            "kafka.sasl_password",
            "kafka.sasl_password_file",
        )?;
        resolve_secret(
            &mut self.kafka.ssl_key_password,
            &self.kafka.ssl_key_password_file,
            "kafka.ssl_key_password",
            "kafka.ssl_key_password_file",
        )?;
        resolve_secret(
            &mut self.schema_registry.basic_auth_password,
            &self.schema_registry.basic_auth_password_file,
            "schema_registry.basic_auth_password",
            "schema_registry.basic_auth_password_file",
        )?;
        resolve_secret(
            &mut self.sink.database_password,
            &self.sink.database_password_file,
            "sink.database_password",
            "sink.database_password_file",
        )
    }

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
        if url_has_password(&self.sink.database_url) && self.sink.database_password.is_some() {
            return Err(invalid(
                "sink.database_url",
                "holds a password and sink.database_password is set too".into(),
                "remove the password from the URL",
            ));
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
        if self.processing.transaction_records_max == 0 {
            return Err(invalid(
                "processing.transaction_records_max",
                "must be > 0".into(),
                "use e.g. 20000",
            ));
        }
        if self.processing.transaction_timeout_ms <= self.processing.commit_interval_ms {
            return Err(invalid(
                "processing.transaction_timeout_ms",
                "must exceed processing.commit_interval_ms".into(),
                "use e.g. 60000",
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
        if self.sink.enabled
            && !(self.sink.database_url.starts_with("postgres://")
                || self.sink.database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "sink.database_url",
                "is not a postgres:// URL".into(),
                "set it to postgres://user@host:port/database",
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
        if !(1..=100_000).contains(&self.sink.batch_rows_max) {
            return Err(invalid(
                "sink.batch_rows_max",
                format!("{} is out of range", self.sink.batch_rows_max),
                "use 1 to 100000",
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

#[cfg(test)]
mod tests {
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
        config.schema_registry.basic_auth_password =
            Some(SecretString::from("hunter2-sr".to_string()));

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
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/paystream.local.toml");
            let config = Config::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen_address, "0.0.0.0:9464");
            assert_eq!(config.kafka.bootstrap_servers, "kafka:9094");
            assert_eq!(config.kafka.security_protocol, SecurityProtocol::SaslSsl);
            assert!(config.kafka.sasl_password.is_some());
            assert!(config.sink.database_password.is_some());
            Ok(())
        });
    }
}
