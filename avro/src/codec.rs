//! Encoding and decoding of records in the Confluent wire format, with schemas
//! looked up in (and registered with) a Confluent-compatible Schema Registry through
//! `schema_registry_converter`. Subjects follow Confluent's `TopicNameStrategy`:
//! `<topic>-value`.
//!
//! Schemas are cached per id (decoding) and per subject (encoding), so the registry is
//! called once per schema, not per record.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AvroRecord;
pub use crate::error::{CodecError, DecodeError, DecodeErrorKind};
pub use crate::registry::RegistryAccess;
use crate::registry::{registry_error, tls_client_config};
use crate::wire;

/// A registered schema: its registry id and its writer, built once (resolving a
/// schema's names is most of the cost of building one).
struct RegisteredSchema {
    id: u32,
    writer: DatumWriter,
}

self_cell::self_cell!(
    /// A parsed schema and the Avro writer that borrows it.
    struct DatumWriter {
        owner: Schema,
        #[covariant]
        dependent: GenericDatumWriter,
    }
);

impl DatumWriter {
    fn build(schema: Schema) -> Result<Self, apache_avro::Error> {
        DatumWriter::try_new(schema, |schema| GenericDatumWriter::builder(schema).build())
    }
}

self_cell::self_cell!(
    /// A writer schema fetched from the registry and the Avro reader that borrows it.
    struct DatumReader {
        owner: Schema,
        #[covariant]
        dependent: GenericDatumReader,
    }
);

/// What decoding needs of one schema id, kept for the life of the codec: a schema id
/// names the same schema forever (Confluent Schema Registry ids are immutable).
struct CachedReader {
    /// The record's full name (`namespace.Name`), or a prefix of the schema's debug form
    /// when it is not a record.
    full_name: String,
    reader: DatumReader,
}

/// Most bytes the Avro reader allocates for one value (a string, bytes or an array) while
/// decoding, 8 MiB: every record paystream reads is far smaller, so a length prefix that
/// claims more is undecodable rather than a large allocation.
pub const AVRO_ALLOCATION_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Encoder and decoder for one Schema Registry. Cheap to share behind an `Arc`.
pub struct Codec {
    url: String,
    settings: SrSettings,
    decoder: AvroDecoder,
    by_subject: RwLock<HashMap<String, Arc<RegisteredSchema>>>,
    /// Readers by schema id, built on the first record of each id.
    readers: RwLock<HashMap<u32, Arc<CachedReader>>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("url", &self.url).finish()
    }
}

/// The Confluent `TopicNameStrategy` subject of a topic's values.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

