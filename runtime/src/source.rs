//! The source of the stream task (Kafka Streams' `SourceNode` with its deserialization
//! exception handler): what happens to a consumed record before a processor sees it.
//! It finds the record's origin (for the repartition topic, the input it came from),
//! checks its size and its partition, turns its value into the processor's input type
//! with its topic's deserializer ([`crate::serde`]), and says, through the dead-letter
//! policy ([`crate::dead_letter`]), which records go to a dead-letter queue and why.

use std::collections::HashSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tracing::warn;

use crate::dead_letter_policy::{FailureAction, on_serde_error};
use crate::origin::origin_headers;
use crate::processor::{DeadLetterReason, Origin, Stage, Value};
use crate::serde::{RawRecord, SerdeContext, SerdeError};
use crate::topology::{SubTopology, Topology};
use crate::{Error, Result};

/// Largest input record value the pipeline carries, bytes. A valid record is a few KB at
/// most (an application bounds its identifiers and free text when it validates); a
/// larger value is dead-lettered as `record_too_large` before it is decoded, so it never
/// reaches a state store, a changelog or an output.
pub const INPUT_VALUE_BYTES_MAX: usize = 64 * 1024;

/// The partition Kafka's default partitioner gives `key` among `partitions`: murmur2
/// with seed `0x9747b28c`, made positive, modulo the count (the Java client's
/// `BuiltInPartitioner.partitionForKey`, librdkafka's `murmur2_random`).
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2::murmur2(key, 0x9747_b28c) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// The retry policy of Schema Registry look-ups while (de)serializing: exponential from 100 ms
/// to 5 s, 10 attempts; after that the instance stops (the registry is the environment).
pub(crate) fn registry_retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(10)
}

/// A record on another partition than its key's murmur2 partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misrouted {
    /// Where the record must be forwarded — its sub-topology's repartition topic and the
    /// partition of the key's task — when the sub-topology has one (auth and settlement
    /// records); `None` when it is processed where it is (`payment_initiated`).
    pub reroute_to: Option<(String, i32)>,
}

/// The source stage of every task of one instance.
pub struct Source {
    topology: Topology,
    serde: SerdeContext,
    registry_url: String,
    /// Partition count of each sub-topology's sources (its task count), by id.
    partitions: Vec<i32>,
    /// (topic, partition) pairs whose misrouted records were already logged.
    misrouted_logged: HashSet<(String, i32)>,
}

impl Source {
    /// The source of `topology`'s tasks, whose sub-topologies have `partitions`
    /// partitions each (by id).
    pub fn new(
        topology: Topology,
        partitions: Vec<i32>,
        serde: SerdeContext,
        registry_url: String,
    ) -> Self {
        Source {
            topology,
            serde,
            registry_url,
            partitions,
            misrouted_logged: HashSet::new(),
        }
    }

    /// The partition count of sub-topology `id`'s sources.
    pub fn partitions(&self, id: u8) -> i32 {
        self.partitions.get(id as usize).copied().unwrap_or(1)
    }

    /// Why `message` is too large to process, if it is: a value over
    /// [`INPUT_VALUE_BYTES_MAX`].
    pub fn too_large(message: &OwnedMessage) -> Option<String> {
        let value_bytes = message.payload().map_or(0, <[u8]>::len);
        (value_bytes > INPUT_VALUE_BYTES_MAX).then(|| {
            format!("value is {value_bytes} bytes, at most {INPUT_VALUE_BYTES_MAX} are processed")
        })
    }

    /// Whether an input record arrived on a partition other than the one its key maps to
    /// under Kafka's default partitioner (an ingress producer on another partitioner).
    /// In a sub-topology with a repartition source (the lifecycle), a record there would
    /// wait in its task's `pending` store for a payment that lives in another task, so it
    /// is to be forwarded through the repartition topic to its key's partition; in one
    /// without (dedupe), it is processed where it is: deduplication needs only that one
    /// idempotency key always lands on the same partition, which any key hash gives.
    /// Logged once per input partition.
    pub fn misrouted(&mut self, message: &OwnedMessage) -> Option<Misrouted> {
        let topic = message.topic();
        let sub = self.topology.reader_of(topic)?;
        if sub.sources.iter().any(|s| s.topic == topic && s.internal) {
            return None;
        }
        let key = message.key()?;
        let expected = murmur2_partition(key, self.partitions(sub.id));
        let reroute_to = sub
            .internal_source()
            .map(|repartition| (repartition.to_string(), expected));
        let rerouted = reroute_to.is_some();
        if expected == message.partition() {
            return None;
        }
        if self
            .misrouted_logged
            .insert((topic.to_string(), message.partition()))
        {
            warn!(
                topic,
                partition = message.partition(),
                offset = message.offset(),
                key_partition = expected,
                rerouted,
                "input record on another partition than its key's murmur2 partition: an \
                 ingress producer does not use Kafka's default partitioner (set \
                 partitioner=murmur2_random in librdkafka-based clients); logged once per \
                 partition, counted in paystream_records_misrouted_total"
            );
        }
        Some(Misrouted { reroute_to })
    }

