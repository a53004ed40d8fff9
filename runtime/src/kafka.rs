//! Kafka client settings shared by every client the process creates.

use rdkafka::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;

/// The base client configuration: bootstrap servers, then the user's
/// `kafka.client_properties`. Callers add their role's settings after this, so
/// paystream's exactly-once settings always win.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    client.set(
        "client.id",
        format!("{}-{}", config.application_id, config.instance_id),
    );
    for (key, value) in &config.kafka.client_properties {
        client.set(key, value);
    }
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
