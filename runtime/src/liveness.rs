//! Liveness between instances: a dead instance's partitions move in about
//! `processing.peer_timeout_ms`, not the group's session timeout (docs/architecture.md,
//! "Instances, rebalances and zombies").
//!
//! A static member that dies (SIGKILL, a lost machine) sends no LeaveGroup, so the group
//! coordinator keeps its partitions assigned until its session times out (6 s at least
//! on a broker with default settings). Here every instance sends a heartbeat to the
//! one-partition topic `<application_id>-liveness` every sixth of
//! `processing.peer_timeout_ms` (key = its instance id) and reads everyone's. When a
//! peer has sent nothing for `peer_timeout_ms`, the live instance with the lowest
//! instance id takes it over: it fences the peer's transactional id (its open
//! transaction is aborted) and removes it from the group
//! ([`crate::fencing::remove_from_group`]); the coordinator then moves its partitions.
//! A peer that stops on purpose sends a last heartbeat saying so, and is left alone.
//!
//! A heartbeat also says where the instance serves HTTP and which tasks it runs: the
//! directory the interactive queries forward a lookup by (`interactive_queries.rs`).
//!
//! Silence is judged by when heartbeats arrive here, not by the clock of the sender.
//! A peer that was only paused (or cut off from the brokers) for longer than the timeout
//! finds itself fenced: its producer is replaced and its consumer, no longer a member,
//! stops the instance with an error so that it starts again and rejoins (exactly-once
//! holds either way: its transactions can no longer commit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::background::BackgroundThread;
use crate::config::Config;
use crate::interactive_queries::InteractiveQueries;
use crate::kafka::{client_config, read_committed_consumer_config};
use crate::metrics::Metrics;
use crate::topics::TopicNames;
use crate::{Error, Result};

/// Longest the last heartbeat of a stopping instance waits to be sent.
const LAST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// One heartbeat: the record value on the liveness topic (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Heartbeat {
    instance_id: String,
    /// Milliseconds since the Unix epoch, on the sender's clock (for people reading the
    /// topic; silence is judged by arrival).
    sent_at_ms: i64,
    /// `running`, or `stopped` when the instance stops on purpose.
    state: String,
    /// `host:port` of its HTTP endpoints, when the others can reach them.
    #[serde(default)]
    http_address: Option<String>,
    /// The tasks it runs (`<sub_topology>_<partition>`).
    #[serde(default)]
    active_tasks: Vec<String>,
}

/// What this instance knows of another.
struct Peer {
    last_heard: Instant,
    stopped: bool,
    /// Taken over since its last heartbeat: not again until it sends one.
    taken_over: bool,
}

/// The running heartbeat sender and watcher; dropping it sends a last `stopped`
/// heartbeat and stops the thread.
pub type LivenessMonitor = BackgroundThread;

