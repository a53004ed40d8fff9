//! Captures, voids, refunds and chargebacks on real parts (Apache Kafka, Apicurio's
//! Confluent-compatible registry, PostgreSQL): one payment per rule — the legal paths,
//! each illegal case (a capture after a void, a capture above what is left, a refund
//! above what was captured, a chargeback after a full refund, a refund of a declined
//! payment), movements that arrive before their payment, movements that compete (a
//! void after a partial capture, a chargeback after a full refund) read in the reverse
//! of the order they happened, and the same movement
//! reported again, a payment written with the schema before capture modes — through
//! `paystream run`, checked in the ledger the sink wrote, the
//! dead-letter queues and the exceptions; then the whole input is replayed and nothing
//! is posted twice.

use std::collections::BTreeMap;
use std::time::Duration;

use paystream_integration::{TestEnv, read_committed, registry_url};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, AuthorizationVoided, CaptureMode, ChargebackReported,
    ChargebackStage, Codec, InputEvent, PaymentCaptured, PaymentInitiated, RefundIssued,
    SettlementReported, encode_input_event,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    paystream_testkit::traffic::now_ms()
}

/// Builds the events of one payment, with event times in the order they happen.
struct Payment {
    id: String,
    at_ms: i64,
}

impl Payment {
    fn new(n: u32) -> Self {
        Payment {
            id: format!("pay-{n}"),
            at_ms: now_ms() - 600_000,
        }
    }

    fn tick(&mut self) -> i64 {
        self.at_ms += 1_000;
        self.at_ms
    }

    fn initiated(&mut self, amount_minor: i64, capture_mode: CaptureMode) -> InputEvent {
        InputEvent::PaymentInitiated(PaymentInitiated {
            event_id: format!("{}-init", self.id),
            idempotency_key: format!("{}-idem", self.id),
            payment_id: self.id.clone(),
            merchant_id: "merchant-a".into(),
            customer_id: "customer-a".into(),
            amount_minor,
            currency: "EUR".into(),
            payment_method_token: "pm_test_visa".into(),
            psp: "adyen".into(),
            occurred_at: self.tick(),
            capture_mode,
        })
    }

    fn authorized(&mut self, amount_minor: i64) -> InputEvent {
        InputEvent::AuthSucceeded(AuthSucceeded {
            event_id: format!("{}-auth", self.id),
            payment_id: self.id.clone(),
            psp_reference: format!("{}-psp", self.id),
            auth_code: "A1".into(),
            amount_minor,
            currency: "EUR".into(),
            occurred_at: self.tick(),
        })
    }

    fn declined(&mut self) -> InputEvent {
        InputEvent::AuthFailed(AuthFailed {
            event_id: format!("{}-decline", self.id),
            payment_id: self.id.clone(),
            psp_reference: None,
            decline_code: "05".into(),
            reason: "do not honour".into(),
            occurred_at: self.tick(),
        })
    }

    fn captured(&mut self, capture_id: &str, amount_minor: i64, final_capture: bool) -> InputEvent {
        InputEvent::PaymentCaptured(PaymentCaptured {
            event_id: format!("{}-{capture_id}", self.id),
            payment_id: self.id.clone(),
            capture_id: capture_id.into(),
            psp_reference: format!("{}-psp", self.id),
            amount_minor,
            currency: "EUR".into(),
            final_capture,
            occurred_at: self.tick(),
        })
    }

    fn voided(&mut self) -> InputEvent {
        InputEvent::AuthorizationVoided(AuthorizationVoided {
            event_id: format!("{}-void", self.id),
            payment_id: self.id.clone(),
            psp_reference: format!("{}-psp", self.id),
            reason: "order cancelled\u{7}".into(),
            occurred_at: self.tick(),
        })
    }

    fn settled(&mut self, gross_minor: i64, fee_minor: i64) -> InputEvent {
        InputEvent::SettlementReported(SettlementReported {
            event_id: format!("{}-settle", self.id),
            payment_id: self.id.clone(),
            psp_reference: format!("{}-psp", self.id),
            settlement_batch_id: "batch-1".into(),
            gross_amount_minor: gross_minor,
            fee_minor,
            net_amount_minor: gross_minor - fee_minor,
            currency: "EUR".into(),
            settled_at: self.tick(),
        })
    }

