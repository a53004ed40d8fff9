//! Fencing the instances that left the group or went silent, and removing a silent one
//! from the group (docs/architecture.md, "Instances, rebalances and zombies").
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
//!
//! An instance that dies keeps its place in the group until its session times out (a
//! static member sends no LeaveGroup). [`remove_from_group`], run by the instance that
//! noticed the silence first (`liveness.rs`), takes the silent instance's place — a
//! consumer joining with its `group.instance.id` replaces it (KIP-345) — and leaves the
//! group at once: the coordinator then moves its partitions to the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tracing::warn;

use crate::config::Config;
use crate::eos_producer::ExactlyOnceProducer;
use crate::kafka::client_config;

/// Longest [`remove_from_group`] waits for the group to take it in.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest [`remove_from_group`] waits for its LeaveGroup to go out.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The instances of the group seen at the last rebalance.
pub(crate) struct GroupMembers {
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
pub(crate) fn fence(config: &Config, instance_id: &str) {
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

/// [`fence`] on a thread of its own, so the rebalance that found the instance gone goes
/// on meanwhile: the tasks it moves restore in parallel, and their first commit waits
/// for the fence on the broker's side (the departed transaction's offsets are pending
/// until it is aborted).
pub(crate) fn fence_in_background(config: &Config, instance_id: String) {
    let config = config.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("fence-{instance_id}"))
        .spawn(move || fence(&config, &instance_id));
    if let Err(e) = spawned {
        warn!(error = %e, "the fencing thread could not start; the departed instance's transaction is aborted at its timeout");
    }
}

/// Notes when the consumer has been given an assignment (it joined the group).
struct Joined(Arc<AtomicBool>);

impl ClientContext for Joined {}

impl ConsumerContext for Joined {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Removes instance `instance_id` from the application's consumer group: joins with its
/// `group.instance.id` (`<application_id>-<instance_id>`), which replaces it (KIP-345),
/// then unsubscribes, which sends a LeaveGroup (a static member that unsubscribes
/// leaves; only one that closes does not). Nothing is read or committed meanwhile. Blocks
/// the calling thread for up to about 12 s. Returns how long it took.
///
/// It subscribes to the pipeline's inputs (`subscription`), as the member it replaces
/// did: the replacement then costs no rebalance (the coordinator hands it the cached
/// assignment), and only the LeaveGroup makes one.
///
/// # Errors
/// A message when the consumer cannot be created or the group does not take it in.
pub(crate) fn remove_from_group(
    config: &Config,
    instance_id: &str,
    subscription: &[String],
) -> std::result::Result<Duration, String> {
    let started = Instant::now();
    let joined = Arc::new(AtomicBool::new(false));
    let mut departed = config.clone();
    departed.instance_id = instance_id.to_string();
    let consumer: BaseConsumer<Joined> = client_config(&departed)
        .set("group.id", &config.application_id)
        .set(
            "group.instance.id",
            format!("{}-{instance_id}", config.application_id),
        )
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set(
            "session.timeout.ms",
            config.processing.session_timeout_ms.to_string(),
        )
        .create_with_context(Joined(joined.clone()))
        .map_err(|e| format!("creating the consumer: {e}"))?;
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("subscribing: {e}"))?;
    while !joined.load(Ordering::SeqCst) {
        if started.elapsed() > JOIN_TIMEOUT {
            return Err(format!(
                "the group did not take the consumer in within {} s",
                JOIN_TIMEOUT.as_secs()
            ));
        }
        // Nothing is read: the poll only drives the group protocol.
        let _ = consumer.poll(Duration::from_millis(20));
    }
    consumer.unsubscribe();
    let leaving = Instant::now();
    while leaving.elapsed() < LEAVE_TIMEOUT && consumer.assignment().map_or(0, |a| a.count()) > 0 {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    // Time for the LeaveGroup request to be sent before the consumer closes.
    let _ = consumer.poll(Duration::from_millis(100));
    Ok(started.elapsed())
}
