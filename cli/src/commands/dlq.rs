//! `paystream dlq inspect`: what sits in the dead-letter queues, and why;
//! `paystream dlq redrive`: send chosen dead letters back to their source topic, once.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use paystream_common::dead_letter::headers;
use paystream_common::kafka::{client_config, read_committed_to_end};
use paystream_common::topics::TopicNames;
use paystream_processors::names::PaymentTopics;
use paystream_processors::records;
use paystream_processors::topology::payments_topology_description;
use paystream_runtime::Config;
use paystream_schemas::Codec;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde::Serialize;

use super::codec;

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Which dead letters a command works on (shared by `inspect` and `redrive`).
#[derive(Debug, Args)]
pub struct Selection {
    /// Dead-letter queue to read, by its input topic's base name (`settlement`) or full
    /// topic name; repeatable. Default: every one (the eight inputs' and the three sink
    /// topics' `ledger_entries.dlq`, `payment_status.dlq`, `reconciliation_exceptions.dlq`).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Only records with this reason (e.g. `invalid_value`, `unknown_schema`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only records dead-lettered at or after this time: RFC 3339
    /// (`2026-11-22T10:00:00Z`) or milliseconds since the Unix epoch.
    #[arg(long)]
    pub since: Option<String>,
}

impl Selection {
    /// The dead-letter topics selected (see [`dead_letter_topics`]).
    fn topics(&self, config: &Config, names: &PaymentTopics) -> Vec<String> {
        dead_letter_topics(config, names, &self.topic)
    }

    /// Reads every selected topic to its end (read_committed) and returns the dead
    /// letters that match `--reason` and `--since`, with their topic.
    ///
    /// # Errors
    /// A bad `--since`; Kafka errors.
    fn read(
        &self,
        config: &Config,
        names: &PaymentTopics,
    ) -> anyhow::Result<Vec<(String, OwnedMessage)>> {
        let since_ms = self
            .since
            .as_deref()
            .map(|since| super::parse_time_ms("--since", since))
            .transpose()?;
        let mut matching = Vec::new();
        for topic in self.topics(config, names) {
            let messages = tokio::task::block_in_place(|| {
                read_committed_to_end(config, &topic, Duration::from_secs(120))
            })?;
            for message in messages {
                let at_ms = message.timestamp().to_millis().unwrap_or(0);
                if self
                    .reason
                    .as_ref()
                    .is_some_and(|r| *r != header(&message, headers::REASON))
                    || since_ms.is_some_and(|since| at_ms < since)
                {
                    continue;
                }
                matching.push((topic.clone(), message));
            }
        }
        Ok(matching)
    }
}

/// Options of `paystream dlq inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub selection: Selection,
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
    dlq_partition: i32,
    dlq_offset: i64,
    source_topic: String,
    source_partition: String,
    source_offset: String,
    reason: String,
    /// Where it failed: `decode`, `validate`, `process`, `produce` or `sink` (empty for
    /// dead letters written before the stage was recorded).
    stage: String,
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

/// What the dead letter of a record of `source` holds: the record's summary, or why it
/// does not decode.
async fn decode(
    codec: &Codec,
    names: &PaymentTopics,
    source: &str,
    value: Option<&[u8]>,
) -> String {
    let record_type = match names.record_type(source) {
        Ok(record_type) => record_type,
        Err(unknown) => return format!("not decodable: {unknown}"),
    };
    match records::decode(codec, record_type, value).await {
        Ok(record) => record.summary(),
        Err(e) => format!("not decodable: {}", e.message),
    }
}

/// A key as printed: up to 200 characters, longer ones cut with their size noted.
fn printable_key(key: &[u8]) -> String {
    const SHOWN_MAX: usize = 200;
    let text = String::from_utf8_lossy(key);
    if text.chars().count() <= SHOWN_MAX {
        text.into_owned()
    } else {
        let shown: String = text.chars().take(SHOWN_MAX).collect();
        format!("{shown}… ({} bytes)", key.len())
    }
}

