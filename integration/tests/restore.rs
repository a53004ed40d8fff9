//! Restore as a phase of its own, on the real broker: a task's restore runs on its own
//! thread, writes its progress to the task's checkpoint as it goes, can be cancelled, and
//! a new restore resumes from that checkpoint instead of starting over.

use std::time::{Duration, Instant};

use paystream_integration::{TestEnv, fill_changelog};
use paystream_runtime::metrics::Metrics;
use paystream_runtime::restore::Restoring;
use paystream_runtime::state_manager::{Checkpoint, task_dir};
use paystream_runtime::task::TaskId;
use paystream_state::KeyValueStore;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const KEYS: u64 = 300_000;

fn restored_so_far(metrics: &Metrics, store: &str) -> u64 {
    metrics.restore_records.with_label_values(&[store]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_restore_resumes_from_its_checkpoint() -> anyhow::Result<()> {
    let env = TestEnv::new("restore");
    let config = env.config();
    let topology = paystream_processors::topology::payments_topology_description(&config);
    let dedupe = topology.sub_topology(0);
    let store = dedupe.stores[0].clone();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;
    admin
        .create_topics(
            &[
                NewTopic::new(&store.changelog, 1, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact"),
            ],
            &AdminOptions::new(),
        )
        .await?;
    fill_changelog(&store.changelog, Some(0), KEYS, &[b'v'; 100], "key-").await?;

    // First restore: cancelled once its checkpoint shows progress.
    let id = TaskId {
        sub_topology: dedupe.id,
        partition: 0,
    };
    let dir = task_dir(&config, &id.to_string());
    let first_metrics = Metrics::new();
    let restoring = Restoring::start(id, dedupe, &config, &first_metrics)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpointed = loop {
        let offset = Checkpoint::read(&dir)
            .ok()
            .flatten()
            .and_then(|c| c.offsets.get(store.name).copied())
            .unwrap_or(0);
        if offset >= 20_000 {
            break offset;
        }
        assert!(
            !restoring.is_finished(),
            "the restore ended before it was cancelled"
        );
        assert!(Instant::now() < deadline, "no progress checkpointed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    restoring.cancel();
    let after_cancel = Checkpoint::read(&dir)?.expect("checkpoint kept");
    let resumed_from = after_cancel.offsets[store.name];
    assert!(
        resumed_from >= checkpointed,
        "{resumed_from} >= {checkpointed}"
    );
    assert!(
        (resumed_from as u64) < KEYS,
        "cancelled before the end: {resumed_from}"
    );
    println!("cancelled at changelog offset {resumed_from} of {KEYS}");

    // Second restore: from the checkpoint to the end, not from the beginning.
    let second_metrics = Metrics::new();
    let restored = Restoring::start(id, dedupe, &config, &second_metrics)?;
    while !restored.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restored = restored.finish()?;
    let read_again = restored_so_far(&second_metrics, store.name);
    assert_eq!(
        read_again,
        KEYS - resumed_from as u64,
        "the second restore reads only what the first did not checkpoint"
    );
    let (_, rocks) = &restored.stores[0];
    for key in [0, resumed_from as u64 - 1, resumed_from as u64, KEYS - 1] {
        assert!(
            rocks.get(format!("key-{key:012}").as_bytes())?.is_some(),
            "key {key} restored"
        );
    }
    assert_eq!(restored.checkpoint.offset(store.name), Some(KEYS as i64));
    admin
        .delete_topics(&[&store.changelog], &AdminOptions::new())
        .await?;
    Ok(())
}
