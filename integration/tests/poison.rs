//! Poison records on real parts (Apache Kafka, Apicurio's Confluent-compatible registry,
//! PostgreSQL): no single record, however malformed or hostile, stops the pipeline or
//! the sink. Each test puts valid payments before and after the poison records in the
//! same input, runs `paystream run --until-caught-up` (which must exit 0), and checks
//! that every poison record is in a dead-letter queue with its reason and stage, that
//! every valid payment is exact in the ledger, that `ledger verify` passes, and that a
//! second run processes nothing twice.
//!
//! Classes covered (examples of each, not an exhaustive list):
//! - amounts that would overflow a sum (`value_out_of_range`), and the largest valid
//!   amounts, which are processed;
//! - a NUL byte in an identifier (`invalid_value`), which PostgreSQL would refuse;
//! - an 8 KB identifier (`value_out_of_range`), over PostgreSQL's btree key limit;
//! - an event time hours ahead of its record (`event_time_in_future`);
//! - an event time before 1970 (`value_out_of_range`), and an Avro string whose length
//!   prefix claims 2^40 bytes (`undecodable`, without a large allocation);
//! - events of 300 KB and 900 KB (`record_too_large`), which would not fit a changelog
//!   record, and 5 KB of free text, which is cut to 4 KiB and processed (a PSP's reason
//!   text is informational);
//! - card numbers where an Avro length byte touches them (`pan_detected`), never
//!   readable in the dead letter;
//! - an output the broker refuses for its size (`record_too_large` at stage `produce`);
//! - auths and settlements from a producer on librdkafka's default partitioner
//!   (`consistent_random`), which are rerouted to their payment's task.

use std::collections::BTreeMap;
use std::time::Duration;

use paystream_integration::{
    TestEnv, bootstrap, field, ledger_snapshot, read_committed, registry_url,
};
use paystream_schemas::validate::AMOUNT_MINOR_MAX;
use paystream_schemas::{
    AuthFailed, AuthSucceeded, CaptureMode, Codec, PaymentInitiated, SettlementReported,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

const READ_TIMEOUT: Duration = Duration::from_secs(120);
const HOUR_MS: i64 = 3_600_000;

fn payment(id: &str, amount_minor: i64) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-init-{id}"),
        idempotency_key: format!("idem-{id}"),
        payment_id: id.into(),
        merchant_id: "merchant-a".into(),
        customer_id: "customer-a".into(),
        amount_minor,
        currency: "EUR".into(),
        payment_method_token: "pm_test_visa".into(),
        psp: "adyen".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        capture_mode: CaptureMode::Automatic,
    }
}

fn auth(payment: &PaymentInitiated) -> AuthSucceeded {
    AuthSucceeded {
        event_id: format!("evt-auth-{}", payment.payment_id),
        payment_id: payment.payment_id.clone(),
        psp_reference: "psp-ref".into(),
        auth_code: "A1".into(),
        amount_minor: payment.amount_minor,
        currency: payment.currency.clone(),
        occurred_at: paystream_testkit::traffic::now_ms() - 50_000,
    }
}

fn decline(payment_id: &str, reason: String) -> AuthFailed {
    AuthFailed {
        event_id: format!("evt-decline-{payment_id}"),
        payment_id: payment_id.into(),
        psp_reference: None,
        decline_code: "05".into(),
        reason,
        occurred_at: paystream_testkit::traffic::now_ms() - 50_000,
    }
}

fn settlement(payment: &PaymentInitiated) -> SettlementReported {
    let fee_minor = payment.amount_minor / 100;
    SettlementReported {
        event_id: format!("evt-settle-{}", payment.payment_id),
        payment_id: payment.payment_id.clone(),
        psp_reference: "psp-ref".into(),
        settlement_batch_id: "batch-1".into(),
        gross_amount_minor: payment.amount_minor,
        fee_minor,
        net_amount_minor: payment.amount_minor - fee_minor,
        currency: payment.currency.clone(),
        settled_at: paystream_testkit::traffic::now_ms() - 40_000,
    }
}

/// One record to produce: topic base name, key, value.
struct Input {
    topic: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

struct Inputs<'a> {
    env: &'a TestEnv,
    codec: Codec,
    records: Vec<Input>,
}

impl<'a> Inputs<'a> {
    fn new(env: &'a TestEnv) -> anyhow::Result<Self> {
        Ok(Inputs {
            env,
            codec: Codec::new(&registry_url(), Duration::from_secs(10))?,
            records: Vec::new(),
        })
    }

