//! Payment lookup latency, measured inside the failover phase (`failover.rs`): all
//! through the phase, `GET /payments/{id}` is asked of instance 0 (never killed) for
//! preloaded payments picked at random, [`LOOKUPS_PER_S`] a second, one at a time over a
//! kept-alive connection. Each answer is classed by who served it: instance 0's own active
//! task (`owner`), another instance's, forwarded (`forwarded`), or a standby because the
//! task's instance was down (`standby`); anything else is counted by its status
//! (`status 404`, `status 503`, …; `no answer`). Latency is the client's: request sent →
//! whole answer read, in microseconds. The figures are given for the 5 s before the
//! traffic starts (`no traffic`), for the steady half window before the first event and
//! for the whole phase.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::latency::quantile;

/// Lookups asked per second.
pub const LOOKUPS_PER_S: u64 = 100;

/// One class of answers.
#[derive(Debug, Clone, Serialize)]
pub struct LookupFigures {
    /// `no traffic` (before it starts), `steady` (the half window before the first
    /// event) or `whole phase`.
    pub during: &'static str,
    /// `owner`, `forwarded`, `standby`, `status <code>` or `no answer`.
    pub served: String,
    pub lookups: usize,
    pub p50_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
}

/// One lookup: when it was asked, how it was served and how long it took.
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    at_ms: i64,
    served: String,
    latency_us: i64,
}

/// Asks `base_url` (`http://host:port`) for payments `<key_prefix><n>` (n below `keys`,
/// as `fill_changelog` names them) until `stop` turns true.
pub async fn probe(
    base_url: String,
    key_prefix: String,
    keys: u64,
    asked_instance: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Sample>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut samples = Vec::new();
    let interval = Duration::from_micros(1_000_000 / LOOKUPS_PER_S);
    let mut next = Instant::now();
    while !*stop.borrow() {
        next += interval;
        let key = format!("{key_prefix}{:012}", rng.random_range(0..keys.max(1)));
        let at_ms = crate::now_ms();
        let started = Instant::now();
        let served = match client
            .get(format!("{base_url}/payments/{key}"))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value =
                    serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                        .unwrap_or_default();
                let by = &body["served_by"];
                match (by["role"].as_str(), by["instance_id"].as_str()) {
                    (Some("standby"), _) => "standby",
                    (Some("active"), Some(id)) if id == asked_instance => "owner",
                    (Some("active"), Some(_)) => "forwarded",
                    _ => "unexpected body",
                }
                .to_string()
            }
            Ok(response) => format!("status {}", response.status().as_u16()),
            Err(_) => "no answer".to_string(),
        };
        samples.push(Sample {
            at_ms,
            served,
            latency_us: started.elapsed().as_micros() as i64,
        });
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(samples)
}

/// The figures of the `samples` asked within `during_ms` (milliseconds since the Unix
/// epoch), by how they were served, named `during`.
pub fn figures(
    samples: &[Sample],
    during: &'static str,
    during_ms: std::ops::Range<i64>,
) -> Vec<LookupFigures> {
    let mut classes: Vec<&str> = samples.iter().map(|s| s.served.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    classes
        .into_iter()
        .map(|served| {
            let mut latencies: Vec<i64> = samples
                .iter()
                .filter(|s| s.served == served && during_ms.contains(&s.at_ms))
                .map(|s| s.latency_us)
                .collect();
            latencies.sort_unstable();
            LookupFigures {
                during,
                served: served.to_string(),
                lookups: latencies.len(),
                p50_us: quantile(&latencies, 0.50),
                p99_us: quantile(&latencies, 0.99),
                max_us: latencies.last().copied().unwrap_or(0),
            }
        })
        .filter(|f| f.lookups > 0)
        .collect()
}
