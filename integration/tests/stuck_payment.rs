//! A stuck payment is found when traffic stops, on real parts (Apache Kafka, Apicurio's
//! Confluent-compatible registry, PostgreSQL): `paystream run` with a short
//! `payments.stuck_payment_timeout_ms` gets two payments and the auth of one of them, then
//! nothing more. The lifecycle's wall-clock punctuation raises `STUCK_PAYMENT` for the one
//! without an auth outcome — while no record arrives, so no stream-time timer could — and
//! the ledger sink stores it; the authorized one raises nothing.

use std::time::{Duration, Instant};

use paystream_integration::{Running, TestEnv, registry_url};
use paystream_schemas::{AuthSucceeded, CaptureMode, Codec, PaymentInitiated};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

const STUCK_TIMEOUT_MS: &str = "1500";

fn payment(n: u32) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-init-{n}"),
        idempotency_key: format!("idem-{n}"),
        payment_id: format!("pay-{n}"),
        merchant_id: "merchant-a".into(),
        customer_id: "customer-a".into(),
        amount_minor: 4_200 + i64::from(n),
        currency: "EUR".into(),
        payment_method_token: "pm_test_visa".into(),
        psp: "adyen".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        capture_mode: CaptureMode::Automatic,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_without_an_auth_outcome_raises_stuck_payment_while_no_record_arrives()
-> anyhow::Result<()> {
    let env = TestEnv::new("stuck");
    env.prepare()?;
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;
    let initiated_topic = env.topic("payment_initiated");
    for n in 1..=2 {
        let value = codec.encode(&initiated_topic, &payment(n)).await?;
        producer
            .send(
                FutureRecord::to(&initiated_topic)
                    .key(&payment(n).key())
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let auth = AuthSucceeded {
        event_id: "evt-auth-2".into(),
        payment_id: "pay-2".into(),
        psp_reference: "psp-2".into(),
        auth_code: "A1".into(),
        amount_minor: 4_202,
        currency: "EUR".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 50_000,
    };
    let auth_topic = env.topic("auth_success");
    let value = codec.encode(&auth_topic, &auth).await?;
    producer
        .send(
            FutureRecord::to(&auth_topic)
                .key(&auth.payment_id)
                .payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;

    let mut run = Running::spawn(env.command(&["run"]).env(
        "PAYSTREAM_PAYMENTS__STUCK_PAYMENT_TIMEOUT_MS",
        STUCK_TIMEOUT_MS,
    ))?;
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stuck = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stuck = sqlx::query(
            "SELECT payment_id, kind, expected_amount_minor, currency \
             FROM reconciliation_exceptions ORDER BY payment_id",
        )
        .fetch_all(&pool)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.get::<String, _>("payment_id"),
                row.get::<String, _>("kind"),
                row.get::<Option<i64>, _>("expected_amount_minor"),
                row.get::<Option<String>, _>("currency"),
            )
        })
        .collect();
        if !stuck.is_empty() {
            // Give a wrong second exception the time to show up too.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
    }
    let status = run.stop()?;
    assert!(status.success(), "paystream run exited {status}");
    let after_wait: Vec<(String, String, Option<i64>, Option<String>)> = sqlx::query(
        "SELECT payment_id, kind, expected_amount_minor, currency \
         FROM reconciliation_exceptions ORDER BY payment_id",
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|row| {
        (
            row.get("payment_id"),
            row.get("kind"),
            row.get("expected_amount_minor"),
            row.get("currency"),
        )
    })
    .collect();
    assert_eq!(
        after_wait,
        [(
            "pay-1".to_string(),
            "STUCK_PAYMENT".to_string(),
            Some(4_201),
            Some("EUR".to_string())
        )],
        "only the payment without an auth outcome is stuck (first seen: {stuck:?})"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE payment_id = $1")
        .bind("pay-1")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "INITIATED");
    pool.close().await;
    Ok(())
}
