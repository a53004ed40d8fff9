//! The runtime runs any topology: a toy processor with record types of its own — parcel
//! scans, which neither the runtime nor paystream's processors know — declared only by
//! itself and one registration, runs through the real runtime on the real broker beside
//! paystream's own two. Its input, output and changelog topics are created, its records
//! are decoded and encoded by the runtime's Avro serde (Confluent wire format, real
//! registry), routed to its tasks, its store is opened, written and made durable by its
//! changelog, and restored from that changelog after the state directory is wiped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use paystream_common::health::Health;
use paystream_integration::{TestEnv, read_committed, registry_url};
use paystream_processors::dedupe::DedupeProcessor;
use paystream_processors::lifecycle::LifecycleProcessor;
use paystream_runtime::metrics::Metrics;
use paystream_runtime::topic_admin::create_topics;
use paystream_runtime::topology::Topology;
use paystream_runtime::{
    AvroSerde, Config, Forward, Input, Pipeline, Processor, ProcessorContext, Record, Sink,
    StoreSpec, TopicRef,
};
use paystream_schemas::{AvroRecord, Codec};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

const READ_TIMEOUT: Duration = Duration::from_secs(120);
const TOY_STORE: &str = "toy_seen_parcels";

/// A parcel scanned at a depot: the toy's input, a type of this test's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParcelScanned {
    parcel_id: String,
    depot: String,
    scanned_at: i64,
}

impl AvroRecord for ParcelScanned {
    const FULL_NAME: &'static str = "toy.logistics.ParcelScanned";
    const SCHEMA_JSON: &'static str = r#"{"type": "record", "name": "ParcelScanned",
        "namespace": "toy.logistics", "fields": [
        {"name": "parcel_id", "type": "string"},
        {"name": "depot", "type": "string"},
        {"name": "scanned_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;
}

/// The toy's output: the first scan of a parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParcelFirstSeen {
    parcel_id: String,
    first_depot: String,
}

impl AvroRecord for ParcelFirstSeen {
    const FULL_NAME: &'static str = "toy.logistics.ParcelFirstSeen";
    const SCHEMA_JSON: &'static str = r#"{"type": "record", "name": "ParcelFirstSeen",
        "namespace": "toy.logistics", "fields": [
        {"name": "parcel_id", "type": "string"},
        {"name": "first_depot", "type": "string"}
    ]}"#;
}

/// The toy: forwards each parcel the first time it is scanned, to `toy_first_seen`,
/// remembering the ids in its own store.
struct FirstSeen;

impl Processor for FirstSeen {
    type Input = ParcelScanned;

    fn name(&self) -> &'static str {
        "toy-first-seen"
    }

    fn inputs(&self) -> Vec<Input<ParcelScanned>> {
        vec![Input::new(
            TopicRef::External("toy_parcel_scans"),
            AvroSerde::<ParcelScanned>::new(),
        )]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::kept(TOY_STORE)]
    }

    fn sinks(&self) -> Vec<Sink> {
        vec![Sink::new(
            "first_seen",
            TopicRef::External("toy_first_seen"),
            AvroSerde::<ParcelFirstSeen>::new(),
        )]
    }

    fn process(
        &mut self,
        record: Record<ParcelScanned>,
        ctx: &mut dyn ProcessorContext,
    ) -> paystream_runtime::processor::Result<()> {
        let scan = record.value;
        let store = ctx.store(TOY_STORE)?;
        if store.get(scan.parcel_id.as_bytes())?.is_some() {
            ctx.forward(Forward::DuplicateDropped);
        } else {
            store.put(scan.parcel_id.as_bytes(), scan.depot.as_bytes())?;
            ctx.forward(Forward::To {
                sink: "first_seen",
                key: scan.parcel_id.clone().into_bytes(),
                value: Box::new(ParcelFirstSeen {
                    parcel_id: scan.parcel_id,
                    first_depot: scan.depot,
                }),
            });
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

fn scan(i: usize) -> ParcelScanned {
    ParcelScanned {
        parcel_id: format!("parcel-{}", i % 40),
        depot: format!("depot-{}", i % 7),
        scanned_at: 1_764_000_000_000 + i as i64,
    }
}

/// Produces `scans` to `topic`, keyed by parcel id, in the Confluent wire format.
async fn produce(topic: &str, scans: &[ParcelScanned]) -> anyhow::Result<()> {
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .set("enable.idempotence", "true")
        .create()?;
    for scan in scans {
        let value = codec.encode(topic, scan).await?;
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&scan.parcel_id)
                    .payload(&value)
                    .timestamp(scan.scanned_at),
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

/// The first sightings in `topic`: keys, each checked against its decoded value.
async fn first_seen_ids(topic: &str) -> anyhow::Result<Vec<String>> {
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let mut ids = Vec::new();
    for record in read_committed(topic, READ_TIMEOUT)? {
        let key = String::from_utf8_lossy(&record.key.unwrap_or_default()).into_owned();
        let first: ParcelFirstSeen = codec.decode(record.value.as_deref()).await?;
        assert_eq!(first.parcel_id, key, "keyed by parcel id");
        assert!(first.first_depot.starts_with("depot-"), "{first:?}");
        ids.push(key);
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_with_types_of_its_own_runs_from_its_declarations_alone() -> anyhow::Result<()>
{
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
        &format!("Dead letters: {}toy_parcel_scans.dlq", config.topics.prefix),
        "(ParcelScanned)",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }

    // Topic creation comes from them too.
    let created = create_topics(&config, &topology).await?;
    let names: BTreeSet<&str> = created.iter().map(|(name, _, _)| name.as_str()).collect();
    let changelog = format!("{}-{TOY_STORE}-changelog", config.application_id);
    let input = env.topic("toy_parcel_scans");
    let output = env.topic("toy_first_seen");
    for topic in [
        &changelog,
        &input,
        &output,
        &env.topic("toy_parcel_scans.dlq"),
    ] {
        assert!(names.contains(topic.as_str()), "{topic} created: {names:?}");
    }
    env.paystream(&["schemas", "register"])?;

    // 100 scans of 40 parcels: 40 first sightings.
    let scans: Vec<ParcelScanned> = (0..100).map(scan).collect();
    produce(&input, &scans).await?;
    let summary = run(&config).await?;
    assert_eq!(summary.input_records, 100, "{summary:?}");
    assert_eq!(summary.duplicates_dropped, 60, "{summary:?}");
    let first = first_seen_ids(&output).await?;
    let distinct: BTreeSet<&String> = first.iter().collect();
    assert_eq!(first.len(), 40, "each parcel forwarded once: {first:?}");
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
    // same parcels scanned again are all recognised.
    std::fs::remove_dir_all(&app_dir)?;
    let again: Vec<ParcelScanned> = (100..140).map(scan).collect();
    produce(&input, &again).await?;
    let summary = run(&config).await?;
    assert_eq!(summary.input_records, 40, "{summary:?}");
    assert_eq!(
        summary.duplicates_dropped, 40,
        "restored store knows them: {summary:?}"
    );
    assert_eq!(
        first_seen_ids(&output).await?.len(),
        40,
        "nothing forwarded twice"
    );
    Ok(())
}