    async fn initiated(&mut self, p: &PaymentInitiated) -> anyhow::Result<()> {
        let value = self
            .codec
            .encode(&self.env.topic("payment_initiated"), p)
            .await?;
        self.records.push(Input {
            topic: "payment_initiated",
            key: format!("{}:{}", p.merchant_id, p.idempotency_key).into_bytes(),
            value,
        });
        Ok(())
    }

    async fn auth(&mut self, a: &AuthSucceeded) -> anyhow::Result<()> {
        let value = self
            .codec
            .encode(&self.env.topic("auth_success"), a)
            .await?;
        self.records.push(Input {
            topic: "auth_success",
            key: a.payment_id.clone().into_bytes(),
            value,
        });
        Ok(())
    }

    async fn decline(&mut self, d: &AuthFailed) -> anyhow::Result<()> {
        let value = self
            .codec
            .encode(&self.env.topic("auth_failure"), d)
            .await?;
        self.records.push(Input {
            topic: "auth_failure",
            key: d.payment_id.clone().into_bytes(),
            value,
        });
        Ok(())
    }

    async fn settlement(&mut self, s: &SettlementReported) -> anyhow::Result<()> {
        let value = self.codec.encode(&self.env.topic("settlement"), s).await?;
        self.records.push(Input {
            topic: "settlement",
            key: s.payment_id.clone().into_bytes(),
            value,
        });
        Ok(())
    }

    /// A valid payment, its authorization and its settlement.
    async fn settled_payment(&mut self, id: &str, amount_minor: i64) -> anyhow::Result<()> {
        let p = payment(id, amount_minor);
        self.initiated(&p).await?;
        self.auth(&auth(&p)).await?;
        self.settlement(&settlement(&p)).await
    }

    /// Produces every record, payments with Kafka's default partitioner (murmur2) and
    /// the other topics with `other_partitioner`.
    async fn produce(&self, other_partitioner: &str) -> anyhow::Result<()> {
        let producer = |partitioner: &str| -> anyhow::Result<FutureProducer> {
            Ok(ClientConfig::new()
                .set("bootstrap.servers", bootstrap())
                .set("partitioner", partitioner)
                .set("message.max.bytes", "2000000")
                .create()?)
        };
        let payments = producer(paystream_common::kafka::PARTITIONER)?;
        let others = producer(other_partitioner)?;
        for record in &self.records {
            let topic = self.env.topic(record.topic);
            let producer = if record.topic == "payment_initiated" {
                &payments
            } else {
                &others
            };
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&record.key[..])
                        .payload(&record.value[..]),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
        }
        Ok(())
    }
}

/// Dead letters by `(reason, stage)`.
type ByReasonAndStage = BTreeMap<(String, String), u64>;

/// Dead letters of the test's four input topics: `(reason, stage)` → count, and every
/// dead letter's bytes (key, value, headers) for searching.
fn dead_letters(env: &TestEnv) -> anyhow::Result<(ByReasonAndStage, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut bytes = Vec::new();
    for base in [
        "payment_initiated",
        "auth_success",
        "auth_failure",
        "settlement",
    ] {
        for record in read_committed(&format!("{}.dlq", env.topic(base)), READ_TIMEOUT)? {
            let reason = record.headers["paystream.dlq.reason"].clone();
            let stage = record.headers["paystream.dlq.stage"].clone();
            *found.entry((reason, stage)).or_insert(0) += 1;
            bytes.extend(record.key.unwrap_or_default());
            bytes.extend(record.value.unwrap_or_default());
            for value in record.headers.values() {
                bytes.extend(value.bytes());
            }
        }
    }
    Ok((found, bytes))
}

fn expected(cases: &[(&str, &str, u64)]) -> ByReasonAndStage {
    let mut map = BTreeMap::new();
    for (reason, stage, n) in cases {
        *map.entry((reason.to_string(), stage.to_string()))
            .or_insert(0) += n;
    }
    map
}

