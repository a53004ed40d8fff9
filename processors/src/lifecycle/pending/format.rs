//! The layout of a waiting event — decoded, with the [`Origin`] of its record, whose
//! original bytes a dead letter of it carries — and the value format of the `pending`
//! store of earlier releases: payment id → the events waiting for that payment.
//!
//! This release keeps waiting events in the payment's value in the `payments` store
//! (`stored.rs`), each in the version 1 event layout below. The `pending` store is no
//! longer written; after an upgrade `upgrade.rs` decodes its values ([`decode`]) and
//! moves them into the payments' values when the task starts.
//!
//! The first byte of a value names its format:
//!
//! | first byte | format | written |
//! |---|---|---|
//! | `0x01` | version 1: the byte, then the events in [postcard] | by the release before the single-value layout |
//! | `[` (`0x5B`) | JSON `[{"event":…,"origin":…}]` of releases before that; byte strings are arrays of numbers, about 4 bytes per byte | by older releases |
//!
//! Version 1 in postcard (varints: LEB128, signed ones zigzag-encoded first): the number
//! of events, then per event the `InputEvent` (its variant index, then its fields in
//! declaration order; strings as length + UTF-8, `Option`s as `0` or `1` + value), the
//! origin's `topic`, `partition`, `offset`, `timestamp_ms`, then `key` and `value` as
//! `Option`s of length + raw bytes.
//!
//! Postcard is not self-describing: adding, removing or reordering a field of an event
//! type changes the layout, and `version_1_layout_is_pinned` fails. Keep the version 1
//! reader for the values already stored and write under a new first byte.
//!
//! [postcard]: https://github.com/jamesmunns/postcard/blob/main/spec/src/wire-format.md

use paystream_schemas::InputEvent;
use serde::{Deserialize, Serialize};

use crate::{Origin, ProcessorError, Result, stores};

/// First byte of a version 1 value (postcard).
pub const FORMAT_VERSION_1: u8 = 0x01;

/// First byte of a value in the JSON of earlier releases (a JSON array).
pub const FORMAT_LEGACY_JSON: u8 = b'[';

/// An event waiting in the `pending` store, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub event: InputEvent,
    pub origin: Origin,
}

/// One waiting event as version 1 writes it (the fields of [`EventV1`], in its order).
/// The `payments` store's value holds its waiting events in this form too.
#[derive(Serialize)]
pub(in crate::lifecycle) struct EventV1Ref<'a> {
    event: &'a InputEvent,
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// One waiting event as version 1 reads it.
#[derive(Deserialize)]
pub(in crate::lifecycle) struct EventV1 {
    event: InputEvent,
    topic: String,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// One waiting event as earlier releases wrote it (JSON).
#[derive(Serialize, Deserialize)]
struct EventLegacyJson {
    event: InputEvent,
    origin: Origin,
}

impl<'a> EventV1Ref<'a> {
    pub(in crate::lifecycle) fn of(pending: &'a PendingEvent) -> Self {
        let origin = &pending.origin;
        EventV1Ref {
            event: &pending.event,
            topic: &origin.topic,
            partition: origin.partition,
            offset: origin.offset,
            timestamp_ms: origin.timestamp_ms,
            key: origin.key.as_deref(),
            value: origin.value.as_deref(),
        }
    }
}

impl From<EventV1> for PendingEvent {
    fn from(stored: EventV1) -> Self {
        PendingEvent {
            event: stored.event,
            origin: Origin {
                topic: stored.topic,
                partition: stored.partition,
                offset: stored.offset,
                timestamp_ms: stored.timestamp_ms,
                key: stored.key,
                value: stored.value,
            },
        }
    }
}

/// `events` as a version 1 value: [`FORMAT_VERSION_1`], then the events in postcard.
pub fn encode(events: &[PendingEvent]) -> Vec<u8> {
    let stored: Vec<EventV1Ref<'_>> = events.iter().map(EventV1Ref::of).collect();
    postcard::to_extend(&stored, vec![FORMAT_VERSION_1])
        .expect("strings, integers and byte strings always encode in postcard")
}

/// The events of the value stored for `payment_id`, in either format.
///
/// # Errors
/// [`ProcessorError::CorruptState`] when the value is empty, starts with an unknown byte,
/// does not decode in its format, has bytes after its last event, or holds an event of
/// another payment.
pub fn decode(payment_id: &str, bytes: &[u8]) -> Result<Vec<PendingEvent>> {
    let corrupt = |message: String| ProcessorError::CorruptState {
        store: stores::PENDING,
        key: payment_id.to_string(),
        message,
    };
    let events: Vec<PendingEvent> = match bytes.split_first() {
        None => return Err(corrupt("empty value".to_string())),
        Some((&FORMAT_VERSION_1, body)) => {
            let (stored, rest): (Vec<EventV1>, &[u8]) = postcard::take_from_bytes(body)
                .map_err(|e| corrupt(format!("format version 1: {e}")))?;
            if !rest.is_empty() {
                return Err(corrupt(format!(
                    "format version 1: {} bytes after the last event",
                    rest.len()
                )));
            }
            stored.into_iter().map(PendingEvent::from).collect()
        }
        Some((&FORMAT_LEGACY_JSON, _)) => serde_json::from_slice::<Vec<EventLegacyJson>>(bytes)
            .map_err(|e| corrupt(format!("JSON of earlier releases: {e}")))?
            .into_iter()
            .map(|stored| PendingEvent {
                event: stored.event,
                origin: stored.origin,
            })
            .collect(),
        Some((other, _)) => return Err(corrupt(format!("unknown format byte {other:#04x}"))),
    };
    if let Some(stranger) = events
        .iter()
        .find(|waiting| waiting.event.payment_id() != payment_id)
    {
        return Err(corrupt(format!(
            "event {} of payment {} is stored under another payment",
            stranger.event.event_id(),
            stranger.event.payment_id()
        )));
    }
    Ok(events)
}

#[cfg(test)]
pub(in crate::lifecycle) mod tests {
    use super::*;
    use paystream_schemas::{AuthFailed, AuthSucceeded, SettlementReported};