/// Starts sending this instance's heartbeats and watching the others', when
/// `processing.peer_timeout_ms` is not 0; what the heartbeats say of the tasks goes to
/// `queries`.
///
/// # Errors
/// [`Error::Kafka`] when the producer or the consumer cannot be created or assigned.
pub fn spawn(
    config: &Config,
    metrics: &Metrics,
    subscription: Vec<String>,
    queries: Arc<InteractiveQueries>,
) -> Result<Option<LivenessMonitor>> {
    let timeout_ms = config.processing.peer_timeout_ms;
    if timeout_ms == 0 {
        return Ok(None);
    }
    let topic = TopicNames::new(config).liveness;
    let producer: BaseProducer = client_config(config)
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout_ms.max(1_000).to_string())
        .create()
        .map_err(|e| Error::kafka("creating the heartbeat producer", e))?;
    let consumer: BaseConsumer =
        read_committed_consumer_config(config, &format!("{}-liveness", config.application_id))
            .create()
            .map_err(|e| Error::kafka("creating the heartbeat consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::End)
        .map_err(|e| Error::kafka("building the heartbeat assignment", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka("assigning the heartbeat consumer", e))?;
    let watcher = Watcher {
        config: config.clone(),
        topic,
        timeout: Duration::from_millis(timeout_ms),
        interval: Duration::from_millis((timeout_ms / 6).max(50)),
        peers: BTreeMap::new(),
        metrics: metrics.clone(),
        subscription,
        queries,
    };
    BackgroundThread::spawn("liveness", "the liveness thread", move |stopping| {
        watcher.run(&producer, &consumer, stopping)
    })
    .map(Some)
}

struct Watcher {
    config: Config,
    topic: String,
    timeout: Duration,
    interval: Duration,
    peers: BTreeMap<String, Peer>,
    metrics: Metrics,
    /// The pipeline's input topics: the takeover joins the group subscribed to them.
    subscription: Vec<String>,
    /// The tasks this instance runs (sent) and the others' (heard).
    queries: Arc<InteractiveQueries>,
}

impl Watcher {
    fn run(mut self, producer: &BaseProducer, consumer: &BaseConsumer, stop: &AtomicBool) {
        let mut next_heartbeat = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_heartbeat {
                self.send(producer, "running");
                next_heartbeat = Instant::now() + self.interval;
            }
            producer.poll(Duration::ZERO);
            if let Some(Ok(message)) = consumer.poll(self.interval / 4) {
                self.heard(message.payload());
            }
            self.check();
        }
        self.send(producer, "stopped");
        let _ = producer.flush(LAST_HEARTBEAT_TIMEOUT);
    }

    fn send(&self, producer: &BaseProducer, state: &str) {
        let heartbeat = Heartbeat {
            instance_id: self.config.instance_id.clone(),
            sent_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            state: state.to_string(),
            http_address: self.queries.http_address(),
            active_tasks: self
                .queries
                .active_tasks()
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        let Ok(value) = serde_json::to_vec(&heartbeat) else {
            return;
        };
        let record = BaseRecord::to(&self.topic)
            .key(self.config.instance_id.as_bytes())
            .payload(&value);
        if let Err((e, _)) = producer.send(record) {
            warn!(error = %e, "sending a heartbeat failed");
        }
    }

    fn heard(&mut self, payload: Option<&[u8]>) {
        let Some(heartbeat) = payload.and_then(|p| serde_json::from_slice::<Heartbeat>(p).ok())
        else {
            return;
        };
        if heartbeat.instance_id == self.config.instance_id {
            return;
        }
        let stopped = heartbeat.state == "stopped";
        self.queries.heard(
            &heartbeat.instance_id,
            heartbeat.http_address.clone(),
            &heartbeat.active_tasks,
            stopped,
        );
        match self.peers.get_mut(&heartbeat.instance_id) {
            Some(peer) => {
                peer.last_heard = Instant::now();
                peer.stopped = stopped;
                peer.taken_over = false;
            }
            None => {
                info!(instance_id = %heartbeat.instance_id, "heard a new instance");
                self.peers.insert(
                    heartbeat.instance_id,
                    Peer {
                        last_heard: Instant::now(),
                        stopped,
                        taken_over: false,
                    },
                );
            }
        }
    }

    /// Takes over the peers silent for the timeout, when this instance is the live one
    /// with the lowest instance id.
    fn check(&mut self) {
        // Silent for a whole session, a peer has left the group in any case: forget it
        // (a live instance with a higher id would otherwise take it over again once the
        // one that did is gone).
        let session = Duration::from_millis(self.config.processing.session_timeout_ms);
        self.peers
            .retain(|_, peer| peer.last_heard.elapsed() <= session);
        let timeout = self.timeout;
        let alive = |peer: &Peer| !peer.stopped && peer.last_heard.elapsed() <= timeout;
        self.metrics
            .peers_alive
            .set(self.peers.values().filter(|p| alive(p)).count() as i64);
        let silent: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.stopped && !p.taken_over && !alive(p))
            .map(|(id, _)| id.clone())
            .collect();
        if silent.is_empty() {
            return;
        }
        let own = &self.config.instance_id;
        let acts = self
            .peers
            .iter()
            .filter(|(_, p)| alive(p))
            .all(|(id, _)| own < id);
        for instance_id in silent {
            let Some(peer) = self.peers.get_mut(&instance_id) else {
                continue;
            };
            if !acts {
                continue;
            }
            peer.taken_over = true;
            let silent_ms = peer.last_heard.elapsed().as_millis() as u64;
            // On a thread of its own: the takeover waits for the group (seconds during a
            // rebalance), and meanwhile this thread must go on sending this instance's
            // heartbeats and reading the others' — blocked here, it made the others take
            // this instance over, and judged them by heartbeats it had not read.
            let config = self.config.clone();
            let subscription = self.subscription.clone();
            let metrics = self.metrics.clone();
            let started = std::thread::Builder::new()
                .name("takeover".into())
                .spawn(move || {
                    take_over(&config, &instance_id, silent_ms, &subscription, &metrics)
                });
            if let Err(e) = started {
                warn!(error = %e, "starting a takeover thread failed");
            }
        }
    }
}

/// Fences silent instance `instance_id` (on a thread of its own) and removes it from the
/// group meanwhile. The fence's first InitProducerId makes the coordinator abort the
/// silent instance's transaction at once; librdkafka then asks again every 500 ms until
/// the abort is complete (CONCURRENT_TRANSACTIONS), and a takeover that waited for that
/// before it removed the instance took 0.5–1.5 s longer (docs/benchmarks.md, "Failover").
/// The partitions' next owner needs only the abort, which is done by the time the
/// group has moved them.
fn take_over(
    config: &Config,
    instance_id: &str,
    silent_ms: u64,
    subscription: &[String],
    metrics: &Metrics,
) {
    crate::fencing::fence_in_background(config, instance_id.to_string());
    match crate::fencing::remove_from_group(config, instance_id, subscription) {
        Ok(took) => {
            metrics.peer_takeovers.inc();
            warn!(
                instance_id,
                silent_ms,
                took_ms = took.as_millis() as u64,
                "took over a silent instance: fenced it and removed it from the group, so \
                 its partitions move now"
            );
        }
        Err(e) => warn!(
            instance_id,
            error = %e,
            "removing a silent instance from the group failed; its partitions move at its \
             session timeout"
        ),
    }
}
