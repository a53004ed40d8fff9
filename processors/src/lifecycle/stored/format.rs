//! The format of the `payments` store's value ([`super::StoredPayment`]).
//!
//! The first byte of a value names its format:
//!
//! | first byte | format | written |
//! |---|---|---|
//! | `0x02` | version 2: the byte, then `ValueV1` and the state's extension `ExtensionV2`, both in [postcard] | by this release, for a payment under manual capture or whose money moved after its authorization |
//! | `0x01` | version 1: the byte, then `ValueV1` in [postcard] | by this release, for every other payment (most of them: the value stays as small as before) |
//! | `{` (`0x7B`) | JSON of [`PaymentState`] alone, by earlier releases | never: read after an upgrade, rewritten in version 1 by the payment's next change |
//!
//! Version 1 in postcard (varints: LEB128, signed ones zigzag-encoded first), in this
//! order:
//! 1. the timers: their number, then per timer its kind code (1 orphan timeout,
//!    2 settlement window, 3 pending expiry, 4 stuck payment) and its due time
//!    (milliseconds). They come
//!    first so that the timer index is rebuilt at task start by reading only this prefix
//!    of each value ([`decode_timers`]);
//! 2. the state, an `Option`: `0`, or `1` then `merchant_id`, `psp`, `amount_minor`,
//!    `currency`, the status code (1 INITIATED, 2 AUTHORIZED, 3 DECLINED, 4 SETTLED),
//!    `initiated_event_id`, `auth_event_id`, `settlement_event_id`,
//!    `authorized_amount_minor`, `authorized_currency` (strings as length + UTF-8,
//!    `Option`s as `0` or `1` + value). The payment id is the key and is not repeated;
//! 3. the waiting events: their number, then each in the layout of the `pending` store's
//!    version 1 (`pending/format.rs`).
//!
//! Version 2 appends to version 1's value (which keeps the timers first, so the index
//! rebuild reads both alike) the extension of its state: the capture mode code (1
//! AUTOMATIC, 2 MANUAL), then the money, an `Option`: the eight running totals
//! (authorized, captured, released, settled, refunded, disputed, charged back, reinstated;
//! minor units), the applied movements (event id, movement id), the disputes (dispute id,
//! stage code 1 OPENED / 2 WON / 3 LOST, amount).
//!
//! Postcard is not self-describing: changing a field changes the layout, and
//! `version_1_layout_is_pinned` fails. Keep the version 1 reader for the values already
//! stored and write under a new first byte.
//!
//! [postcard]: https://github.com/jamesmunns/postcard/blob/main/spec/src/wire-format.md

use paystream_schemas::{CaptureMode, ChargebackStage, PaymentStatus};
use serde::{Deserialize, Serialize};

use super::StoredPayment;
use crate::lifecycle::model::{AppliedMovement, Dispute, Money, PaymentState};
use crate::lifecycle::money::MoneyTotals;
use crate::lifecycle::pending::format::{EventV1, EventV1Ref, PendingEvent};
use crate::timers::{DueTimer, TimerKind};
use crate::{ProcessorError, Result, stores};

/// First byte of a version 1 value (postcard).
pub const FORMAT_VERSION_1: u8 = 0x01;

/// First byte of a version 2 value: version 1's, then the state's extension.
pub const FORMAT_VERSION_2: u8 = 0x02;

/// First byte of a value in the JSON of earlier releases (a JSON object).
pub const FORMAT_LEGACY_JSON: u8 = b'{';

/// A timer as version 1 stores it.
#[derive(Serialize, Deserialize)]
struct TimerV1 {
    kind: u8,
    due_ms: i64,
}

/// The state as version 1 writes it (the fields of [`StateV1`], in its order).
#[derive(Serialize)]
struct StateV1Ref<'a> {
    merchant_id: &'a str,
    psp: &'a str,
    amount_minor: i64,
    currency: &'a str,
    status: u8,
    initiated_event_id: &'a str,
    auth_event_id: Option<&'a str>,
    settlement_event_id: Option<&'a str>,
    authorized_amount_minor: Option<i64>,
    authorized_currency: Option<&'a str>,
}

