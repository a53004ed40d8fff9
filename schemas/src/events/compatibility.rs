//! Schema evolution, checked with `apache-avro`'s schema resolution (the Avro
//! specification's rules: <https://avro.apache.org/docs/1.11.1/specification/#schema-resolution>)
//! between each subject's previous schema (`schemas/avro/previous/`, the schemas as they
//! were before captures, voids, refunds and chargebacks) and today's (docs/schemas.md):
//!
//! - old writer → new reader, every subject: records of today's producers and stored
//!   records decode with the new schemas (BACKWARD);
//! - new writer → old reader, every input subject: records of new producers decode
//!   with readers that still have the previous schema (FORWARD, so FULL);
//! - new writer → old reader, output subjects: every record whose enums hold only the
//!   previous symbols (all today's traffic, automatic capture, produces) decodes; a
//!   record with a new symbol does not (why output subjects stay BACKWARD);
//! - new writer → new reader after the next addition: a symbol added later reads as the
//!   enum default (UNKNOWN for output enums), so the next additions are FULL.

use std::collections::{BTreeSet, HashMap};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::*;

/// Input subjects: each topic with its schema before this version.
const PREVIOUS_INPUTS: [(&str, &str); 4] = [
    (
        "payment_initiated",
        include_str!("../../avro/previous/payment_initiated.avsc"),
    ),
    (
        "auth_success",
        include_str!("../../avro/previous/auth_succeeded.avsc"),
    ),
    (
        "auth_failure",
        include_str!("../../avro/previous/auth_failed.avsc"),
    ),
    (
        "settlement",
        include_str!("../../avro/previous/settlement_reported.avsc"),
    ),
];

/// Output subjects: each topic with its schema before this version.
const PREVIOUS_OUTPUTS: [(&str, &str); 3] = [
    (
        "payment_status",
        include_str!("../../avro/previous/payment_status_changed.avsc"),
    ),
    (
        "ledger_entries",
        include_str!("../../avro/previous/journal_entry.avsc"),
    ),
    (
        "reconciliation_exceptions",
        include_str!("../../avro/previous/reconciliation_exception.avsc"),
    ),
];

/// Today's schema of `topic`.
fn current(topic: &str) -> Schema {
    let (_, _, json) = all_schemas()
        .into_iter()
        .find(|(t, _, _)| *t == topic)
        .unwrap_or_else(|| panic!("no schema for {topic}"));
    Schema::parse_str(json).unwrap()
}

/// Records of `schema`, the `i`-th picking the `i`-th symbol of every enum and the `i`-th
/// branch of every union (modulo their sizes): enough records that every symbol and
/// branch is written.
fn samples(schema: &Schema) -> Vec<Value> {
    (0..16)
        .map(|i| sample(schema, i, &mut HashMap::new()))
        .collect()
}

fn sample(schema: &Schema, i: usize, named: &mut HashMap<String, Schema>) -> Value {
    match schema {
        Schema::Record(record) => {
            named.insert(record.name.fullname(None), schema.clone());
            Value::Record(
                record
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), sample(&f.schema, i, named)))
                    .collect(),
            )
        }
        Schema::Enum(e) => {
            named.insert(e.name.fullname(None), schema.clone());
            let at = i % e.symbols.len();
            Value::Enum(at as u32, e.symbols[at].clone())
        }
        Schema::Ref { name } => {
            let target = named
                .get(&name.fullname(None))
                .unwrap_or_else(|| panic!("unresolved {name:?}"))
                .clone();
            sample(&target, i, named)
        }
        Schema::Union(union) => {
            let at = i % union.variants().len();
            Value::Union(at as u32, Box::new(sample(&union.variants()[at], i, named)))
        }
        Schema::Array(array) => Value::Array(vec![sample(&array.items, i, named)]),
        Schema::String => Value::String(format!("s{i}")),
        Schema::Long => Value::Long(i as i64 + 1),
        Schema::Boolean => Value::Boolean(i.is_multiple_of(2)),
        Schema::TimestampMillis => Value::TimestampMillis(1_700_000_000_000 + i as i64),
        Schema::Null => Value::Null,
        other => panic!("no sample for {other:?}"),
    }
}

/// Every enum symbol a value holds.
fn symbols_of(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Enum(_, symbol) => {
            into.insert(symbol.clone());
        }
        Value::Record(fields) => fields.iter().for_each(|(_, v)| symbols_of(v, into)),
        Value::Union(_, v) => symbols_of(v, into),
        Value::Array(items) => items.iter().for_each(|v| symbols_of(v, into)),
        _ => {}
    }
}

/// Every enum symbol a schema declares.
fn declared_symbols(json: &str) -> BTreeSet<String> {
    let mut symbols = BTreeSet::new();
    let mut stack = vec![serde_json::from_str::<serde_json::Value>(json).unwrap()];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("enum") {
                    for s in map["symbols"].as_array().unwrap() {
                        symbols.insert(s.as_str().unwrap().to_string());
                    }
                }
                stack.extend(map.into_iter().map(|(_, v)| v));
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    symbols
}

