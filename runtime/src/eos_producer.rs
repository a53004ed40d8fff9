//! The exactly-once producer (Kafka Streams' `StreamsProducer`): one transactional
//! producer per instance, `transactional.id = <application_id>-<instance_id>`, whose
//! transactions carry the outputs, changelog records and consumed offsets of one commit
//! interval (KIP-98, with the consumer group metadata of KIP-447 so that a zombie
//! instance is fenced). It owns the transaction calls and their retry policy; the
//! records themselves go through [`crate::record_collector::RecordCollector`], which
//! shares the same producer.
//!
//! A producer in a fatal state is replaced ([`ExactlyOnceProducer::reset`]), as Kafka
//! Streams re-creates its thread producer: a transaction the coordinator aborted at
//! `transaction.timeout.ms` (the instance stalled, or the coordinator moved during a
//! rebalance) leaves librdkafka's producer fenced or in `INVALID_TXN_STATE` for good
//! (KIP-588 is not in librdkafka). The new producer's `init_transactions` bumps the epoch
//! and aborts whatever was open; the consumer group, not the producer, keeps a zombie
//! instance out (KIP-447: its offsets carry a stale generation or a fenced
//! `group.instance.id`).

use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

use crate::config::Config;
use crate::kafka::{PARTITIONER, client_config};
use crate::topics::PRODUCER_RECORD_BYTES_MAX;
use crate::{Error, Result};

/// How long the parts of one [`EosProducer::commit`] took (retries included).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitTimes {
    /// Sending the offsets to the transaction (TxnOffsetCommit, KIP-447).
    pub offsets: Duration,
    /// Waiting for the delivery report of every record of the transaction.
    pub deliveries: Duration,
    /// EndTxn: the broker writing the commit markers (KIP-98).
    pub end_txn: Duration,
}

/// Attempts of a retriable transaction call (send offsets, commit) before the instance
/// stops.
const TRANSACTION_CALL_ATTEMPTS_MAX: usize = 10;

/// First and largest pause between attempts of a retriable transaction call.
const TRANSACTION_RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const TRANSACTION_RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// How long the committing thread sleeps between two checks that every record of the
/// transaction has its delivery report ([`ExactlyOnceProducer::wait_for_deliveries`]).
const DELIVERY_CHECK_INTERVAL: Duration = Duration::from_millis(1);

/// The retry policy of transaction calls: exponential from 100 ms to 2 s, 10 attempts.
pub fn transaction_retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(TRANSACTION_RETRY_DELAY_MIN)
        .with_max_delay(TRANSACTION_RETRY_DELAY_MAX)
        .with_max_times(TRANSACTION_CALL_ATTEMPTS_MAX)
}

/// The transactional producer of one instance.
pub struct ExactlyOnceProducer {
    producer: FutureProducer,
    transactional_id: String,
    timeout: Duration,
    /// What [`Self::reset`] creates the next producer from.
    config: Config,
}

impl ExactlyOnceProducer {
    /// Creates the producer and initialises transactions, which fences any earlier
    /// incarnation with the same transactional id and aborts its open transaction.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the producer cannot be created or the broker does not answer
    /// within `kafka.request_timeout_ms`.
    pub fn new(config: &Config) -> Result<Self> {
        let transactional_id = format!("{}-{}", config.application_id, config.instance_id);
        Ok(ExactlyOnceProducer {
            producer: create(config, &transactional_id)?,
            transactional_id,
            timeout: Duration::from_millis(config.kafka.request_timeout_ms),
            config: config.clone(),
        })
    }

