//! Secure connections on the real stack. `scripts/stack up` generates a test CA, the
//! broker's, PostgreSQL's and a client's certificates and the SCRAM user's password,
//! and opens a SASL_SSL listener (SCRAM-SHA-256/512, PLAIN) and an SSL listener that
//! requires client certificates; PostgreSQL runs with `ssl = on`. The rogue CA of the
//! untrusted-certificate cases is generated here with rcgen.
//!
//! - The whole pipeline (topics, schemas, producer, pipeline, ledger sink) runs over
//!   SASL_SSL with SCRAM-SHA-512, the Schema Registry over HTTPS (Quarkus' TLS listener of
//!   the stack's Apicurio Registry) and PostgreSQL with `sslmode=verify-full`, on traffic
//!   that also carries a card number and a password-like string; afterwards neither these
//!   nor the SASL password are found in any log line, dead letter, output record or
//!   PostgreSQL row.
//! - A wrong password, an untrusted broker, registry or PostgreSQL certificate and a
//!   missing client certificate each fail start-up with their cause.

use std::collections::BTreeMap;
use std::time::Duration;

use paystream_integration::{TestEnv, bootstrap, field, ledger_snapshot, read_committed};
use paystream_schemas::{CaptureMode, Codec, PaymentInitiated};
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;

/// A card number (passes the Luhn check) planted in an event.
const CARD_NUMBER: &str = "4111111111111111";

/// The stack's secure endpoints and credentials (from `stack.env`).
struct Secure {
    sasl_ssl_bootstrap: String,
    ssl_bootstrap: String,
    username: String,
    password_file: String,
    password: String,
    ca_file: String,
    client_cert: String,
    client_key: String,
    registry_https_url: String,
}

fn stack(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, or source the stack.env that `scripts/stack up` writes")
    })
}

fn secure() -> Secure {
    let password_file = stack("PAYSTREAM_STACK_KAFKA_PASSWORD_FILE");
    Secure {
        sasl_ssl_bootstrap: stack("PAYSTREAM_STACK_KAFKA_SASL_SSL_BOOTSTRAP"),
        ssl_bootstrap: stack("PAYSTREAM_STACK_KAFKA_SSL_BOOTSTRAP"),
        username: stack("PAYSTREAM_STACK_KAFKA_USERNAME"),
        password: std::fs::read_to_string(&password_file).expect("the stack's Kafka password"),
        password_file,
        ca_file: stack("PAYSTREAM_STACK_CA_FILE"),
        client_cert: stack("PAYSTREAM_STACK_CLIENT_CERT"),
        client_key: stack("PAYSTREAM_STACK_CLIENT_KEY"),
        registry_https_url: stack("PAYSTREAM_STACK_REGISTRY_HTTPS_URL"),
    }
}

