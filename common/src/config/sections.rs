//! The configuration's structs, one per TOML section, each with its `Default` impl (the
//! one place defaults live).

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::security::{SaslMechanism, SecurityProtocol};

/// The stream runtime's configuration: every section but those applications own
/// (their top-level keys are checked by [`super::ConfigSources::config`]; every
/// section's own keys are checked here).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
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
    /// Which tasks of other instances this one keeps standby replicas of: warm copies
    /// of their stores, read from their changelogs, so a task that moves here after a
    /// failure starts without restoring its stores (Kafka Streams'
    /// `num.standby.replicas`; docs/architecture.md, "Standby replicas").
    pub standby_replicas: StandbyReplicas,
}

/// Which tasks an instance keeps standby replicas of (`state.standby_replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StandbyReplicas {
    /// Every stateful task it does not run (the default): each instance holds the whole
    /// state on disk and reads every changelog once more.
    All,
    /// None: a task that moves here restores its stores first.
    None,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/var/lib/paystream/state"),
            idempotency_retention_ms: 72 * 60 * 60 * 1000,
            standby_replicas: StandbyReplicas::All,
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
    /// How often the open transaction commits while the stream thread has no record it
    /// can process (its input is drained, or its tasks hold back for records this very
    /// transaction wrote to the repartition topic), milliseconds. Under load the
    /// transaction commits every `commit_interval_ms`, amortising the commit over many
    /// records; at low load it commits this soon after the last commit, so an event does
    /// not wait out the full interval twice (once per sub-topology) to reach the ledger.
    /// Equal to `commit_interval_ms` turns early commits off (docs/architecture.md,
    /// "Commits").
    pub commit_interval_idle_ms: u64,
    /// Upper bound on records processed in one transaction, whatever the interval.
    pub transaction_records_max: usize,
    /// Longest a task holds back its records while one of its partitions is empty but
    /// known to bring earlier ones (a payment this instance wrote to the repartition
    /// topic and has not read back yet), milliseconds; then it processes what it has.
    /// As Kafka Streams' `max.task.idle.ms`; 0 never holds back (docs/architecture.md,
    /// "Processing order").
    pub max_task_idle_ms: u64,
    /// Records queued per input partition before the partition is paused (as Kafka
    /// Streams' `buffered.records.per.partition`).
    pub buffered_records_per_partition: usize,
    /// Kafka `transaction.timeout.ms`: the broker aborts a transaction open longer (a
    /// crashed instance's open transaction blocks `read_committed` readers until then).
    /// Kafka Streams' exactly-once default is 10000.
    pub transaction_timeout_ms: u64,
    /// Consumer group session timeout: how long a crashed instance keeps its partitions
    /// before the group moves them, milliseconds (default 6000, the smallest a broker
    /// with default settings accepts, `group.min.session.timeout.ms`). Heartbeats go every
    /// third of it. Instances use static membership
    /// (`group.instance.id = <application_id>-<instance_id>`, KIP-345), so a restarted
    /// instance takes its partitions back at once without a rebalance.
    pub session_timeout_ms: u64,
    /// How long an instance may send no heartbeat to the liveness topic
    /// (`<application_id>-liveness`) before the others take its partitions over,
    /// milliseconds (default 1500; 0 turns it off and leaves it to the session timeout).
    /// Each instance sends a heartbeat every sixth of it. The takeover fences the silent
    /// instance's transactional id and removes it from the group, so its partitions move
    /// without waiting for `session_timeout_ms` (docs/architecture.md, "Instances,
    /// rebalances and zombies").
    pub peer_timeout_ms: u64,
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

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            commit_interval_ms: 100,
            commit_interval_idle_ms: 20,
            transaction_records_max: 20_000,
            max_task_idle_ms: 500,
            buffered_records_per_partition: 1_000,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 6_000,
            peer_timeout_ms: 1_500,
            orphan_timeout_ms: 10 * 60 * 1_000,
            settlement_window_ms: 3 * 24 * 60 * 60 * 1_000,
            pending_retention_ms: 72 * 60 * 60 * 1_000,
            event_time_skew_max_ms: 60 * 60 * 1_000,
        }
    }
}

/// The `/healthz`, `/readyz`, `/metrics` and `/payments/{id}` endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to serve on; port 0 picks a free port (tests); empty turns it off.
    pub listen_address: String,
    /// `host:port` at which the other instances reach this one, to forward a payment
    /// lookup to the instance that hosts the payment (docs/architecture.md, "Interactive
    /// queries"). Empty: the address bound for `listen_address`, unless that is a
    /// wildcard (`0.0.0.0`), which another instance cannot dial; then lookups are not
    /// forwarded here.
    pub advertised_address: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen_address: "127.0.0.1:9464".to_string(),
            advertised_address: String::new(),
        }
    }
}