    fn refunded(&mut self, refund_id: &str, amount_minor: i64) -> InputEvent {
        InputEvent::RefundIssued(RefundIssued {
            event_id: format!("{}-{refund_id}", self.id),
            payment_id: self.id.clone(),
            refund_id: refund_id.into(),
            psp_reference: format!("{}-psp", self.id),
            amount_minor,
            currency: "EUR".into(),
            reason: "returned".into(),
            occurred_at: self.tick(),
        })
    }

    fn chargeback(&mut self, stage: ChargebackStage, amount_minor: i64) -> InputEvent {
        InputEvent::ChargebackReported(ChargebackReported {
            event_id: format!("{}-dispute-{}", self.id, stage.as_str()),
            payment_id: self.id.clone(),
            dispute_id: format!("{}-dispute", self.id),
            amount_minor,
            currency: "EUR".into(),
            fee_minor: 15,
            reason_code: "10.4".into(),
            stage,
            occurred_at: self.tick(),
        })
    }
}

/// `payment` as a producer of the schema before capture modes writes it: the previous
/// `PaymentInitiated` schema registered (under a subject of this test's own), its id,
/// then the Avro body without `capture_mode` (Confluent wire format).
async fn with_previous_schema(
    env: &TestEnv,
    payment: &PaymentInitiated,
) -> anyhow::Result<Vec<u8>> {
    use apache_avro::types::Value;
    let previous = include_str!("../../schemas/avro/previous/payment_initiated.avsc");
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/subjects/{}previous-value/versions",
            registry_url().trim_end_matches('/'),
            env.prefix
        ))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(serde_json::json!({ "schema": previous }).to_string())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let answer: serde_json::Value = serde_json::from_str(&answer)?;
    let id = u32::try_from(answer["id"].as_u64().expect("a schema id"))?;
    let text = |s: &str| Value::String(s.into());
    let record = Value::Record(vec![
        ("event_id".into(), text(&payment.event_id)),
        ("idempotency_key".into(), text(&payment.idempotency_key)),
        ("payment_id".into(), text(&payment.payment_id)),
        ("merchant_id".into(), text(&payment.merchant_id)),
        ("customer_id".into(), text(&payment.customer_id)),
        ("amount_minor".into(), Value::Long(payment.amount_minor)),
        ("currency".into(), text(&payment.currency)),
        (
            "payment_method_token".into(),
            text(&payment.payment_method_token),
        ),
        ("psp".into(), text(&payment.psp)),
        (
            "occurred_at".into(),
            Value::TimestampMillis(payment.occurred_at),
        ),
    ]);
    let schema = apache_avro::Schema::parse_str(previous)?;
    let mut value = vec![0u8];
    value.extend_from_slice(&id.to_be_bytes());
    value.extend(
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()?
            .write_value_to_vec(record)?,
    );
    Ok(value)
}

