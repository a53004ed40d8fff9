//! Helpers of paystream's end-to-end tests: the local stack's addresses, an isolated
//! environment per test (own topics, consumer group, schema subjects, database and state
//! directory), running the real `paystream` binary, and reading topics back with a
//! `read_committed` consumer.
//!
//! The stack (`scripts/stack up`) must be running; `scripts/test` starts it and exports
//! its addresses (`PAYSTREAM_KAFKA_BOOTSTRAP`, `PAYSTREAM_REGISTRY_URL`,
//! `PAYSTREAM_DATABASE_URL`).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::message::{Headers, Message};
use sqlx::{Connection, Row};
use wait_timeout::ChildExt;

/// A value from the environment `scripts/test` exports, or the local stack's default.
fn stack_var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Kafka bootstrap servers of the local stack.
pub fn bootstrap() -> String {
    stack_var("PAYSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
}

/// Schema Registry base URL of the local stack.
pub fn registry_url() -> String {
    stack_var(
        "PAYSTREAM_REGISTRY_URL",
        "http://127.0.0.1:18081/apis/ccompat/v7",
    )
}

/// Replication factor for the stack's brokers: 3 on a 3-broker stack
/// (`PAYSTREAM_KAFKA_BROKERS=3`), else 1.
pub fn replication_factor() -> String {
    match stack_var("PAYSTREAM_KAFKA_BROKERS", "1").as_str() {
        "1" => "1".to_string(),
        _ => "3".to_string(),
    }
}

/// PostgreSQL URL of the local stack's `paystream` database; tests swap the database.
pub fn database_server_url() -> String {
    stack_var(
        "PAYSTREAM_DATABASE_URL",
        "postgres://postgres@127.0.0.1:15432/paystream",
    )
}

/// One test's isolated environment. An environment made by [`TestEnv::new`] deletes its
/// topics and drops its database when it is dropped (see [`TestEnv::keep`]), so the
/// shared local stack does not collect every run's partitions: each holds open files in
/// the broker, and a broker out of file descriptors fails every test after it.
pub struct TestEnv {
    pub id: String,
    pub prefix: String,
    pub application_id: String,
    pub database_url: String,
    pub state_dir: tempfile::TempDir,
    pub work_dir: tempfile::TempDir,
    /// Partitions of the topics it creates (`topics.partitions`), 3 unless
    /// [`TestEnv::with_partitions`].
    partitions: u32,
    /// Delete the topics and the database when dropped.
    clean_up: bool,
}

impl TestEnv {
    /// Fresh names for a test called `name`.
    pub fn new(name: &str) -> Self {
        let mut env = Self::with_id(format!(
            "{name}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        env.clean_up = std::env::var_os("PAYSTREAM_KEEP_TEST_DATA").is_none();
        env
    }

    /// Its topics get `partitions` partitions (every command it makes sets
    /// `topics.partitions`).
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Keeps this environment's topics and database after it is dropped (e.g. to verify
    /// a run again later with [`TestEnv::with_id`]); `PAYSTREAM_KEEP_TEST_DATA=1` keeps
    /// every environment's.
    pub fn keep(&mut self) {
        self.clean_up = false;
    }

    /// The names of the run `id` (e.g. to verify an earlier run's outputs again); its
    /// topics and database are left in place when it is dropped.
    pub fn with_id(id: String) -> Self {
        let server = database_server_url();
        let base = server
            .rsplit_once('/')
            .map(|(base, _)| base.to_string())
            .unwrap_or(server);
        TestEnv {
            prefix: format!("{id}."),
            application_id: format!("{id}-app"),
            database_url: format!("{base}/{id}"),
            state_dir: tempfile::tempdir().expect("state dir"),
            work_dir: tempfile::tempdir().expect("work dir"),
            id,
            partitions: 3,
            clean_up: false,
        }
    }

    /// The `paystream` binary of the same build: beside this executable (`target/<profile>/`
    /// for the `chaos` binary) or one level up (`target/<profile>/deps/` for tests), or
    /// `PAYSTREAM_BIN`.
    pub fn binary() -> PathBuf {
        if let Ok(path) = std::env::var("PAYSTREAM_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("executable path");
        let dir = exe.parent().expect("executable directory");
        let beside = dir.join("paystream");
        if beside.is_file() {
            return beside;
        }
        dir.parent().unwrap_or(dir).join("paystream")
    }

    /// Creates this test's topics, registers the schemas and creates its ledger database.
    ///
    /// # Errors
    /// When one of the three commands fails.
    pub fn prepare(&self) -> anyhow::Result<()> {
        self.paystream(&["topics", "create"])?;
        self.paystream(&["schemas", "register"])?;
        self.paystream(&["ledger", "init"])?;
        Ok(())
    }

    /// Runs `paystream ARGS` with this test's configuration in the environment.
    ///
    /// # Errors
    /// When the process cannot start, or exits non-zero (stdout and stderr included).
    pub fn paystream(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.paystream_with_env(args, &[])
    }

    /// Runs `paystream ARGS` with this test's configuration and `vars` (e.g. a config key
    /// as `PAYSTREAM_PROCESSING__ORPHAN_TIMEOUT_MS`) in the environment.
    ///
    /// # Errors
    /// When the process cannot start, or exits non-zero (stdout and stderr included).
    pub fn paystream_with_env(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let output = output_within(
            self.command(args).envs(vars.iter().copied()),
            COMMAND_TIMEOUT,
        )?;
        if !output.status.success() {
            bail!(
                "paystream {} exited {}\n--- stdout\n{}\n--- stderr\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                tail(&String::from_utf8_lossy(&output.stderr), 60)
            );
        }
        Ok(output)
    }

    /// Runs `paystream ARGS` and returns its output whatever the exit status.
    ///
    /// # Errors
    /// When the process cannot start.
    pub fn paystream_unchecked(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.paystream_unchecked_with_env(args, &[])
    }

    /// Runs `paystream ARGS` with `vars` added to this test's environment and returns its
    /// output whatever the exit status.
    ///
    /// # Errors
    /// When the process cannot start or runs past [`COMMAND_TIMEOUT`].
    pub fn paystream_unchecked_with_env(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        output_within(
            self.command(args).envs(vars.iter().copied()),
            COMMAND_TIMEOUT,
        )
    }

    /// A `paystream ARGS` command with this test's configuration in its environment, for
    /// the caller to start (and, in crash tests, to kill).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(Self::binary());
        command
            .args(args)
            .current_dir(self.work_dir.path())
            .env_remove("PAYSTREAM_CONFIG")
            .env("PAYSTREAM_APPLICATION_ID", &self.application_id)
            .env("PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS", bootstrap())
            .env("PAYSTREAM_TOPICS__PREFIX", &self.prefix)
            .env("PAYSTREAM_TOPICS__PARTITIONS", self.partitions.to_string())
            .env("PAYSTREAM_SCHEMA_REGISTRY__URL", registry_url())
            .env("PAYSTREAM_STATE__DIR", self.state_dir.path())
            .env("PAYSTREAM_SINK__DATABASE_URL", &self.database_url)
            .env("PAYSTREAM_HTTP__LISTEN_ADDRESS", "127.0.0.1:0")
            .env("PAYSTREAM_TOPICS__REPLICATION_FACTOR", replication_factor())
            .env(
                "PAYSTREAM_LOG",
                "warn,paystream_runtime=info,paystream_ledger_sink=info",
            );
        command
    }

    /// Starts `paystream produce` of `count` records of the seeded traffic (`seed`, first
    /// event at `start_ms`) at `rate` records/s, in the background: traffic that flows
    /// while a test does something to the instances.
    ///
    /// # Errors
    /// When the process cannot start.
    pub fn produce_at_rate(
        &self,
        count: u64,
        seed: u64,
        start_ms: i64,
        rate: u64,
    ) -> anyhow::Result<Child> {
        self.command(&[
            "produce",
            "--quiet",
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--start-ms",
            &start_ms.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting paystream produce")
    }

    /// This test's configuration as the runtime's [`paystream_runtime::Config`], the same
    /// the `paystream` commands of [`Self::command`] get from the environment: for tests
    /// that run the runtime in process.
    pub fn config(&self) -> paystream_runtime::Config {
        let mut config = paystream_runtime::Config {
            application_id: self.application_id.clone(),
            ..paystream_runtime::Config::default()
        };
        config.kafka.bootstrap_servers = bootstrap();
        config.topics.prefix = self.prefix.clone();
        config.topics.partitions = self.partitions as i32;
        config.topics.replication_factor = replication_factor().parse().unwrap_or(1);
        config.schema_registry.url = registry_url();
        config.state.dir = self.state_dir.path().to_path_buf();
        config
    }

    /// A topic name with this test's prefix.
    pub fn topic(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.clean_up {
            return;
        }
        let (prefix, app_prefix, id) = (
            self.prefix.clone(),
            format!("{}-", self.application_id),
            self.id.clone(),
        );
        // A thread of its own: a test's tokio runtime may be running on this one.
        let cleaned = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delete_run_data(&prefix, &app_prefix, &id))
        })
        .join();
        if let Ok(Err(e)) = cleaned {
            eprintln!("test env {}: cleaning up: {e:#}", self.id);
        }
    }
}

/// Deletes the topics named `<prefix>…` or `<app_prefix>…` and drops the database `id`.
async fn delete_run_data(prefix: &str, app_prefix: &str, id: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with(prefix) || name.starts_with(app_prefix))
        .collect();
    if !topics.is_empty() {
        admin.delete_topics(&topics, &AdminOptions::new()).await?;
    }
    let mut server = sqlx::postgres::PgConnection::connect(&database_server_url()).await?;
    // `id` is the test's own generated name (letters, digits, underscores).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{id}\" WITH (FORCE)"
    )))
    .execute(&mut server)
    .await?;
    Ok(())
}