    /// The origin of a consumed record; for the repartition topic, the input record it
    /// was re-keyed from.
    pub fn origin_of(&self, message: &OwnedMessage) -> Origin {
        let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
        let mut origin = Origin {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
        };
        let internal = self
            .topology
            .reader_of(message.topic())
            .is_some_and(|sub| sub.internal_source() == Some(message.topic()));
        if internal && let Some(headers) = message.headers() {
            for header in headers.iter() {
                let text = header.value.map(String::from_utf8_lossy);
                match (header.key, text) {
                    (origin_headers::TOPIC, Some(t)) => origin.topic = t.into_owned(),
                    (origin_headers::PARTITION, Some(p)) => {
                        origin.partition = p.parse().unwrap_or(origin.partition)
                    }
                    (origin_headers::OFFSET, Some(o)) => {
                        origin.offset = o.parse().unwrap_or(origin.offset)
                    }
                    (origin_headers::KEY, _) => origin.key = header.value.map(<[u8]>::to_vec),
                    _ => {}
                }
            }
        }
        origin
    }

    /// Which of `sub`'s inputs a record consumed from `topic`, whose origin is
    /// `origin_topic`, is decoded as: the origin when `sub` reads it too (a record
    /// rerouted through the sub-topology's own repartition topic), else `topic`. Returns
    /// its position in `sub`'s sources.
    pub fn input_of(sub: &SubTopology, topic: &str, origin_topic: &str) -> Option<usize> {
        sub.input_index(origin_topic)
            .or_else(|| sub.input_index(topic))
    }

    /// Decodes the value of a record of `sub`'s input `input` with that input's
    /// deserializer; the record's broker timestamp is `timestamp_ms`. The outer `Result`
    /// is a failure of the pipeline; the inner `Err` is a dead letter
    /// `(reason, stage, message)`.
    ///
    /// # Errors
    /// [`Error::RegistryUnreachable`] when the registry stayed unreachable through the
    /// retries.
    pub async fn decode(
        &self,
        sub: &SubTopology,
        input: usize,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Result<std::result::Result<Value, (DeadLetterReason, Stage, String)>> {
        let source = &sub.sources[input];
        let record = RawRecord {
            topic: &source.topic,
            key,
            value,
            timestamp_ms,
        };
        let decode_once = || source.deserializer.deserialize_value(&self.serde, record);
        // One attempt first: only a registry outage pays for the retry machinery.
        let decoded = match decode_once().await {
            Err(e) if e.is_retriable() => decode_once
                .retry(registry_retry_policy())
                .when(SerdeError::is_retriable)
                .notify(
                    |e, delay| warn!(error = %e, ?delay, "schema registry unavailable, retrying"),
                )
                .await,
            first => first,
        };
        let error = match decoded {
            Ok(value) => return Ok(Ok(value)),
            Err(error) => error,
        };
        match on_serde_error(&error) {
            FailureAction::DeadLetter(reason, stage) => Ok(Err((reason, stage, error.to_string()))),
            FailureAction::Retry => Err(Error::RegistryUnreachable {
                url: self.registry_url.clone(),
                message: error.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_partition_matches_kafkas_default_partitioner() {
        // Hashes of the Java client's `Utils.murmur2`, as its unit tests list them.
        for (key, hash) in [
            (&b"21"[..], -973_932_308_i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(murmur2::murmur2(key, 0x9747_b28c) as i32, hash, "{key:?}");
            let positive = (hash as u32 & 0x7fff_ffff) as i32;
            assert_eq!(murmur2_partition(key, 7), positive % 7, "{key:?}");
        }
    }
}
