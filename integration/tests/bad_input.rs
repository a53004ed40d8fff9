//! A bad-input corpus fed to the running pipeline on real parts (Apache Kafka, Apicurio's
//! Confluent-compatible registry, PostgreSQL): truncated Avro, a wrong magic byte, an
//! unknown schema id, another topic's schema, a negative amount, a lower-case currency,
//! a card number in the token field, an empty and a missing value, null keys, a 1 MB key,
//! a settlement whose net is not gross − fee, a reused idempotency key, an illegal
//! transition and an overflowing pending buffer — one record or more per dead-letter
//! reason. The pipeline must keep running and account for every record: input =
//! processed + dropped as duplicate + dead-lettered, each dead letter with its reason,
//! and no card number anywhere in a dead-letter queue.
//!
//! Then the SRE's tools on the result: `dlq inspect`, and `dlq redrive` of a dead letter
//! an earlier faulty release wrote (a valid event, planted in the dead-letter queue by
//! this test as that release would have): after the redrive the payment is processed,
//! and a second redrive of the same record is a no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use paystream_integration::{TestEnv, bootstrap, field, read_committed, registry_url};
use paystream_schemas::{
    AuthFailed, AuthSucceeded, CaptureMode, Codec, PaymentInitiated, SettlementReported,
};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const READ_TIMEOUT: Duration = Duration::from_secs(120);
const CARD_NUMBER: &str = "4111111111111111";

fn payment(n: u32) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-init-{n}"),
        idempotency_key: format!("idem-{n}"),
        payment_id: format!("pay-{n}"),
        merchant_id: "merchant-a".into(),
        customer_id: "customer-a".into(),
        amount_minor: 1_250,
        currency: "EUR".into(),
        payment_method_token: "pm_test_visa".into(),
        psp: "adyen".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        capture_mode: CaptureMode::Automatic,
    }
}