fn write(schema: &Schema, value: &Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value.clone())
        .unwrap_or_else(|e| panic!("{value:?} does not fit its schema: {e}"))
}

/// Reads `datum`, written with `writer`, as a reader with schema `reader` does.
fn read(writer: &Schema, reader: &Schema, datum: &[u8]) -> Result<Value, apache_avro::Error> {
    let mut body = datum;
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()?
        .read_value(&mut body)?;
    assert!(body.is_empty(), "the whole datum is one record");
    Ok(value)
}

#[test]
fn records_of_the_previous_schemas_read_with_the_new_ones() {
    for (topic, previous) in PREVIOUS_INPUTS.into_iter().chain(PREVIOUS_OUTPUTS) {
        let old = Schema::parse_str(previous).unwrap();
        let new = current(topic);
        assert_eq!(
            SchemaCompatibility::can_read(&old, &new).map_err(|e| e.to_string()),
            Ok(Compatibility::Full),
            "{topic}: new reads old"
        );
        for value in samples(&old) {
            read(&old, &new, &write(&old, &value))
                .unwrap_or_else(|e| panic!("{topic}: {value:?}: {e}"));
        }
    }
}

#[test]
fn a_payment_of_the_previous_schema_reads_as_automatic_capture() {
    let old = Schema::parse_str(PREVIOUS_INPUTS[0].1).unwrap();
    let new = current("payment_initiated");
    let datum = write(&old, &samples(&old)[0]);
    // Resolved to the new schema: the field default.
    let Value::Record(fields) = read(&old, &new, &datum).unwrap() else {
        panic!("not a record")
    };
    assert_eq!(
        fields.iter().find(|(name, _)| name == "capture_mode"),
        Some(&(
            "capture_mode".to_string(),
            Value::Enum(0, "AUTOMATIC".into())
        ))
    );
    // Read with the writer's schema only, as the codec does: the serde default.
    let mut body = datum.as_slice();
    let payment: PaymentInitiated = GenericDatumReader::builder(&old)
        .build()
        .unwrap()
        .read_deser(&mut body)
        .unwrap();
    assert_eq!(payment.capture_mode, CaptureMode::Automatic);
}

#[test]
fn records_of_the_new_input_schemas_read_with_the_previous_ones() {
    for (topic, previous) in PREVIOUS_INPUTS {
        let old = Schema::parse_str(previous).unwrap();
        let new = current(topic);
        assert_eq!(
            SchemaCompatibility::can_read(&new, &old).map_err(|e| e.to_string()),
            Ok(Compatibility::Full),
            "{topic}: old reads new"
        );
        for value in samples(&new) {
            read(&new, &old, &write(&new, &value))
                .unwrap_or_else(|e| panic!("{topic}: {value:?}: {e}"));
        }
    }
    // A manual-capture payment reads as a payment to a reader of the previous schema.
    let new = current("payment_initiated");
    let old = Schema::parse_str(PREVIOUS_INPUTS[0].1).unwrap();
    let manual = PaymentInitiated {
        event_id: "e".into(),
        idempotency_key: "k".into(),
        payment_id: "p".into(),
        merchant_id: "m".into(),
        customer_id: "c".into(),
        amount_minor: 1999,
        currency: "EUR".into(),
        payment_method_token: "pm_1".into(),
        psp: "adyen".into(),
        occurred_at: 1_700_000_000_000,
        capture_mode: CaptureMode::Manual,
    };
    let datum = GenericDatumWriter::builder(&new)
        .build()
        .unwrap()
        .write_ser_to_vec(&manual)
        .unwrap();
    let Value::Record(fields) = read(&new, &old, &datum).unwrap() else {
        panic!("not a record")
    };
    assert_eq!(fields.len(), 10);
    assert!(fields.iter().all(|(name, _)| name != "capture_mode"));
}

#[test]
fn output_records_with_the_previous_symbols_read_with_the_previous_schemas() {
    for (topic, previous) in PREVIOUS_OUTPUTS {
        let old = Schema::parse_str(previous).unwrap();
        let new = current(topic);
        let old_symbols = declared_symbols(previous);
        let (mut compatible, mut refused) = (0, 0);
        for value in samples(&new) {
            let mut used = BTreeSet::new();
            symbols_of(&value, &mut used);
            let result = read(&new, &old, &write(&new, &value));
            if used.is_subset(&old_symbols) {
                result.unwrap_or_else(|e| panic!("{topic}: {value:?}: {e}"));
                compatible += 1;
            } else {
                // A new symbol: the previous enums have no default to fall back to.
                assert!(result.is_err(), "{topic}: {value:?}");
                refused += 1;
            }
        }
        assert!(compatible > 0 && refused > 0, "{topic}");
        // Hence the registry's FORWARD (and FULL) check refuses this first addition:
        // apache-avro calls it partial (some symbols are read, others not).
        assert!(
            !matches!(
                SchemaCompatibility::can_read(&new, &old),
                Ok(Compatibility::Full)
            ),
            "{topic}"
        );
    }
}

