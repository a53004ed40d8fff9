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
use serde::Deserialize;

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
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:19092".to_string(),
            client_properties: BTreeMap::new(),
            request_timeout_ms: 30_000,
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
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: "http://127.0.0.1:18081".to_string(),
            timeout_ms: 10_000,
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
        }
    }
}

/// The PostgreSQL ledger sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Run the sink in the same process as the pipeline.
    pub enabled: bool,
    /// PostgreSQL connection URL, `postgres://user@host:port/database`.
    pub database_url: String,
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
            batch_rows_max: 5_000,
            batch_linger_ms: 200,
        }
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

/// A configuration that cannot be used. The message names the key and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or environment could not be read or has unknown or mistyped keys.
    #[error("configuration: {0}")]
    Load(String),
    /// A value is out of range.
    #[error("configuration key {key}: {problem}; {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
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
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.validate()?;
        Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
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
        for file in ["paystream.local.toml", "paystream.production.toml"] {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let config: Config = Figment::new()
                .merge(Toml::string(&text))
                .extract()
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
                jail.set_env(key, value);
            }
            // The compose file mounts config/paystream.local.toml as the config file.
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/paystream.local.toml");
            let config = Config::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen_address, "0.0.0.0:9464");
            assert_eq!(config.kafka.bootstrap_servers, "kafka:9092");
            Ok(())
        });
    }
}