/// The state as version 1 reads it.
#[derive(Deserialize)]
struct StateV1 {
    merchant_id: String,
    psp: String,
    amount_minor: i64,
    currency: String,
    status: u8,
    initiated_event_id: String,
    auth_event_id: Option<String>,
    settlement_event_id: Option<String>,
    authorized_amount_minor: Option<i64>,
    authorized_currency: Option<String>,
}

/// A value as version 1 writes it.
#[derive(Serialize)]
struct ValueV1Ref<'a> {
    timers: Vec<TimerV1>,
    state: Option<StateV1Ref<'a>>,
    pending: Vec<EventV1Ref<'a>>,
}

/// A value as version 1 reads it.
#[derive(Deserialize)]
struct ValueV1 {
    timers: Vec<TimerV1>,
    state: Option<StateV1>,
    pending: Vec<EventV1>,
}

/// The state's extension, as version 2 writes it after the version 1 value.
#[derive(Serialize)]
struct ExtensionV2Ref<'a> {
    capture_mode: u8,
    money: Option<MoneyV2Ref<'a>>,
}

#[derive(Serialize)]
struct MoneyV2Ref<'a> {
    totals: [i64; 8],
    applied: Vec<(&'a str, &'a str)>,
    disputes: Vec<(&'a str, u8, i64)>,
}

/// The state's extension, as version 2 reads it.
#[derive(Deserialize)]
struct ExtensionV2 {
    capture_mode: u8,
    money: Option<MoneyV2>,
}

#[derive(Deserialize)]
struct MoneyV2 {
    totals: [i64; 8],
    applied: Vec<(String, String)>,
    disputes: Vec<(String, u8, i64)>,
}

fn capture_mode_code(mode: CaptureMode) -> u8 {
    match mode {
        CaptureMode::Automatic => 1,
        CaptureMode::Manual => 2,
    }
}

fn stage_code(stage: ChargebackStage) -> u8 {
    match stage {
        ChargebackStage::Opened => 1,
        ChargebackStage::Won => 2,
        ChargebackStage::Lost => 3,
    }
}

fn totals_array(t: &MoneyTotals) -> [i64; 8] {
    [
        t.authorized_minor,
        t.captured_minor,
        t.released_minor,
        t.settled_minor,
        t.refunded_minor,
        t.disputed_minor,
        t.charged_back_minor,
        t.reinstated_minor,
    ]
}

fn totals_of(a: [i64; 8]) -> MoneyTotals {
    MoneyTotals {
        authorized_minor: a[0],
        captured_minor: a[1],
        released_minor: a[2],
        settled_minor: a[3],
        refunded_minor: a[4],
        disputed_minor: a[5],
        charged_back_minor: a[6],
        reinstated_minor: a[7],
    }
}

/// Whether `state` needs version 2: manual capture, or money kept.
fn needs_extension(state: &PaymentState) -> bool {
    state.capture_mode != CaptureMode::Automatic || state.money.is_some()
}

fn extension_of(state: &PaymentState) -> ExtensionV2Ref<'_> {
    ExtensionV2Ref {
        capture_mode: capture_mode_code(state.capture_mode),
        money: state.money.as_ref().map(|money| MoneyV2Ref {
            totals: totals_array(&money.totals),
            applied: money
                .applied
                .iter()
                .map(|a| (a.event_id.as_str(), a.movement_id.as_str()))
                .collect(),
            disputes: money
                .disputes
                .iter()
                .map(|d| (d.dispute_id.as_str(), stage_code(d.stage), d.amount_minor))
                .collect(),
        }),
    }
}

/// Puts version 2's extension into `state`.
fn extend(payment_id: &str, state: &mut PaymentState, extension: ExtensionV2) -> Result<()> {
    state.capture_mode = CaptureMode::ALL
        .into_iter()
        .find(|mode| capture_mode_code(*mode) == extension.capture_mode)
        .ok_or_else(|| {
            corrupt(
                payment_id,
                format!(
                    "format version 2: unknown capture mode code {}",
                    extension.capture_mode
                ),
            )
        })?;
    state.money = match extension.money {
        None => None,
        Some(money) => Some(Money {
            totals: totals_of(money.totals),
            applied: money
                .applied
                .into_iter()
                .map(|(event_id, movement_id)| AppliedMovement {
                    event_id,
                    movement_id,
                })
                .collect(),
            disputes: money
                .disputes
                .into_iter()
                .map(|(dispute_id, stage, amount_minor)| {
                    let stage = ChargebackStage::ALL
                        .into_iter()
                        .find(|s| stage_code(*s) == stage)
                        .ok_or_else(|| {
                            corrupt(
                                payment_id,
                                format!("format version 2: unknown chargeback stage code {stage}"),
                            )
                        })?;
                    Ok(Dispute {
                        dispute_id,
                        stage,
                        amount_minor,
                    })
                })
                .collect::<Result<_>>()?,
        }),
    };
    Ok(())
}