#[test]
fn records_today_s_traffic_produces_read_with_the_previous_output_schemas() {
    let status = PaymentStatusChanged {
        payment_id: "p".into(),
        merchant_id: "m".into(),
        status: PaymentStatus::Settled,
        previous_status: Some(PaymentStatus::Authorized),
        amount_minor: 10,
        currency: "USD".into(),
        caused_by_event_id: "e".into(),
        occurred_at: 9,
    };
    let entry = JournalEntry {
        id: "j".into(),
        payment_id: "p".into(),
        kind: JournalEntryKind::Authorization,
        postings: vec![Posting {
            account: "psp_receivable:adyen".into(),
            side: PostingSide::Debit,
            amount_minor: 5,
            currency: "USD".into(),
        }],
        occurred_at: 9,
        caused_by_event_id: "e".into(),
        merchant_id: None,
        psp: None,
    };
    let exception = ReconciliationException {
        id: "x".into(),
        kind: ReconciliationExceptionKind::MissingInPsp,
        payment_id: "p".into(),
        expected_amount_minor: Some(10),
        actual_amount_minor: None,
        currency: Some("EUR".into()),
        detected_at: 3,
    };
    fn check<T: AvroRecord + Serialize>(previous: &str, record: &T) {
        let new = Schema::parse_str(T::SCHEMA_JSON).unwrap();
        let old = Schema::parse_str(previous).unwrap();
        let datum = GenericDatumWriter::builder(&new)
            .build()
            .unwrap()
            .write_ser_to_vec(record)
            .unwrap();
        read(&new, &old, &datum).unwrap_or_else(|e| panic!("{}: {e}", T::FULL_NAME));
    }
    check(PREVIOUS_OUTPUTS[0].1, &status);
    check(PREVIOUS_OUTPUTS[1].1, &entry);
    check(PREVIOUS_OUTPUTS[2].1, &exception);
}

/// `json` with `symbol` added to every enum that has a default (all but `PostingSide`,
/// which will never grow), before its last symbol (UNKNOWN for the output enums): the
/// schema of the next version.
fn with_symbol_added(json: &str, symbol: &str) -> String {
    fn add(node: &mut serde_json::Value, symbol: &str) {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("enum")
                    && map.contains_key("default")
                {
                    let symbols = map["symbols"].as_array_mut().unwrap();
                    symbols.insert(symbols.len() - 1, symbol.into());
                }
                map.values_mut().for_each(|v| add(v, symbol));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| add(v, symbol)),
            _ => {}
        }
    }
    let mut schema: serde_json::Value = serde_json::from_str(json).unwrap();
    add(&mut schema, symbol);
    schema.to_string()
}

#[test]
fn a_symbol_added_later_reads_as_the_enum_default() {
    for (topic, _, json) in all_schemas() {
        if !json.contains("\"enum\"") {
            continue;
        }
        let new = Schema::parse_str(json).unwrap();
        let next = Schema::parse_str(&with_symbol_added(json, "ADDED_LATER")).unwrap();
        // Both ways: the next addition passes a FULL check.
        assert_eq!(
            SchemaCompatibility::mutual_read(&new, &next).map_err(|e| e.to_string()),
            Ok(Compatibility::Full),
            "{topic}"
        );
        let defaults = declared_defaults(json);
        let mut seen = 0;
        for value in samples(&next) {
            let mut used = BTreeSet::new();
            symbols_of(&value, &mut used);
            if !used.contains("ADDED_LATER") {
                continue;
            }
            let read_back =
                read(&next, &new, &write(&next, &value)).unwrap_or_else(|e| panic!("{topic}: {e}"));
            let mut symbols = BTreeSet::new();
            symbols_of(&read_back, &mut symbols);
            assert!(!symbols.contains("ADDED_LATER"), "{topic}");
            assert!(
                symbols.iter().any(|s| defaults.contains(s)),
                "{topic}: {symbols:?}"
            );
            seen += 1;
        }
        assert!(seen > 0, "{topic}");
    }
}

/// The enum defaults a schema declares.
fn declared_defaults(json: &str) -> BTreeSet<String> {
    let mut defaults = BTreeSet::new();
    let mut stack = vec![serde_json::from_str::<serde_json::Value>(json).unwrap()];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("enum")
                    && let Some(default) = map.get("default").and_then(|d| d.as_str())
                {
                    defaults.insert(default.to_string());
                }
                stack.extend(map.into_iter().map(|(_, v)| v));
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    defaults
}