/// Sends `events` in this order. With `event_time_stamps` each record is stamped with
/// its event's own time, as producers of these topics are asked to (docs/architecture.md,
/// "Order of money movements"); without, with the time it is sent (the producer's
/// create time), so that the pipeline reads them in the order sent.
async fn send(
    env: &TestEnv,
    codec: &Codec,
    producer: &FutureProducer,
    events: &[InputEvent],
    event_time_stamps: bool,
) -> anyhow::Result<()> {
    for event in events {
        let topic = env.topic(event.topic_name());
        let key = match event {
            InputEvent::PaymentInitiated(p) => p.key(),
            other => other.payment_id().to_string(),
        };
        let value = encode_input_event(codec, &topic, event).await?;
        let mut record = FutureRecord::to(&topic).key(&key).payload(&value);
        if event_time_stamps {
            record = record.timestamp(event.event_time_ms());
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// `(payment_id, kind)` → count of journal entries, and each payment's status.
async fn ledger(
    pool: &sqlx::PgPool,
) -> anyhow::Result<(BTreeMap<(String, String), i64>, BTreeMap<String, String>)> {
    let mut entries = BTreeMap::new();
    for row in sqlx::query(
        "SELECT payment_id, kind, count(*) AS n FROM journal_entries GROUP BY payment_id, kind",
    )
    .fetch_all(pool)
    .await?
    {
        entries.insert((row.get("payment_id"), row.get("kind")), row.get("n"));
    }
    let mut statuses = BTreeMap::new();
    for row in sqlx::query("SELECT payment_id, status FROM payments")
        .fetch_all(pool)
        .await?
    {
        statuses.insert(row.get("payment_id"), row.get("status"));
    }
    Ok((entries, statuses))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_money_movement_rule_on_the_real_stack() -> anyhow::Result<()> {
    let env = TestEnv::new("money");
    env.prepare()?;
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;

    let mut events = Vec::new();
    // 1. Manual capture: two partial captures, the second final; settled; part refunded.
    let mut p = Payment::new(1);
    events.extend([
        p.initiated(1_000, CaptureMode::Manual),
        p.authorized(1_000),
        p.captured("c1", 600, false),
        p.captured("c2", 300, true),
        p.settled(900, 20),
        p.refunded("r1", 300),
    ]);
    // 2. Voided, then a capture after the void: refused.
    let mut p = Payment::new(2);
    events.extend([
        p.initiated(1_000, CaptureMode::Manual),
        p.authorized(1_000),
        p.voided(),
        p.captured("c1", 100, false),
    ]);
    // 3. Automatic capture: a refund above the captured amount is refused, a full one
    //    applies, and a chargeback after it is refused.
    let mut p = Payment::new(3);
    events.extend([
        p.initiated(500, CaptureMode::Automatic),
        p.authorized(500),
        p.refunded("r1", 600),
        p.refunded("r2", 500),
        p.chargeback(ChargebackStage::Opened, 100),
    ]);
    // 4. A chargeback opened and won.
    let mut p = Payment::new(4);
    events.extend([
        p.initiated(800, CaptureMode::Automatic),
        p.authorized(800),
        p.chargeback(ChargebackStage::Opened, 800),
        p.chargeback(ChargebackStage::Won, 800),
    ]);
    // 5. A refund of a declined payment: refused.
    let mut p = Payment::new(5);
    events.extend([
        p.initiated(700, CaptureMode::Automatic),
        p.declined(),
        p.refunded("r1", 100),
    ]);
    // 6. A capture and a refund sent before their payment and its auth: they wait.
    let mut p = Payment::new(6);
    let (init, auth) = (p.initiated(1_000, CaptureMode::Manual), p.authorized(1_000));
    let (capture, refund) = (p.captured("c1", 400, false), p.refunded("r1", 200));
    events.extend([refund, capture, init, auth]);
    // 8. A capture above what is left of the authorization: refused; the rest captures.
    let mut p8 = Payment::new(8);
    events.extend([
        p8.initiated(1_000, CaptureMode::Manual),
        p8.authorized(1_000),
        p8.captured("c1", 700, false),
        p8.captured("c2", 400, false),
        p8.captured("c3", 300, true),
    ]);
    // 7. The same capture three times: the event again, then under a new event id.
    let mut p = Payment::new(7);
    let capture = p.captured("c1", 250, false);
    let mut resent = capture.clone();
    if let InputEvent::PaymentCaptured(c) = &mut resent {
        c.event_id = format!("{}-resent", c.event_id);
    }
    events.extend([
        p.initiated(1_000, CaptureMode::Manual),
        p.authorized(1_000),
        capture.clone(),
        capture,
        resent,
    ]);
    send(&env, &codec, &producer, &events, true).await?;
    // 10. A partial capture, then a void that releases the rest, published in the
    //     reverse order on their two topics (and stamped when sent, so read in that
    //     order): both apply in the order they happened, after the reorder wait.
    let mut events = Vec::new();
    let mut p = Payment::new(10);
    let (init, auth) = (p.initiated(1_000, CaptureMode::Manual), p.authorized(1_000));
    let (capture, void) = (p.captured("c1", 600, false), p.voided());
    events.extend([init, auth, void, capture]);
    // 11. A full refund, then a chargeback, published in the reverse order: the refund
    //     applies and the chargeback is refused, as when read in the order they happened.
    let mut p = Payment::new(11);
    let (init, auth) = (p.initiated(500, CaptureMode::Automatic), p.authorized(500));
    let (refund, chargeback) = (
        p.refunded("r1", 500),
        p.chargeback(ChargebackStage::Opened, 500),
    );
    events.extend([init, auth, chargeback, refund]);
    send(&env, &codec, &producer, &events, false).await?;
    // 9. A payment written by a producer of the schema before capture modes: processed
    //    as automatic capture.
    let mut p9 = Payment::new(9);
    let InputEvent::PaymentInitiated(old_payment) = p9.initiated(1_500, CaptureMode::Automatic)
    else {
        unreachable!()
    };
    let value = with_previous_schema(&env, &old_payment).await?;
    producer
        .send(
            FutureRecord::to(&env.topic("payment_initiated"))
                .key(&old_payment.key())
                .payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    send(&env, &codec, &producer, &[p9.authorized(1_500)], true).await?;

    let run = env.paystream(&["run", "--until-caught-up"])?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let (entries, statuses) = ledger(&pool).await?;
    let status = |n: u32| statuses.get(&format!("pay-{n}")).map(String::as_str);
    assert_eq!(status(1), Some("PARTIALLY_REFUNDED"), "{stdout}");
    assert_eq!(status(2), Some("VOIDED"));
    assert_eq!(status(3), Some("REFUNDED"));
    assert_eq!(status(4), Some("CHARGEBACK_WON"));
    assert_eq!(status(5), Some("DECLINED"));
    assert_eq!(status(6), Some("PARTIALLY_REFUNDED"));
    assert_eq!(status(7), Some("PARTIALLY_CAPTURED"));
    assert_eq!(status(8), Some("CAPTURED"));
    assert_eq!(status(9), Some("AUTHORIZED"), "a previous-schema payment");
    assert_eq!(
        status(10),
        Some("CAPTURED"),
        "captured, then the rest released"
    );
    assert_eq!(status(11), Some("REFUNDED"));
    let count = |n: u32, kind: &str| {
        entries
            .get(&(format!("pay-{n}"), kind.to_string()))
            .copied()
            .unwrap_or(0)
    };
    for (n, kind, expected) in [
        (1, "AUTHORIZATION_HOLD", 1),
        (1, "CAPTURE", 2),
        (1, "SETTLEMENT", 1),
        (1, "REFUND", 1),
        (2, "VOID", 1),
        (2, "CAPTURE", 0),
        (3, "AUTHORIZATION", 1),
        (3, "REFUND", 1),
        (3, "CHARGEBACK_OPENED", 0),
        (4, "CHARGEBACK_OPENED", 1),
        (4, "CHARGEBACK_WON", 1),
        (5, "REFUND", 0),
        (6, "CAPTURE", 1),
        (6, "REFUND", 1),
        (7, "CAPTURE", 1),
        (8, "CAPTURE", 2),
        (9, "AUTHORIZATION", 1),
        (10, "CAPTURE", 1),
        (10, "VOID", 1),
        (11, "REFUND", 1),
        (11, "CHARGEBACK_OPENED", 0),
    ] {
        assert_eq!(count(n, kind), expected, "pay-{n} {kind}: {entries:?}");
    }

    // Each refusal went to its topic's dead-letter queue with its reason, and raised
    // its exception.
    let mut reasons = Vec::new();
    for topic in ["capture", "refund", "chargeback"] {
        for record in read_committed(&env.topic(&format!("{topic}.dlq")), READ_TIMEOUT)? {
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
            reasons.push(format!("{key} {}", record.headers["paystream.dlq.reason"]));
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "pay-11 illegal_transition",
            "pay-2 illegal_transition",
            "pay-3 illegal_transition",
            "pay-3 refund_exceeds_captured",
            "pay-5 illegal_transition",
            "pay-8 capture_exceeds_authorization",
        ]
    );
    let mut exceptions: Vec<(String, String)> = sqlx::query(
        "SELECT payment_id, kind FROM reconciliation_exceptions ORDER BY payment_id, kind",
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|row| (row.get("payment_id"), row.get("kind")))
    .collect();
    exceptions.sort();
    let expected: Vec<(String, String)> = [
        ("pay-11", "ILLEGAL_MONEY_MOVEMENT"),
        ("pay-2", "ILLEGAL_MONEY_MOVEMENT"),
        ("pay-3", "ILLEGAL_MONEY_MOVEMENT"),
        ("pay-3", "REFUND_EXCEEDS_CAPTURED"),
        ("pay-5", "ILLEGAL_MONEY_MOVEMENT"),
        ("pay-8", "CAPTURE_EXCEEDS_AUTHORIZATION"),
    ]
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .into();
    assert_eq!(exceptions, expected);

    // The ledger balances, holds net to zero, and the checks pass.
    let verify = env.paystream(&["ledger", "verify"])?;
    let verify_out = String::from_utf8_lossy(&verify.stdout).into_owned();
    let balances = paystream_integration::ledger_snapshot(&env.database_url)
        .await?
        .balances_minor;
    for account in [
        "psp_authorized_hold:adyen|EUR",
        "merchant_pending:merchant-a|EUR",
    ] {
        // The open authorizations still hold their rest: pay-7 750, pay-6 600.
        let held = balances.get(account).copied().unwrap_or(0).abs();
        assert_eq!(held, 750 + 600, "{account}: {balances:?}\n{verify_out}");
    }

    // A payment's history, in the order its money moved.
    let history = env.paystream(&["ledger", "history", "--payment", "pay-1", "--json"])?;
    let history: serde_json::Value = serde_json::from_slice(&history.stdout)?;
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "AUTHORIZATION_HOLD",
            "CAPTURE",
            "CAPTURE",
            "SETTLEMENT",
            "REFUND"
        ]
    );
    assert_eq!(history["status"]["status"], "PARTIALLY_REFUNDED");
    let unknown = env.paystream_unchecked(&["ledger", "history", "--payment", "pay-unknown"])?;
    assert_eq!(unknown.status.code(), Some(1));

    // Replay everything: nothing is posted twice.
    let before = paystream_integration::ledger_snapshot(&env.database_url).await?;
    env.paystream(&["replay", "--to-earliest"])?;
    env.paystream(&["run", "--until-caught-up"])?;
    let after = paystream_integration::ledger_snapshot(&env.database_url).await?;
    assert_eq!(after, before, "a replay posts nothing twice");

    // `ledger verify` checks each payment's totals: a capture forged after pay-2's void
    // and a refund forged beyond what pay-3 captured are found.
    for (payment, kind, account) in [
        ("pay-2", "CAPTURE", "psp_receivable:adyen"),
        ("pay-3", "REFUND", "merchant_payable:merchant-a"),
    ] {
        let id = uuid::Uuid::new_v4();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO journal_entries (id, payment_id, kind, occurred_at, caused_by_event_id,
                                          source_topic, source_partition, source_offset)
             VALUES ('{id}', '{payment}', '{kind}', now() + interval '1 hour', 'forged', 'x', 0, 0);
             INSERT INTO postings (journal_entry_id, line, account, side, amount_minor, currency,
                                   account_sequence)
             VALUES ('{id}', 0, '{account}', 'DEBIT', 100, 'EUR', 1000000)"
        )))
        .execute(&pool)
        .await?;
    }
    let verify = env.paystream_unchecked(&["ledger", "verify"])?;
    let verify_out = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert_eq!(verify.status.code(), Some(1), "{verify_out}");
    for line in [
        "captured after void      1 payments",
        "refunded + charged back > captured 1 payments",
        "captured > authorized    0 payments",
    ] {
        assert!(verify_out.contains(line), "{line} in\n{verify_out}");
    }
    pool.close().await;
    Ok(())
}
