//! Failover under steady traffic: `instances` `paystream run` processes of one
//! application (pipeline and ledger sink in each, their own instance ids, state
//! directories and HTTP ports) share 6 partitions while traffic arrives at `rate`
//! events/s, each record stamped with its send time. Every `window` seconds one thing
//! happens to them, in this order:
//!
//! 1. `kill`: instance 1 is killed with SIGKILL (a crash);
//! 2. `return`: instance 1 starts again with the same instance id (static membership);
//! 3. `rolling restart`: instance 2 is stopped with SIGTERM and started again (a deploy);
//! 4. `scale out`: a new instance joins.
//!
//! Before the traffic, `state_payments` payments are written to the `payments`
//! changelog, so each task has state to restore when it starts, or to bring up when it
//! moves (from a standby replica, `state.standby_replicas = "all"`, or a full restore).
//!
//! For each, the latency of authorizations — sent → their journal entry committed in
//! PostgreSQL (`pg_xact_commit_timestamp`) — over those sent in the half window before
//! it and in the window after it (p50, p99, max), and the longest stop: the largest
//! latency among those sent after it. An auth sent while its partition has no running
//! task waits for the partition to run again, so a stop shows as that auth's latency.
//! At the end every expected journal entry must be in PostgreSQL, once (the ids are
//! unique there): the counts are printed with the figures, and so is any instance that
//! exited on its own.
//!
//! All through the phase, the preloaded payments are looked up on instance 0
//! (`lookup.rs`): the payment lookup's latency on the owner, forwarded, and from a
//! standby while the owner is down.

use std::path::Path;
use std::time::{Duration, Instant};

use paystream_common::topics::TopicNames;
use paystream_integration::{Running, TestEnv, fill_changelog, payment_value};
use paystream_processors::stores;
use paystream_schemas::InputEvent;
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};

use crate::latency::{encode, quantile, send_at_rate, spawn_run, wait_ready};
use crate::{ledger, now_ms};

/// Partitions of every topic in this phase.
const PARTITIONS: &str = "6";

/// Payment ids of the preloaded payments: this, then a 12-digit number.
const PRELOADED_KEY_PREFIX: &str = "preloaded-payment-";

/// Bytes per preloaded payment value (a payment state is about 300).
const STATE_VALUE_BYTES: usize = 300;

/// What the phase runs.
pub struct Options {
    /// Instances (at least 3).
    pub instances: u32,
    /// Offered rate, events/s.
    pub rate: u64,
    /// Seconds between the phase's events.
    pub window_s: u64,
    /// Payments written to the `payments` changelog before the instances start.
    pub state_payments: u64,
    /// `state.standby_replicas` of the instances.
    pub standby_replicas: String,
    /// Seed of the traffic.
    pub seed: u64,
}

/// How long the payment lookups run before the traffic starts.
const QUIET_LOOKUPS: Duration = Duration::from_secs(5);

/// Longest to wait for the last entries after the traffic ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Latency of the auths around one event of the phase, milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    /// What happened: `kill`, `return`, `rolling restart`, `scale out`.
    pub event: &'static str,
    /// Milliseconds from the start of traffic to the event.
    pub at_ms: i64,
    /// Auths sent in the half window before the event.
    pub before_auths: usize,
    pub before_p50_ms: i64,
    pub before_p99_ms: i64,
    pub before_max_ms: i64,
    /// Auths sent in the window after the event.
    pub after_auths: usize,
    pub after_p50_ms: i64,
    pub after_p99_ms: i64,
    /// The longest stop: the largest latency of an auth sent after the event.
    pub after_max_ms: i64,
    /// Milliseconds the action itself took (a SIGTERM stop waits for the instance's
    /// last commit).
    pub action_ms: i64,
}

/// The failover phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failover {
    pub instances: u32,
    /// Payments in the state before the traffic.
    pub state_payments: u64,
    /// `state.standby_replicas` of the instances.
    pub standby_replicas: String,
    pub offered_events_per_s: u64,
    pub sent_events_per_s: f64,
    pub window_s: u64,
    pub windows: Vec<Window>,
    /// Journal entries the traffic must make, and those in PostgreSQL at the end.
    pub journal_entries_expected: u64,
    pub journal_entries_written: u64,
    /// Instances that exited on their own (not killed or stopped by the phase), with
    /// their exit status, or that did not stop within 60 s of SIGTERM: each is a failure
    /// of the failover, see its log.
    pub unexpected_exits: Vec<String>,
    /// Payment lookups asked of instance 0 through the phase, by who served them.
    pub lookups: Vec<crate::lookup::LookupFigures>,
}