/// Longest one `paystream` command of a test may run (the longest, a `run
/// --until-caught-up` of a few thousand events, takes under a minute).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a running `paystream run` may take to stop after SIGTERM (it commits the open
/// transaction and leaves the group: seconds).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` to completion like [`Command::output`], but kills it and fails after
/// `timeout`, with the tail of what it printed — a hung process fails its test instead
/// of stalling the whole run.
///
/// # Errors
/// When the process cannot start, or runs past `timeout`.
pub fn output_within(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    // Files, not pipes: a chatty process cannot block on a full pipe while we wait.
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| {
            format!(
                "starting {:?} (build it with cargo build)",
                command.get_program()
            )
        })?;
    let status = child.wait_timeout(timeout)?;
    let read = |file: &mut std::fs::File| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "{} did not finish within {} s and was killed\n--- stdout\n{}\n--- stderr\n{}",
            describe(command),
            timeout.as_secs(),
            tail(&String::from_utf8_lossy(&read(&mut stdout)?), 40),
            tail(&String::from_utf8_lossy(&read(&mut stderr)?), 60)
        );
    };
    Ok(Output {
        status,
        stdout: read(&mut stdout)?,
        stderr: read(&mut stderr)?,
    })
}

/// Sends SIGTERM to `child` (a running `paystream run`) and waits up to `timeout` for it
/// to exit; past that it is killed and the call fails.
///
/// # Errors
/// When the signal cannot be sent or the process does not stop in time.
pub fn stop_within(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("sending SIGTERM")?;
    match child.wait_timeout(timeout)? {
        Some(status) => Ok(status),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "pid {} did not stop within {} s of SIGTERM and was killed",
                child.id(),
                timeout.as_secs()
            )
        }
    }
}