/// Prints the matching dead letters and a count per reason.
pub async fn inspect(config: Config, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let names = PaymentTopics::new(&config);
    let codec = codec(&config)?;
    let matching = args.selection.read(&config, &names)?;
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut printed = 0;
    if matches!(args.format, Format::Table) {
        println!(
            "{:24} {:10} {:45} {:34} {:40} error",
            "dead-lettered at", "record", "source", "reason@stage", "decoded"
        );
    }
    for (topic, message) in &matching {
        let reason = header(message, headers::REASON);
        let at_ms = message.timestamp().to_millis().unwrap_or(0);
        *by_reason.entry(reason.clone()).or_insert(0) += 1;
        if printed >= args.limit {
            continue;
        }
        printed += 1;
        let source_topic = header(message, headers::SOURCE_TOPIC);
        let entry = Entry {
            dead_lettered_at: chrono::DateTime::from_timestamp_millis(at_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            dlq_topic: topic.clone(),
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            source_partition: header(message, headers::SOURCE_PARTITION),
            source_offset: header(message, headers::SOURCE_OFFSET),
            reason,
            stage: header(message, headers::STAGE),
            error: header(message, headers::ERROR),
            key: message.key().map(printable_key),
            decoded: decode(&codec, &names, &source_topic, message.payload()).await,
            source_topic,
        };
        match args.format {
            Format::Json => println!("{}", serde_json::to_string(&entry)?),
            Format::Table => println!(
                "{:24} {:10} {:45} {:34} {:40} {}",
                entry.dead_lettered_at,
                format!("{}:{}", entry.dlq_partition, entry.dlq_offset),
                format!(
                    "{}/{}@{}",
                    entry.source_topic, entry.source_partition, entry.source_offset
                ),
                if entry.stage.is_empty() {
                    entry.reason.clone()
                } else {
                    format!("{}@{}", entry.reason, entry.stage)
                },
                entry.decoded.chars().take(40).collect::<String>(),
                entry.error.chars().take(120).collect::<String>()
            ),
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

/// Options of `paystream dlq redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Only these dead letters, as `PARTITION:OFFSET` in the dead-letter topic (the
    /// `record` column of `dlq inspect`); repeatable. Use with one `--topic`.
    #[arg(long = "record", value_name = "PARTITION:OFFSET")]
    pub records: Vec<String>,
    /// Print what would be redriven and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also redrive dead letters whose key or value bytes were masked (header
    /// `paystream.dlq.masked`): they are not the records as they came, and an altered key
    /// lands on another partition. Refused without this flag.
    #[arg(long)]
    pub allow_masked: bool,
}

/// What one redrive did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RedriveSummary {
    /// Dead letters re-published to their source topic.
    pub redriven: u64,
    /// Dead letters skipped because an earlier redrive already re-published them.
    pub already_redriven: u64,
    /// `pan_detected` and `secret_detected` dead letters, never redriven: their card
    /// numbers or credentials were masked, so the producer must send a corrected event.
    pub refused_redacted: u64,
    /// Dead letters whose key or value bytes were masked, refused without
    /// `--allow-masked`.
    pub refused_masked: u64,
}

/// One redrive log record (value of `<app>-dlq-redrives`, key = the dead letter's
/// `topic:partition:offset`).
#[derive(Debug, Serialize)]
struct RedriveLogEntry<'a> {
    redriven_at_ms: i64,
    source_topic: &'a str,
    source_partition: i32,
    reason: &'a str,
}

/// Header on a redriven record naming the dead letter it came from.
pub const REDRIVEN_FROM_HEADER: &str = "paystream.redrive.from";

fn parse_record(value: &str) -> anyhow::Result<(i32, i64)> {
    let bad = || anyhow::anyhow!("--record {value:?} is not PARTITION:OFFSET (e.g. 0:1234)");
    let (partition, offset) = value.split_once(':').ok_or_else(bad)?;
    Ok((
        partition.parse().map_err(|_| bad())?,
        offset.parse().map_err(|_| bad())?,
    ))
}

/// Re-publishes the chosen dead letters to their source topic and partition, with their
/// original key, value and timestamp, in one Kafka transaction that also writes each one's
/// key to the redrive log; dead letters found in the log are skipped, so redriving the
/// same record again is a no-op. Prints one line per record and a summary.
///
/// # Errors
/// Kafka errors (nothing is redriven when the transaction fails), bad arguments.
pub async fn redrive(config: Config, args: RedriveArgs) -> anyhow::Result<ExitCode> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let names = PaymentTopics::new(&config);
    let redrive_log = TopicNames::new(&config).dlq_redrives;
    let chosen: std::collections::HashSet<(i32, i64)> = args
        .records
        .iter()
        .map(|r| parse_record(r))
        .collect::<anyhow::Result<_>>()?;
    if !chosen.is_empty() && args.selection.topics(&config, &names).len() != 1 {
        anyhow::bail!("--record needs exactly one --topic (the dead-letter queue it is in)");
    }
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let log = tokio::task::block_in_place(|| {
        read_committed_to_end(&config, &redrive_log, Duration::from_secs(120))
    })?;
    let done: std::collections::HashSet<Vec<u8>> = log
        .iter()
        .filter_map(|m| m.key().map(<[u8]>::to_vec))
        .collect();

    let mut summary = RedriveSummary::default();
    let mut selected = Vec::new();
    for (topic, message) in args.selection.read(&config, &names)? {
        let reason = header(&message, headers::REASON);
        if !chosen.is_empty() && !chosen.contains(&(message.partition(), message.offset())) {
            continue;
        }
        let log_key = format!("{topic}:{}:{}", message.partition(), message.offset());
        if reason == paystream_processors::DeadLetterReason::PanDetected.as_str()
            || reason == paystream_processors::DeadLetterReason::SecretDetected.as_str()
        {
            summary.refused_redacted += 1;
            println!("refused  {log_key}  {reason}: the producer must re-send a corrected event");
        } else if !args.allow_masked && !header(&message, headers::MASKED).is_empty() {
            summary.refused_masked += 1;
            println!(
                "refused  {log_key}  its {} bytes were masked in the dead letter, so it is not \
                 the record as it came; re-send it from the producer, or pass --allow-masked \
                 to re-inject it as it is",
                header(&message, headers::MASKED)
            );
        } else if done.contains(log_key.as_bytes()) {
            summary.already_redriven += 1;
            println!("skipped  {log_key}  already redriven");
        } else {
            selected.push((log_key, reason, message));
        }
    }

    if !args.dry_run && !selected.is_empty() {
        let producer: ThreadedProducer<DefaultProducerContext> = client_config(&config)
            .set(
                "transactional.id",
                format!("{}-dlq-redrive", config.application_id),
            )
            .set("enable.idempotence", "true")
            .set(
                "message.max.bytes",
                paystream_common::topics::PRODUCER_RECORD_BYTES_MAX,
            )
            .create()?;
        producer.init_transactions(timeout)?;
        producer.begin_transaction()?;
        let now_ms = super::now_ms();
        for (log_key, reason, message) in &selected {
            let source_topic = header(message, headers::SOURCE_TOPIC);
            let source_partition: i32 = header(message, headers::SOURCE_PARTITION)
                .parse()
                .map_err(|_| anyhow::anyhow!("{log_key}: no source partition header"))?;
            let timestamp_ms = header(message, headers::SOURCE_TIMESTAMP)
                .parse()
                .unwrap_or(now_ms);
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&source_topic)
                .partition(source_partition)
                .timestamp(timestamp_ms)
                .headers(OwnedHeaders::new().insert(Header {
                    key: REDRIVEN_FROM_HEADER,
                    value: Some(log_key.as_str()),
                }));
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(value) = message.payload() {
                record = record.payload(value);
            }
            producer.send(record).map_err(|(e, _)| e)?;
            let entry = serde_json::to_vec(&RedriveLogEntry {
                redriven_at_ms: now_ms,
                source_topic: &source_topic,
                source_partition,
                reason,
            })?;
            producer
                .send(
                    BaseRecord::<'_, [u8], [u8]>::to(&redrive_log)
                        .key(log_key.as_bytes())
                        .payload(&entry),
                )
                .map_err(|(e, _)| e)?;
        }
        tokio::task::block_in_place(|| producer.commit_transaction(timeout))?;
    }
    for (log_key, reason, message) in &selected {
        println!(
            "{}  {log_key}  {reason} -> {}/{}",
            if args.dry_run {
                "would redrive"
            } else {
                "redriven"
            },
            header(message, headers::SOURCE_TOPIC),
            header(message, headers::SOURCE_PARTITION),
        );
    }
    if !args.dry_run {
        summary.redriven = selected.len() as u64;
    }
    eprintln!(
        "{}{} redriven, {} already redriven (skipped), {} refused (pan_detected/secret_detected), {} refused (masked bytes; --allow-masked)",
        if args.dry_run { "dry run: " } else { "" },
        if args.dry_run {
            selected.len() as u64
        } else {
            summary.redriven
        },
        summary.already_redriven,
        summary.refused_redacted,
        summary.refused_masked
    );
    Ok(ExitCode::SUCCESS)
}

/// The dead-letter topics named by `--topic` values (base or full input names, or DLQ
/// names), or every dead-letter topic (inputs' and the sink's).
/// A name that is not an input topic is kept as given (a dead-letter topic of another
/// naming scheme).
fn dead_letter_topics(config: &Config, names: &PaymentTopics, given: &[String]) -> Vec<String> {
    if given.is_empty() {
        return payments_topology_description(config).dead_letter_topics();
    }
    given
        .iter()
        .map(|t| {
            let input = names
                .resolve_input(t)
                .unwrap_or_else(|| t.trim_end_matches(".dlq"));
            TopicNames::dead_letter(input)
        })
        .collect()
}