/// One `paystream run` of the phase.
struct Instance {
    id: u32,
    running: Running,
    ready_url: String,
}

/// Adds to `exits` each instance of `running` that has exited (none should have but those
/// the phase killed or stopped, which it replaces or leaves out).
fn note_exits(running: &mut [Instance], skip: Option<u32>, exits: &mut Vec<String>) {
    for instance in running.iter_mut() {
        if Some(instance.id) == skip {
            continue;
        }
        if let Ok(Some(status)) = instance.running.child().try_wait() {
            let exit = format!("instance {} exited on its own, {status}", instance.id);
            if !exits.contains(&exit) {
                eprintln!("bench: failover: {exit}");
                exits.push(exit);
            }
        }
    }
}

fn start(
    env: &TestEnv,
    options: &Options,
    id: u32,
    logs: &Path,
    generation: u32,
) -> anyhow::Result<Instance> {
    let mut command = env.command(&["run"]);
    command
        .env("PAYSTREAM_INSTANCE_ID", id.to_string())
        .env(
            "PAYSTREAM_STATE__STANDBY_REPLICAS",
            &options.standby_replicas,
        )
        .env("PAYSTREAM_TOPICS__PARTITIONS", PARTITIONS)
        .env(
            "PAYSTREAM_STATE__DIR",
            env.state_dir.path().join(format!("instance-{id}")),
        );
    let (running, ready_url) = spawn_run(
        command,
        &logs.join(format!("failover-instance-{id}-{generation}.log")),
    )?;
    Ok(Instance {
        id,
        running,
        ready_url,
    })
}