impl Codec {
    /// A codec for the registry at `url` (the base to which `/subjects/...` is appended),
    /// with `timeout` per HTTP call.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when the HTTP client cannot be built (e.g. a malformed URL).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, CodecError> {
        Self::with_access(url, timeout, &RegistryAccess::default())
    }

    /// A codec for the registry at `url` reached with `access`: HTTP basic
    /// authentication and, for `https://`, the CA certificates to trust (else the
    /// Mozilla root store). Server certificates are always verified, host name included.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when the CA file holds no certificate or the HTTP client
    /// cannot be built.
    pub fn with_access(
        url: &str,
        timeout: Duration,
        access: &RegistryAccess,
    ) -> Result<Self, CodecError> {
        // A hostile length prefix makes the Avro reader allocate what it claims before it
        // finds the bytes missing; bound that well below memory (the first call in a
        // process sets it).
        apache_avro::util::max_allocation_bytes(AVRO_ALLOCATION_BYTES_MAX);
        let mut builder = SrSettings::new_builder(url.trim_end_matches('/').to_string());
        builder.set_timeout(timeout).no_proxy();
        if let Some(user) = &access.basic_auth_username {
            builder.set_basic_authorization(user, access.basic_auth_password.as_deref());
        }
        let client = reqwest::Client::builder().tls_backend_preconfigured(
            tls_client_config(access.ca_pem.as_deref()).map_err(|message| {
                CodecError::Registry {
                    url: url.to_string(),
                    message,
                    retriable: false,
                }
            })?,
        );
        let settings = builder
            .build_with(client)
            .map_err(|e| registry_error(url, &e))?;
        Ok(Codec {
            url: url.to_string(),
            decoder: AvroDecoder::new(settings.clone()),
            settings,
            by_subject: RwLock::new(HashMap::new()),
            readers: RwLock::new(HashMap::new()),
        })
    }

    /// Registers `T`'s schema under `<topic>-value` (a no-op when it is already there) and
    /// returns its registry id.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when the registry rejects the schema or is unreachable.
    pub async fn register<T: AvroRecord>(&self, topic: &str) -> Result<u32, CodecError> {
        self.register_schema(topic, T::FULL_NAME, T::SCHEMA_JSON)
            .await
    }

    /// Registers a schema text under `<topic>-value` and returns its registry id.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when the registry rejects the schema or is unreachable.
    pub async fn register_schema(
        &self,
        topic: &str,
        full_name: &str,
        schema_json: &str,
    ) -> Result<u32, CodecError> {
        let subject = value_subject(topic);
        if let Some(known) = self.cached(&subject) {
            return Ok(known.id);
        }
        let supplied = SuppliedSchema::new(
            Some(full_name.to_string()),
            SchemaType::Avro,
            schema_json.to_string(),
        );
        let registered = post_schema(&self.settings, subject.clone(), supplied)
            .await
            .map_err(|e| registry_error(&self.url, &e))?;
        let schema = Schema::parse_str(schema_json).map_err(|e| CodecError::Registry {
            url: self.url.clone(),
            message: format!("schema {full_name} does not parse: {e}"),
            retriable: false,
        })?;
        let writer = DatumWriter::build(schema).map_err(|e| CodecError::Registry {
            url: self.url.clone(),
            message: format!("schema {full_name} does not resolve: {e}"),
            retriable: false,
        })?;
        let entry = Arc::new(RegisteredSchema {
            id: registered.id,
            writer,
        });
        self.by_subject
            .write()
            .expect("schema cache lock poisoned")
            .insert(subject, entry);
        Ok(registered.id)
    }

    fn cached(&self, subject: &str) -> Option<Arc<RegisteredSchema>> {
        self.by_subject
            .read()
            .expect("schema cache lock poisoned")
            .get(subject)
            .cloned()
    }

    /// Encodes `record` for `topic` in the Confluent wire format, registering `T`'s schema
    /// under `<topic>-value` on first use.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when the schema cannot be registered;
    /// [`CodecError::Encode`] when the record does not fit its schema.
    pub async fn encode<T: AvroRecord + Serialize>(
        &self,
        topic: &str,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let registered = match self.cached(&value_subject(topic)) {
            Some(r) => r,
            None => {
                self.register::<T>(topic).await?;
                self.cached(&value_subject(topic))
                    .expect("schema cached after registration")
            }
        };
        encode_with(&registered, topic, record)
    }

    /// Decodes a Confluent-framed value into `T`, checking that its schema is `T`'s record.
    ///
    /// # Errors
    /// [`DecodeError`] whose kind maps to a dead-letter reason, or
    /// [`DecodeErrorKind::RegistryUnavailable`] when the caller should retry.
    pub async fn decode<T: AvroRecord + DeserializeOwned>(
        &self,
        value: Option<&[u8]>,
    ) -> Result<T, DecodeError> {
        let (id, mut body) = wire::split(value)?;
        let cached = self.reader(id).await?;
        if cached.full_name != T::FULL_NAME {
            return Err(DecodeError::new(
                DecodeErrorKind::UnknownSchema,
                format!(
                    "schema id {id} is {}, this topic carries {}",
                    cached.full_name,
                    T::FULL_NAME
                ),
            ));
        }
        let undecodable = |e: apache_avro::Error| {
            DecodeError::new(
                DecodeErrorKind::Undecodable,
                format!("Avro body does not decode with schema id {id}: {e}"),
            )
        };
        let reader = cached.reader.borrow_dependent();
        let record: T = reader.read_deser(&mut body).map_err(undecodable)?;
        if !body.is_empty() {
            return Err(DecodeError::new(
                DecodeErrorKind::Undecodable,
                format!(
                    "{} trailing bytes after the Avro record (schema id {id})",
                    body.len()
                ),
            ));
        }
        Ok(record)
    }

    /// The reader of schema id `id`: cached, or fetched from the registry and built.
    ///
    /// # Errors
    /// [`DecodeErrorKind::RegistryUnavailable`] when the registry cannot be reached;
    /// [`DecodeErrorKind::UnknownSchema`] when it does not know `id`;
    /// [`DecodeErrorKind::Undecodable`] when the schema's names do not resolve.
    async fn reader(&self, id: u32) -> Result<Arc<CachedReader>, DecodeError> {
        if let Some(cached) = self
            .readers
            .read()
            .expect("reader cache lock poisoned")
            .get(&id)
        {
            return Ok(cached.clone());
        }
        let schema = self.decoder.get_schema(id).await.map_err(|e| {
            if e.retriable {
                DecodeError::new(
                    DecodeErrorKind::RegistryUnavailable,
                    format!(
                        "schema registry unavailable fetching schema id {id}: {}",
                        e.error
                    ),
                )
            } else {
                DecodeError::new(
                    DecodeErrorKind::UnknownSchema,
                    format!("schema id {id} is not known to the registry"),
                )
            }
        })?;
        let full_name = match &schema.parsed {
            Schema::Record(record) => record.name.fullname(None),
            other => format!("{other:?}").chars().take(40).collect(),
        };
        let reader = DatumReader::try_new(schema.parsed.clone(), |schema| {
            GenericDatumReader::builder(schema).build()
        })
        .map_err(|e| {
            DecodeError::new(
                DecodeErrorKind::Undecodable,
                format!("schema id {id} does not resolve: {e}"),
            )
        })?;
        let cached = Arc::new(CachedReader { full_name, reader });
        self.readers
            .write()
            .expect("reader cache lock poisoned")
            .insert(id, cached.clone());
        Ok(cached)
    }
}

