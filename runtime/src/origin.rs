//! Where a record came from. A record forwarded to a repartition topic carries its
//! origin — the input topic, partition, offset and key it was read at — in headers, so
//! the task reading it decodes it as the input it is, and a later dead letter names the
//! input record rather than the internal topic (docs/architecture.md, "Topology").

use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};

/// Headers that carry a repartitioned record's origin, so that a later dead letter
/// names the input record (topic, partition, offset, key) rather than the internal topic.
pub mod origin_headers {
    pub const TOPIC: &str = "paystream.origin.topic";
    pub const PARTITION: &str = "paystream.origin.partition";
    pub const OFFSET: &str = "paystream.origin.offset";
    pub const KEY: &str = "paystream.origin.key";
}

/// The headers of a record forwarded to the repartition topic: where it was read, so a
/// later dead letter names the input record rather than the internal topic, and so it is
/// decoded as the input it is.
pub fn origin_headers_of(message: &OwnedMessage) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: origin_headers::TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: origin_headers::PARTITION,
            value: Some(&message.partition().to_string()),
        })
        .insert(Header {
            key: origin_headers::OFFSET,
            value: Some(&message.offset().to_string()),
        })
        .insert(Header {
            key: origin_headers::KEY,
            value: Some(message.key().unwrap_or_default()),
        })
}
