//! Fencing the instances that left the group (docs/architecture.md, "Instances,
//! rebalances and zombies").
//!
//! An instance killed mid-transaction leaves its transaction open, and the offsets it
//! sent in it (TxnOffsetCommit, KIP-447) hold its partitions: the next owner's
//! OffsetFetch is answered `UNSTABLE_OFFSET_COMMIT` until the coordinator aborts that
//! transaction, `processing.transaction_timeout_ms` after it began plus up to the
//! broker's sweep interval (`transaction.abort.timed.out.transaction.cleanup.interval.ms`,
//! 10 s by default). So at every rebalance each instance compares the group's members
//! with those it saw at the previous one, and initialises transactions with the
//! transactional id of every instance that left: the coordinator bumps its epoch and
//! aborts its open transaction at once (KIP-98), and the partitions run again as soon as
//! the group gives them out. An instance that left and comes back initialises its own
//! transactions anyway; one fenced while it still ran replaces its producer
//! ([`crate::eos_producer::ExactlyOnceProducer::reset`]).

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use tracing::warn;

use crate::config::Config;
use crate::eos_producer::ExactlyOnceProducer;

/// The instances of the group seen at the last rebalance.
pub(super) struct GroupMembers {
    /// Instance ids.
    known: BTreeSet<String>,
}

impl GroupMembers {
    pub fn new() -> Self {
        GroupMembers {
            known: BTreeSet::new(),
        }
    }

    /// Reads the group's members — each one's `client.id` is
    /// `<application_id>-<instance_id>` (`paystream_common::kafka::client_config`) — and
    /// returns the instances that were members at the previous call and are not now
    /// (never this one). When the group cannot be read, returns none and keeps the
    /// members seen before.
    pub fn departed<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        config: &Config,
        timeout: Duration,
    ) -> Vec<String> {
        let groups = match tokio::task::block_in_place(|| {
            consumer.fetch_group_list(Some(&config.application_id), timeout)
        }) {
            Ok(groups) => groups,
            Err(e) => {
                warn!(error = %e, "reading the group's members failed; no instance is fenced at this rebalance");
                return Vec::new();
            }
        };
        let prefix = format!("{}-", config.application_id);
        let now: BTreeSet<String> = groups
            .groups()
            .iter()
            .flat_map(|group| group.members())
            .filter_map(|member| member.client_id().strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        let departed = self
            .known
            .difference(&now)
            .filter(|id| **id != config.instance_id)
            .cloned()
            .collect();
        self.known = now;
        departed
    }
}

/// Initialises transactions with the transactional id of instance `instance_id`
/// (`<application_id>-<instance_id>`), which aborts its open transaction and fences its
/// producer. A failure is logged: the coordinator still aborts that transaction at its
/// timeout.
pub(super) fn fence(config: &Config, instance_id: &str) {
    let mut departed = config.clone();
    departed.instance_id = instance_id.to_string();
    match ExactlyOnceProducer::new(&departed) {
        Ok(producer) => warn!(
            transactional_id = %producer.transactional_id(),
            "fenced the transactional id of an instance that left the group: its open \
             transaction is aborted, so its partitions' offsets are free for their next owner"
        ),
        Err(e) => warn!(
            instance_id,
            error = %e,
            "fencing an instance that left the group failed; its open transaction is \
             aborted at its timeout"
        ),
    }
}
