//! Wall-clock punctuation on the real broker: a toy processor of parcel scans (types of
//! its own, which neither the runtime nor paystream knows) remembers each parcel and,
//! from its wall-clock punctuation, reports the parcels that have not been scanned again
//! for a second. Those reports are made while no record arrives — the stream has gone
//! quiet, which is exactly when stream-time punctuation never runs — and they, with the
//! store deletes that go with them, are committed in transactions that read no record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use paystream_common::health::Health;
use paystream_integration::{TestEnv, read_committed, registry_url};
use paystream_runtime::metrics::Metrics;
use paystream_runtime::topic_admin::create_topics;
use paystream_runtime::topology::Topology;
use paystream_runtime::{
    AvroSerde, Forward, Input, Pipeline, Processor, ProcessorContext, Record, Sink, StoreSpec,
    TopicRef,
};
use paystream_schemas::{AvroRecord, Codec};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

const STORE: &str = "toy_parcels_in_transit";
/// A parcel not scanned again within this much wall-clock time is reported.
const QUIET_MS: i64 = 1_000;
const PARCELS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParcelScanned {
    parcel_id: String,
    scanned_at: i64,
}

impl AvroRecord for ParcelScanned {
    const FULL_NAME: &'static str = "toy.logistics.clock.ParcelScanned";
    const SCHEMA_JSON: &'static str = r#"{"type": "record", "name": "ParcelScanned",
        "namespace": "toy.logistics.clock", "fields": [
        {"name": "parcel_id", "type": "string"},
        {"name": "scanned_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;
}

/// The toy's output: a parcel that went quiet, with when the punctuation saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParcelQuiet {
    parcel_id: String,
    /// Wall-clock time of the last scan's processing, milliseconds since the Unix epoch.
    last_seen_ms: i64,
    /// Wall-clock time of the punctuation that reported it.
    reported_ms: i64,
}

impl AvroRecord for ParcelQuiet {
    const FULL_NAME: &'static str = "toy.logistics.clock.ParcelQuiet";
    const SCHEMA_JSON: &'static str = r#"{"type": "record", "name": "ParcelQuiet",
        "namespace": "toy.logistics.clock", "fields": [
        {"name": "parcel_id", "type": "string"},
        {"name": "last_seen_ms", "type": "long"},
        {"name": "reported_ms", "type": "long"}
    ]}"#;
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// Remembers each scanned parcel with the wall-clock time it was processed; every
/// 200 ms of wall-clock time reports and forgets those quiet for [`QUIET_MS`].
struct QuietParcels {
    input: &'static str,
    output: &'static str,
}

impl Processor for QuietParcels {
    type Input = ParcelScanned;

    fn name(&self) -> &'static str {
        "toy-quiet-parcels"
    }

    fn inputs(&self) -> Vec<Input<ParcelScanned>> {
        vec![Input::new(
            TopicRef::External(self.input),
            AvroSerde::<ParcelScanned>::new(),
        )]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::kept(STORE)]
    }

    fn sinks(&self) -> Vec<Sink> {
        vec![Sink::new(
            "quiet",
            TopicRef::External(self.output),
            AvroSerde::<ParcelQuiet>::new(),
        )]
    }

    fn process(
        &mut self,
        record: Record<ParcelScanned>,
        ctx: &mut dyn ProcessorContext,
    ) -> paystream_runtime::processor::Result<()> {
        ctx.store(STORE)?.put(
            record.value.parcel_id.as_bytes(),
            &wall_clock_ms().to_be_bytes(),
        )?;
        Ok(())
    }

    fn wall_clock_punctuation_interval_ms(&self) -> Option<u64> {
        Some(200)
    }

    fn punctuate_wall_clock(
        &mut self,
        wall_clock_ms: i64,
        ctx: &mut dyn ProcessorContext,
    ) -> paystream_runtime::processor::Result<()> {
        let store = ctx.store(STORE)?;
        let mut quiet = Vec::new();
        for (key, value) in store.range(&[], 1_000)? {
            let last_seen_ms = i64::from_be_bytes(value.as_slice().try_into().expect("8 bytes"));
            if wall_clock_ms - last_seen_ms >= QUIET_MS {
                quiet.push((key, last_seen_ms));
            }
        }
        for (key, last_seen_ms) in quiet {
            ctx.store(STORE)?.delete(&key)?;
            ctx.forward(Forward::To {
                sink: "quiet",
                key: key.clone(),
                value: Box::new(ParcelQuiet {
                    parcel_id: String::from_utf8_lossy(&key).into_owned(),
                    last_seen_ms,
                    reported_ms: wall_clock_ms,
                }),
            });
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_punctuation_runs_and_commits_while_no_record_arrives() -> anyhow::Result<()> {
    let env = TestEnv::new("wallclock");
    let config = env.config();
    let input = env.topic("toy_clock_scans");
    let output = env.topic("toy_clock_quiet");
    // Declarations name topics without the test's prefix, which the runtime adds.
    let input_name: &'static str = "toy_clock_scans";
    let output_name: &'static str = "toy_clock_quiet";
    let processor = move || QuietParcels {
        input: input_name,
        output: output_name,
    };
    let topology = Topology::builder(&config)
        .processor(processor)
        .build()
        .expect("a valid topology");
    create_topics(&config, &topology).await?;

    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .set("enable.idempotence", "true")
        .create()?;
    for i in 0..PARCELS {
        let scan = ParcelScanned {
            parcel_id: format!("parcel-{i}"),
            scanned_at: wall_clock_ms(),
        };
        let value = codec.encode(&input, &scan).await?;
        producer
            .send(
                FutureRecord::to(&input)
                    .key(&scan.parcel_id)
                    .payload(&value)
                    .timestamp(scan.scanned_at),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let pipeline = Pipeline::new(
        config.clone(),
        topology,
        Arc::new(Codec::new(
            &config.schema_registry.url,
            Duration::from_secs(10),
        )?),
        Metrics::new(),
        Arc::new(Health::default()),
    )
    .await?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(pipeline.run(shutdown_rx, false));

    // No record arrives after the five scans: only the wall-clock punctuation can
    // report them, and only a transaction that read no record can commit the reports.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reports = Vec::new();
    while reports.len() < PARCELS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reports = read_committed(&output, Duration::from_secs(30))?;
    }
    shutdown_tx.send(true)?;
    let summary = tokio::time::timeout(Duration::from_secs(60), running).await???;

    assert_eq!(summary.input_records, PARCELS as u64, "{summary:?}");
    assert_eq!(reports.len(), PARCELS, "each quiet parcel reported once");
    let mut ids = Vec::new();
    for record in reports {
        let quiet: ParcelQuiet = codec.decode(record.value.as_deref()).await?;
        assert!(
            quiet.reported_ms - quiet.last_seen_ms >= QUIET_MS,
            "reported after {QUIET_MS} ms of quiet: {quiet:?}"
        );
        ids.push(quiet.parcel_id);
    }
    ids.sort();
    let expected: Vec<String> = (0..PARCELS).map(|i| format!("parcel-{i}")).collect();
    assert_eq!(ids, expected);

    // The store deletes committed with the reports: the changelog holds each parcel's
    // write and its tombstone.
    let changelog = read_committed(
        &format!("{}-{STORE}-changelog", config.application_id),
        Duration::from_secs(30),
    )?;
    let tombstones = changelog.iter().filter(|r| r.value.is_none()).count();
    assert_eq!(changelog.len(), 2 * PARCELS, "{changelog:?}");
    assert_eq!(tombstones, PARCELS);
    Ok(())
}
