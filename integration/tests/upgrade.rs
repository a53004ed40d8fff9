//! An upgrade, on the real broker: the lifecycle's changelogs as the release before the
//! single-value state layout wrote them (docs/architecture.md, "State layout") are
//! restored into a task of this release, which migrates them (`lifecycle/upgrade.rs`): a
//! retried auth is still a duplicate, an event waiting in the old `pending` store is
//! applied when its payment arrives, and a timer of the old `timers` store fires. Losing those on an upgrade would
//! mean applying a payment's events twice or never.
//!
//! The records are written byte for byte as that release's runtime logged them: each
//! value behind the 8-byte stream time its TTL layer prefixes (big-endian milliseconds),
//! the payment state as JSON, waiting events in the `pending` store's version 1, a
//! timer as a key `kind · due_ms · payment_id`.

use std::time::{Duration, Instant};

use paystream_integration::TestEnv;
use paystream_processors::lifecycle::pending::{self, PendingEvent};
use paystream_processors::timers::{self, TimerKind};
use paystream_processors::{Origin, Output, Stream};
use paystream_runtime::metrics::Metrics;
use paystream_runtime::restore::Restoring;
use paystream_runtime::task::{Task, TaskId};
use paystream_schemas::{
    AuthSucceeded, CaptureMode, InputEvent, PaymentInitiated, PaymentStatus,
    ReconciliationExceptionKind, SettlementReported,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Stream time the earlier release wrote its values at.
const WRITTEN_AT_MS: i64 = 1_000;

fn origin(topic: &str, payment_id: &str, timestamp_ms: i64) -> Origin {
    Origin {
        topic: topic.to_string(),
        partition: 0,
        offset: 0,
        timestamp_ms,
        key: Some(payment_id.as_bytes().to_vec()),
        value: None,
    }
}

fn auth(payment_id: &str, event_id: &str) -> InputEvent {
    InputEvent::AuthSucceeded(AuthSucceeded {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: "psp-1".into(),
        auth_code: "A1".into(),
        amount_minor: 1_000,
        currency: "EUR".into(),
        occurred_at: WRITTEN_AT_MS,
    })
}

fn payment(payment_id: &str) -> InputEvent {
    InputEvent::PaymentInitiated(PaymentInitiated {
        event_id: format!("init-{payment_id}"),
        idempotency_key: format!("idem-{payment_id}"),
        payment_id: payment_id.into(),
        merchant_id: "m1".into(),
        customer_id: "c1".into(),
        amount_minor: 1_000,
        currency: "EUR".into(),
        payment_method_token: "pm_1".into(),
        psp: "adyen".into(),
        occurred_at: WRITTEN_AT_MS,
        capture_mode: CaptureMode::Automatic,
    })
}

fn settlement(payment_id: &str, event_id: &str) -> InputEvent {
    InputEvent::SettlementReported(SettlementReported {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: "psp-1".into(),
        settlement_batch_id: "batch-1".into(),
        gross_amount_minor: 1_000,
        fee_minor: 25,
        net_amount_minor: 975,
        currency: "EUR".into(),
        settled_at: WRITTEN_AT_MS,
    })
}

/// A store value as the TTL layer logged it: write time, then the value.
fn logged(value: &[u8]) -> Vec<u8> {
    [&WRITTEN_AT_MS.to_be_bytes()[..], value].concat()
}

fn statuses(outputs: &[Output]) -> Vec<(Option<PaymentStatus>, PaymentStatus)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::PaymentStatus(s) => Some((s.previous_status, s.status)),
            _ => None,
        })
        .collect()
}

/// What the payment processors forwarded, as their outputs.
fn outputs_of(forwarded: Vec<paystream_runtime::Forward>) -> Vec<Output> {
    forwarded
        .into_iter()
        .map(|forward| Output::from_forward(forward).expect("a payments output"))
        .collect()
}