    /// A Confluent-framed Avro `AuthSucceeded` as producers write it (schema id 1): the
    /// size a typical record value has.
    fn avro_auth_succeeded(auth: &AuthSucceeded) -> Vec<u8> {
        fn long(out: &mut Vec<u8>, value: i64) {
            let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
            while zigzag >= 0x80 {
                out.push((zigzag as u8) | 0x80);
                zigzag >>= 7;
            }
            out.push(zigzag as u8);
        }
        fn string(out: &mut Vec<u8>, value: &str) {
            long(out, value.len() as i64);
            out.extend_from_slice(value.as_bytes());
        }
        let mut out = vec![0, 0, 0, 0, 1];
        string(&mut out, &auth.event_id);
        string(&mut out, &auth.payment_id);
        string(&mut out, &auth.psp_reference);
        string(&mut out, &auth.auth_code);
        long(&mut out, auth.amount_minor);
        string(&mut out, &auth.currency);
        long(&mut out, auth.occurred_at);
        out
    }

    /// A typical waiting auth: UUID ids, a PSP reference, its Avro record value.
    fn typical_auth() -> PendingEvent {
        let payment_id = "6f1c1d8e-3b7a-4d52-9a43-0c8e2f6b9d11";
        let auth = AuthSucceeded {
            event_id: "0b8a7c55-2f4e-4e0a-8d3c-5a6b7c8d9e0f".into(),
            payment_id: payment_id.into(),
            psp_reference: "psp_ref_8842197733".into(),
            auth_code: "A1B2C3".into(),
            amount_minor: 12_345,
            currency: "EUR".into(),
            occurred_at: 1_700_000_000_123,
        };
        let value = avro_auth_succeeded(&auth);
        PendingEvent {
            event: InputEvent::AuthSucceeded(auth),
            origin: Origin {
                topic: "auth_success".into(),
                partition: 7,
                offset: 1_234_567,
                timestamp_ms: 1_700_000_000_456,
                key: Some(payment_id.as_bytes().to_vec()),
                value: Some(value),
            },
        }
    }

    fn settlement(payment_id: &str) -> PendingEvent {
        PendingEvent {
            event: InputEvent::SettlementReported(SettlementReported {
                event_id: "s1".into(),
                payment_id: payment_id.into(),
                psp_reference: "psp-1".into(),
                settlement_batch_id: "batch-1".into(),
                gross_amount_minor: 1000,
                fee_minor: 25,
                net_amount_minor: 975,
                currency: "EUR".into(),
                settled_at: -30,
            }),
            origin: Origin {
                topic: "settlement".into(),
                partition: 0,
                offset: i64::MAX,
                timestamp_ms: i64::MIN,
                key: None,
                value: None,
            },
        }
    }

    /// A waiting decline with every `Option` of its origin set (the layout tests of the
    /// `payments` value use it too).
    pub(in crate::lifecycle) fn declined(payment_id: &str) -> PendingEvent {
        PendingEvent {
            event: InputEvent::AuthFailed(AuthFailed {
                event_id: "f1".into(),
                payment_id: payment_id.into(),
                psp_reference: None,
                decline_code: "05".into(),
                reason: "no".into(),
                occurred_at: 20,
            }),
            origin: Origin {
                topic: "t".into(),
                partition: 1,
                offset: 2,
                timestamp_ms: 3,
                key: Some(payment_id.as_bytes().to_vec()),
                value: Some(vec![0, 0, 0, 0, 7]),
            },
        }
    }

    /// The value earlier releases wrote: `serde_json` of their `Vec<PendingEvent>`.
    fn legacy_json(events: &[PendingEvent]) -> Vec<u8> {
        let stored: Vec<EventLegacyJson> = events
            .iter()
            .map(|waiting| EventLegacyJson {
                event: waiting.event.clone(),
                origin: waiting.origin.clone(),
            })
            .collect();
        serde_json::to_vec(&stored).unwrap()
    }