/// The environment of a process that reaches Kafka over SASL_SSL (SCRAM-SHA-512), the
/// Schema Registry over HTTPS and PostgreSQL with `sslmode=verify-full`, all trusting
/// the stack's CA.
fn sasl_ssl_vars(secure: &Secure, env: &TestEnv) -> Vec<(String, String)> {
    [
        (
            "PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS",
            secure.sasl_ssl_bootstrap.clone(),
        ),
        ("PAYSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL".into()),
        ("PAYSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512".into()),
        ("PAYSTREAM_KAFKA__SASL_USERNAME", secure.username.clone()),
        (
            "PAYSTREAM_KAFKA__SASL_PASSWORD_FILE",
            secure.password_file.clone(),
        ),
        ("PAYSTREAM_KAFKA__SSL_CA_LOCATION", secure.ca_file.clone()),
        (
            "PAYSTREAM_SINK__DATABASE_URL",
            verify_full_url(env, &secure.ca_file),
        ),
        (
            "PAYSTREAM_SCHEMA_REGISTRY__URL",
            secure.registry_https_url.clone(),
        ),
        (
            "PAYSTREAM_SCHEMA_REGISTRY__CA_LOCATION",
            secure.ca_file.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The test's database URL with TLS required and the server verified against `ca_file`
/// (chain and host name).
fn verify_full_url(env: &TestEnv, ca_file: &str) -> String {
    format!(
        "{}?sslmode=verify-full&sslrootcert={ca_file}",
        env.database_url
    )
}

fn with_vars<'a>(
    vars: &'a [(String, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (key, value) in extra {
        all.retain(|(k, _)| k != key);
        all.push((key, value));
    }
    all
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A CA nobody trusts, as PEM.
fn rogue_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rogue test CA");
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("self-signed CA").pem()
}

fn payment(n: u32) -> PaymentInitiated {
    PaymentInitiated {
        event_id: format!("evt-sec-{n}"),
        idempotency_key: format!("idem-sec-{n}"),
        payment_id: format!("pay-sec-{n}"),
        merchant_id: "merchant-sec".into(),
        customer_id: format!("cust-sec-{n}"),
        amount_minor: 4_200,
        currency: "EUR".into(),
        payment_method_token: format!("pm_sec_{n}"),
        psp: "adyen".into(),
        occurred_at: paystream_testkit::traffic::now_ms() - 60_000,
        capture_mode: CaptureMode::Automatic,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_over_sasl_ssl_and_verified_tls_and_leaks_nothing() -> anyhow::Result<()>
{
    let secure = secure();
    let env = TestEnv::new("secure");
    let secure_vars = sasl_ssl_vars(&secure, &env);
    let vars = with_vars(&secure_vars, &[]);
    let mut logs = String::new();
    for args in [
        &["topics", "create"][..],
        &["schemas", "register"],
        &["ledger", "init"],
    ] {
        logs.push_str(&text(&env.paystream_with_env(args, &vars)?));
    }

    let count = 400;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed: 17,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    logs.push_str(&text(&env.paystream_with_env(
        &[
            "produce",
            "--quiet",
            "--count",
            &count.to_string(),
            "--seed",
            "17",
            "--start-ms",
            &start_ms.to_string(),
        ],
        &vars,
    )?));

    // Two events carrying what must never be stored or shown: a card number in the token
    // and a password-like string (the SASL password itself) in the customer id.
    let codec = Codec::new(
        &paystream_integration::registry_url(),
        Duration::from_secs(10),
    )?;
    let topic = env.topic("payment_initiated");
    let leaky = [
        PaymentInitiated {
            payment_method_token: CARD_NUMBER.into(),
            ..payment(1)
        },
        PaymentInitiated {
            customer_id: format!("cust-9 password={}", secure.password),
            ..payment(2)
        },
    ];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("partitioner", paystream_common::kafka::PARTITIONER)
        .create()?;
    for event in &leaky {
        let value = codec.encode(&topic, event).await?;
        let key = event.key();
        producer
            .send(
                FutureRecord::to(&topic).key(key.as_bytes()).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let run = env.paystream_with_env(
        &["run", "--until-caught-up"],
        &with_vars(
            &secure_vars,
            &[(
                "PAYSTREAM_LOG",
                "debug,rdkafka=info,sqlx=info,hyper=info,reqwest=info,h2=info",
            )],
        ),
    )?;
    let run_text = text(&run);
    logs.push_str(&run_text);
    assert_eq!(
        field(&run_text, "events read"),
        Some((expected.records + 2).to_string().as_str()),
        "{run_text}"
    );
    let dead_lettered = field(&run_text, "dead-lettered").unwrap_or_default();
    assert!(
        dead_lettered.contains("pan_detected=1") && dead_lettered.contains("secret_detected=1"),
        "{dead_lettered}"
    );
    let ledger = ledger_snapshot(&env.database_url).await?;
    assert_eq!(ledger.journal_entries, expected.journal_entries);
    assert_eq!(ledger.balances_minor, expected.balances_minor);

    // The sink's database is reached over TLS with the server verified.
    let pool = sqlx::PgPool::connect(&verify_full_url(&env, &secure.ca_file)).await?;
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await?;
    assert!(tls, "a verify-full connection is encrypted");
    logs.push_str(&text(
        &env.paystream_with_env(&["ledger", "verify"], &vars)?,
    ));

    // Search everything the run wrote for the card number and the password.
    let needles = [CARD_NUMBER, secure.password.as_str()];
    let mut searched = BTreeMap::new();
    let mut haystack = |place: String, bytes: &[u8]| {
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} found in {place}",
                if needle == CARD_NUMBER {
                    "the card number"
                } else {
                    "the password"
                }
            );
        }
        *searched
            .entry(place.split(' ').next().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    };
    for line in logs.lines() {
        haystack("log line".into(), line.as_bytes());
    }
    let topics: Vec<String> = [
        "payment_status",
        "ledger_entries",
        "reconciliation_exceptions",
    ]
    .iter()
    .map(|base| env.topic(base))
    .chain(
        [
            "payment_initiated",
            "auth_success",
            "auth_failure",
            "settlement",
        ]
        .iter()
        .map(|base| format!("{}.dlq", env.topic(base))),
    )
    .collect();
    let mut dead_letters = 0;
    for topic in &topics {
        for record in read_committed(topic, Duration::from_secs(60))? {
            if topic.ends_with(".dlq") {
                dead_letters += 1;
            }
            let mut bytes = record.key.clone().unwrap_or_default();
            bytes.extend(record.value.clone().unwrap_or_default());
            for (name, value) in &record.headers {
                bytes.extend(name.as_bytes());
                bytes.extend(value.as_bytes());
            }
            haystack(
                format!("record {topic}/{}@{}", record.partition, record.offset),
                &bytes,
            );
        }
    }
    assert_eq!(dead_letters, 2, "both leaky events were dead-lettered");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await?;
    assert!(tables.len() >= 5, "{tables:?}");
    for table in &tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t::text AS row FROM \"{table}\" t"
        )))
        .fetch_all(&pool)
        .await?;
        for row in rows {
            let row: String = row.try_get("row")?;
            haystack(format!("row {table}"), row.as_bytes());
        }
    }
    println!("searched without a find: {searched:?}");
    assert!(searched.get("row").copied().unwrap_or(0) > 0);
    assert!(searched.get("record").copied().unwrap_or(0) > 0);
    assert!(searched.get("log").copied().unwrap_or(0) > 0);
    Ok(())
}