fn process(task: &mut Task, event: InputEvent, topic: &str) -> anyhow::Result<Vec<Output>> {
    let origin = origin(topic, event.payment_id(), WRITTEN_AT_MS + 1);
    task.advance_stream_time(Some(Stream::of(&event).input()), origin.timestamp_ms);
    let forwarded = task
        .process(Box::new(event), origin)?
        .map_err(|message| anyhow::anyhow!("the record failed: {message}"))?;
    Ok(outputs_of(forwarded))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelogs_of_the_earlier_state_layout_restore_into_this_release() -> anyhow::Result<()> {
    let env = TestEnv::new("upgrade");
    let config = env.config();
    // Events apply as they are processed (no reorder wait): this test is about the state
    // they find.
    let topology = paystream_processors::topology::payments_topology(
        &config,
        &paystream_processors::PaymentsConfig {
            movement_reorder_wait_ms: 0,
            ..Default::default()
        },
        &paystream_processors::metrics::PaymentMetrics::unregistered(),
    );
    let lifecycle = topology.sub_topology(1);
    assert_eq!(lifecycle.processor, "payment-lifecycle");
    let changelog = |store: &str| {
        lifecycle
            .stores
            .iter()
            .find(|s| s.name == store)
            .map(|s| s.changelog.clone())
            .expect("a lifecycle store")
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;
    let topics: Vec<String> = lifecycle
        .stores
        .iter()
        .map(|s| s.changelog.clone())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact")
        })
        .collect();
    admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await?;

    // p1 was authorized by auth a1; auth a2 waits for p2, which has not arrived; both
    // have timers.
    let p1_state = concat!(
        r#"{"payment_id":"p1","merchant_id":"m1","psp":"adyen","amount_minor":1000,"#,
        r#""currency":"EUR","status":"AUTHORIZED","initiated_event_id":"init-p1","#,
        r#""authorized_amount_minor":1000,"authorized_currency":"EUR"}"#
    );
    let waiting = pending::encode(&[PendingEvent {
        event: auth("p2", "a2"),
        origin: origin("auth_success", "p2", WRITTEN_AT_MS),
    }]);
    let mut records: Vec<(String, Vec<u8>, Vec<u8>)> = vec![
        (
            changelog("payments"),
            b"p1".to_vec(),
            logged(p1_state.as_bytes()),
        ),
        (changelog("seen_events"), b"a1".to_vec(), logged(b"")),
        (changelog("seen_events"), b"a2".to_vec(), logged(b"")),
        (changelog("pending"), b"p2".to_vec(), logged(&waiting)),
    ];
    for (kind, due_ms, payment_id) in [
        (
            TimerKind::SettlementWindow,
            WRITTEN_AT_MS + 3 * DAY_MS,
            "p1",
        ),
        (TimerKind::Orphan, WRITTEN_AT_MS + 10 * MINUTE_MS, "p2"),
        (TimerKind::PendingExpiry, WRITTEN_AT_MS + 3 * DAY_MS, "p2"),
    ] {
        records.push((
            changelog("timers"),
            timers::legacy_key(kind, due_ms, payment_id),
            logged(b""),
        ));
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .set("enable.idempotence", "true")
        .create()?;
    for (topic, key, value) in &records {
        producer
            .send(
                FutureRecord::to(topic).partition(0).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let id = TaskId {
        sub_topology: lifecycle.id,
        partition: 0,
    };
    let metrics = Metrics::new();
    let restoring = Restoring::start(id, lifecycle, &config, &metrics)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !restoring.is_finished() {
        assert!(Instant::now() < deadline, "the restore did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut task = Task::new(id, lifecycle, restoring.finish()?)?;

    assert_eq!(
        process(&mut task, auth("p1", "a1"), "auth_success")?,
        vec![Output::DuplicateDropped],
        "the applied auth is known from the old seen_events"
    );
    assert_eq!(
        process(&mut task, auth("p2", "a2"), "auth_success")?,
        vec![Output::DuplicateDropped],
        "the waiting auth is known from the old pending"
    );
    assert_eq!(
        statuses(&process(&mut task, payment("p2"), "payments-by-id")?),
        vec![
            (None, PaymentStatus::Initiated),
            (Some(PaymentStatus::Initiated), PaymentStatus::Authorized)
        ],
        "the auth that waited in the old pending applies once its payment arrives"
    );
    assert_eq!(
        statuses(&process(&mut task, settlement("p1", "s1"), "settlement")?),
        vec![(Some(PaymentStatus::Authorized), PaymentStatus::Settled)],
        "the payment restored from JSON settles"
    );
    let written: Vec<(&str, bool)> = task
        .pending_writes()
        .map(|(store, write)| (store, write.value.is_some()))
        .collect();
    assert!(
        written.contains(&("pending", false)) && written.contains(&("payments", true)),
        "p2 leaves the old pending store and both payments are rewritten: {written:?}"
    );
    task.commit_stores()?;

    // p1's settlement window (an old timer) finds it settled; p2's, a timer of this
    // release, finds it authorized and raises MISSING_IN_PSP.
    task.advance_stream_time(
        Some(Stream::Settlements.input()),
        WRITTEN_AT_MS + 4 * DAY_MS,
    );
    task.advance_upstream_time(
        paystream_processors::lifecycle::inputs::PAYMENTS_BY_ID,
        0,
        1,
        WRITTEN_AT_MS + 4 * DAY_MS,
    );
    let fired = outputs_of(
        task.punctuate()?
            .map_err(|message| anyhow::anyhow!("punctuation failed: {message}"))?,
    );
    let raised: Vec<(ReconciliationExceptionKind, &str)> = fired
        .iter()
        .filter_map(|o| match o {
            Output::ReconciliationException(x) => Some((x.kind, x.payment_id.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        raised,
        vec![(ReconciliationExceptionKind::MissingInPsp, "p2")],
        "{fired:?}"
    );
    assert!(
        task.pending_writes()
            .any(|(store, write)| store == "timers" && write.value.is_none()),
        "the old timers moved into their payments' values and left the old timers store"
    );
    task.close();
    admin
        .delete_topics(
            &topics.iter().map(String::as_str).collect::<Vec<_>>(),
            &AdminOptions::new(),
        )
        .await?;
    Ok(())
}
