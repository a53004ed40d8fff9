//! `paystream replay`: reset the application's consumer group so its input is processed
//! again, like Kafka's `kafka-streams-application-reset` / `kafka-consumer-groups
//! --reset-offsets`.
//!
//! State stores are kept by default, so a replay is deduplicated: payments already seen
//! are dropped by idempotency key, auth and settlement events by event id, and nothing is
//! posted or emitted twice. `--reset-state` also deletes and recreates every changelog
//! topic and removes this machine's local stores; the replay then rebuilds state from the
//! input and re-emits its outputs (journal entries keep their deterministic ids, so the
//! ledger sink still posts nothing twice, but output topics get the records again).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use backon::{ExponentialBuilder, Retryable};
use clap::{ArgGroup, Args};
use paystream_common::kafka::partition_count;
use paystream_common::kafka::{client_config, read_committed_consumer_config};
use paystream_processors::names::PaymentTopics;
use paystream_runtime::Config;
use paystream_runtime::topic_admin::{Created, create_topics};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Options of `paystream replay`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).args(["to_offset", "to_datetime", "by_duration", "to_earliest"])))]
pub struct ReplayArgs {
    /// Reset every partition to this offset (clamped to what the partition still holds).
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Reset to the first record at or after this time: RFC 3339 (`2026-11-21T00:00:00Z`)
    /// or milliseconds since the Unix epoch.
    #[arg(long)]
    pub to_datetime: Option<String>,
    /// Reset to the first record at or after this long ago, e.g. `24h`, `2days`, `90min`.
    #[arg(long)]
    pub by_duration: Option<String>,
    /// Reset to the earliest record each partition still holds.
    #[arg(long)]
    pub to_earliest: bool,
    /// Input topics to reset, by base name (`settlement`) or full name; repeatable.
    /// Default: every input topic.
    #[arg(long)]
    pub topics: Vec<String>,
    /// Print each partition's current → new offset and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also empty every changelog and this machine's state directory of the application,
    /// so state is rebuilt from the replayed input (outputs are then emitted again).
    #[arg(long)]
    pub reset_state: bool,
}

