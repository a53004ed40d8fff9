//! The stream thread (Kafka Streams' `StreamThread`): one loop that only sequences the
//! phases of processing — poll a record, hand it to its task, and, once per commit
//! interval, punctuate and commit — all in one Kafka transaction per commit
//! (docs/architecture.md, "Exactly once" and "The runtime's roles").
//!
//! The roles it sequences live in their own files:
//! - [`record`]: a record's path through its stream task — source (size, routing,
//!   decode, validation, dead-letter policy, [`crate::source`]) → processor
//!   ([`crate::task`]) → record collector ([`crate::record_collector`]);
//! - [`commit`]: punctuation, the changelog records of the stores' open writes, the
//!   consumed offsets with the group metadata (KIP-447) through the exactly-once producer
//!   ([`crate::eos_producer`]), then the store writes and checkpoints; or an abort and
//!   a rewind;
//! - `setup.rs`: the consumer's settings, the topic checks and the roles, at start;
//! - `consumer.rs`: polling, resuming and seeking partitions, rebalances and shutdown;
//! - `transaction.rs`: the open transaction — the exactly-once producer, the record
//!   collector, the records read into it and their offsets — begun, committed or
//!   aborted (with what to rewind) as one;
//! - [`crate::task_manager`]: which tasks run, and the restoring phase of new ones
//!   ([`crate::restore`]): a task's partitions are paused while its stores restore on a
//!   thread of their own, then resumed from their committed offsets.
//!
//! No single record stops the pipeline (docs/architecture.md, "Bad input"); only the
//! environment (broker, registry, state stores, fencing) stops or retries.

mod commit;
mod consumer;
mod record;
mod restoring;
mod setup;
mod stall;
mod transaction;

use std::collections::{BTreeSet, HashMap};

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;

use tokio::sync::watch;
use tracing::info;

use crate::Result;
use crate::config::Config;
pub use crate::counts::RunSummary;
use crate::health::Health;
use crate::lag::{
    EndOffsets, KnownEnds, LagTracker, RebalanceListener, STATISTICS_INTERVAL_MS, caught_up,
    each_partition,
};
use crate::metrics::Metrics;
use crate::partition_group::{Next, PartitionGroups};
use crate::poison::PoisonRecords;
use crate::source::Source;
use crate::task::TaskId;
use crate::task_manager::TaskManager;
use crate::topology::Topology;
use transaction::Transaction;

/// Records processed between two polls of the consumer while records are queued.
const POLL_EVERY_RECORDS: usize = 64;
/// Most records moved from the consumer into the queues in one poll: the consumer's
/// own queue is kept near empty, or librdkafka stops fetching every partition
/// (`queued.min.messages`), the repartition topic included.
const POLL_RECORDS_MAX: usize = 50_000;
/// Polls in a row that find no record before a poll stops looking.
const POLL_IDLE_MAX: usize = 4;

/// How often a thread with nothing to process checks whether a restoring task has
/// finished (restores run on threads of their own), so a restored task starts at once
/// whatever the commit intervals.
const RESTORE_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// How long [`Pipeline::close`] serves the revocation of its partitions after
/// unsubscribing before it closes the consumer anyway.
const CLOSE_REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

use crate::task::wall_clock_ms as now_ms;
pub use stall::STREAM_THREAD_STALL_MS;

/// When the stream thread commits: every `processing.commit_interval_ms`, and once
/// nothing has been processable for `processing.commit_interval_idle_ms`.
struct CommitSchedule {
    interval: Duration,
    idle_interval: Duration,
    next_commit: tokio::time::Instant,
    last_commit: tokio::time::Instant,
}

impl CommitSchedule {
    fn new(config: &Config) -> Self {
        let now = tokio::time::Instant::now();
        let interval = Duration::from_millis(config.processing.commit_interval_ms);
        CommitSchedule {
            interval,
            idle_interval: Duration::from_millis(config.processing.commit_interval_idle_ms),
            next_commit: now + interval,
            last_commit: now,
        }
    }

    /// The commit interval has passed.
    fn due(&self) -> bool {
        tokio::time::Instant::now() >= self.next_commit
    }

    /// With an `open` transaction, the idle interval has passed since the last commit.
    fn idle_commit_due(&self, open: bool) -> bool {
        open && tokio::time::Instant::now() >= self.last_commit + self.idle_interval
    }

    /// How long to wait for a record: until the commit (the idle commit with an `open`
    /// transaction) or until a task stops holding back (`hold_until`), whichever first.
    fn wait_until(&self, open: bool, hold_until: Option<Instant>) -> tokio::time::Instant {
        let mut until = self.next_commit;
        if let Some(hold_until) = hold_until {
            until = until.min(tokio::time::Instant::from_std(hold_until));
        }
        if open {
            until = until.min(self.last_commit + self.idle_interval);
        }
        until
    }

    fn committed(&mut self) {
        self.last_commit = tokio::time::Instant::now();
    }

    /// The next commit is one interval from now.
    fn restart(&mut self) {
        self.next_commit = tokio::time::Instant::now() + self.interval;
    }
}

