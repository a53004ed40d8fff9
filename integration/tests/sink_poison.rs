//! Poison records on the ledger sink's input, on real parts (Apache Kafka, Apicurio's
//! Confluent-compatible registry, PostgreSQL): valid journal entries around one whose
//! payment id holds a NUL byte (PostgreSQL: SQLSTATE 22021), one whose PSP account name is
//! 8 KB of incompressible text (a btree key over 2704 bytes: 54000), one that does not
//! balance, one that is not Avro at all, and a journal entry whose id is already in the
//! ledger with different amounts (a conflict) next to an exact replay of another (skipped
//! silently); plus a valid and a NUL-byte payment status.
//! All go straight onto the test's `ledger_entries` and `payment_status` topics (a plain
//! producer, the Confluent wire format), so they reach the sink in one batch per topic.
//!
//! The sink must keep running: `paystream run --until-caught-up` exits 0, every valid
//! record is in the ledger exactly once with gapless posting sequence numbers and exact
//! balances, every bad record is in `<topic>.dlq` (reason `sink_rejected`, stage `sink`,
//! original key, the PostgreSQL error) and in `sink_dead_letters`, `ledger verify` passes
//! and reports them, and a second run writes nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use paystream_integration::{TestEnv, bootstrap, field, read_committed, registry_url};
use paystream_schemas::{
    Codec, JournalEntry, JournalEntryKind, PaymentStatus, PaymentStatusChanged, Posting,
    PostingSide,
};
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

const READ_TIMEOUT: Duration = Duration::from_secs(120);
const AMOUNT_MINOR: i64 = 1_250;

fn entry(payment_id: &str, psp_account: &str) -> JournalEntry {
    JournalEntry {
        id: uuid::Uuid::new_v4().to_string(),
        payment_id: payment_id.to_string(),
        kind: JournalEntryKind::Authorization,
        postings: vec![
            Posting {
                account: psp_account.to_string(),
                side: PostingSide::Debit,
                amount_minor: AMOUNT_MINOR,
                currency: "EUR".into(),
            },
            Posting {
                account: "merchant_payable:merchant-a".into(),
                side: PostingSide::Credit,
                amount_minor: AMOUNT_MINOR,
                currency: "EUR".into(),
            },
        ],
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        caused_by_event_id: format!("evt-{payment_id}"),
        merchant_id: None,
        psp: None,
    }
}

fn status(payment_id: &str) -> PaymentStatusChanged {
    PaymentStatusChanged {
        payment_id: payment_id.to_string(),
        merchant_id: "merchant-a".into(),
        status: PaymentStatus::Authorized,
        previous_status: Some(PaymentStatus::Initiated),
        amount_minor: AMOUNT_MINOR,
        currency: "EUR".into(),
        caused_by_event_id: format!("evt-{payment_id}"),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
    }
}

