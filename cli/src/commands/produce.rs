//! `paystream produce`: the ingress simulator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use paystream_common::kafka::{PARTITIONER, client_config};
use paystream_runtime::Config;
use paystream_testkit::traffic::{PlannedRecord, TrafficOptions, default_start_ms, plan};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::codec;

/// Options of `paystream produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Input records to generate (whole payments are generated, so the exact number may
    /// be a few more; it is printed).
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Records per second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seed of the generator: the same seed (and --start-ms) sends the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time of the first payment, milliseconds since the Unix epoch (default: so
    /// that all events, settlements a day after their payment, lie in the recent past).
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// Chance that a record is sent twice (a retried publish), 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_rate: f64,
    /// Chance that a payment is declined, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    pub decline_rate: f64,
    /// Chance that an authorized payment is settled, 0 to 1.
    #[arg(long, default_value_t = 0.8)]
    pub settlement_rate: f64,
    /// Chance that a payment's auth arrives before the payment, 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    pub out_of_order_rate: f64,
    /// Chance that an idempotency key is reused for a different request, 0 to 1.
    #[arg(long, default_value_t = 0.005)]
    pub conflict_rate: f64,
    /// Chance per payment of one malformed record, 0 to 1.
    #[arg(long, default_value_t = 0.002)]
    pub malformed_rate: f64,
    /// Chance that a settlement disagrees with its authorization in amount or currency
    /// (a reconciliation exception), 0 to 1.
    #[arg(long, default_value_t = 0.002)]
    pub mismatch_rate: f64,
    /// Chance that an authorized payment is under manual capture (its captures, or a
    /// void, follow), 0 to 1.
    #[arg(long, default_value_t = 0.2)]
    pub manual_capture_rate: f64,
    /// Chance that a manual-capture authorization is voided instead of captured, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    pub void_rate: f64,
    /// Chance that a captured payment is refunded (in part or in full), 0 to 1.
    #[arg(long, default_value_t = 0.08)]
    pub refund_rate: f64,
    /// Chance that a captured, unrefunded payment gets a chargeback (won, lost, won then
    /// lost, or left open), 0 to 1.
    #[arg(long, default_value_t = 0.01)]
    pub chargeback_rate: f64,
    /// Chance per payment of a movement it does not allow (dead-lettered with an
    /// exception), 0 to 1.
    #[arg(long, default_value_t = 0.002)]
    pub illegal_movement_rate: f64,
    /// Today's mix before captures, voids, refunds and chargebacks: sets the five rates
    /// above to 0 (for comparisons with earlier releases).
    #[arg(long)]
    pub classic_mix: bool,
    /// Auth and settlement events for payments never initiated (orphans), dated at the
    /// start of the traffic.
    #[arg(long, default_value_t = 0)]
    pub orphan_events: u64,
    /// Write what a correct pipeline must make of this traffic (JSON) to this file.
    #[arg(long)]
    pub expect_out: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl ProduceArgs {
    fn options(&self) -> anyhow::Result<TrafficOptions> {
        for (name, rate) in [
            ("--duplicate-rate", self.duplicate_rate),
            ("--decline-rate", self.decline_rate),
            ("--settlement-rate", self.settlement_rate),
            ("--out-of-order-rate", self.out_of_order_rate),
            ("--conflict-rate", self.conflict_rate),
            ("--malformed-rate", self.malformed_rate),
            ("--mismatch-rate", self.mismatch_rate),
            ("--manual-capture-rate", self.manual_capture_rate),
            ("--void-rate", self.void_rate),
            ("--refund-rate", self.refund_rate),
            ("--chargeback-rate", self.chargeback_rate),
            ("--illegal-movement-rate", self.illegal_movement_rate),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&rate),
                "{name} {rate} is not a probability; use a value from 0 to 1"
            );
        }
        anyhow::ensure!(self.count > 0, "--count must be at least 1");
        let lifecycle_rate = |rate: f64| if self.classic_mix { 0.0 } else { rate };
        Ok(TrafficOptions {
            count: self.count,
            seed: self.seed,
            start_ms: self
                .start_ms
                .unwrap_or_else(|| default_start_ms(self.count)),
            duplicate_rate: self.duplicate_rate,
            decline_rate: self.decline_rate,
            settlement_rate: self.settlement_rate,
            out_of_order_rate: self.out_of_order_rate,
            conflict_rate: self.conflict_rate,
            malformed_rate: self.malformed_rate,
            mismatch_rate: self.mismatch_rate,
            manual_capture_rate: lifecycle_rate(self.manual_capture_rate),
            void_rate: lifecycle_rate(self.void_rate),
            refund_rate: lifecycle_rate(self.refund_rate),
            chargeback_rate: lifecycle_rate(self.chargeback_rate),
            illegal_movement_rate: lifecycle_rate(self.illegal_movement_rate),
            orphan_events: self.orphan_events,
        })
    }
}

