//! Schema evolution against the real registry (Apicurio's Confluent-compatible API):
//! each subject's previous schema (`schemas/avro/previous/`) is registered under a fresh
//! subject with the compatibility level docs/schemas.md gives it, and the registry's
//! compatibility endpoint (`POST /compatibility/subjects/{subject}/versions/latest`) is
//! asked about today's schema: input subjects pass FULL; output subjects pass BACKWARD
//! and, as designed, not FORWARD (an old reader has no enum default for the new
//! symbols), while the next symbol added after today's schemas passes FULL. And a
//! payment written with the previous schema (its registered id, Confluent wire format)
//! reads through today's codec and `EventDeserializer` as automatic capture.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use paystream_integration::registry_url;
use paystream_processors::serdes::EventDeserializer;
use paystream_runtime::{Deserializer, RawRecord, SerdeContext};
use paystream_schemas::{AvroRecord, CaptureMode, Codec, PaymentInitiated, all_schemas};

const PREVIOUS_INPUTS: [(&str, &str); 4] = [
    (
        "payment_initiated",
        include_str!("../../schemas/avro/previous/payment_initiated.avsc"),
    ),
    (
        "auth_success",
        include_str!("../../schemas/avro/previous/auth_succeeded.avsc"),
    ),
    (
        "auth_failure",
        include_str!("../../schemas/avro/previous/auth_failed.avsc"),
    ),
    (
        "settlement",
        include_str!("../../schemas/avro/previous/settlement_reported.avsc"),
    ),
];

const PREVIOUS_OUTPUTS: [(&str, &str); 3] = [
    (
        "payment_status",
        include_str!("../../schemas/avro/previous/payment_status_changed.avsc"),
    ),
    (
        "ledger_entries",
        include_str!("../../schemas/avro/previous/journal_entry.avsc"),
    ),
    (
        "reconciliation_exceptions",
        include_str!("../../schemas/avro/previous/reconciliation_exception.avsc"),
    ),
];

/// The Confluent REST API of the stack's registry, for one test's subjects.
struct Registry {
    http: reqwest::Client,
    url: String,
    /// Prefix of this test's subjects: no other test or run shares them.
    prefix: String,
}

impl Registry {
    fn new(test: &str) -> Self {
        Registry {
            http: reqwest::Client::new(),
            url: registry_url().trim_end_matches('/').to_string(),
            prefix: format!("{test}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        }
    }

    /// The `TopicNameStrategy` subject of `topic`, under this test's prefix.
    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}-value", self.prefix)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn set_compatibility(&self, subject: &str, level: &str) -> anyhow::Result<()> {
        let answer = self
            .call(
                reqwest::Method::PUT,
                &format!("/config/{subject}"),
                serde_json::json!({ "compatibility": level }),
            )
            .await?;
        anyhow::ensure!(answer["compatibility"] == level, "{answer}");
        Ok(())
    }

    /// Registers `schema` under `subject`; its id.
    async fn register(&self, subject: &str, schema: &str) -> anyhow::Result<u32> {
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                serde_json::json!({ "schema": schema }),
            )
            .await?;
        Ok(u32::try_from(answer["id"].as_u64().expect("an id"))?)
    }

    /// Whether `schema` is compatible with the latest version of `subject` at the
    /// subject's level, and the registry's reason when it is not.
    async fn is_compatible(&self, subject: &str, schema: &str) -> anyhow::Result<(bool, String)> {
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
                serde_json::json!({ "schema": schema }),
            )
            .await?;
        Ok((
            answer["is_compatible"].as_bool().expect("is_compatible"),
            answer.to_string(),
        ))
    }
}

/// Today's schema of `topic`.
fn current(topic: &str) -> &'static str {
    all_schemas()
        .into_iter()
        .find(|(t, _, _)| *t == topic)
        .map(|(_, _, json)| json)
        .unwrap_or_else(|| panic!("no schema for {topic}"))
}

