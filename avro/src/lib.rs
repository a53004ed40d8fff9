//! Avro in the [Confluent wire format], with schemas looked up in (and registered with) a
//! Confluent-compatible Schema Registry: the serialization the stream runtime offers for
//! record values (docs/architecture.md, "Serdes").
//!
//! Every value is `0x00` (magic byte), a 4-byte big-endian schema id, then the Avro
//! binary encoding of the record ([`wire`]). [`Codec`] encodes and decodes any type that
//! implements [`AvroRecord`] (its schema text and full name) and serde's traits; it
//! knows no application's records.
//!
//! [Confluent wire format]: https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format

pub mod codec;
mod error;
mod registry;
pub mod wire;

pub use codec::{Codec, CodecError, DecodeError, DecodeErrorKind, RegistryAccess, value_subject};

/// A Rust type with an Avro record schema.
pub trait AvroRecord {
    /// Avro full name (`namespace.name`), as the registry and decoder report it.
    const FULL_NAME: &'static str;
    /// The schema text (JSON).
    const SCHEMA_JSON: &'static str;
}
