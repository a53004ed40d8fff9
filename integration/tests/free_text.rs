//! A PSP's free text is informational, on real parts (Apache Kafka, Apicurio's
//! Confluent-compatible registry, PostgreSQL): a decline whose reason holds control
//! characters, or is longer than the limit, still declines its payment — the text is
//! cleaned and counted, never a reason to dead-letter — while an identifier with a
//! control character is still refused (`invalid_value`).

use std::time::Duration;

use paystream_integration::{TestEnv, field, read_committed, registry_url};
use paystream_schemas::validate::FREE_TEXT_BYTES_MAX;
use paystream_schemas::{
    AuthFailed, CaptureMode, Codec, PaymentInitiated, PaymentStatus, PaymentStatusChanged,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn payment(n: u32) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-init-{n}"),
        idempotency_key: format!("idem-{n}"),
        payment_id: format!("pay-{n}"),
        merchant_id: "merchant-a".into(),
        customer_id: "customer-a".into(),
        amount_minor: 990,
        currency: "EUR".into(),
        payment_method_token: "pm_test_visa".into(),
        psp: "adyen".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        capture_mode: CaptureMode::Automatic,
    }
}

fn decline(n: u32, decline_code: &str, reason: String) -> AuthFailed {
    AuthFailed {
        event_id: format!("evt-decline-{n}"),
        payment_id: format!("pay-{n}"),
        psp_reference: Some(format!("psp-{n}")),
        decline_code: decline_code.into(),
        reason,
        occurred_at: paystream_testkit::traffic::now_ms() - 50_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_with_control_characters_in_its_reason_declines_its_payment() -> anyhow::Result<()>
{
    let env = TestEnv::new("freetext");
    env.prepare()?;
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", paystream_integration::bootstrap())
        .create()?;
    let initiated_topic = env.topic("payment_initiated");
    let failure_topic = env.topic("auth_failure");
    let declines = [
        // NUL, ESC (a terminal colour code) and BEL: cleaned, processed.
        decline(1, "05", "Do not honour\u{0}\u{1b}[31m issuer\u{7}".into()),
        // Longer than the limit: cut, processed.
        decline(
            2,
            "51",
            "insufficient funds ".repeat(FREE_TEXT_BYTES_MAX / 10),
        ),
        // An identifier with a control character: still refused.
        decline(3, "0\u{0}5", "plain reason".into()),
    ];
    for n in 1..=3 {
        let value = codec.encode(&initiated_topic, &payment(n)).await?;
        let key = payment(n).key();
        producer
            .send(
                FutureRecord::to(&initiated_topic).key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    for event in &declines {
        let value = codec.encode(&failure_topic, event).await?;
        producer
            .send(
                FutureRecord::to(&failure_topic)
                    .key(&event.payment_id)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let run = env.paystream(&["run", "--until-caught-up"])?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        field(&stdout, "free text cleaned").and_then(|v| v.split_whitespace().next()),
        Some("2"),
        "{stdout}"
    );
    assert_eq!(
        field(&stdout, "dead-lettered"),
        Some("1 (invalid_value=1)"),
        "{stdout}"
    );

    let mut declined = Vec::new();
    for record in read_committed(&env.topic("payment_status"), READ_TIMEOUT)? {
        let status: PaymentStatusChanged = codec.decode(record.value.as_deref()).await?;
        if status.status == PaymentStatus::Declined {
            declined.push(status.payment_id);
        }
    }
    declined.sort();
    assert_eq!(
        declined,
        ["pay-1", "pay-2"],
        "both cleaned declines declined their payment"
    );

    let dead_letters = read_committed(&format!("{failure_topic}.dlq"), READ_TIMEOUT)?;
    assert_eq!(
        dead_letters.len(),
        1,
        "only the decline with a bad decline code"
    );
    assert_eq!(dead_letters[0].key.as_deref(), Some(&b"pay-3"[..]));
    Ok(())
}
