//! The topology is built from processors: a third, toy processor — declared only by
//! itself and one registration — runs through the real runtime on the real broker
//! beside paystream's own two. Its input, output and changelog topics are created, its
//! records are routed to its tasks, its store is opened, written and made durable by
//! its changelog, and restored from that changelog after the state directory is wiped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use paystream_integration::{TestEnv, read_committed, registry_url};
use paystream_processors::dedupe::DedupeProcessor;
use paystream_processors::lifecycle::LifecycleProcessor;
use paystream_processors::{
    EventType, Input, Output, OutputKind, OutputSpec, Processor, ProcessorContext, Record,
    StoreSpec, TopicRef,
};
use paystream_runtime::health::Health;
use paystream_runtime::metrics::Metrics;
use paystream_runtime::topic_admin::create_topics;
use paystream_runtime::topology::Topology;
use paystream_runtime::{Config, Pipeline};
use paystream_schemas::{Codec, PaymentInitiated};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const READ_TIMEOUT: Duration = Duration::from_secs(120);
const TOY_STORE: &str = "toy_seen_payments";

/// The toy: forwards each payment id the first time it is seen, to `toy_first_seen`,
/// remembering the ids in its own store.
struct FirstSeen;

impl Processor for FirstSeen {
    type Input = PaymentInitiated;

    fn name(&self) -> &'static str {
        "toy-first-seen"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input {
            topic: TopicRef::External("toy_payments"),
            event: EventType::PaymentInitiated,
        }]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::kept(TOY_STORE)]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            kind: OutputKind::Repartition,
            topic: TopicRef::External("toy_first_seen"),
        }]
    }

    fn process(
        &mut self,
        record: Record<PaymentInitiated>,
        ctx: &mut dyn ProcessorContext,
    ) -> paystream_processors::Result<()> {
        let id = record.value.payment_id.clone();
        let store = ctx.store(TOY_STORE)?;
        if store.get(id.as_bytes())?.is_some() {
            ctx.forward(Output::DuplicateDropped);
        } else {
            store.put(id.as_bytes(), b"1")?;
            ctx.forward(Output::Repartition(record.value));
        }
        Ok(())
    }
}

fn topology(config: &Config) -> Topology {
    let retention_ms = config.state.idempotency_retention_ms;
    Topology::builder(config)
        .processor(move || DedupeProcessor::new(retention_ms))
        .processor(LifecycleProcessor::default)
        .processor(|| FirstSeen)
        .build()
        .expect("a valid topology")
}

fn payment(i: usize) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-{i}"),
        idempotency_key: format!("idem-{i}"),
        payment_id: format!("pay-{}", i % 40),
        merchant_id: "m1".into(),
        customer_id: "c1".into(),
        amount_minor: 1_000 + i as i64,
        currency: "EUR".into(),
        payment_method_token: "pm_toy".into(),
        psp: "toy".into(),
        occurred_at: 1_764_000_000_000 + i as i64,
    }
}

/// Produces `events` to `topic`, keyed by payment id, in the Confluent wire format.
async fn produce(topic: &str, events: &[PaymentInitiated]) -> anyhow::Result<()> {
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .set("enable.idempotence", "true")
        .create()?;
    for event in events {
        let value = codec.encode(topic, event).await?;
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&event.payment_id)
                    .payload(&value)
                    .timestamp(event.occurred_at),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Runs the toy topology until caught up, in this process.
async fn run(config: &Config) -> anyhow::Result<paystream_runtime::RunSummary> {
    let codec = Arc::new(Codec::new(
        &config.schema_registry.url,
        Duration::from_secs(10),
    )?);
    let pipeline = Pipeline::new(
        config.clone(),
        topology(config),
        codec,
        Metrics::new(),
        Arc::new(Health::default()),
    )
    .await?;
    let (_shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    Ok(tokio::time::timeout(Duration::from_secs(240), pipeline.run(shutdown_rx, true)).await??)
}

fn first_seen_ids(topic: &str) -> anyhow::Result<Vec<String>> {
    Ok(read_committed(topic, READ_TIMEOUT)?
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_processor_runs_from_its_declarations_alone() -> anyhow::Result<()> {
    let env = TestEnv::new("toy");
    let config = env.config();
    let topology = topology(&config);

    // The description comes from the declarations.
    let text = topology.to_text();
    for expected in [
        "Sub-topology 2 (tasks 2_<partition>)",
        "Processor:  toy-first-seen",
        &format!(
            "Store:      {TOY_STORE} (changelog {}-{TOY_STORE}-changelog)",
            config.application_id
        ),
        &format!("Sinks:      {}toy_first_seen", config.topics.prefix),
        &format!("Dead letters: {}toy_payments.dlq", config.topics.prefix),
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }

    // Topic creation comes from them too.
    let created = create_topics(&config, &topology).await?;
    let names: BTreeSet<&str> = created.iter().map(|(name, _, _)| name.as_str()).collect();
    let changelog = format!("{}-{TOY_STORE}-changelog", config.application_id);
    let input = env.topic("toy_payments");
    let output = env.topic("toy_first_seen");
    for topic in [&changelog, &input, &output, &env.topic("toy_payments.dlq")] {
        assert!(names.contains(topic.as_str()), "{topic} created: {names:?}");
    }
    env.paystream(&["schemas", "register"])?;

    // 100 payments over 40 payment ids: 40 first sightings.
    let events: Vec<PaymentInitiated> = (0..100).map(payment).collect();
    produce(&input, &events).await?;
    let summary = run(&config).await?;
    assert_eq!(summary.input_records, 100, "{summary:?}");
    assert_eq!(summary.duplicates_dropped, 60, "{summary:?}");
    let first = first_seen_ids(&output)?;
    let distinct: BTreeSet<&String> = first.iter().collect();
    assert_eq!(first.len(), 40, "each payment id forwarded once: {first:?}");
    assert_eq!(distinct.len(), 40);

    // Routing: the toy's records ran in its own tasks, whose store is on disk and whose
    // writes reached its changelog.
    let app_dir = config.state.dir.join(&config.application_id);
    let toy_tasks: Vec<String> = std::fs::read_dir(&app_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("2_"))
        .collect();
    assert!(!toy_tasks.is_empty(), "tasks 2_<partition> in {app_dir:?}");
    for task in &toy_tasks {
        assert!(
            app_dir.join(task).join(TOY_STORE).is_dir(),
            "{task} has its store"
        );
    }
    assert_eq!(read_committed(&changelog, READ_TIMEOUT)?.len(), 40);

    // Wipe the state directory: the toy's store is restored from its changelog, so the
    // same payment ids produced again are all recognised.
    std::fs::remove_dir_all(&app_dir)?;
    let again: Vec<PaymentInitiated> = (100..140).map(payment).collect();
    produce(&input, &again).await?;
    let summary = run(&config).await?;
    assert_eq!(summary.input_records, 40, "{summary:?}");
    assert_eq!(
        summary.duplicates_dropped, 40,
        "restored store knows them: {summary:?}"
    );
    assert_eq!(
        first_seen_ids(&output)?.len(),
        40,
        "nothing forwarded twice"
    );
    Ok(())
}