#[test]
fn bad_credentials_and_untrusted_certificates_fail_fast_with_their_cause() -> anyhow::Result<()> {
    let secure = secure();
    let env = TestEnv::new("insecure");
    let vars = sasl_ssl_vars(&secure, &env);
    let work = tempfile::tempdir()?;
    let rogue_ca = work.path().join("rogue-ca.pem");
    std::fs::write(&rogue_ca, rogue_ca_pem())?;
    let rogue_ca = rogue_ca.to_string_lossy().into_owned();

    // The other mechanisms the listener offers work too.
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let other = env.paystream_unchecked_with_env(
            &["topics", "create"],
            &with_vars(&vars, &[("PAYSTREAM_KAFKA__SASL_MECHANISM", mechanism)]),
        )?;
        assert!(other.status.success(), "{mechanism}: {}", text(&other));
    }

    // A wrong password: SASL authentication fails at once, naming the keys to check and
    // never the password tried.
    let wrong = env.paystream_unchecked_with_env(
        &["topics", "create"],
        &with_vars(
            &vars,
            &[
                ("PAYSTREAM_KAFKA__SASL_PASSWORD_FILE", ""),
                ("PAYSTREAM_KAFKA__SASL_PASSWORD", "not-the-password-7f3a"),
            ],
        ),
    )?;
    let out = text(&wrong);
    assert!(!wrong.status.success(), "{out}");
    assert!(out.contains("SASL authentication failed"), "{out}");
    assert!(out.contains("kafka.sasl_username"), "{out}");
    assert!(!out.contains("not-the-password-7f3a"), "{out}");
    assert!(
        !out.contains("retrying"),
        "authentication failures are not retried: {out}"
    );

    // A broker certificate that does not chain to the configured CA.
    let untrusted = env.paystream_unchecked_with_env(
        &["topics", "create"],
        &with_vars(&vars, &[("PAYSTREAM_KAFKA__SSL_CA_LOCATION", &rogue_ca)]),
    )?;
    let out = text(&untrusted);
    assert!(!untrusted.status.success(), "{out}");
    assert!(out.contains("TLS handshake failed"), "{out}");
    assert!(out.contains("certificate verify failed"), "{out}");
    assert!(out.contains("kafka.ssl_ca_location"), "{out}");

    // Mutual TLS: the SSL listener takes the client certificate, and refuses without it.
    let mtls = [
        (
            "PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS",
            secure.ssl_bootstrap.as_str(),
        ),
        ("PAYSTREAM_KAFKA__SECURITY_PROTOCOL", "SSL"),
        ("PAYSTREAM_KAFKA__SSL_CA_LOCATION", secure.ca_file.as_str()),
        (
            "PAYSTREAM_KAFKA__SSL_CERTIFICATE_LOCATION",
            secure.client_cert.as_str(),
        ),
        (
            "PAYSTREAM_KAFKA__SSL_KEY_LOCATION",
            secure.client_key.as_str(),
        ),
    ];
    let with_cert = env.paystream_unchecked_with_env(&["topics", "create"], &mtls)?;
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    let without_cert = env.paystream_unchecked_with_env(&["topics", "create"], &mtls[..3])?;
    let out = text(&without_cert);
    assert!(!without_cert.status.success(), "{out}");
    assert!(out.contains("TLS handshake failed"), "{out}");
    assert!(out.contains("kafka.ssl_certificate_location"), "{out}");

    // A registry certificate that does not chain to the configured CA.
    let registry = env.paystream_unchecked_with_env(
        &["schemas", "register"],
        &with_vars(
            &vars,
            &[("PAYSTREAM_SCHEMA_REGISTRY__CA_LOCATION", &rogue_ca)],
        ),
    )?;
    let out = text(&registry);
    assert!(!registry.status.success(), "{out}");
    assert!(out.contains("schema_registry.ca_location"), "{out}");

    // PostgreSQL whose certificate does not chain to the configured root: refused.
    let pg = env.paystream_unchecked_with_env(
        &["ledger", "init"],
        &[(
            "PAYSTREAM_SINK__DATABASE_URL",
            &verify_full_url(&env, &rogue_ca),
        )],
    )?;
    let out = text(&pg);
    assert!(!pg.status.success(), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    Ok(())
}