    #[test]
    fn version_1_round_trips_every_event_kind_and_origin_shape() {
        let payment_id = "6f1c1d8e-3b7a-4d52-9a43-0c8e2f6b9d11";
        let events = vec![typical_auth(), settlement(payment_id), declined(payment_id)];
        let value = encode(&events);
        assert_eq!(value[0], FORMAT_VERSION_1);
        assert_eq!(decode(payment_id, &value).unwrap(), events);
        assert_eq!(decode(payment_id, &encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn version_1_layout_is_pinned() {
        let expected: &[u8] = &[
            0x01, // format version 1
            1,    // one event
            2,    // InputEvent::AuthFailed
            2, b'f', b'1', // event_id
            2, b'p', b'1', // payment_id
            0,    // psp_reference: None
            2, b'0', b'5', // decline_code
            2, b'n', b'o', // reason
            40,   // occurred_at 20, zigzag
            1, b't', // topic
            2,    // partition 1
            4,    // offset 2
            6,    // timestamp_ms 3
            1, 2, b'p', b'1', // key: Some(b"p1")
            1, 5, 0, 0, 0, 0, 7, // value: Some(5 bytes)
        ];
        assert_eq!(encode(&[declined("p1")]), expected);
        assert_eq!(decode("p1", expected).unwrap(), vec![declined("p1")]);
    }

    /// A value exactly as the release before version 1 wrote it.
    const LEGACY_FIXTURE: &str = concat!(
        r#"[{"event":{"AuthFailed":{"event_id":"f1","payment_id":"p1","psp_reference":null,"#,
        r#""decline_code":"05","reason":"no","occurred_at":20}},"#,
        r#""origin":{"topic":"t","partition":1,"offset":2,"timestamp_ms":3,"#,
        r#""key":[112,49],"value":[0,0,0,0,7]}}]"#,
    );

    #[test]
    fn values_of_earlier_releases_still_read() {
        assert_eq!(LEGACY_FIXTURE.as_bytes()[0], FORMAT_LEGACY_JSON);
        assert_eq!(
            decode("p1", LEGACY_FIXTURE.as_bytes()).unwrap(),
            vec![declined("p1")]
        );
        assert_eq!(
            legacy_json(&[declined("p1")]),
            LEGACY_FIXTURE.as_bytes(),
            "the fixture is what the earlier release's struct serializes to"
        );
        let payment_id = "6f1c1d8e-3b7a-4d52-9a43-0c8e2f6b9d11";
        let events = vec![typical_auth(), settlement(payment_id), declined(payment_id)];
        assert_eq!(decode(payment_id, &legacy_json(&events)).unwrap(), events);
    }

    #[test]
    fn a_typical_entry_takes_under_40_percent_of_its_json_size() {
        let entry = [typical_auth()];
        let json_bytes = legacy_json(&entry).len();
        let version_1_bytes = encode(&entry).len();
        let record_value_bytes = entry[0].origin.value.as_ref().unwrap().len();
        println!(
            "one waiting auth: JSON {json_bytes} bytes, version 1 {version_1_bytes} bytes \
             (record value {record_value_bytes} bytes)"
        );
        assert!(
            version_1_bytes * 10 < json_bytes * 4,
            "{version_1_bytes} vs {json_bytes}"
        );

        // An event carrying 100 KB of free text: JSON holds its record value as numbers.
        let mut big = declined("p1");
        let text = "x".repeat(100_000);
        if let InputEvent::AuthFailed(failed) = &mut big.event {
            failed.reason = text.clone();
        }
        big.origin.value = Some([&[0u8, 0, 0, 0, 2][..], text.as_bytes()].concat());
        let json_bytes = legacy_json(std::slice::from_ref(&big)).len();
        let version_1_bytes = encode(std::slice::from_ref(&big)).len();
        println!("100 KB of free text: JSON {json_bytes} bytes, version 1 {version_1_bytes} bytes");
        assert!(version_1_bytes < 2 * 100_000 + 100, "{version_1_bytes}");
        assert!(json_bytes > 4 * 100_000, "{json_bytes}");
    }

    #[test]
    fn damaged_values_are_corrupt_state() {
        let mut truncated = encode(&[declined("p1")]);
        truncated.pop();
        let mut trailing = encode(&[declined("p1")]);
        trailing.push(0);
        for (value, says) in [
            (Vec::new(), "empty"),
            (vec![0x7b, b'}'], "unknown format byte 0x7b"),
            (truncated, "format version 1"),
            (trailing, "1 bytes after the last event"),
            (b"[{]".to_vec(), "JSON of earlier releases"),
            (encode(&[declined("p2")]), "stored under another payment"),
        ] {
            match decode("p1", &value) {
                Err(ProcessorError::CorruptState {
                    store: stores::PENDING,
                    key,
                    message,
                }) => {
                    assert_eq!(key, "p1");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }
}