/// Runs the pipeline to the end, checks the ledger and `ledger verify`, then runs it
/// again and checks that nothing was processed or posted twice.
async fn run_and_check(
    env: &TestEnv,
    settled: u64,
    declined: u64,
    initiated: u64,
) -> anyhow::Result<String> {
    let run = env.paystream(&["run", "--until-caught-up"])?;
    let summary = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{summary}");
    let ledger = ledger_snapshot(&env.database_url).await?;
    let mut by_status = BTreeMap::new();
    if settled > 0 {
        by_status.insert("SETTLED".to_string(), settled);
    }
    if declined > 0 {
        by_status.insert("DECLINED".to_string(), declined);
    }
    if initiated > 0 {
        by_status.insert("INITIATED".to_string(), initiated);
    }
    assert_eq!(ledger.payments_by_status, by_status, "payments by status");
    // An authorization (2 postings) and a settlement (3) per settled payment.
    assert_eq!(ledger.journal_entries, 2 * settled, "journal entries");
    assert_eq!(ledger.postings, 5 * settled, "postings");
    let verify = env.paystream(&["ledger", "verify"])?;
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(report.contains("ledger verified: yes"), "{report}");
    let rerun = env.paystream(&["run", "--until-caught-up"])?;
    let rerun = String::from_utf8_lossy(&rerun.stdout).into_owned();
    assert_eq!(field(&rerun, "events read"), Some("0"), "{rerun}");
    assert_eq!(ledger_snapshot(&env.database_url).await?, ledger);
    Ok(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_payments_go_on() -> anyhow::Result<()> {
    let env = TestEnv::new("poison");
    env.prepare()?;
    let mut inputs = Inputs::new(&env)?;
    for n in 0..3 {
        inputs
            .settled_payment(&format!("pay-before-{n}"), 1_250)
            .await?;
    }
    // Two amounts whose sum overflows an i64: refused at the door.
    for n in 0..2 {
        inputs
            .initiated(&payment(&format!("pay-huge-{n}"), i64::MAX / 2 + 1))
            .await?;
    }
    // The largest valid amounts: processed, and their sums are checked.
    for n in 0..2 {
        inputs
            .settled_payment(&format!("pay-max-{n}"), AMOUNT_MINOR_MAX)
            .await?;
    }
    // A NUL byte in an identifier, in a payment and in an auth's event id.
    let mut nul = payment("pay-nul", 500);
    nul.merchant_id = "merchant\0a".into();
    inputs.initiated(&nul).await?;
    let nul_auth_target = payment("pay-nul-auth", 700);
    inputs.initiated(&nul_auth_target).await?;
    let mut nul_auth = auth(&nul_auth_target);
    nul_auth.event_id = "evt\0auth".into();
    inputs.auth(&nul_auth).await?;
    // The same payment's valid auth and settlement still go through.
    inputs.auth(&auth(&nul_auth_target)).await?;
    inputs.settlement(&settlement(&nul_auth_target)).await?;
    // An 8 KB identifier.
    let mut long = payment("pay-long", 500);
    long.psp = "p".repeat(8 * 1024);
    inputs.initiated(&long).await?;
    // An event time three hours ahead of its record (a PSP clock running fast).
    let future_target = payment("pay-future", 900);
    inputs.initiated(&future_target).await?;
    let mut future = auth(&future_target);
    future.occurred_at = paystream_testkit::traffic::now_ms() + 3 * HOUR_MS;
    inputs.auth(&future).await?;
    // An event time before 1970.
    let past_target = payment("pay-past", 900);
    inputs.initiated(&past_target).await?;
    let mut past = auth(&past_target);
    past.occurred_at = -5;
    inputs.auth(&past).await?;
    // A hostile Avro body: a valid frame and schema id, then a string claiming 2^40 bytes.
    let framed = inputs
        .codec
        .encode(
            &env.topic("payment_initiated"),
            &payment("pay-hostile", 100),
        )
        .await?;
    let mut hostile = framed[..5].to_vec();
    let mut claimed = 1u64 << 41; // zigzag of 2^40
    while claimed >= 0x80 {
        hostile.push((claimed as u8 & 0x7f) | 0x80);
        claimed >>= 7;
    }
    hostile.push(claimed as u8);
    hostile.extend_from_slice(b"short");
    inputs.records.push(Input {
        topic: "payment_initiated",
        key: b"merchant-a:idem-pay-hostile".to_vec(),
        value: hostile,
    });
    // Large events: 300 KB and 900 KB of free text (too large), and 5 KB (cut, processed:
    // a decline for a payment that never comes, so it waits in `pending`).
    inputs
        .decline(&decline("pay-ghost-1", "x".repeat(300 * 1024)))
        .await?;
    inputs
        .decline(&decline("pay-ghost-2", "x".repeat(900 * 1024)))
        .await?;
    inputs
        .decline(&decline("pay-ghost-3", "x".repeat(5 * 1024)))
        .await?;
    // Card numbers with an Avro length byte right before or after them.
    // A 25-byte string's Avro length byte is `2` (zigzag 50): here it touches the first
    // digit of the card number the token starts with ...
    let mut starts = payment("pay-pan-1", 500);
    starts.payment_method_token = "4111 1111 1111 1111 pm_ab".into();
    inputs.initiated(&starts).await?;
    // ... and here the last digit of the idempotency key, followed by a 25-byte payment id.
    let mut ends = payment("pay-pan-2-padded-to-25-by", 500);
    ends.idempotency_key = "idem-5555-5555-5555-4444".into();
    inputs.initiated(&ends).await?;
    for n in 0..3 {
        inputs
            .settled_payment(&format!("pay-after-{n}"), 2_500)
            .await?;
    }
    inputs.produce(paystream_common::kafka::PARTITIONER).await?;

    // pay-future and pay-past stay INITIATED: their auths were dead-lettered.
    let summary = run_and_check(&env, 3 + 2 + 1 + 3, 0, 2).await?;
    assert!(summary.contains("dead-lettered"), "{summary}");
    assert_eq!(
        field(&summary, "free text cleaned").and_then(|v| v.split_whitespace().next()),
        Some("1"),
        "the 5 KB reason, cut: {summary}"
    );
    let (found, bytes) = dead_letters(&env)?;
    assert_eq!(
        found,
        expected(&[
            ("value_out_of_range", "validate", 2 + 1 + 1),
            ("undecodable", "decode", 1),
            ("invalid_value", "validate", 2),
            ("event_time_in_future", "validate", 1),
            ("record_too_large", "decode", 2),
            ("pan_detected", "validate", 2),
        ]),
        "dead letters by reason and stage"
    );
    let digits: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'-'))
        .collect();
    let digits = String::from_utf8_lossy(&digits);
    for card in ["4111111111111111", "5555555555554444"] {
        assert!(
            !digits.contains(card),
            "card number {card} readable in a dead letter"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_broker_refuses_dead_letters_its_input() -> anyhow::Result<()> {
    let env = TestEnv::new("refused");
    env.prepare()?;
    // An operator set a small record size limit on payment_status: 600 bytes per batch.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let status_topic = env.topic("payment_status");
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&status_topic))
                .set("max.message.bytes", "600")],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in altered {
        result.map_err(|(resource, e)| anyhow::anyhow!("altering {resource:?}: {e:?}"))?;
    }
    let mut inputs = Inputs::new(&env)?;
    for n in 0..4 {
        inputs
            .settled_payment(&format!("pay-ok-{n}"), 1_000)
            .await?;
    }
    // Valid (identifiers within 256 bytes), but its status record is over the topic's
    // limit.
    let mut wide = payment(&format!("pay-wide-{}", "w".repeat(238)), 800);
    wide.merchant_id = format!("merchant-{}", "m".repeat(240));
    inputs.initiated(&wide).await?;
    for n in 4..8 {
        inputs
            .settled_payment(&format!("pay-ok-{n}"), 1_000)
            .await?;
    }
    inputs.produce(paystream_common::kafka::PARTITIONER).await?;

    run_and_check(&env, 8, 0, 0).await?;
    let (found, _) = dead_letters(&env)?;
    assert_eq!(
        found,
        expected(&[("record_too_large", "produce", 1)]),
        "the wide payment, dead-lettered at the produce stage"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_from_the_default_librdkafka_partitioner_is_processed_exactly() -> anyhow::Result<()>
{
    let env = TestEnv::new("partitioner");
    env.prepare()?;
    let mut inputs = Inputs::new(&env)?;
    for n in 0..20 {
        inputs
            .settled_payment(&format!("pay-{n}"), 1_000 + n)
            .await?;
    }
    for n in 20..30 {
        let p = payment(&format!("pay-{n}"), 1_000);
        inputs.initiated(&p).await?;
        inputs
            .decline(&decline(&p.payment_id, "insufficient funds".into()))
            .await?;
    }
    // librdkafka's default: CRC32 of the key, not the Java client's murmur2.
    inputs.produce("consistent_random").await?;
    let summary = run_and_check(&env, 20, 10, 0).await?;
    let misrouted: u64 = field(&summary, "misrouted records")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // About two thirds of the 40 auths, declines and settlements land elsewhere.
    assert!(misrouted > 0, "no record was misrouted: {summary}");
    let (found, _) = dead_letters(&env)?;
    assert!(found.is_empty(), "nothing dead-lettered: {found:?}");
    Ok(())
}