fn status_code(status: PaymentStatus) -> u8 {
    match status {
        PaymentStatus::Initiated => 1,
        PaymentStatus::Authorized => 2,
        PaymentStatus::Declined => 3,
        PaymentStatus::Settled => 4,
        // Statuses added with captures, voids, refunds and chargebacks: new codes only,
        // so values written before them read as they did.
        PaymentStatus::PartiallyCaptured => 5,
        PaymentStatus::Captured => 6,
        PaymentStatus::Voided => 7,
        PaymentStatus::PartiallyRefunded => 8,
        PaymentStatus::Refunded => 9,
        PaymentStatus::Disputed => 10,
        PaymentStatus::ChargebackWon => 11,
        PaymentStatus::ChargebackLost => 12,
    }
}

fn status_of_code(code: u8) -> Option<PaymentStatus> {
    PaymentStatus::ALL
        .into_iter()
        .find(|status| status_code(*status) == code)
}

/// `payment` as a version 1 value ([`FORMAT_VERSION_1`], then `ValueV1` in postcard), or
/// as a version 2 value ([`FORMAT_VERSION_2`], then `ValueV1` and `ExtensionV2`) when its
/// state has a manual capture or money kept.
pub fn encode(payment: &StoredPayment) -> Vec<u8> {
    let value = ValueV1Ref {
        timers: payment
            .timers
            .iter()
            .map(|timer| TimerV1 {
                kind: timer.kind.code(),
                due_ms: timer.due_ms,
            })
            .collect(),
        state: payment.state.as_ref().map(|state| StateV1Ref {
            merchant_id: &state.merchant_id,
            psp: &state.psp,
            amount_minor: state.amount_minor,
            currency: &state.currency,
            status: status_code(state.status),
            initiated_event_id: &state.initiated_event_id,
            auth_event_id: state.auth_event_id.as_deref(),
            settlement_event_id: state.settlement_event_id.as_deref(),
            authorized_amount_minor: state.authorized_amount_minor,
            authorized_currency: state.authorized_currency.as_deref(),
        }),
        pending: payment.pending.iter().map(EventV1Ref::of).collect(),
    };
    let extension = payment
        .state
        .as_ref()
        .filter(|state| needs_extension(state))
        .map(extension_of);
    let mut out = Vec::with_capacity(256);
    out.push(if extension.is_some() {
        FORMAT_VERSION_2
    } else {
        FORMAT_VERSION_1
    });
    let out = postcard::to_extend(&value, out)
        .expect("strings, integers and byte strings always encode in postcard");
    match extension {
        None => out,
        Some(extension) => postcard::to_extend(&extension, out)
            .expect("strings, integers and byte strings always encode in postcard"),
    }
}

fn corrupt(payment_id: &str, message: String) -> ProcessorError {
    ProcessorError::CorruptState {
        store: stores::PAYMENTS,
        key: payment_id.to_string(),
        message,
    }
}

fn timers_of(payment_id: &str, stored: Vec<TimerV1>) -> Result<Vec<DueTimer>> {
    stored
        .into_iter()
        .map(|timer| {
            let kind = TimerKind::from_code(timer.kind).ok_or_else(|| {
                corrupt(
                    payment_id,
                    format!("format version 1: unknown timer kind {}", timer.kind),
                )
            })?;
            Ok(DueTimer {
                kind,
                due_ms: timer.due_ms,
            })
        })
        .collect()
}