/// What was sent: the offset and key of each record, and the SQLSTATE its dead letter
/// must name (`None` = written; `Some("")` = refused by the sink itself).
struct Sent {
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    rejected_with: Option<&'static str>,
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> anyhow::Result<i64> {
    let delivery = producer
        .send(
            FutureRecord::to(topic).partition(0).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    assert_eq!(delivery.partition, 0);
    Ok(delivery.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_the_rest_of_the_batch_is_written()
-> anyhow::Result<()> {
    let env = TestEnv::new("sinkpoison");
    env.prepare()?;
    let codec = Codec::new(&registry_url(), Duration::from_secs(10))?;
    let entries_topic = env.topic("ledger_entries");
    let status_topic = env.topic("payment_status");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .create()?;

    // 8 KB that no compression brings under the btree limit: random letters and digits.
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let long_psp: String = (0..8 * 1024)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let unbalanced = {
        let mut e = entry("pay-unbalanced", "psp_receivable:adyen");
        e.postings[1].amount_minor = AMOUNT_MINOR - 1;
        e
    };

    // In offset order: key, value, and the SQLSTATE it must be refused with (`Some("")`:
    // refused by the sink itself).
    let mut plan: Vec<(Vec<u8>, Vec<u8>, Option<&'static str>)> = Vec::new();
    let mut valid = Vec::new();
    let nul = entry("pay-\0-nul", "psp_receivable:adyen");
    let long = entry("pay-long-psp", &format!("psp_receivable:{long_psp}"));
    for n in 1..=6 {
        let e = entry(&format!("pay-{n}"), "psp_receivable:adyen");
        valid.push(e.clone());
        plan.push((
            e.payment_id.clone().into_bytes(),
            codec.encode(&entries_topic, &e).await?,
            None,
        ));
        match n {
            3 => plan.push((
                b"pay-nul".to_vec(),
                codec.encode(&entries_topic, &nul).await?,
                Some("22021"),
            )),
            4 => {
                plan.push((
                    b"pay-long-psp".to_vec(),
                    codec.encode(&entries_topic, &long).await?,
                    Some("54000"),
                ));
                plan.push((
                    b"pay-not-avro".to_vec(),
                    b"this is not Avro in the Confluent wire format".to_vec(),
                    Some(""),
                ));
                plan.push((
                    b"pay-unbalanced".to_vec(),
                    codec.encode(&entries_topic, &unbalanced).await?,
                    Some(""),
                ));
            }
            5 => {
                // The id of pay-1's entry with other amounts: a conflict, dead-lettered.
                let mut conflict = valid[0].clone();
                for posting in &mut conflict.postings {
                    posting.amount_minor = AMOUNT_MINOR + 1;
                }
                plan.push((
                    b"pay-1-conflict".to_vec(),
                    codec.encode(&entries_topic, &conflict).await?,
                    Some(""),
                ));
                // pay-2's entry again, as written: a replay, skipped.
                plan.push((
                    b"pay-2-replay".to_vec(),
                    codec.encode(&entries_topic, &valid[1]).await?,
                    None,
                ));
            }
            _ => {}
        }
    }
    let mut sent = Vec::new();
    for (key, value, rejected_with) in &plan {
        sent.push(Sent {
            offset: send(&producer, &entries_topic, key, value).await?,
            key: key.clone(),
            value: value.clone(),
            rejected_with: *rejected_with,
        });
    }
    let bad_status_offset = {
        send(
            &producer,
            &status_topic,
            b"pay-1",
            &codec.encode(&status_topic, &status("pay-1")).await?,
        )
        .await?;
        send(
            &producer,
            &status_topic,
            b"pay-status-nul",
            &codec
                .encode(&status_topic, &status("pay-\0-status"))
                .await?,
        )
        .await?
    };

    // 1. The sink writes what it can and dead-letters the rest, without stopping.
    let output = env.paystream(&["run", "--until-caught-up"])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        stdout.contains("1 skipped as already posted"),
        "the replay of pay-2's entry is skipped, the conflict is not: {stdout}"
    );

    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let check_ledger = |pool: sqlx::PgPool, valid: Vec<JournalEntry>| async move {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM journal_entries")
            .fetch_all(&pool)
            .await?;
        let mut stored: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        stored.sort();
        let mut expected: Vec<String> = valid.iter().map(|e| e.id.clone()).collect();
        expected.sort();
        assert_eq!(stored, expected, "exactly the valid journal entries");
        let postings: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
            .fetch_one(&pool)
            .await?;
        assert_eq!(postings as usize, 2 * valid.len());
        // Sequence numbers of the shared accounts have no gap where a record was left out.
        for account in ["psp_receivable:adyen", "merchant_payable:merchant-a"] {
            let sequences: Vec<i64> = sqlx::query_scalar(
                "SELECT account_sequence FROM postings WHERE account = $1 ORDER BY 1",
            )
            .bind(account)
            .fetch_all(&pool)
            .await?;
            assert_eq!(
                sequences,
                (1..=valid.len() as i64).collect::<Vec<_>>(),
                "{account}"
            );
        }
        let balances: BTreeMap<String, i64> =
            sqlx::query("SELECT account, balance_minor FROM account_balances")
                .fetch_all(&pool)
                .await?
                .into_iter()
                .map(|row| Ok((row.try_get("account")?, row.try_get("balance_minor")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        let total = AMOUNT_MINOR * valid.len() as i64;
        assert_eq!(
            balances,
            BTreeMap::from([
                ("merchant_payable:merchant-a".to_string(), -total),
                ("psp_receivable:adyen".to_string(), total),
            ])
        );
        let payments: Vec<String> = sqlx::query_scalar("SELECT payment_id FROM payments")
            .fetch_all(&pool)
            .await?;
        assert_eq!(payments, ["pay-1"]);
        anyhow::Ok(())
    };
    check_ledger(pool.clone(), valid.clone()).await?;

    // 2. Each bad record is in its dead-letter queue, with why and where it came from.
    let check_dead_letters = || -> anyhow::Result<()> {
        let dead_letters = read_committed(&format!("{entries_topic}.dlq"), READ_TIMEOUT)?;
        let expected: Vec<&Sent> = sent.iter().filter(|s| s.rejected_with.is_some()).collect();
        assert_eq!(dead_letters.len(), expected.len(), "{dead_letters:#?}");
        for want in expected {
            let found = dead_letters
                .iter()
                .find(|d| {
                    d.headers.get("paystream.dlq.source.offset") == Some(&want.offset.to_string())
                })
                .unwrap_or_else(|| panic!("no dead letter of offset {}", want.offset));
            assert_eq!(found.partition, 0);
            assert_eq!(found.headers["paystream.dlq.reason"], "sink_rejected");
            assert_eq!(found.headers["paystream.dlq.stage"], "sink");
            assert_eq!(found.headers["paystream.dlq.source.topic"], entries_topic);
            assert_eq!(found.headers["paystream.dlq.source.partition"], "0");
            assert_eq!(found.key.as_deref(), Some(&want.key[..]));
            // The original bytes, where the dead-letter format did not mask a digit run
            // that looks like a card number (masking keeps lengths).
            let value = found.value.as_deref().unwrap_or_default();
            assert_eq!(value.len(), want.value.len());
            assert!(
                value
                    .iter()
                    .zip(&want.value)
                    .all(|(got, sent)| got == sent || *got == b'*'),
                "dead letter of offset {} does not hold the original bytes",
                want.offset
            );
            let error = &found.headers["paystream.dlq.error"];
            match want.rejected_with {
                Some("") => assert!(
                    error.contains("does not decode")
                        || error.contains("does not balance")
                        || error.contains("already in the ledger with different content"),
                    "{error}"
                ),
                Some(sqlstate) => assert!(error.contains(sqlstate), "{error}"),
                None => unreachable!(),
            }
        }
        let status_dead_letters = read_committed(&format!("{status_topic}.dlq"), READ_TIMEOUT)?;
        assert_eq!(status_dead_letters.len(), 1, "{status_dead_letters:#?}");
        assert_eq!(
            status_dead_letters[0].headers["paystream.dlq.source.offset"],
            bad_status_offset.to_string()
        );
        assert_eq!(
            status_dead_letters[0].headers["paystream.dlq.reason"],
            "sink_rejected"
        );
        Ok(())
    };
    check_dead_letters()?;

    // `dlq inspect` shows a sink dead letter's original record, decoded as what its
    // source topic carries (it used to decode every one as a settlement).
    let inspect = |topic: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        let out = env.paystream(&["dlq", "inspect", "--topic", topic, "--format", "json"])?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| Ok(serde_json::from_str(line)?))
            .collect()
    };
    let shown = inspect(&entries_topic)?;
    let decoded: Vec<&str> = shown
        .iter()
        .filter_map(|entry| entry["decoded"].as_str())
        .collect();
    assert!(
        decoded
            .iter()
            .any(|d| d.starts_with("JournalEntry ") && d.contains("pay-unbalanced")),
        "{decoded:?}"
    );
    assert!(
        decoded
            .iter()
            .filter(|d| d.starts_with("JournalEntry "))
            .count()
            >= 3,
        "the NUL, long and unbalanced entries decode: {decoded:?}"
    );
    let shown = inspect(&status_topic)?;
    assert!(
        shown.iter().all(|entry| entry["decoded"]
            .as_str()
            .is_some_and(|d| d.starts_with("PaymentStatusChanged "))),
        "{shown:?}"
    );

    // ... and in sink_dead_letters, in the transaction of its batch.
    let rows = sqlx::query(
        "SELECT topic, \"offset\", reason, sqlstate FROM sink_dead_letters ORDER BY topic, \"offset\"",
    )
    .fetch_all(&pool)
    .await?;
    let mut recorded: Vec<(String, i64, String, Option<String>)> = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get("topic")?,
                row.try_get("offset")?,
                row.try_get("reason")?,
                row.try_get("sqlstate")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let mut expected: Vec<(String, i64, String, Option<String>)> = sent
        .iter()
        .filter_map(|s| {
            s.rejected_with.map(|code| {
                (
                    entries_topic.clone(),
                    s.offset,
                    "sink_rejected".to_string(),
                    (!code.is_empty()).then(|| code.to_string()),
                )
            })
        })
        .collect();
    expected.push((
        status_topic.clone(),
        bad_status_offset,
        "sink_rejected".to_string(),
        Some("22021".to_string()),
    ));
    expected.sort();
    recorded.sort();
    assert_eq!(recorded, expected);

    // 3. `ledger verify` passes and reports them.
    let verify = env.paystream(&["ledger", "verify"])?;
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(field(&report, "ledger verified:"), Some("yes"), "{report}");
    assert_eq!(
        field(&report, "sink dead letters"),
        Some(
            format!("6 ({entries_topic}/sink_rejected=5 {status_topic}/sink_rejected=1)").as_str()
        ),
        "{report}"
    );

    // 4. A second run resumes from the stored offsets: nothing is written twice.
    env.paystream(&["run", "--until-caught-up"])?;
    check_ledger(pool.clone(), valid.clone()).await?;
    check_dead_letters()?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sink_dead_letters")
        .fetch_one(&pool)
        .await?;
    assert_eq!(count, 6);
    pool.close().await;
    Ok(())
}