/// `json` with `symbol` added before the last symbol (UNKNOWN) of every enum that has a
/// default: the next version of an output schema.
fn with_symbol_added(json: &str, symbol: &str) -> String {
    fn add(node: &mut serde_json::Value, symbol: &str) {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("enum")
                    && map.contains_key("default")
                {
                    let symbols = map["symbols"].as_array_mut().expect("symbols");
                    symbols.insert(symbols.len() - 1, symbol.into());
                }
                map.values_mut().for_each(|v| add(v, symbol));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| add(v, symbol)),
            _ => {}
        }
    }
    let mut schema: serde_json::Value = serde_json::from_str(json).expect("JSON");
    add(&mut schema, symbol);
    schema.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_finds_the_new_schemas_compatible_as_designed() -> anyhow::Result<()> {
    let registry = Registry::new("schemaevo");
    for (topic, previous) in PREVIOUS_INPUTS {
        let subject = registry.subject(topic);
        registry.set_compatibility(&subject, "FULL").await?;
        registry.register(&subject, previous).await?;
        let (compatible, answer) = registry.is_compatible(&subject, current(topic)).await?;
        assert!(compatible, "{topic} FULL: {answer}");
    }
    for (topic, previous) in PREVIOUS_OUTPUTS {
        let subject = registry.subject(topic);
        registry.set_compatibility(&subject, "BACKWARD").await?;
        registry.register(&subject, previous).await?;
        let (compatible, answer) = registry.is_compatible(&subject, current(topic)).await?;
        assert!(compatible, "{topic} BACKWARD: {answer}");
        // A reader of the previous schema has no default for the new symbols.
        registry.set_compatibility(&subject, "FORWARD").await?;
        let (compatible, answer) = registry.is_compatible(&subject, current(topic)).await?;
        assert!(!compatible, "{topic} FORWARD: {answer}");

        // Today's schema registers at BACKWARD; a symbol added after it passes FULL.
        registry.set_compatibility(&subject, "BACKWARD").await?;
        registry.register(&subject, current(topic)).await?;
        registry.set_compatibility(&subject, "FULL").await?;
        let next = with_symbol_added(current(topic), "ADDED_LATER");
        let (compatible, answer) = registry.is_compatible(&subject, &next).await?;
        assert!(compatible, "{topic} next FULL: {answer}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_written_with_the_previous_schema_reads_as_automatic_capture()
-> anyhow::Result<()> {
    let registry = Registry::new("schemaevo_payment");
    let topic = format!("{}.payment_initiated", registry.prefix);
    let previous = PREVIOUS_INPUTS[0].1;
    let id = registry
        .register(&registry.subject("payment_initiated"), previous)
        .await?;

    // A producer of the previous schema: its registered id, then the Avro body.
    let occurred_at = paystream_testkit::traffic::now_ms() - 60_000;
    let text = |s: &str| Value::String(s.into());
    let record = Value::Record(vec![
        ("event_id".into(), text("evt-old-1")),
        ("idempotency_key".into(), text("idem-old-1")),
        ("payment_id".into(), text("pay-old-1")),
        ("merchant_id".into(), text("merchant-a")),
        ("customer_id".into(), text("customer-a")),
        ("amount_minor".into(), Value::Long(1999)),
        ("currency".into(), text("EUR")),
        ("payment_method_token".into(), text("pm_test_visa")),
        ("psp".into(), text("adyen")),
        ("occurred_at".into(), Value::TimestampMillis(occurred_at)),
    ]);
    let schema = Schema::parse_str(previous)?;
    let mut value = vec![0u8];
    value.extend_from_slice(&id.to_be_bytes());
    value.extend(
        GenericDatumWriter::builder(&schema)
            .build()?
            .write_value_to_vec(record)?,
    );

    let codec = Arc::new(Codec::new(&registry_url(), Duration::from_secs(10))?);
    let decoded: PaymentInitiated = codec.decode(Some(&value)).await?;
    assert_eq!(decoded.capture_mode, CaptureMode::Automatic);
    assert_eq!(decoded.amount_minor, 1999);

    // As the dedupe processor's input reads it: decoded, cleaned, validated.
    let key = "merchant-a:idem-old-1";
    let deserializer = EventDeserializer::<PaymentInitiated, PaymentInitiated>::new(3_600_000);
    let payment = deserializer
        .deserialize(
            &SerdeContext { registry: codec },
            RawRecord {
                topic: &topic,
                key: Some(key.as_bytes()),
                value: Some(&value),
                timestamp_ms: occurred_at,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(payment, decoded);
    assert_eq!(payment.key(), key);
    assert_eq!(payment.capture_mode, CaptureMode::Automatic);
    assert_eq!(
        PaymentInitiated::FULL_NAME,
        "paystream.events.PaymentInitiated"
    );
    Ok(())
}
