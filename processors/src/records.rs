//! The one mapping from the payments application's topics to the record each carries
//! ([`PaymentTopics::record_type`]), and decoding any of them ([`decode`]): what the
//! ledger sink reads and what `paystream dlq inspect` shows of a dead letter, whether it
//! came from an input or from a topic the sink reads. A topic the application does not
//! have is an error that names it, never a guess.

use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, ChargebackReported, Codec, DecodeError,
    InputEvent, JournalEntry, PaymentCaptured, PaymentInitiated, PaymentStatusChanged,
    ReconciliationException, RefundIssued, SettlementReported,
};

use crate::names::PaymentTopics;

/// The record a topic of the payments application carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    PaymentInitiated,
    AuthSucceeded,
    AuthFailed,
    SettlementReported,
    PaymentCaptured,
    AuthorizationVoided,
    RefundIssued,
    ChargebackReported,
    PaymentStatusChanged,
    JournalEntry,
    ReconciliationException,
}

impl RecordType {
    /// The Avro record name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::PaymentInitiated => "PaymentInitiated",
            RecordType::AuthSucceeded => "AuthSucceeded",
            RecordType::AuthFailed => "AuthFailed",
            RecordType::SettlementReported => "SettlementReported",
            RecordType::PaymentCaptured => "PaymentCaptured",
            RecordType::AuthorizationVoided => "AuthorizationVoided",
            RecordType::RefundIssued => "RefundIssued",
            RecordType::ChargebackReported => "ChargebackReported",
            RecordType::PaymentStatusChanged => "PaymentStatusChanged",
            RecordType::JournalEntry => "JournalEntry",
            RecordType::ReconciliationException => "ReconciliationException",
        }
    }
}

/// A topic that is not one of the payments application's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic {topic} is not one of this application's topics (check topics.prefix and application_id)"
)]
pub struct UnknownTopic {
    pub topic: String,
}

impl PaymentTopics {
    /// The record `topic` carries: an input's event (the repartition topic carries
    /// payments), or an output's record.
    ///
    /// # Errors
    /// [`UnknownTopic`] naming a topic the application does not have.
    pub fn record_type(&self, topic: &str) -> Result<RecordType, UnknownTopic> {
        let types = [
            (&self.payment_initiated, RecordType::PaymentInitiated),
            (&self.payments_by_id, RecordType::PaymentInitiated),
            (&self.auth_success, RecordType::AuthSucceeded),
            (&self.auth_failure, RecordType::AuthFailed),
            (&self.settlement, RecordType::SettlementReported),
            (&self.capture, RecordType::PaymentCaptured),
            (&self.void, RecordType::AuthorizationVoided),
            (&self.refund, RecordType::RefundIssued),
            (&self.chargeback, RecordType::ChargebackReported),
            (&self.payment_status, RecordType::PaymentStatusChanged),
            (&self.ledger_entries, RecordType::JournalEntry),
            (
                &self.reconciliation_exceptions,
                RecordType::ReconciliationException,
            ),
        ];
        types
            .into_iter()
            .find(|(name, _)| *name == topic)
            .map(|(_, record_type)| record_type)
            .ok_or_else(|| UnknownTopic {
                topic: topic.to_string(),
            })
    }
}

/// A decoded record of one of the payments application's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRecord {
    Event(InputEvent),
    Status(PaymentStatusChanged),
    JournalEntry(JournalEntry),
    Exception(ReconciliationException),
}