/// The value stored for `payment_id`, in either format.
///
/// # Errors
/// [`ProcessorError::CorruptState`] when the value is empty, starts with an unknown byte,
/// does not decode in its format, has bytes after its end, or holds an event of another
/// payment.
pub fn decode(payment_id: &str, bytes: &[u8]) -> Result<StoredPayment> {
    let payment = match bytes.split_first() {
        None => return Err(corrupt(payment_id, "empty value".to_string())),
        Some((&version @ (FORMAT_VERSION_1 | FORMAT_VERSION_2), body)) => {
            let (stored, rest): (ValueV1, &[u8]) = postcard::take_from_bytes(body)
                .map_err(|e| corrupt(payment_id, format!("format version {version}: {e}")))?;
            let (extension, rest) = if version == FORMAT_VERSION_2 {
                let (extension, rest): (ExtensionV2, &[u8]) = postcard::take_from_bytes(rest)
                    .map_err(|e| corrupt(payment_id, format!("format version 2: {e}")))?;
                (Some(extension), rest)
            } else {
                (None, rest)
            };
            if !rest.is_empty() {
                return Err(corrupt(
                    payment_id,
                    format!(
                        "format version {version}: {} bytes after the value",
                        rest.len()
                    ),
                ));
            }
            let state = match stored.state {
                None => None,
                Some(state) => Some(PaymentState {
                    payment_id: payment_id.to_string(),
                    merchant_id: state.merchant_id,
                    psp: state.psp,
                    amount_minor: state.amount_minor,
                    currency: state.currency,
                    status: status_of_code(state.status).ok_or_else(|| {
                        corrupt(
                            payment_id,
                            format!("format version 1: unknown status code {}", state.status),
                        )
                    })?,
                    initiated_event_id: state.initiated_event_id,
                    authorized_amount_minor: state.authorized_amount_minor,
                    authorized_currency: state.authorized_currency,
                    auth_event_id: state.auth_event_id,
                    settlement_event_id: state.settlement_event_id,
                    capture_mode: CaptureMode::Automatic,
                    money: None,
                }),
            };
            let mut state = state;
            match (extension, state.as_mut()) {
                (None, _) => {}
                (Some(extension), Some(state)) => extend(payment_id, state, extension)?,
                (Some(_), None) => {
                    return Err(corrupt(
                        payment_id,
                        "format version 2: an extension without a state".to_string(),
                    ));
                }
            }
            StoredPayment {
                state,
                pending: stored.pending.into_iter().map(PendingEvent::from).collect(),
                timers: timers_of(payment_id, stored.timers)?,
            }
        }
        Some((&FORMAT_LEGACY_JSON, _)) => {
            let state: PaymentState = serde_json::from_slice(bytes)
                .map_err(|e| corrupt(payment_id, format!("JSON of earlier releases: {e}")))?;
            StoredPayment {
                state: Some(state),
                ..StoredPayment::default()
            }
        }
        Some((other, _)) => {
            return Err(corrupt(
                payment_id,
                format!("unknown format byte {other:#04x}"),
            ));
        }
    };
    if let Some(stranger) = payment
        .pending
        .iter()
        .find(|waiting| waiting.event.payment_id() != payment_id)
    {
        return Err(corrupt(
            payment_id,
            format!(
                "event {} of payment {} is stored under another payment",
                stranger.event.event_id(),
                stranger.event.payment_id()
            ),
        ));
    }
    Ok(payment)
}

