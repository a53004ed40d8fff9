//! The payment lookup (`GET /payments/{id}`, interactive queries over the state stores;
//! docs/architecture.md, "Interactive queries") on real parts: two `paystream run`
//! instances share the partitions, traffic flows to the ledger, and then
//!
//! - every payment asked of either instance is answered the same, with what the ledger
//!   sink wrote to PostgreSQL from the status topic (status, amount, currency): one of
//!   the two answers it from its own active task, the other forwards the request to it;
//! - unknown ids get 404, ids breaking the payment id rule a 400 that names the rule and
//!   never echoes a card number;
//! - once the instance that runs a payment's task is killed, the other answers the same
//!   payment from its standby at once (role `standby`, with how far behind it is),
//!   before any takeover.
//!
//! `paystream payment <id>` is asked too, as an operator would.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use paystream_integration::{
    Running, TestEnv, ledger_snapshot, wait_for_ledger, wait_for_log_line,
};
use paystream_testkit::traffic::{TrafficOptions, default_start_ms, plan};
use serde_json::Value;
use sqlx::{Connection, Row};

/// GET `url`: the status code and the JSON body.
async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    let json = serde_json::from_slice(&body).map_err(|e| {
        anyhow::anyhow!(
            "{url} answered {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok((status, json))
}

fn free_address() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_looked_up_on_any_instance_and_from_a_standby_while_its_owner_is_down()
-> anyhow::Result<()> {
    let env = TestEnv::new("lookup");
    let count = 3_000;
    let seed = 43;
    let start_ms = default_start_ms(count);
    let expected = plan(&TrafficOptions {
        count,
        seed,
        start_ms,
        ..TrafficOptions::default()
    })
    .expected;
    env.prepare()?;
    let addresses = [free_address()?, free_address()?];
    let log_paths: [PathBuf; 2] =
        ["0", "1"].map(|id| std::env::temp_dir().join(format!("{}-{id}.log", env.id)));
    let instance = |id: usize| -> anyhow::Result<Command> {
        let mut command = env.command(&["run"]);
        command
            .env("PAYSTREAM_INSTANCE_ID", id.to_string())
            .env(
                "PAYSTREAM_STATE__DIR",
                env.state_dir.path().join(id.to_string()),
            )
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", addresses[id].to_string())
            // No takeover during the test's look-ups after the kill: the killed
            // instance's tasks stay where they were, served by the standbys.
            .env("PAYSTREAM_PROCESSING__PEER_TIMEOUT_MS", "5000")
            .env("PAYSTREAM_PROCESSING__SESSION_TIMEOUT_MS", "30000")
            .stdout(Stdio::null())
            .stderr(File::create(&log_paths[id])?);
        Ok(command)
    };
    let mut first = Running::spawn(&mut instance(0)?)?;
    let mut second = Running::spawn(instance(1)?.arg("--no-sink"))?;
    wait_for_log_line(
        &log_paths[1],
        "task running",
        &mut second,
        Duration::from_secs(60),
    )
    .await?;
    let mut producer = env.produce_at_rate(count, seed, start_ms, 3_000)?;
    anyhow::ensure!(producer.wait()?.success(), "paystream produce failed");
    let logs = format!(
        "logs: {}, {}",
        log_paths[0].display(),
        log_paths[1].display()
    );
    wait_for_ledger(
        &env.database_url,
        expected.journal_entries,
        &mut first,
        Duration::from_secs(120),
        &logs,
    )
    .await?;

    // What the ledger sink wrote from the status topic is the reference: wait until
    // every payment's last status is in (the sink writes statuses apart from entries).
    let settled_by = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = ledger_snapshot(&env.database_url).await?;
        if snapshot.payments_by_status == expected.payments_by_status {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < settled_by,
            "payment statuses in the ledger: {:?}, expected {:?}; {logs}",
            snapshot.payments_by_status,
            expected.payments_by_status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut db = sqlx::PgConnection::connect(&env.database_url).await?;
    let rows = sqlx::query(
        "SELECT payment_id, status, amount_minor, currency FROM payments ORDER BY payment_id LIMIT 40",
    )
    .fetch_all(&mut db)
    .await?;
    anyhow::ensure!(rows.len() == 40, "the ledger holds {} payments", rows.len());
    let urls = addresses.map(|a| format!("http://{a}/payments/"));
    let mut served_by_owner = [0usize; 2];
    let mut forwarded = 0usize;
    let mut owned_by_second = None;
    for row in &rows {
        let payment_id: String = row.get("payment_id");
        let status: String = row.get("status");
        let amount_minor: i64 = row.get("amount_minor");
        let currency: String = row.get("currency");
        let mut answers = Vec::new();
        for (asked, url) in urls.iter().enumerate() {
            let (code, body) = get(&format!("{url}{payment_id}")).await?;
            assert_eq!(code, 200, "instance {asked} on {payment_id}: {body}");
            assert_eq!(body["payment_id"], payment_id.as_str());
            assert_eq!(
                body["status"],
                status.as_str(),
                "{payment_id} asked of {asked}: {body}"
            );
            assert_eq!(body["amount_minor"], amount_minor);
            assert_eq!(body["currency"], currency.trim());
            assert_eq!(body["served_by"]["role"], "active", "{body}");
            let server: usize = body["served_by"]["instance_id"]
                .as_str()
                .expect("served_by.instance_id")
                .parse()?;
            if server != asked {
                forwarded += 1;
            }
            answers.push((server, body));
        }
        assert_eq!(
            answers[0].0, answers[1].0,
            "both instances find the same owner of {payment_id}"
        );
        served_by_owner[answers[0].0] += 1;
        if answers[0].0 == 1 && owned_by_second.is_none() {
            owned_by_second = Some((payment_id.clone(), answers[0].1.clone()));
        }
    }
    assert!(
        served_by_owner[0] > 0 && served_by_owner[1] > 0,
        "both instances own some of the payments: {served_by_owner:?}"
    );
    assert_eq!(
        forwarded,
        rows.len(),
        "each payment was forwarded by the instance that does not run it"
    );

    // The operator's command, on the instance that does not hold the payment.
    let (payment_id, before) = owned_by_second.expect("instance 1 owns a payment");
    let output = env.paystream(&[
        "payment",
        &payment_id,
        "--url",
        &format!("http://{}", addresses[0]),
    ])?;
    let printed: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(printed["status"], before["status"]);
    assert_eq!(printed["served_by"]["instance_id"], "1");

    // Unknown and invalid ids.
    let (code, body) = get(&format!("{}no-such-payment", urls[0])).await?;
    assert_eq!(code, 404, "{body}");
    let unknown = env.paystream_unchecked(&[
        "payment",
        "no-such-payment",
        "--url",
        &format!("http://{}", addresses[1]),
    ])?;
    assert_eq!(unknown.status.code(), Some(1), "not found: exit code 1");
    let (code, body) = get(&format!("{}{}", urls[0], "p".repeat(300))).await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 256"),
        "{body}"
    );
    let (code, body) = get(&format!("{}bad%01id", urls[1])).await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{body}"
    );
    let (code, body) = get(&format!("{}4111111111111111", urls[0])).await?;
    assert_eq!(code, 400, "{body}");
    assert!(!body.to_string().contains("4111111111111111"), "{body}");

    // The owner dies: instance 0 answers from its standby of the task at once.
    second.child().kill()?; // SIGKILL
    second.child().wait()?;
    let (code, body) = get(&format!("{}{payment_id}", urls[0])).await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["served_by"]["instance_id"], "0", "{body}");
    assert_eq!(body["served_by"]["role"], "standby", "{body}");
    assert!(
        body["served_by"]["standby_applied_ms_ago"].is_i64(),
        "{body}"
    );
    assert_eq!(body["status"], before["status"], "{body}");
    assert_eq!(body["events_applied"], before["events_applied"], "{body}");
    first.stop()?;
    Ok(())
}
