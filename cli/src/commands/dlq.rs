//! `paystream dlq inspect`: what sits in the dead-letter queues, and why.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use paystream_runtime::Config;
use paystream_runtime::dead_letter::headers;
use paystream_runtime::kafka::read_committed_to_end;
use paystream_runtime::topics::TopicNames;
use paystream_schemas::{AuthFailed, AuthSucceeded, Codec, PaymentInitiated, SettlementReported};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde::Serialize;

use super::codec;

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Options of `paystream dlq inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dead-letter queue to read, by its input topic's base name (`settlement`) or full
    /// topic name; repeatable. Default: all four.
    #[arg(long)]
    pub topic: Vec<String>,
    /// Only records with this reason (e.g. `invalid_value`, `idempotency_key_reused`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only records dead-lettered at or after this time: RFC 3339
    /// (`2026-11-22T10:00:00Z`) or milliseconds since the Unix epoch.
    #[arg(long)]
    pub since: Option<String>,
    /// Output: a table, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Most records printed (counts cover all that match).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// One dead letter as printed.
#[derive(Debug, Serialize)]
struct Entry {
    dead_lettered_at: String,
    dlq_topic: String,
    source_topic: String,
    source_partition: String,
    source_offset: String,
    reason: String,
    error: String,
    key: Option<String>,
    /// What the value decodes to, where it does (`event_id`, `payment_id`), else why not.
    decoded: String,
}

fn header(message: &OwnedMessage, name: &str) -> String {
    message
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_default()
}

async fn decode(codec: &Codec, names: &TopicNames, source: &str, value: Option<&[u8]>) -> String {
    let summary = if source == names.payment_initiated {
        codec.decode::<PaymentInitiated>(value).await.map(|e| {
            format!(
                "PaymentInitiated event {} payment {}",
                e.event_id, e.payment_id
            )
        })
    } else if source == names.auth_success {
        codec.decode::<AuthSucceeded>(value).await.map(|e| {
            format!(
                "AuthSucceeded event {} payment {}",
                e.event_id, e.payment_id
            )
        })
    } else if source == names.auth_failure {
        codec
            .decode::<AuthFailed>(value)
            .await
            .map(|e| format!("AuthFailed event {} payment {}", e.event_id, e.payment_id))
    } else {
        codec.decode::<SettlementReported>(value).await.map(|e| {
            format!(
                "SettlementReported event {} payment {}",
                e.event_id, e.payment_id
            )
        })
    };
    summary.unwrap_or_else(|e| format!("not decodable: {}", e.message))
}

/// Prints the matching dead letters and a count per reason.
pub async fn inspect(config: Config, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let names = TopicNames::new(&config);
    let codec = codec(&config)?;
    let since_ms = args
        .since
        .as_deref()
        .map(|since| super::parse_time_ms("--since", since))
        .transpose()?;
    let topics: Vec<String> = if args.topic.is_empty() {
        names
            .inputs()
            .iter()
            .map(|t| TopicNames::dead_letter(t))
            .collect()
    } else {
        args.topic
            .iter()
            .map(|t| {
                let full = if names
                    .inputs()
                    .contains(&format!("{}{t}", config.topics.prefix).as_str())
                {
                    format!("{}{t}", config.topics.prefix)
                } else {
                    t.trim_end_matches(".dlq").to_string()
                };
                TopicNames::dead_letter(&full)
            })
            .collect()
    };
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut printed = 0;
    if matches!(args.format, Format::Table) {
        println!(
            "{:24} {:45} {:24} {:40} error",
            "dead-lettered at", "source", "reason", "decoded"
        );
    }
    for topic in &topics {
        let messages = tokio::task::block_in_place(|| {
            read_committed_to_end(&config, topic, Duration::from_secs(120))
        })?;
        for message in messages {
            let reason = header(&message, headers::REASON);
            let at_ms = message.timestamp().to_millis().unwrap_or(0);
            if args.reason.as_ref().is_some_and(|r| *r != reason)
                || since_ms.is_some_and(|since| at_ms < since)
            {
                continue;
            }
            *by_reason.entry(reason.clone()).or_insert(0) += 1;
            if printed >= args.limit {
                continue;
            }
            printed += 1;
            let source_topic = header(&message, headers::SOURCE_TOPIC);
            let entry = Entry {
                dead_lettered_at: chrono::DateTime::from_timestamp_millis(at_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default(),
                dlq_topic: topic.clone(),
                source_partition: header(&message, headers::SOURCE_PARTITION),
                source_offset: header(&message, headers::SOURCE_OFFSET),
                reason,
                error: header(&message, headers::ERROR),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                decoded: decode(&codec, &names, &source_topic, message.payload()).await,
                source_topic,
            };
            match args.format {
                Format::Json => println!("{}", serde_json::to_string(&entry)?),
                Format::Table => println!(
                    "{:24} {:45} {:24} {:40} {}",
                    entry.dead_lettered_at,
                    format!(
                        "{}/{}@{}",
                        entry.source_topic, entry.source_partition, entry.source_offset
                    ),
                    entry.reason,
                    entry.decoded.chars().take(40).collect::<String>(),
                    entry.error.chars().take(120).collect::<String>()
                ),
            }
        }
    }
    let total: u64 = by_reason.values().sum();
    let counts: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r}={n}")).collect();
    eprintln!(
        "{total} dead letters match ({}); {printed} shown",
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(" ")
        }
    );
    Ok(ExitCode::SUCCESS)
}