/// The timers of the value stored for `payment_id`, reading only as far as they go:
/// what the timer index is rebuilt from at task start.
///
/// # Errors
/// [`ProcessorError::CorruptState`] as [`decode`] for the part it reads.
pub fn decode_timers(payment_id: &str, bytes: &[u8]) -> Result<Vec<DueTimer>> {
    match bytes.split_first() {
        Some((&(FORMAT_VERSION_1 | FORMAT_VERSION_2), body)) => {
            let (timers, _): (Vec<TimerV1>, &[u8]) = postcard::take_from_bytes(body)
                .map_err(|e| corrupt(payment_id, format!("format version 1: {e}")))?;
            timers_of(payment_id, timers)
        }
        Some((&FORMAT_LEGACY_JSON, _)) => Ok(Vec::new()),
        _ => decode(payment_id, bytes).map(|payment| payment.timers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::pending::format::tests::declined;

    fn state(payment_id: &str) -> PaymentState {
        PaymentState {
            payment_id: payment_id.into(),
            merchant_id: "m".into(),
            psp: "s".into(),
            amount_minor: 1_000,
            currency: "EUR".into(),
            status: PaymentStatus::Authorized,
            initiated_event_id: "i".into(),
            authorized_amount_minor: Some(999),
            authorized_currency: Some("EUR".into()),
            auth_event_id: Some("a".into()),
            settlement_event_id: None,
            capture_mode: CaptureMode::Automatic,
            money: None,
        }
    }

    fn full(payment_id: &str) -> StoredPayment {
        StoredPayment {
            state: Some(state(payment_id)),
            pending: vec![declined(payment_id)],
            timers: vec![DueTimer {
                kind: TimerKind::SettlementWindow,
                due_ms: -1,
            }],
        }
    }

    #[test]
    fn version_1_round_trips() {
        for payment in [
            full("p1"),
            StoredPayment::default(),
            StoredPayment {
                state: None,
                ..full("p1")
            },
        ] {
            let value = encode(&payment);
            assert_eq!(value[0], FORMAT_VERSION_1);
            assert_eq!(decode("p1", &value).unwrap(), payment);
            assert_eq!(decode_timers("p1", &value).unwrap(), payment.timers);
        }
    }

    #[test]
    fn version_1_layout_is_pinned() {
        let expected: &[u8] = &[
            0x01, // format version 1
            1,    // one timer
            2, 1, // settlement window, due at -1 (zigzag)
            1, // a state
            1, b'm', // merchant_id
            1, b's', // psp
            0xd0, 0x0f, // amount_minor 1000, zigzag varint
            3, b'E', b'U', b'R', // currency
            2,    // AUTHORIZED
            1, b'i', // initiated_event_id
            1, 1, b'a', // auth_event_id: Some("a")
            0,    // settlement_event_id: None
            1, 0xce, 0x0f, // authorized_amount_minor: Some(999)
            1, 3, b'E', b'U', b'R', // authorized_currency: Some("EUR")
            1,    // one waiting event, as the pending store's version 1 writes it
            2, 2, b'f', b'1', 2, b'p', b'1', 0, 2, b'0', b'5', 2, b'n', b'o', 40, 1, b't', 2, 4, 6,
            1, 2, b'p', b'1', 1, 5, 0, 0, 0, 0, 7,
        ];
        assert_eq!(encode(&full("p1")), expected);
        assert_eq!(decode("p1", expected).unwrap(), full("p1"));
    }

    /// A value exactly as the release before version 1 wrote it.
    const LEGACY_FIXTURE: &str = concat!(
        r#"{"payment_id":"p1","merchant_id":"m","psp":"s","amount_minor":1000,"#,
        r#""currency":"EUR","status":"AUTHORIZED","initiated_event_id":"i","#,
        r#""authorized_amount_minor":999,"authorized_currency":"EUR"}"#,
    );

    #[test]
    fn values_of_earlier_releases_still_read() {
        let payment = decode("p1", LEGACY_FIXTURE.as_bytes()).unwrap();
        let expected = PaymentState {
            auth_event_id: None,
            ..state("p1")
        };
        assert_eq!(payment.state, Some(expected));
        assert!(payment.pending.is_empty() && payment.timers.is_empty());
        assert_eq!(
            decode_timers("p1", LEGACY_FIXTURE.as_bytes()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn damaged_values_are_corrupt_state() {
        let mut truncated = encode(&full("p1"));
        truncated.pop();
        let mut trailing = encode(&full("p1"));
        trailing.push(0);
        let mut bad_status = encode(&StoredPayment {
            pending: vec![],
            timers: vec![],
            ..full("p1")
        });
        // The status code follows the 3-byte currency.
        let at = bad_status.iter().position(|b| *b == b'R').unwrap() + 1;
        bad_status[at] = 99;
        for (value, says) in [
            (Vec::new(), "empty"),
            (vec![b'[', b']'], "unknown format byte 0x5b"),
            (truncated, "format version 1"),
            (trailing, "1 bytes after the value"),
            (b"{]".to_vec(), "JSON of earlier releases"),
            (encode(&full("p2")), "stored under another payment"),
            (vec![0x01, 1, 7, 0, 0, 0], "unknown timer kind 7"),
            (bad_status, "unknown status code 99"),
        ] {
            match decode("p1", &value) {
                Err(ProcessorError::CorruptState {
                    store: stores::PAYMENTS,
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