fn encode_with<T: AvroRecord + Serialize>(
    registered: &RegisteredSchema,
    topic: &str,
    record: &T,
) -> Result<Vec<u8>, CodecError> {
    let encode_error = |message: String| CodecError::Encode {
        record: T::FULL_NAME,
        topic: topic.to_string(),
        message,
    };
    let writer = registered.writer.borrow_dependent();
    let mut framed = Vec::with_capacity(256);
    framed.push(wire::MAGIC_BYTE);
    framed.extend_from_slice(&registered.id.to_be_bytes());
    writer
        .write_ser(&mut framed, record)
        .map_err(|e| encode_error(e.to_string()))?;
    Ok(framed)
}

#[cfg(test)]
mod tests {
    /// Basic auth reaches the wire, and a rejection names the keys to fix without the
    /// password. The registry here is a test double (a TCP listener that records the
    /// request and answers 401): the local stack's registry cannot require basic auth
    /// without an OIDC server.
    #[tokio::test]
    async fn basic_auth_is_sent_and_a_rejection_names_the_keys() {
        use std::io::{Read, Write};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"error_code":40101,"message":"Unauthorized"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            String::from_utf8_lossy(&request).to_ascii_lowercase()
        });
        let access = super::RegistryAccess {
            basic_auth_username: Some("paystream-sr".into()),
            basic_auth_password: Some("s3cret-sr-41c9".into()),
            ca_pem: None,
        };
        assert!(!format!("{access:?}").contains("s3cret"));
        let codec =
            super::Codec::with_access(&url, std::time::Duration::from_secs(5), &access).unwrap();
        let error = codec
            .register_schema("t", "paystream.events.X", r#"{"type":"string"}"#)
            .await
            .unwrap_err()
            .to_string();
        let request = server.join().unwrap();
        // base64("paystream-sr:s3cret-sr-41c9")
        assert!(
            request.contains("authorization: basic cgf5c3ryzwftlxnyonmzy3jldc1zci00mwm5"),
            "{request}"
        );
        assert!(
            error.contains("schema_registry.basic_auth_username"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
    }

    use super::*;

    /// A record of the test's own, not one of paystream's events: the codec knows none.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Reading {
        sensor_id: String,
        value_milli: i64,
        note: Option<String>,
    }

    impl AvroRecord for Reading {
        const FULL_NAME: &'static str = "test.Reading";
        const SCHEMA_JSON: &'static str = r#"{"type":"record","name":"Reading","namespace":"test","fields":[
            {"name":"sensor_id","type":"string"},
            {"name":"value_milli","type":"long"},
            {"name":"note","type":["null","string"],"default":null}]}"#;
    }

    #[test]
    fn a_record_round_trips_in_the_wire_format() {
        let record = Reading {
            sensor_id: "s-1".into(),
            value_milli: -42,
            note: Some("n".into()),
        };
        let registered = RegisteredSchema {
            id: 7,
            writer: DatumWriter::build(Schema::parse_str(Reading::SCHEMA_JSON).unwrap()).unwrap(),
        };
        let framed = encode_with(&registered, "t", &record).unwrap();
        let (id, mut body) = wire::split(Some(&framed)).unwrap();
        assert_eq!(id, 7);
        let reader = GenericDatumReader::builder(registered.writer.borrow_owner())
            .build()
            .unwrap();
        assert_eq!(reader.read_deser::<Reading>(&mut body).unwrap(), record);
        assert!(body.is_empty(), "the whole body is one record");
    }
}