fn auth(payment_id: &str, event_id: &str) -> AuthSucceeded {
    AuthSucceeded {
        event_id: event_id.into(),
        payment_id: payment_id.into(),
        psp_reference: "psp-ref".into(),
        auth_code: "A1".into(),
        amount_minor: 1_250,
        currency: "EUR".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 50_000,
    }
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

/// One record of the corpus: where it goes and the dead-letter reason it must get
/// (`None` = processed).
struct Case {
    what: &'static str,
    topic: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    reason: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_input_corpus_is_dead_lettered_and_accounted_for() -> anyhow::Result<()> {
    let env = TestEnv::new("badinput");
    env.prepare()?;
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let initiated_topic = env.topic("payment_initiated");
    let auth_topic = env.topic("auth_success");
    let settlement_topic = env.topic("settlement");

    let valid = |n: u32| payment(n);
    let encode_payment = |p: PaymentInitiated| {
        let codec = &codec;
        let topic = initiated_topic.clone();
        async move { codec.encode(&topic, &p).await }
    };
    let good = encode_payment(valid(1)).await?;
    let mut cases = vec![
        Case {
            what: "valid payment 1",
            topic: initiated_topic.clone(),
            key: Some(valid(1).key().into_bytes()),
            value: Some(good.clone()),
            reason: None,
        },
        Case {
            what: "valid auth of payment 1",
            topic: auth_topic.clone(),
            key: Some(b"pay-1".to_vec()),
            value: Some(
                codec
                    .encode(&auth_topic, &auth("pay-1", "evt-auth-1"))
                    .await?,
            ),
            reason: None,
        },
        Case {
            what: "truncated Avro",
            topic: initiated_topic.clone(),
            key: Some(valid(2).key().into_bytes()),
            value: Some(encode_payment(valid(2)).await?[..14].to_vec()),
            reason: Some("undecodable"),
        },
        Case {
            what: "wrong magic byte",
            topic: initiated_topic.clone(),
            key: Some(valid(3).key().into_bytes()),
            value: Some({
                let mut v = encode_payment(valid(3)).await?;
                v[0] = 7;
                v
            }),
            reason: Some("bad_magic_byte"),
        },
        Case {
            what: "unknown schema id",
            topic: initiated_topic.clone(),
            key: Some(valid(4).key().into_bytes()),
            value: Some({
                let mut v = encode_payment(valid(4)).await?;
                v[1..5].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
                v
            }),
            reason: Some("unknown_schema"),
        },
        Case {
            what: "another topic's schema (an AuthSucceeded on payment_initiated)",
            topic: initiated_topic.clone(),
            key: Some(valid(5).key().into_bytes()),
            value: Some(
                codec
                    .encode(&auth_topic, &auth("pay-5", "evt-auth-5"))
                    .await?,
            ),
            reason: Some("unknown_schema"),
        },
        Case {
            what: "negative amount",
            topic: initiated_topic.clone(),
            key: Some(valid(6).key().into_bytes()),
            value: Some(
                encode_payment(PaymentInitiated {
                    amount_minor: -500,
                    ..valid(6)
                })
                .await?,
            ),
            reason: Some("invalid_value"),
        },
        Case {
            what: "lower-case currency",
            topic: initiated_topic.clone(),
            key: Some(valid(7).key().into_bytes()),
            value: Some(
                encode_payment(PaymentInitiated {
                    currency: "eur".into(),
                    ..valid(7)
                })
                .await?,
            ),
            reason: Some("invalid_value"),
        },
        Case {
            what: "a card number in the token field",
            topic: initiated_topic.clone(),
            key: Some(valid(8).key().into_bytes()),
            value: Some(
                encode_payment(PaymentInitiated {
                    payment_method_token: CARD_NUMBER.into(),
                    ..valid(8)
                })
                .await?,
            ),
            reason: Some("pan_detected"),
        },
        Case {
            what: "empty value",
            topic: initiated_topic.clone(),
            key: Some(valid(9).key().into_bytes()),
            value: Some(Vec::new()),
            reason: Some("undecodable"),
        },
        Case {
            what: "no value at all (a tombstone)",
            topic: auth_topic.clone(),
            key: Some(b"pay-1".to_vec()),
            value: None,
            reason: Some("undecodable"),
        },
        Case {
            what: "null key on payment_initiated",
            topic: initiated_topic.clone(),
            key: None,
            value: Some(encode_payment(valid(10)).await?),
            reason: Some("key_mismatch"),
        },
        Case {
            what: "null key on auth_success",
            topic: auth_topic.clone(),
            key: None,
            value: Some(
                codec
                    .encode(&auth_topic, &auth("pay-1", "evt-auth-null"))
                    .await?,
            ),
            reason: Some("key_mismatch"),
        },
        Case {
            what: "a 1 MB key",
            topic: initiated_topic.clone(),
            key: Some(vec![b'k'; 1_000_000]),
            value: Some(encode_payment(valid(11)).await?),
            reason: Some("key_mismatch"),
        },
        Case {
            what: "net amount that is not gross - fee",
            topic: settlement_topic.clone(),
            key: Some(b"pay-1".to_vec()),
            value: Some(
                codec
                    .encode(
                        &settlement_topic,
                        &SettlementReported {
                            event_id: "evt-settle-bad".into(),
                            payment_id: "pay-1".into(),
                            psp_reference: "psp-ref".into(),
                            settlement_batch_id: "b1".into(),
                            gross_amount_minor: 1_250,
                            fee_minor: 30,
                            net_amount_minor: 1_000,
                            currency: "EUR".into(),
                            settled_at: paystream_testkit::traffic::now_ms() - 40_000,
                        },
                    )
                    .await?,
            ),
            reason: Some("invalid_value"),
        },
        Case {
            what: "idempotency key reused for another amount",
            topic: initiated_topic.clone(),
            key: Some(valid(1).key().into_bytes()),
            value: Some(
                encode_payment(PaymentInitiated {
                    event_id: "evt-init-1-conflict".into(),
                    payment_id: "pay-1-conflict".into(),
                    amount_minor: 9_999,
                    ..valid(1)
                })
                .await?,
            ),
            reason: Some("idempotency_key_reused"),
        },
        Case {
            what: "a retried payment 1 (duplicate)",
            topic: initiated_topic.clone(),
            key: Some(valid(1).key().into_bytes()),
            value: Some(good.clone()),
            reason: None,
        },
    ];
    // A decline after the authorization: illegal. Sent after the auth (same partition).
    let decline = AuthFailed {
        event_id: "evt-decline-late".into(),
        payment_id: "pay-1".into(),
        psp_reference: None,
        decline_code: "05".into(),
        reason: "late decline".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 45_000,
    };
    let auth_failure_topic = env.topic("auth_failure");
    // 17 auths for a payment that never comes: 16 wait, the 17th overflows the buffer.
    for i in 0..17 {
        cases.push(Case {
            what: "auth for a payment not seen yet",
            topic: auth_topic.clone(),
            key: Some(b"pay-never".to_vec()),
            value: Some(
                codec
                    .encode(&auth_topic, &auth("pay-never", &format!("evt-wait-{i}")))
                    .await?,
            ),
            reason: if i == 16 {
                Some("pending_buffer_full")
            } else {
                None
            },
        });
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("partitioner", paystream_common::kafka::PARTITIONER)
        .set("message.max.bytes", "2000000")
        .create()?;
    for case in &cases {
        send(
            &producer,
            &case.topic,
            case.key.as_deref(),
            case.value.as_deref(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("producing {}: {e}", case.what))?;
    }
    // The late decline goes after the auth has been processed: wait for the first run.
    let run = env.paystream(&["run", "--until-caught-up"])?;
    let first = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{first}");
    let decline_bytes = codec.encode(&auth_failure_topic, &decline).await?;
    send(
        &producer,
        &auth_failure_topic,
        Some(b"pay-1"),
        Some(&decline_bytes),
    )
    .await
    .map_err(|e| anyhow::anyhow!("producing the late decline: {e}"))?;
    let run = env.paystream(&["run", "--until-caught-up"])?;
    let second = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{second}");

    // Every record is accounted for: read = processed + duplicates + dead-lettered.
    let number = |text: &str, label: &str| -> u64 {
        field(text, label)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{label} in {text}"))
    };
    let read = number(&first, "events read") + number(&second, "events read");
    let duplicates = number(&first, "duplicates dropped") + number(&second, "duplicates dropped");
    let dead_lettered = number(&first, "dead-lettered") + number(&second, "dead-lettered");
    assert_eq!(read, cases.len() as u64 + 1, "every record was read");
    assert_eq!(duplicates, 1, "the retried payment");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for reason in cases.iter().filter_map(|c| c.reason) {
        *expected.entry(reason.into()).or_insert(0) += 1;
    }
    *expected.entry("illegal_transition".into()).or_insert(0) += 1;
    assert_eq!(dead_lettered, expected.values().sum::<u64>());
    let processed = read - duplicates - dead_lettered;
    assert_eq!(
        processed,
        2 + 16,
        "payment 1, its auth and the 16 waiting auths were processed"
    );

    // The dead-letter queues hold each record with its reason, and no card number.
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    for base in [
        "payment_initiated",
        "auth_success",
        "auth_failure",
        "settlement",
    ] {
        for record in read_committed(&format!("{}.dlq", env.topic(base)), READ_TIMEOUT)? {
            *found
                .entry(record.headers["paystream.dlq.reason"].clone())
                .or_insert(0) += 1;
            let bytes = [
                record.key.clone().unwrap_or_default(),
                record.value.clone().unwrap_or_default(),
                record.headers.values().flat_map(|v| v.bytes()).collect(),
            ]
            .concat();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(CARD_NUMBER),
                "a card number reached {base}.dlq"
            );
            if record.headers["paystream.dlq.reason"] == "key_mismatch"
                && record.key.as_ref().is_some_and(|k| k.len() == 1_000_000)
            {
                println!("the 1 MB key is kept whole in the dead-letter queue");
            }
        }
    }
    assert_eq!(found, expected, "dead letters by reason");
    let big_key_kept = read_committed(&format!("{initiated_topic}.dlq"), READ_TIMEOUT)?
        .iter()
        .any(|r| r.key.as_ref().is_some_and(|k| k.len() == 1_000_000));
    assert!(big_key_kept, "the 1 MB key is kept whole");

    // dlq inspect lists them by reason.
    let inspect = env.paystream(&["dlq", "inspect", "--format", "json", "--limit", "1000"])?;
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&inspect.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(listed.len() as u64, expected.values().sum::<u64>());

    // A dead letter written by a faulty earlier release: a valid payment, planted as
    // that release would have written it. After the fix, the SRE redrives it.
    let planted = encode_payment(valid(20)).await?;
    let dlq = format!("{initiated_topic}.dlq");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "paystream.dlq.reason",
            value: Some("invalid_value"),
        })
        .insert(Header {
            key: "paystream.dlq.error",
            value: Some("currency EUR is not ISO 4217 (a validator bug, since fixed)"),
        })
        .insert(Header {
            key: "paystream.dlq.source.topic",
            value: Some(initiated_topic.as_str()),
        })
        .insert(Header {
            key: "paystream.dlq.source.partition",
            value: Some("0"),
        })
        .insert(Header {
            key: "paystream.dlq.source.offset",
            value: Some("999"),
        });
    let key = valid(20).key();
    let delivered = producer
        .send(
            FutureRecord::to(&dlq)
                .key(key.as_bytes())
                .payload(&planted)
                .partition(0)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("planting the dead letter: {e}"))?;
    let record = format!("{}:{}", delivered.partition, delivered.offset);
    let dry = env.paystream(&[
        "dlq",
        "redrive",
        "--topic",
        "payment_initiated",
        "--record",
        &record,
        "--dry-run",
    ])?;
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.contains("would redrive"), "{dry}");
    let redrive = env.paystream(&[
        "dlq",
        "redrive",
        "--topic",
        "payment_initiated",
        "--record",
        &record,
    ])?;
    let redrive_out = String::from_utf8_lossy(&redrive.stdout).into_owned();
    println!("{redrive_out}{}", String::from_utf8_lossy(&redrive.stderr));
    assert_eq!(
        redrive_out.matches("redriven  ").count(),
        1,
        "{redrive_out}"
    );
    let again = env.paystream(&[
        "dlq",
        "redrive",
        "--topic",
        "payment_initiated",
        "--record",
        &record,
    ])?;
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again_out.contains("already redriven"), "{again_out}");
    assert!(!again_out.contains("redriven  "), "{again_out}");
    // pan_detected dead letters are never redriven: their card numbers were redacted.
    let refused = env.paystream(&["dlq", "redrive", "--reason", "pan_detected"])?;
    assert!(String::from_utf8_lossy(&refused.stdout).contains("refused"));

    let run = env.paystream(&["run", "--until-caught-up"])?;
    let third = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{third}");
    assert_eq!(
        field(&third, "events read"),
        Some("1"),
        "only the redriven record"
    );
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM payments WHERE payment_id = 'pay-20'")
            .fetch_optional(&pool)
            .await?;
    assert_eq!(
        status.as_deref(),
        Some("INITIATED"),
        "the redriven payment was processed"
    );
    let verify = env.paystream(&["ledger", "verify"])?;
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ledger verified: yes"));
    Ok(())
}