/// The stream thread of one instance.
pub struct Pipeline {
    config: Config,
    topology: Arc<Topology>,
    consumer: StreamConsumer<RebalanceListener>,
    rebalances: Arc<AtomicU64>,
    rebalances_seen: u64,
    /// The group's instances at the last rebalance: those that leave are fenced.
    group_members: crate::fencing::GroupMembers,
    health: Arc<Health>,
    admin: AdminClient<DefaultClientContext>,
    last_purge_at: Instant,
    /// Partition ends and the group's offsets for the caught-up check (`lag.rs`).
    end_offsets: EndOffsets,
    /// Every topic the pipeline reads, with its partition count.
    source_partitions: Vec<(String, i32)>,
    metrics: Metrics,
    /// The tasks, restoring and running.
    tasks: TaskManager,
    /// Tasks whose partitions are paused while they restore.
    paused: BTreeSet<TaskId>,
    /// Per partition, the highest offset dropped because its task was restoring, until
    /// it is read again.
    dropped_while_restoring: HashMap<(String, i32), i64>,
    /// Consumed records waiting for their task, per partition, and the processing order
    /// (docs/architecture.md, "Processing order").
    queues: PartitionGroups,
    /// Input partition ends, listed in the background while the loop runs.
    known_ends: Option<KnownEnds>,
    /// The open transaction: producer, record collector, records, offsets.
    transaction: Transaction,
    /// Size, routing, decoding and validation of consumed records.
    source: Source,
    /// Records found to fail a stage by their data, and suspects.
    poison: PoisonRecords,
    timeout: Duration,
    summary: RunSummary,
    first_record_at: Option<Instant>,
    last_commit_at: Option<Instant>,
    /// Committed offsets shared with the consumer's statistics callback (consumer lag).
    lag: LagTracker,
    /// The stores this instance hosts and the directory of the others (`Some` once
    /// [`Self::with_interactive_queries`] was called).
    queries: Option<Arc<crate::interactive_queries::InteractiveQueries>>,
}

impl Pipeline {
    /// Runs until `shutdown` turns true, or — with `stop_when_caught_up` — until every
    /// assigned partition has been consumed to its end and committed.
    ///
    /// # Errors
    /// Any non-retriable [`crate::Error`]; the open transaction is then left to abort (the broker
    /// aborts it, or the next incarnation's `init_transactions` does).
    pub async fn run(
        mut self,
        shutdown: watch::Receiver<bool>,
        stop_when_caught_up: bool,
    ) -> Result<RunSummary> {
        let result = self.run_loop(shutdown, stop_when_caught_up).await;
        // On errors too: dropping a consumer that still holds partitions can hang.
        self.close().await;
        result.map(|()| self.summary())
    }