/// Runs the phase: `instances` (at least 3) under `rate` events/s, one event every
/// `window_s` seconds.
///
/// # Errors
/// When the stack is missing, an instance does not start or become ready, or the
/// traffic cannot be sent.
pub async fn measure(options: &Options, logs: &Path) -> anyhow::Result<Failover> {
    let Options {
        instances,
        rate,
        window_s,
        seed,
        ..
    } = *options;
    anyhow::ensure!(
        instances >= 3,
        "the failover phase needs at least 3 instances"
    );
    let env = TestEnv::new("bench_failover");
    let partitions = [("PAYSTREAM_TOPICS__PARTITIONS", PARTITIONS)];
    env.paystream_with_env(&["topics", "create"], &partitions)?;
    env.paystream(&["schemas", "register"])?;
    env.paystream(&["ledger", "init"])?;
    if options.state_payments > 0 {
        let changelog = TopicNames::new(&env.config()).changelog(stores::PAYMENTS);
        let fill_s = fill_changelog(
            &changelog,
            None,
            options.state_payments,
            &payment_value(STATE_VALUE_BYTES),
            PRELOADED_KEY_PREFIX,
        )
        .await?;
        eprintln!(
            "bench: failover: {} payments written to {changelog} in {fill_s:.1} s",
            options.state_payments
        );
    }

    let events = ["kill", "return", "rolling restart", "scale out"];
    let window = Duration::from_secs(window_s);
    let count = rate * window_s * (events.len() as u64 + 1);
    let plan = plan(&TrafficOptions {
        count,
        seed,
        start_ms: default_start_ms(count),
        ..TrafficOptions::default()
    });
    let records = encode(&env, &plan.records, |event| {
        matches!(event, InputEvent::AuthSucceeded(_))
    })
    .await?;

    let mut running = Vec::new();
    for id in 0..instances {
        running.push(start(&env, options, id, logs, 0)?);
    }
    for instance in &mut running {
        wait_ready(&instance.ready_url, &mut instance.running).await?;
    }
    eprintln!(
        "bench: failover: {instances} instances ready; {rate} events/s for {} s",
        window_s * (events.len() as u64 + 1)
    );

    let (stop_lookups, lookups_stopped) = tokio::sync::watch::channel(false);
    let lookups = (options.state_payments > 0).then(|| {
        tokio::spawn(crate::lookup::probe(
            running[0].ready_url.trim_end_matches("/readyz").to_string(),
            PRELOADED_KEY_PREFIX.to_string(),
            options.state_payments,
            "0".to_string(),
            lookups_stopped,
        ))
    });
    let probe_started_ms = now_ms();
    if lookups.is_some() {
        // Lookups on instances with no traffic first: what a lookup costs by itself.
        tokio::time::sleep(QUIET_LOOKUPS).await;
    }
    let traffic_started_ms = now_ms();
    let sender = tokio::task::spawn_blocking(move || send_at_rate(&records, rate));
    let mut at_ms = Vec::new();
    let mut action_ms = Vec::new();
    let mut unexpected_exits = Vec::new();
    // Instance 1 is dead between the kill and its return.
    let mut killed = None;
    let started = Instant::now();
    for (n, event) in events.iter().enumerate() {
        tokio::time::sleep_until((started + window * (n as u32 + 1)).into()).await;
        note_exits(&mut running, killed, &mut unexpected_exits);
        let event_ms = now_ms() - traffic_started_ms;
        let action = Instant::now();
        match *event {
            "kill" => {
                let child = running[1].running.child();
                child.kill()?;
                child.wait()?;
                killed = Some(1);
            }
            "return" => {
                running[1] = start(&env, options, 1, logs, 1)?;
                killed = None;
            }
            "rolling restart" => {
                if let Err(e) = running[2].running.stop() {
                    unexpected_exits.push(format!("instance 2: {e}"));
                }
                running[2] = start(&env, options, 2, logs, 1)?;
            }
            _ => running.push(start(&env, options, instances, logs, 0)?),
        }
        action_ms.push(action.elapsed().as_millis() as i64);
        at_ms.push(event_ms);
        eprintln!(
            "bench: failover: {event} at {:.1} s",
            event_ms as f64 / 1000.0
        );
    }
    let (sent_ms, sent_per_s) = sender.await??;
    note_exits(&mut running, killed, &mut unexpected_exits);
    let _ = stop_lookups.send(true);
    let lookups = match lookups {
        Some(probe) => {
            let samples = probe.await??;
            let first_event_ms = traffic_started_ms + at_ms.first().copied().unwrap_or(0);
            let half_window_ms = window.as_millis() as i64 / 2;
            let mut figures = crate::lookup::figures(
                &samples,
                "no traffic",
                probe_started_ms..traffic_started_ms,
            );
            figures.extend(crate::lookup::figures(
                &samples,
                "steady",
                first_event_ms - half_window_ms..first_event_ms,
            ));
            figures.extend(crate::lookup::figures(
                &samples,
                "whole phase",
                i64::MIN..i64::MAX,
            ));
            figures
        }
        None => Vec::new(),
    };

    let pool = ledger::connect(&env.database_url).await?;
    let expected = plan.expected.journal_entries;
    let written = ledger::wait_for_entries(&pool, expected, DRAIN_TIMEOUT).await?;
    // (sent, latency), sent in milliseconds from the start of traffic.
    let auths: Vec<(i64, i64)> = ledger::latencies(&pool, &sent_ms)
        .await?
        .into_iter()
        .map(|(sent, latency)| (sent - traffic_started_ms, latency))
        .collect();
    pool.close().await;
    for instance in &mut running {
        if let Ok(None) = instance.running.child().try_wait()
            && let Err(e) = instance.running.stop()
        {
            unexpected_exits.push(format!("instance {}: {e}", instance.id));
        }
    }
    let window_ms = window.as_millis() as i64;
    let latencies = |from_ms: i64, to_ms: i64| {
        let mut l: Vec<i64> = auths
            .iter()
            .filter(|(sent, _)| (from_ms..to_ms).contains(sent))
            .map(|(_, latency)| *latency)
            .collect();
        l.sort_unstable();
        l
    };
    let windows = events
        .iter()
        .zip(at_ms.iter().zip(&action_ms))
        .map(|(event, (at, action))| {
            let before = latencies(at - window_ms / 2, *at);
            let after = latencies(*at, at + window_ms);
            Window {
                event,
                at_ms: *at,
                before_auths: before.len(),
                before_p50_ms: quantile(&before, 0.50),
                before_p99_ms: quantile(&before, 0.99),
                before_max_ms: before.last().copied().unwrap_or(0),
                after_auths: after.len(),
                after_p50_ms: quantile(&after, 0.50),
                after_p99_ms: quantile(&after, 0.99),
                after_max_ms: after.last().copied().unwrap_or(0),
                action_ms: *action,
            }
        })
        .collect();
    Ok(Failover {
        instances,
        state_payments: options.state_payments,
        standby_replicas: options.standby_replicas.clone(),
        offered_events_per_s: rate,
        sent_events_per_s: sent_per_s,
        window_s,
        windows,
        journal_entries_expected: expected,
        journal_entries_written: written,
        unexpected_exits,
        lookups,
    })
}