    /// Replaces the producer with a new one of the same transactional id, whose
    /// `init_transactions` aborts the open transaction (the old producer's records are
    /// never seen by `read_committed` readers) and fences the old one. No transaction is
    /// open afterwards. Blocks the calling thread.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn reset(&mut self) -> Result<()> {
        self.producer = create(&self.config, &self.transactional_id)?;
        Ok(())
    }

    /// True when `error` leaves the producer unusable: a fatal error (fenced, or
    /// `INVALID_TXN_STATE` after the coordinator aborted the transaction). [`Self::reset`]
    /// is the way on.
    pub fn is_fatal(error: &KafkaError) -> bool {
        match error {
            KafkaError::Transaction(rd) => rd.is_fatal(),
            other => matches!(
                other.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::Fatal
                        | RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidTransactionalState
                )
            ),
        }
    }

    /// The producer records are sent with (shared, cheap to clone).
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// The transactional id, `<application_id>-<instance_id>`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Begins a transaction.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the producer is not in a state to begin one.
    pub fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| Error::kafka("beginning a transaction", e))
    }

    /// Sends `offsets` with the consumer group's metadata and commits the open
    /// transaction once every record of it has its delivery report; returns how long
    /// each part took
    /// ([`Self::wait_for_deliveries`]). Retriable errors (a timeout) mean "call again" — the commit may
    /// already have gone through, so aborting would be wrong (librdkafka's contract) —
    /// and are retried with [`transaction_retry_policy`]. Blocks the calling thread.
    ///
    /// # Errors
    /// The last [`KafkaError`]: the caller decides between stopping (fatal: see
    /// [`Self::fatal`]) and aborting.
    pub fn commit(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> std::result::Result<CommitTimes, KafkaError> {
        let retriable =
            |e: &KafkaError| matches!(e, KafkaError::Transaction(rd) if rd.is_retriable());
        let mut times = CommitTimes::default();
        let started = Instant::now();
        // A transaction of a wall-clock punctuation alone consumed nothing: no offsets
        // to send.
        if offsets.count() > 0 {
            (|| {
                self.producer
                    .send_offsets_to_transaction(offsets, group, self.timeout)
            })
            .retry(transaction_retry_policy())
            .sleep(std::thread::sleep)
            .when(retriable)
            .notify(|e, _| warn!(error = %e, "sending offsets failed, retrying"))
            .call()?;
        }
        times.offsets = started.elapsed();
        let times = std::cell::Cell::new(times);
        (|| {
            let mut t = times.get();
            let started = Instant::now();
            self.wait_for_deliveries()?;
            let delivered = Instant::now();
            t.deliveries += delivered - started;
            let result = self.producer.commit_transaction(self.timeout);
            t.end_txn += delivered.elapsed();
            times.set(t);
            result
        })
        .retry(transaction_retry_policy())
        .sleep(std::thread::sleep)
        .when(retriable)
        .notify(|e, _| warn!(error = %e, "commit failed, retrying"))
        .call()?;
        Ok(times.get())
    }

    /// Waits until every record sent in the open transaction has its delivery report, or
    /// `kafka.request_timeout_ms` has passed (then the same error as a flush that timed
    /// out: the transaction is aborted). Blocks the calling thread.
    ///
    /// rust-rdkafka's `commit_transaction` flushes before calling librdkafka's, and that
    /// `flush` waits in `poll` slices of 100 ms which run to their end even once the
    /// reports are in (the [`FutureProducer`]'s own thread takes them): a commit with any
    /// record still in flight — nearly every commit — slept about 100 ms. Checking in
    /// [`DELIVERY_CHECK_INTERVAL`] steps first lets that flush find nothing outstanding and
    /// return at once. Nothing else changes: the reports are still taken by the
    /// producer's thread, which completes the record collector's delivery futures before
    /// the records stop counting as outstanding, and librdkafka's commit still flushes
    /// itself (docs/architecture.md, "Exactly once").
    fn wait_for_deliveries(&self) -> std::result::Result<(), KafkaError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            // With no time to wait, `flush` checks once (waking the broker threads to
            // send what lingers) and never polls.
            match self.producer.flush(Duration::ZERO) {
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(DELIVERY_CHECK_INTERVAL)
                }
                result => return result,
            }
        }
    }

    /// Aborts the open transaction: its records are never seen by `read_committed`
    /// readers. Blocks the calling thread.
    ///
    /// # Errors
    /// The [`KafkaError`] of the abort: when [`Self::is_fatal`], [`Self::reset`] aborts
    /// instead.
    pub fn abort(&self) -> std::result::Result<(), KafkaError> {
        self.producer.abort_transaction(self.timeout)
    }
}

/// A transactional producer as `transactional_id`, its transactions initialised (which
/// fences any earlier producer with that id and aborts its open transaction).
///
/// # Errors
/// [`Error::Kafka`] when the producer cannot be created or the broker does not answer
/// within `kafka.request_timeout_ms`.
fn create(config: &Config, transactional_id: &str) -> Result<FutureProducer> {
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let producer: FutureProducer = client_config(config)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set(
            "transaction.timeout.ms",
            config.processing.transaction_timeout_ms.to_string(),
        )
        .set(
            "message.timeout.ms",
            config.processing.transaction_timeout_ms.to_string(),
        )
        .set("partitioner", PARTITIONER)
        .set("linger.ms", "5")
        // A transaction's AddOffsetsToTxn sent while the coordinator still writes the
        // previous one's markers is refused with CONCURRENT_TRANSACTIONS and retried
        // after `retry.backoff.ms`: librdkafka's 100 ms default stalled every commit
        // that came soon after another (early commits at low load, docs/architecture.md
        // "Commits"). Retries back off exponentially from here to 1 s.
        .set("retry.backoff.ms", "10")
        // A dead letter carries its input record whole (e.g. a 1 MB key) plus headers.
        .set("message.max.bytes", PRODUCER_RECORD_BYTES_MAX)
        .create()
        .map_err(|e| Error::kafka("creating the transactional producer", e))?;
    tokio::task::block_in_place(|| producer.init_transactions(timeout)).map_err(|e| {
        Error::kafka(
            &format!("initialising transactions as {transactional_id}"),
            e,
        )
    })?;
    Ok(producer)
}