    /// The loop, as `StreamThread.runOnce`: poll (consumed records join their
    /// partition's queue) → process the next record in timestamp order
    /// ([`PartitionGroups`]), or wait when there is none (at most until the next
    /// wall-clock punctuation) → restored tasks start running → wall-clock punctuation
    /// when due → stream-time punctuation and commit when the commit interval is due.
    async fn run_loop(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
        stop_when_caught_up: bool,
    ) -> Result<()> {
        self.transaction.begin()?;
        // Stopped when dropped at the end of the run.
        let _dlq_depth = crate::dlq_depth::spawn(
            &self.config,
            self.topology.dead_letter_topics(),
            self.metrics.clone(),
        )?;
        // Stopped when dropped at the end of the run, with a last heartbeat saying so.
        let subscription: Vec<String> = self
            .source_partitions
            .iter()
            .map(|(topic, _)| topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _liveness = crate::liveness::spawn(
            &self.config,
            &self.metrics,
            subscription,
            self.queries.clone().unwrap_or_default(),
        )?;
        let mut schedule = CommitSchedule::new(&self.config);
        self.known_ends = Some(KnownEnds::spawn(
            &self.config,
            each_partition(&self.source_partitions),
            schedule.interval,
            self.timeout,
        )?);
        let mut since_poll = 0usize;
        let mut stalls = stall::StallWatch::new();
        loop {
            if let Some(stall) = stalls.iteration() {
                self.went_on_after_stall(stall);
            }
            // Take what the consumer has fetched, without waiting, every few records
            // and whenever nothing queued can be processed.
            let polled = since_poll >= POLL_EVERY_RECORDS || self.queues.is_empty();
            if polled {
                since_poll = 0;
                self.poll_now().await?;
                if *shutdown.borrow() {
                    info!("shutdown requested");
                    break;
                }
            }
            let mut idle_commit = false;
            match self.queues.next(Instant::now()) {
                Next::Record {
                    task,
                    message,
                    enforced,
                    resume,
                } => {
                    since_poll += 1;
                    self.process(task, message, enforced, resume).await?;
                }
                next @ (Next::HoldBack { .. } | Next::Empty) => {
                    // Whatever arrives, the rest of the fetch joins the queues first.
                    since_poll = POLL_EVERY_RECORDS;
                    // Nothing to process: commit what was processed once the idle commit
                    // interval has passed (a held-back task may be waiting for this very
                    // transaction's repartitioned records); else wait for a record, the
                    // commit, or the end of a task's holding back.
                    if schedule.idle_commit_due(!self.transaction.is_empty()) {
                        idle_commit = true;
                    } else {
                        let hold_until = match next {
                            Next::HoldBack { until } => Some(until),
                            _ => None,
                        };
                        let mut until =
                            schedule.wait_until(!self.transaction.is_empty(), hold_until);
                        if let Some(punctuation_at) = self.tasks.next_wall_clock_punctuation() {
                            until = until.min(tokio::time::Instant::from_std(punctuation_at));
                        }
                        if self.tasks.any_restoring() {
                            until = until.min(tokio::time::Instant::now() + RESTORE_CHECK_INTERVAL);
                        }
                        stalls.sleeping_until(until.into_std());
                        if self.wait_for_record(&mut shutdown, until).await? {
                            info!("shutdown requested");
                            break;
                        }
                    }
                }
            }
            self.resume_restored_tasks()?;
            // Wall-clock punctuation, checked whenever the consumer was polled (every few
            // records, and whenever the queues ran dry).
            if polled {
                self.punctuate_wall_clock().await?;
            }
            if self
                .maybe_commit(&mut schedule, idle_commit, stop_when_caught_up)
                .await?
            {
                info!("caught up: every assigned partition consumed and committed");
                break;
            }
        }
        if !self.transaction.is_empty() {
            self.commit().await?;
        }
        self.known_ends = None;
        self.purge_repartition_topic().await;
        Ok(())
    }

    /// The loop did not run for `stall` (the process was paused, or a call blocked):
    /// records may have reached the broker meanwhile unread, so every running task has
    /// been reading only since now ([`crate::processor::ProcessorContext::running_since_ms`]).
    fn went_on_after_stall(&mut self, stall: Duration) {
        info!(
            stall_ms = stall.as_millis() as u64,
            "the stream thread did not run for a while (the process was paused, or a call \
             blocked); reorder waits count from now"
        );
        self.metrics.stream_thread_stalls.inc();
        self.tasks.went_on_after_stall();
    }

    /// Processes one record taken from its task's queue (resuming the partition first
    /// when its queue went down after a capacity pause); a record that failed a stage
    /// aborts the transaction at once, to dead-letter it.
    async fn process(
        &mut self,
        task: TaskId,
        message: rdkafka::message::OwnedMessage,
        enforced: bool,
        resume: Option<(String, i32)>,
    ) -> Result<()> {
        if enforced {
            self.metrics.enforced_processing.inc();
        }
        if let Some((topic, partition)) = resume {
            self.resume_partition(&topic, partition)?;
        }
        self.handle(task, message).await?;
        if self.transaction.collector.must_abort() {
            self.recover_from_failed_transaction(None).await?;
        }
        Ok(())
    }

    /// Punctuates and commits when the commit interval is due, the loop found nothing to
    /// process for the idle interval (`idle_commit`), a commit was asked for, or the
    /// transaction is full. Returns true when, with `stop_when_caught_up`, there was
    /// nothing to commit and every partition is consumed and committed to its end.
    async fn maybe_commit(
        &mut self,
        schedule: &mut CommitSchedule,
        idle_commit: bool,
        stop_when_caught_up: bool,
    ) -> Result<bool> {
        let due = schedule.due();
        let requested = self.transaction.take_commit_request();
        let full = self.transaction.records() >= self.config.processing.transaction_records_max;
        if !(due || idle_commit || requested || full) {
            return Ok(false);
        }
        if !self.transaction.is_empty() {
            self.commit().await?;
            schedule.committed();
        } else if due && stop_when_caught_up && self.caught_up()? {
            return Ok(true);
        }
        schedule.restart();
        Ok(false)
    }

    /// True when no task is restoring, every record dropped while its task restored has
    /// been read again, no processor waits on wall-clock time to let through what it
    /// read, and every assigned partition is consumed and committed to its end.
    fn caught_up(&self) -> Result<bool> {
        if self.tasks.any_restoring()
            || self.tasks.any_awaiting_wall_clock()
            || !self.dropped_while_restoring.is_empty()
            || !self.queues.is_empty()
        {
            return Ok(false);
        }
        caught_up(
            &self.consumer,
            &self.end_offsets,
            &self.source_partitions,
            self.transaction.records(),
            self.timeout,
        )
    }

    fn summary(&self) -> RunSummary {
        let mut summary = self.summary.clone();
        summary.commits = self.metrics.commits.get();
        summary.enforced_processing = self.metrics.enforced_processing.get();
        summary.commit_ms = (self.metrics.commit_latency_seconds.get_sample_sum() * 1000.0) as u64;
        summary.commit_phases_ms = crate::metrics::COMMIT_PHASES
            .iter()
            .map(|phase| {
                let sum = self
                    .metrics
                    .commit_phase_seconds
                    .with_label_values(&[phase])
                    .get_sample_sum();
                (*phase, (sum * 1000.0) as u64)
            })
            .collect();
        summary.processing_ms = match (self.first_record_at, self.last_commit_at) {
            (Some(first), Some(last)) if last > first => (last - first).as_millis() as u64,
            _ => 0,
        };
        summary
    }
}
