//! Poison records: input records whose data makes a stage after validation fail — a
//! processor that panics on them, an output that does not encode or that the broker
//! refuses (too large, a timestamp out of the topic's window). Such a failure aborts the
//! open transaction (part of the record's effects may be in it); the record is then
//! dead-lettered when it is read again, and the records around it are processed as
//! usual (docs/architecture.md, "No single record stops the pipeline").
//!
//! When the broker refuses a batch it fails every record in it, so the delivery reports
//! of an aborted transaction can name several input records. One is poisoned at once;
//! several become suspects, each processed in a transaction of its own next time, so the
//! one at fault is known exactly before anything is dead-lettered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::processor::{DeadLetterReason, Stage};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::DeliveryFuture;
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

/// How long an aborted transaction's delivery reports are awaited to find the records
/// the broker refused.
const DELIVERY_REPORTS_TIMEOUT: Duration = Duration::from_secs(30);

/// An input record: where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl RecordId {
    /// Where `message` was read.
    pub fn of(message: &OwnedMessage) -> Self {
        RecordId {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}

/// Why a record failed, and where: what its dead letter will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poisoned {
    pub reason: DeadLetterReason,
    pub stage: Stage,
    pub message: String,
}

/// Kafka error codes with which the broker (or librdkafka, before sending) refuses one
/// record for its data rather than for the state of the cluster, and the dead-letter
/// reason each gives.
pub fn refused_for_data(code: RDKafkaErrorCode) -> Option<DeadLetterReason> {
    use RDKafkaErrorCode as Code;
    match code {
        Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge => {
            Some(DeadLetterReason::RECORD_TOO_LARGE)
        }
        Code::InvalidTimestamp | Code::InvalidRecord | Code::InvalidMessage => {
            Some(DeadLetterReason::PROCESSING_FAILED)
        }
        _ => None,
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "processor panicked".to_string())
}

/// The poisoned and suspect records of one instance. Both sets hold only records not yet
/// committed past, so they stay as small as the failures of the last transactions.
#[derive(Debug, Default)]
pub struct PoisonRecords {
    poisoned: HashMap<RecordId, Poisoned>,
    suspects: HashSet<RecordId>,
}

impl PoisonRecords {
    /// What `id` failed with, when it is known to fail.
    pub fn poisoned(&self, id: &RecordId) -> Option<&Poisoned> {
        self.poisoned.get(id)
    }

    /// True when `id` must be processed in a transaction of its own.
    pub fn is_suspect(&self, id: &RecordId) -> bool {
        self.suspects.contains(id)
    }

    /// Records known to fail.
    pub fn len(&self) -> usize {
        self.poisoned.len()
    }

    /// `id` fails with `poisoned`: dead-letter it when it is read again.
    pub fn poison(&mut self, id: RecordId, poisoned: Poisoned) {
        self.suspects.remove(&id);
        self.poisoned.insert(id, poisoned);
    }

    /// Forgets the records that the group has committed past (`committed`: the next
    /// offset to read per topic and partition).
    pub fn forget_committed(&mut self, committed: &HashMap<(String, i32), i64>) {
        let pending = |id: &RecordId| {
            committed
                .get(&(id.topic.clone(), id.partition))
                .is_none_or(|next| *next <= id.offset)
        };
        self.poisoned.retain(|id, _| pending(id));
        self.suspects.retain(pending);
    }

    /// Awaits the delivery reports of an aborted transaction — each with the index in
    /// `inputs` of the input record it was produced for — and marks the inputs whose
    /// outputs were refused for their data ([`refused_for_data`]): one is poisoned, several
    /// become suspects.
    pub async fn find_refused(
        &mut self,
        deliveries: Vec<(Option<usize>, DeliveryFuture)>,
        inputs: &[RecordId],
    ) {
        let mut refused: BTreeMap<usize, (DeadLetterReason, String)> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + DELIVERY_REPORTS_TIMEOUT;
        for (input, delivery) in deliveries {
            let Ok(Ok(Err((error, _)))) = tokio::time::timeout_at(deadline, delivery).await else {
                continue;
            };
            let (Some(input), Some(code)) = (input, error.rdkafka_error_code()) else {
                continue;
            };
            if let Some(reason) = refused_for_data(code) {
                refused
                    .entry(input)
                    .or_insert((reason, format!("the broker refused an output: {error}")));
            }
        }
        let single = refused.len() == 1;
        for (input, (reason, message)) in refused {
            let Some(id) = inputs.get(input).cloned() else {
                continue;
            };
            if single {
                warn!(
                    topic = %id.topic,
                    partition = id.partition,
                    offset = id.offset,
                    reason = %reason,
                    "the broker refused an output of this record; it will be dead-lettered"
                );
                self.poison(
                    id,
                    Poisoned {
                        reason,
                        stage: Stage::Produce,
                        message,
                    },
                );
            } else {
                self.suspects.insert(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_refusals_are_told_apart_from_cluster_trouble() {
        use RDKafkaErrorCode as Code;
        assert_eq!(
            refused_for_data(Code::MessageSizeTooLarge),
            Some(DeadLetterReason::RECORD_TOO_LARGE)
        );
        assert_eq!(
            refused_for_data(Code::InvalidTimestamp),
            Some(DeadLetterReason::PROCESSING_FAILED)
        );
        for code in [
            Code::NotLeaderForPartition,
            Code::RequestTimedOut,
            Code::State,
            Code::NotEnoughReplicas,
        ] {
            assert_eq!(refused_for_data(code), None, "{code:?}");
        }
    }

    #[test]
    fn records_are_forgotten_once_committed_past() {
        let id = |offset| RecordId {
            topic: "t".into(),
            partition: 0,
            offset,
        };
        let mut poison = PoisonRecords::default();
        let failed = Poisoned {
            reason: DeadLetterReason::PROCESSING_FAILED,
            stage: Stage::Process,
            message: "boom".into(),
        };
        poison.suspects.insert(id(5));
        poison.poison(id(5), failed.clone());
        assert!(
            !poison.is_suspect(&id(5)),
            "a poisoned record is no suspect"
        );
        poison.poison(id(11), failed.clone());
        poison.suspects.insert(id(12));
        let committed = HashMap::from([(("t".to_string(), 0), 10)]);
        poison.forget_committed(&committed);
        assert_eq!(poison.poisoned(&id(5)), None);
        assert_eq!(poison.poisoned(&id(11)), Some(&failed));
        assert!(poison.is_suspect(&id(12)));
        assert_eq!(poison.len(), 1);
    }
}
