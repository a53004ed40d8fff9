//! Kafka client settings shared by every client the process creates.
//!
//! This file holds the client configurations ([`client_config`],
//! [`read_committed_consumer_config`], [`kafka_client_properties`]), the partitioner, the
//! retriable error codes, [`partition_count`] and [`read_committed_to_end`];
//! `connection.rs` holds the connection check at start-up ([`check_connection`],
//! [`ConnectionProblem`]), re-exported here.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use secrecy::ExposeSecret;

use crate::config::Config;

mod connection;

pub use connection::{
    CONNECTION_ATTEMPT_TIMEOUT, CONNECTION_ATTEMPTS, ConnectionProblem, check_connection,
};

/// The base client configuration: bootstrap servers, the security settings (TLS, SASL;
/// see [`crate::security`]), then the user's `kafka.client_properties`. Callers add their role's settings after this, so
/// paystream's exactly-once settings always win.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    client.set(
        "client.id",
        format!("{}-{}", config.application_id, config.instance_id),
    );
    for (key, value) in kafka_client_properties(&config.kafka) {
        client.set(key, value);
    }
    for (key, value) in &config.kafka.client_properties {
        client.set(key, value);
    }
    client
}

/// A consumer configuration that sees committed records only and never commits offsets
/// on its own: every consumer paystream creates (pipeline, restore, sink, readers).
pub fn read_committed_consumer_config(config: &Config, group_id: &str) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    client
}

/// Producer settings for records keyed like Java clients do: `murmur2_random` is the
/// Java producer's default partitioner, so our repartition topic and the ingress
/// producers' payment-id-keyed topics put a payment id in the same partition.
pub const PARTITIONER: &str = "murmur2_random";

/// Kafka error codes that clear up on their own (leader moves, timeouts, throttling).
pub fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::ConcurrentTransactions
    )
}

/// Reads every committed record of `topic` from the beginning
/// (`isolation.level=read_committed`) until each partition's position reaches the high
/// watermark it had when reading started; the position steps over transaction markers.
/// For tools (`paystream dlq inspect`) and tests; bounded by `timeout`. Each record is
/// returned once, in offset order within its partition, even if librdkafka resets a
/// position back to the start (`auto.offset.reset=earliest`: a reset never skips a
/// record).
///
/// # Errors
/// [`crate::Error::Kafka`] when the topic cannot be read, [`crate::Error::EndNotReached`] when
/// it does not exist or the end is not reached within `timeout`.
pub fn read_committed_to_end(
    config: &Config,
    topic: &str,
    timeout: std::time::Duration,
) -> crate::Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let kafka = |context: &str, e| crate::Error::Kafka {
        context: format!("{context} {topic}"),
        source: e,
    };
    let consumer: BaseConsumer =
        read_committed_consumer_config(config, &format!("{}-reader", config.application_id))
            // Should librdkafka ever reset a partition's position (an offset it cannot
            // resolve), back to the start, never to the end: the reader takes a position
            // at the end as "read", and would skip what it did not deliver.
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| kafka("creating a reader for", e))?;
    let request_timeout = std::time::Duration::from_millis(config.kafka.request_timeout_ms);
    let partitions = partition_count(&consumer, topic, request_timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::with_capacity(partitions as usize);
    // Reading starts at each partition's low watermark (records before it were deleted).
    let mut positions = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| kafka("assigning", e))?;
        let (low, high) = consumer
            .fetch_watermarks(topic, p, request_timeout)
            .map_err(|e| kafka("fetching watermarks of", e))?;
        positions.push(low);
        ends.push(high);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| kafka("assigning", e))?;
    let mut delivered = positions.clone();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    while positions.iter().zip(&ends).any(|(at, end)| at < end) {
        if std::time::Instant::now() > deadline {
            let (position, end) = positions
                .iter()
                .zip(&ends)
                .find(|(at, end)| at < end)
                .map_or((0, 0), |(at, end)| (*at, *end));
            return Err(crate::Error::EndNotReached {
                what: format!("reading {topic}"),
                end,
                position,
                waited_ms: timeout.as_millis() as u64,
            });
        }
        match consumer.poll(std::time::Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => return Err(kafka("reading", e)),
            Some(Ok(message)) => {
                let p = message.partition() as usize;
                // A record below what this partition already delivered comes again after
                // a reset back to the start: it is in `records` once already.
                if message.offset() >= delivered[p] {
                    delivered[p] = message.offset() + 1;
                    positions[p] = positions[p].max(delivered[p]);
                    records.push(message.detach());
                }
            }
        }
        if let Ok(current) = consumer.position() {
            for element in current.elements() {
                if let Offset::Offset(o) = element.offset() {
                    let p = element.partition() as usize;
                    positions[p] = positions[p].max(o);
                }
            }
        }
    }
    Ok(records)
}

/// The librdkafka properties of `kafka`'s security settings, secrets included: for
/// `rdkafka::ClientConfig` only (whose `Debug` hides them), never for printing.
pub fn kafka_client_properties(kafka: &crate::config::KafkaConfig) -> Vec<(&'static str, String)> {
    let mut properties = vec![("security.protocol", kafka.security_protocol.to_string())];
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    if kafka.security_protocol.uses_sasl() {
        properties.push(("sasl.mechanism", kafka.sasl_mechanism.to_string()));
        properties.push(("sasl.username", kafka.sasl_username.clone()));
        if let Some(password) = &kafka.sasl_password {
            properties.push(("sasl.password", password.expose_secret().to_string()));
        }
    }
    if kafka.security_protocol.uses_tls() {
        if let Some(ca) = &kafka.ssl_ca_location {
            properties.push(("ssl.ca.location", path(ca)));
        }
        if let Some(certificate) = &kafka.ssl_certificate_location {
            properties.push(("ssl.certificate.location", path(certificate)));
        }
        if let Some(key) = &kafka.ssl_key_location {
            properties.push(("ssl.key.location", path(key)));
        }
        if let Some(password) = &kafka.ssl_key_password {
            properties.push(("ssl.key.password", password.expose_secret().to_string()));
        }
        properties.push((
            "ssl.endpoint.identification.algorithm",
            if kafka.ssl_endpoint_identification {
                "https"
            } else {
                "none"
            }
            .to_string(),
        ));
    }
    properties
}

/// Partition count of `topic`, from cluster metadata.
///
/// # Errors
/// [`crate::Error::TopicMissing`] when the topic does not exist; [`crate::Error::Kafka`] when
/// metadata cannot be fetched.
pub fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    topic: &str,
    timeout: std::time::Duration,
) -> crate::Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| crate::Error::kafka(&format!("fetching metadata of {topic}"), e))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| crate::Error::TopicMissing {
            topic: topic.to_string(),
        })?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(crate::Error::TopicMissing {
            topic: topic.to_string(),
        });
    }
    Ok(t.partitions().len() as i32)
}
