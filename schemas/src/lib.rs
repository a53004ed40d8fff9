//! paystream's events: the Rust types, their Avro schemas (`schemas/avro/*.avsc`) and the
//! checks every input event passes ([`validate`]). They travel in the [Confluent wire
//! format] through the codec of `paystream-avro`, re-exported here as [`codec`] and
//! [`wire`].
//!
//! Every record value on a paystream topic is `0x00` (magic byte), a 4-byte big-endian
//! schema id, then the Avro binary encoding of the record. Keys are plain UTF-8 strings.
//! Money is always `amount_minor: i64` plus an ISO 4217 currency code; times are
//! milliseconds since the Unix epoch (Avro `timestamp-millis`).
//!
//! [Confluent wire format]: https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format

pub mod events;
pub mod validate;

pub use events::*;
pub use paystream_avro::{Codec, DecodeError, DecodeErrorKind, codec, wire};