/// A `paystream` process a test started and stops itself; killed (SIGKILL) if it is
/// still running when dropped, so a failing test leaves no instance behind.
pub struct Running {
    child: Child,
}

impl Running {
    /// Starts `command`.
    ///
    /// # Errors
    /// When the process cannot start.
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", describe(command)))?;
        Ok(Running { child })
    }

    /// Stops the process with SIGTERM within [`STOP_TIMEOUT`] (see [`stop_within`]).
    ///
    /// # Errors
    /// When it does not stop in time.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        stop_within(&mut self.child, STOP_TIMEOUT)
    }

    /// The process, e.g. to take its piped output or to see whether it still runs.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(command: &Command) -> String {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        args.join(" ")
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

/// Reads every committed record of `topic` with `isolation.level=read_committed` (see
/// [`paystream_common::kafka::read_committed_to_end`]).
///
/// # Errors
/// When the topic cannot be read within `timeout`.
pub fn read_committed(topic: &str, timeout: Duration) -> anyhow::Result<Vec<ReadRecord>> {
    let mut config = paystream_runtime::Config::default();
    config.kafka.bootstrap_servers = bootstrap();
    let messages = paystream_common::kafka::read_committed_to_end(&config, topic, timeout)?;
    Ok(messages
        .into_iter()
        .map(|message| {
            let mut headers = BTreeMap::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_string(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            ReadRecord {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
            }
        })
        .collect())
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to process `pid` with kill(1).
///
/// # Errors
/// When kill cannot run or fails.
pub fn signal(signal: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill {signal} {pid} failed: {status}");
    Ok(())
}

/// Pauses process `pid` for `duration` (SIGSTOP, then SIGCONT).
///
/// # Errors
/// When a signal cannot be sent.
pub async fn pause(pid: u32, duration: Duration) -> anyhow::Result<()> {
    signal("-STOP", pid)?;
    tokio::time::sleep(duration).await;
    signal("-CONT", pid)
}

/// Waits until the ledger at `database_url` holds `journal_entries` journal entries and
/// returns it, failing as soon as `writer` (the instance running the ledger sink) has
/// exited. `what` names the run in errors (e.g. where its logs are).
///
/// # Errors
/// Database errors; the writer exited; the ledger did not catch up within `timeout`.
pub async fn wait_for_ledger(
    database_url: &str,
    journal_entries: u64,
    writer: &mut Running,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<LedgerSnapshot> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ledger = ledger_snapshot(database_url).await?;
        if ledger.journal_entries >= journal_entries {
            return Ok(ledger);
        }
        if let Some(status) = writer.child().try_wait()? {
            anyhow::bail!("the instance writing the ledger exited ({status}); {what}");
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the ledger did not catch up: {} of {journal_entries} journal entries; {what}",
            ledger.journal_entries,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a ledger database holds, in the terms of the traffic plan's expected outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSnapshot {
    pub journal_entries: u64,
    pub postings: u64,
    /// Debits minus credits per `account|currency`, minor units.
    pub balances_minor: BTreeMap<String, i64>,
    /// Payments per latest status.
    pub payments_by_status: BTreeMap<String, u64>,
}

/// Reads the counts, balances and payment statuses of the ledger at `database_url`.
///
/// # Errors
/// When the database cannot be queried.
pub async fn ledger_snapshot(database_url: &str) -> anyhow::Result<LedgerSnapshot> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await }
    };
    let mut snapshot = LedgerSnapshot {
        journal_entries: count("SELECT count(*) FROM journal_entries").await? as u64,
        postings: count("SELECT count(*) FROM postings").await? as u64,
        balances_minor: paystream_ledger_sink::balance::all_balances(&pool).await?,
        payments_by_status: BTreeMap::new(),
    };
    for row in sqlx::query("SELECT status, count(*) AS n FROM payments GROUP BY status")
        .fetch_all(&pool)
        .await?
    {
        snapshot
            .payments_by_status
            .insert(row.try_get("status")?, row.try_get::<i64, _>("n")? as u64);
    }
    pool.close().await;
    Ok(snapshot)
}

