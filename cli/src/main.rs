//! `paystream`: run the pipeline, create topics, register schemas, generate traffic and
//! verify the ledger. `paystream --help` lists the commands; every command has `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use paystream::commands;
use paystream_ledger_sink::SinkConfig;
use paystream_processors::PaymentsConfig;

/// jemalloc instead of glibc's allocator: the stream thread allocates and frees per
/// record (messages, outputs, store values), and malloc/free took about a sixth of its
/// CPU; jemalloc cuts paystream's CPU per event by 11–13 % at the same peak RSS
/// (docs/benchmarks.md, "The allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "paystream",
    version,
    about = "Exactly-once stream processing for payments: Kafka in, a double-entry ledger in PostgreSQL out",
    long_about = None
)]
struct Cli {
    /// Configuration file (TOML). Environment variables PAYSTREAM_<SECTION>__<KEY>
    /// override it, e.g. PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS.
    #[arg(long, short, global = true, env = "PAYSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (and, unless disabled, the ledger sink) until interrupted.
    Run(commands::run::RunArgs),
    /// Manage topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Manage schemas in the Schema Registry.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Generate payment traffic (the ingress simulator): Avro events in the Confluent
    /// wire format with duplicates, declines, settlements and out-of-order arrival.
    Produce(commands::produce::ProduceArgs),
    /// Work with the PostgreSQL ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Work with the dead-letter queues.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Reset the application's consumer group to replay its input (backfill): to an
    /// offset, a time or a duration ago. Refuses while instances run. State stores are
    /// kept (the replay is deduplicated) unless --reset-state.
    Replay(commands::replay::ReplayArgs),
    /// Print what the pipeline knows of a payment now — status, amounts, the events
    /// applied, the events waiting and for what, its timers — from the state stores of
    /// the instance that holds it (asked through any instance's HTTP endpoint).
    Payment(commands::payment::PaymentArgs),
    /// Print the topology: sub-topologies with their source topics, processors, state
    /// stores and changelogs, sink topics, dead-letter queues, the ledger sink and the
    /// internal topics, for this configuration.
    Topology {
        /// `text`, or `mermaid` for a flowchart (the README's diagram).
        #[arg(long, value_enum, default_value_t = TopologyFormat::Text)]
        format: TopologyFormat,
    },
}

impl Command {
    /// True for the commands that talk to Kafka.
    fn uses_kafka(&self) -> bool {
        !matches!(
            self,
            Command::Topology { .. }
                | Command::Ledger { .. }
                | Command::Schemas { .. }
                | Command::Payment(_)
        )
    }
}

/// Formats of `paystream topology`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TopologyFormat {
    Text,
    Mermaid,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters with their reason, source and error, decoded where possible,
    /// and count them per reason.
    Inspect(commands::dlq::InspectArgs),
    /// Re-publish chosen dead letters to their source topic after a fix, once: each
    /// redriven record is written to the redrive log in the same transaction, and a later
    /// redrive skips it. `pan_detected` records are never redriven.
    Redrive(commands::dlq::RedriveArgs),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every input, output, internal, changelog and dead-letter topic that is
    /// missing (partitions and replication from the config; changelogs compacted).
    Create,
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Register every event schema under `<topic>-value` (a no-op when present).
    Register,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Create the database if missing and apply the migrations.
    Init,
    /// Check that every journal entry balances per currency and every account balance
    /// equals the sum of its postings. Exits 1 on a violation.
    Verify(commands::ledger::VerifyArgs),
    /// Print an account's balance per currency (debits, credits, balance in minor units),
    /// now or at a moment in the past (postings of entries that occurred at or before it).
    Balance(commands::ledger::BalanceArgs),
    /// Print one payment's history in the ledger: its status, every journal entry with
    /// its postings in the order they happened, and its reconciliation exceptions. Exits
    /// 1 when the ledger knows nothing of it.
    History(commands::ledger::HistoryArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSTREAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config_path = cli.config.clone();
    let result = runtime.block_on(async move {
        // The runtime's sections, the payments application's `[payments]` and the ledger
        // sink's `[sink]`, from one file and the environment, each validated by its owner
        // before anything connects.
        let sources = paystream_common::config::ConfigSources::load(config_path.as_deref())?;
        let config = sources.config(&[SinkConfig::SECTION, PaymentsConfig::SECTION])?;
        let sink = SinkConfig::load(&sources)?;
        let payments = PaymentsConfig::load(&sources)?;
        if cli.command.uses_kafka() {
            // Fail fast, with the cause, on a wrong password, an untrusted certificate or
            // an unreachable cluster (bounded retries), before any work starts.
            paystream_common::kafka::check_connection(&config).await?;
        }
        match cli.command {
            Command::Run(args) => commands::run::run(config, payments, sink, args).await,
            Command::Topics {
                command: TopicsCommand::Create,
            } => commands::topics::create(config).await,
            Command::Schemas {
                command: SchemasCommand::Register,
            } => commands::schemas::register(config).await,
            Command::Produce(args) => commands::produce::produce(config, args).await,
            Command::Ledger {
                command: LedgerCommand::Init,
            } => commands::ledger::init(sink).await,
            Command::Ledger {
                command: LedgerCommand::Verify(args),
            } => commands::ledger::verify(sink, args).await,
            Command::Ledger {
                command: LedgerCommand::Balance(args),
            } => commands::ledger::balance(sink, args).await,
            Command::Ledger {
                command: LedgerCommand::History(args),
            } => commands::ledger::history(sink, args).await,
            Command::Replay(args) => commands::replay::replay(config, args).await,
            Command::Payment(args) => commands::payment::payment(config, args).await,
            Command::Topology { format } => {
                let topology =
                    paystream_processors::topology::payments_topology_description(&config);
                match format {
                    TopologyFormat::Text => print!("{}", topology.to_text()),
                    TopologyFormat::Mermaid => print!("{}", topology.to_mermaid()),
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Dlq {
                command: DlqCommand::Inspect(args),
            } => commands::dlq::inspect(config, args).await,
            Command::Dlq {
                command: DlqCommand::Redrive(args),
            } => commands::dlq::redrive(config, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paystream: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