/// Resets the group's offsets (see the module docs); prints one line per partition.
///
/// # Errors
/// When the group has live members (stop every instance first), a time or duration does
/// not parse, or Kafka fails.
pub async fn replay(config: Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let names = PaymentTopics::new(&config);
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let group = config.application_id.clone();
    let consumer: BaseConsumer = read_committed_consumer_config(&config, &group)
        .create()
        .context("creating the replay consumer")?;

    let groups = tokio::task::block_in_place(|| consumer.fetch_group_list(Some(&group), timeout))
        .context("describing the consumer group")?;
    if let Some(g) = groups.groups().iter().find(|g| g.name() == group)
        && !g.members().is_empty()
    {
        bail!(
            "consumer group {group} has {} live member(s) (state {}): stop every `paystream run` \
             of application {group} first; a stopped instance leaves the group after \
             processing.session_timeout_ms ({} ms)",
            g.members().len(),
            g.state(),
            config.processing.session_timeout_ms
        );
    }

    let topics: Vec<String> = if args.topics.is_empty() {
        names.inputs().iter().map(|t| t.to_string()).collect()
    } else {
        args.topics
            .iter()
            .map(|t| match names.resolve_input(t) {
                Some(input) => Ok(input.to_string()),
                None => bail!(
                    "--topics {t}: not an input topic (payment_initiated, auth_success, \
                     auth_failure, settlement)"
                ),
            })
            .collect::<anyhow::Result<_>>()?
    };
    let target_ms = match (&args.to_datetime, &args.by_duration) {
        (Some(at), _) => Some(super::parse_time_ms("--to-datetime", at)?),
        (None, Some(duration)) => {
            let ago = humantime::parse_duration(duration).with_context(|| {
                format!("--by-duration {duration:?} is not a duration like 24h, 2days or 90min")
            })?;
            Some(super::now_ms() - ago.as_millis() as i64)
        }
        _ => None,
    };

    // Current and new offset of every partition; the repartition topic goes to its end
    // (its records are regenerated from the replayed input).
    let mut all = TopicPartitionList::new();
    for topic in topics.iter().chain([&names.payments_by_id]) {
        for partition in 0..partition_count(&consumer, topic, timeout)? {
            all.add_partition(topic, partition);
        }
    }
    let committed =
        tokio::task::block_in_place(|| consumer.committed_offsets(all.clone(), timeout))
            .context("reading the group's committed offsets")?;
    let by_time = match target_ms {
        Some(ms) => {
            let mut query = TopicPartitionList::new();
            for element in all.elements() {
                if element.topic() != names.payments_by_id {
                    query
                        .add_partition_offset(
                            element.topic(),
                            element.partition(),
                            Offset::Offset(ms),
                        )
                        .context("building the time query")?;
                }
            }
            Some(
                tokio::task::block_in_place(|| consumer.offsets_for_times(query, timeout))
                    .context("looking up offsets by time")?,
            )
        }
        None => None,
    };
    let mut reset = TopicPartitionList::new();
    println!(
        "{:50} {:>9} {:>12} {:>12}",
        "topic", "partition", "current", "new"
    );
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) =
            tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, partition, timeout))
                .with_context(|| format!("fetching watermarks of {topic}/{partition}"))?;
        let new = if topic == names.payments_by_id {
            high
        } else if let Some(offset) = args.to_offset {
            offset.clamp(low, high)
        } else if let Some(found) = &by_time {
            match found.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => o,
                // No record at or after the time: nothing to replay.
                _ => high,
            }
        } else {
            low
        };
        let current = match element.offset() {
            Offset::Offset(o) => o.to_string(),
            _ => "-".to_string(),
        };
        println!("{topic:50} {partition:>9} {current:>12} {new:>12}");
        reset
            .add_partition_offset(topic, partition, Offset::Offset(new))
            .context("building the reset")?;
    }
    if args.dry_run {
        eprintln!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    if args.reset_state {
        reset_state(&config).await?;
    }
    tokio::task::block_in_place(|| consumer.commit(&reset, CommitMode::Sync))
        .context("committing the new offsets")?;
    eprintln!(
        "group {group}: {} partitions reset{}; start `paystream run` to replay",
        reset.count(),
        if args.reset_state {
            ", changelogs and local state emptied"
        } else {
            " (state kept: already-processed events are dropped as duplicates)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Deletes every changelog topic of the application and creates it again, empty, with
/// its settings, then removes this machine's state directory of the application — as
/// Kafka Streams' application reset tool deletes an application's internal topics. A
/// compacted changelog cannot be emptied in place: the broker refuses DeleteRecords on
/// it. Other machines' local stores hold checkpoints outside the recreated changelogs;
/// the runtime takes such a task as corrupted and restores it from the (empty)
/// changelog.
///
/// # Errors
/// When a changelog cannot be deleted (each topic's result is checked) or is not
/// recreated within the bounded retries, or the state directory cannot be removed.
async fn reset_state(config: &Config) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .context("creating the admin client")?;
    let topology = paystream_processors::topology::payments_topology_description(config);
    let changelogs: Vec<String> = topology.stores().map(|s| s.changelog.clone()).collect();
    let names: Vec<&str> = changelogs.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .delete_topics(&names, &options)
        .await
        .context("deleting the changelogs")?;
    let mut deleted = 0;
    for result in results {
        match result {
            Ok(_) => deleted += 1,
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => bail!("deleting changelog {topic}: {code}"),
        }
    }
    // Deletion completes in the background: creating a topic still being deleted fails
    // with TOPIC_ALREADY_EXISTS (it is reported as existing), so wait until every
    // changelog was created anew.
    let recreated = (|| async {
        let outcome = create_topics(config, &topology).await?;
        let pending: Vec<&str> = outcome
            .iter()
            .filter(|(name, _, created)| changelogs.contains(name) && *created != Created::Created)
            .map(|(name, _, _)| name.as_str())
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "changelogs still being deleted: {}",
                pending.join(", ")
            ))
        }
    })
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(40),
    )
    .await;
    // The first attempt may create some and find others still being deleted; a later
    // one finds those it created as existing. Recreated means: each exists and is empty.
    if let Err(e) = recreated {
        verify_empty(config, &changelogs, timeout)
            .with_context(|| format!("recreating the changelogs: {e}"))?;
    }
    let dir = config.state.dir.join(&config.application_id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the state directory {}", dir.display()))?;
    }
    eprintln!(
        "deleted {deleted} and recreated {} changelog topics, empty ({}); removed {}",
        changelogs.len(),
        changelogs.join(", "),
        dir.display()
    );
    Ok(())
}

/// Checks that every topic of `topics` exists with no record.
fn verify_empty(config: &Config, topics: &[String], timeout: Duration) -> anyhow::Result<()> {
    let consumer: BaseConsumer = read_committed_consumer_config(config, &config.application_id)
        .create()
        .context("creating a consumer")?;
    for topic in topics {
        for partition in 0..partition_count(&consumer, topic, timeout)? {
            let (low, high) = tokio::task::block_in_place(|| {
                consumer.fetch_watermarks(topic, partition, timeout)
            })?;
            if high != low {
                bail!(
                    "changelog {topic} partition {partition} still holds {} records",
                    high - low
                );
            }
        }
    }
    Ok(())
}