/// The value after `label` on the line of `output` that starts with it.
pub fn field<'a>(output: &'a str, label: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
}

/// A `payments` changelog value in the current format of about `value_bytes` bytes: the
/// TTL layer's write time (`TtlStore::stored_value`, now), then a version 1 value
/// (`processors/src/lifecycle/stored.rs`) of an authorized payment whose merchant id is
/// padded to the size. A task that restores it and then processes traffic reads it like
/// any other payment.
pub fn payment_value(value_bytes: usize) -> Vec<u8> {
    use paystream_processors::lifecycle::PaymentState;
    use paystream_processors::lifecycle::stored::{StoredPayment, encode};
    let state = |merchant_id: String| StoredPayment {
        state: Some(PaymentState {
            payment_id: String::new(),
            merchant_id,
            psp: "psp-a".into(),
            amount_minor: 12_500,
            currency: "EUR".into(),
            status: paystream_schemas::PaymentStatus::Authorized,
            initiated_event_id: "evt-initiated-000000000000".into(),
            authorized_amount_minor: Some(12_500),
            authorized_currency: Some("EUR".into()),
            auth_event_id: Some("evt-auth-000000000000".into()),
            settlement_event_id: None,
            capture_mode: paystream_schemas::CaptureMode::Automatic,
            money: None,
        }),
        pending: Vec::new(),
        timers: Vec::new(),
    };
    let stored = |merchant_id: String| {
        paystream_state::TtlStore::<paystream_state::InMemoryStore>::stored_value(
            paystream_testkit::traffic::now_ms(),
            &encode(&state(merchant_id)),
        )
    };
    let overhead = stored(String::new()).len();
    stored("m".repeat(value_bytes.saturating_sub(overhead + 1)))
}

