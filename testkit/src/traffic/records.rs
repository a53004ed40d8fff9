//! What a traffic plan sends, and to which input topic.

use paystream_schemas::InputEvent;
use serde::{Deserialize, Serialize};

/// Which input topic a record goes to (base names; the configured prefix is added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InputTopic {
    PaymentInitiated,
    AuthSuccess,
    AuthFailure,
    Settlement,
    Capture,
    Void,
    Refund,
    Chargeback,
}

impl InputTopic {
    /// The base topic name.
    pub fn base_name(self) -> &'static str {
        match self {
            InputTopic::PaymentInitiated => "payment_initiated",
            InputTopic::AuthSuccess => "auth_success",
            InputTopic::AuthFailure => "auth_failure",
            InputTopic::Settlement => "settlement",
            InputTopic::Capture => "capture",
            InputTopic::Void => "void",
            InputTopic::Refund => "refund",
            InputTopic::Chargeback => "chargeback",
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedRecord {
    /// A valid event, Avro-encoded when produced.
    Event {
        topic: InputTopic,
        key: String,
        event: InputEvent,
    },
    /// Raw bytes that are not Confluent-framed Avro.
    Malformed {
        topic: InputTopic,
        key: String,
        value: Vec<u8>,
        /// Record timestamp, milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl PlannedRecord {
    pub fn topic(&self) -> InputTopic {
        match self {
            PlannedRecord::Event { topic, .. } | PlannedRecord::Malformed { topic, .. } => *topic,
        }
    }
}