impl PaymentRecord {
    /// One line naming the record and its ids (never a token or an amount).
    pub fn summary(&self) -> String {
        match self {
            PaymentRecord::Event(event) => {
                let name = match event {
                    InputEvent::PaymentInitiated(_) => "PaymentInitiated",
                    InputEvent::AuthSucceeded(_) => "AuthSucceeded",
                    InputEvent::AuthFailed(_) => "AuthFailed",
                    InputEvent::SettlementReported(_) => "SettlementReported",
                    InputEvent::PaymentCaptured(_) => "PaymentCaptured",
                    InputEvent::AuthorizationVoided(_) => "AuthorizationVoided",
                    InputEvent::RefundIssued(_) => "RefundIssued",
                    InputEvent::ChargebackReported(_) => "ChargebackReported",
                };
                format!(
                    "{name} event {} payment {}",
                    event.event_id(),
                    event.payment_id()
                )
            }
            PaymentRecord::Status(status) => format!(
                "PaymentStatusChanged {} payment {}",
                status.status.as_str(),
                status.payment_id
            ),
            PaymentRecord::JournalEntry(entry) => format!(
                "JournalEntry {} {} payment {}",
                entry.id,
                entry.kind.as_str(),
                entry.payment_id
            ),
            PaymentRecord::Exception(exception) => format!(
                "ReconciliationException {} {} payment {}",
                exception.id,
                exception.kind.as_str(),
                exception.payment_id
            ),
        }
    }
}

/// Decodes `value` (Confluent wire format) as a record of `record_type`.
///
/// # Errors
/// [`DecodeError`] as [`Codec::decode`] gives it.
pub async fn decode(
    codec: &Codec,
    record_type: RecordType,
    value: Option<&[u8]>,
) -> Result<PaymentRecord, DecodeError> {
    Ok(match record_type {
        RecordType::PaymentInitiated => PaymentRecord::Event(InputEvent::PaymentInitiated(
            codec.decode::<PaymentInitiated>(value).await?,
        )),
        RecordType::AuthSucceeded => PaymentRecord::Event(InputEvent::AuthSucceeded(
            codec.decode::<AuthSucceeded>(value).await?,
        )),
        RecordType::AuthFailed => PaymentRecord::Event(InputEvent::AuthFailed(
            codec.decode::<AuthFailed>(value).await?,
        )),
        RecordType::SettlementReported => PaymentRecord::Event(InputEvent::SettlementReported(
            codec.decode::<SettlementReported>(value).await?,
        )),
        RecordType::PaymentCaptured => PaymentRecord::Event(InputEvent::PaymentCaptured(
            codec.decode::<PaymentCaptured>(value).await?,
        )),
        RecordType::AuthorizationVoided => PaymentRecord::Event(InputEvent::AuthorizationVoided(
            codec.decode::<AuthorizationVoided>(value).await?,
        )),
        RecordType::RefundIssued => PaymentRecord::Event(InputEvent::RefundIssued(
            codec.decode::<RefundIssued>(value).await?,
        )),
        RecordType::ChargebackReported => PaymentRecord::Event(InputEvent::ChargebackReported(
            codec.decode::<ChargebackReported>(value).await?,
        )),
        RecordType::PaymentStatusChanged => {
            PaymentRecord::Status(codec.decode::<PaymentStatusChanged>(value).await?)
        }
        RecordType::JournalEntry => {
            PaymentRecord::JournalEntry(codec.decode::<JournalEntry>(value).await?)
        }
        RecordType::ReconciliationException => {
            PaymentRecord::Exception(codec.decode::<ReconciliationException>(value).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use paystream_common::config::Config;

    use super::*;
    use crate::topology::payments_topology_description;

    #[test]
    fn every_topic_has_one_record_type_and_it_matches_the_topology() {
        let mut config = Config::default();
        config.topics.prefix = "t1.".into();
        let topics = PaymentTopics::new(&config);
        let topology = payments_topology_description(&config);
        for source in topology.source_topics() {
            let declared = topology.type_of(source).expect("a source");
            assert_eq!(
                topics.record_type(source).map(RecordType::as_str),
                Ok(declared),
                "{source}"
            );
        }
        for output in topics.sink_inputs() {
            assert!(topics.record_type(output).is_ok(), "{output}");
        }
        assert_eq!(
            topics.record_type("t1.ledger_entries"),
            Ok(RecordType::JournalEntry)
        );
        let unknown = topics.record_type("ledger_entries").unwrap_err();
        assert!(unknown.to_string().contains("ledger_entries"), "{unknown}");
    }
}