/// Deliveries awaited together; bounds the futures held in memory.
const IN_FLIGHT_MAX: usize = 10_000;

/// Generates the plan, sends it, and prints what was sent.
pub async fn produce(config: Config, args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let plan = plan(&options);
    let codec = codec(&config)?;
    let producer: FutureProducer = client_config(&config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", PARTITIONER)
        .set("linger.ms", "10")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .context("creating the producer")?;
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(plan.records.len() as u64)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} producing [{bar:40}] {pos}/{len} records {per_sec} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut in_flight = Vec::with_capacity(IN_FLIGHT_MAX);
    let mut failed = 0u64;
    for (index, record) in plan.records.iter().enumerate() {
        let topic = format!("{}{}", config.topics.prefix, record.topic().base_name());
        let (key, value, timestamp_ms) = match record {
            PlannedRecord::Event { key, event, .. } => {
                let value = paystream_schemas::encode_input_event(&codec, &topic, event).await?;
                (key.clone(), value, event.event_time_ms())
            }
            PlannedRecord::Malformed {
                key,
                value,
                timestamp_ms,
                ..
            } => (key.clone(), value.clone(), *timestamp_ms),
        };
        let mut pending = FutureRecord::to(&topic)
            .key(&key)
            .payload(&value)
            .timestamp(timestamp_ms);
        let delivery = loop {
            match producer.send_result(pending) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    pending = record;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
            }
        };
        in_flight.push(delivery);
        if in_flight.len() >= IN_FLIGHT_MAX {
            failed += count_failures(join_all(in_flight.drain(..)).await);
        }
        progress.inc(1);
        if args.rate > 0 && index % 100 == 99 {
            let due = Duration::from_secs_f64((index + 1) as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    failed += count_failures(join_all(in_flight.drain(..)).await);
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    anyhow::ensure!(failed == 0, "{failed} records could not be delivered");

    let e = &plan.expected;
    println!(
        "produced {} records in {:.1} s ({:.0} records/s), seed {}",
        e.records,
        elapsed.as_secs_f64(),
        e.records as f64 / elapsed.as_secs_f64().max(0.001),
        e.seed
    );
    for (topic, n) in &e.records_by_topic {
        println!("  {}{topic:30} {n}", config.topics.prefix);
    }
    println!("  payments                       {}", e.payments);
    println!("  duplicate retries              {}", e.duplicates);
    println!("  out-of-order payments          {}", e.out_of_order);
    for (reason, n) in &e.dead_letters {
        println!("  expected dead letters {reason:24} {n}");
    }
    for (status, n) in &e.payments_by_status {
        println!("  expected {status:21} {n}");
    }
    println!("  expected journal entries       {}", e.journal_entries);
    if let Some(path) = &args.expect_out {
        std::fs::write(path, serde_json::to_vec_pretty(e)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("expected outcome written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What awaiting one `DeliveryFuture` gives.
type DeliveryOutcome<T, E> =
    Result<Result<T, (E, rdkafka::message::OwnedMessage)>, futures::channel::oneshot::Canceled>;

fn count_failures<T, E: std::fmt::Display>(results: Vec<DeliveryOutcome<T, E>>) -> u64 {
    let mut failed = 0;
    for result in results {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                tracing::error!(error = %e, "delivery failed");
                failed += 1;
            }
            Err(_) => failed += 1,
        }
    }
    failed
}