/// Writes `keys` records with value `value`, keyed `<key_prefix><i:012>`, to `topic`
/// (to `partition`, or by the default partitioner), as fast as the broker takes them.
/// Returns the seconds it took.
pub async fn fill_changelog(
    topic: &str,
    partition: Option<i32>,
    keys: u64,
    value: &[u8],
    key_prefix: &str,
) -> anyhow::Result<f64> {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        // Kafka's default partitioner, as the pipeline's own records: a key lands in
        // the partition whose task would hold it (and the payment lookup looks there).
        .set("partitioner", "murmur2_random")
        .create()?;
    let filled = std::time::Instant::now();
    let mut deliveries = Vec::with_capacity(100_000);
    for i in 0..keys {
        let key = format!("{key_prefix}{i:012}");
        loop {
            let mut record = rdkafka::producer::FutureRecord::to(topic)
                .key(&key)
                .payload(value);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if deliveries.len() == 100_000 {
            for d in deliveries.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in deliveries.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    let seconds = filled.elapsed().as_secs_f64();
    println!(
        "changelog {topic}{}: {keys} keys of {} value bytes written in {seconds:.1} s",
        partition
            .map(|p| format!(" partition {p}"))
            .unwrap_or_default(),
        value.len(),
    );
    Ok(seconds)
}

/// Waits until the log at `path` (of the instance `instance`) has a line containing
/// `needle`.
///
/// # Errors
/// The instance exited, or no such line within `timeout`.
pub async fn wait_for_log_line(
    path: &std::path::Path,
    needle: &str,
    instance: &mut Running,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if std::fs::read_to_string(path)?.contains(needle) {
            return Ok(());
        }
        if let Some(status) = instance.child().try_wait()? {
            anyhow::bail!(
                "the instance exited ({status}) before it logged {needle:?}; see {}",
                path.display()
            );
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "no {needle:?} in {} within {} s",
            path.display(),
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Prometheus exposition at `url` (an instance's `/metrics`), parsed.
///
/// # Errors
/// HTTP errors; a body that does not parse.
pub async fn scrape(url: &str) -> anyhow::Result<prometheus_parse::Scrape> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(prometheus_parse::Scrape::parse(
        text.lines().map(|l| Ok(l.to_string())),
    )?)
}

/// `metric` in `scrape`, summed over its labels; `None` when it is not exported.
pub fn metric_total(scrape: &prometheus_parse::Scrape, metric: &str) -> Option<f64> {
    use prometheus_parse::Value;
    let mut samples = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .peekable();
    samples.peek()?;
    Some(
        samples
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum(),
    )
}
