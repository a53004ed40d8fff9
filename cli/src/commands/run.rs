//! `paystream run`: the pipeline and, in the same process by default, the ledger sink.

use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use paystream_common::health::{self, Health};
use paystream_ledger_sink::{LedgerSink, SinkConfig, SinkMetrics, SinkSummary};
use paystream_processors::PaymentsConfig;
use paystream_processors::metrics::PaymentMetrics;
use paystream_processors::topology::payments_topology;
use paystream_runtime::interactive_queries::InteractiveQueries;
use paystream_runtime::metrics::Metrics;
use paystream_runtime::{Config, Pipeline, RunSummary};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::codec;

/// Options of `paystream run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop once every input has been consumed to its end and the ledger sink has
    /// written everything (for backfills, the demo and tests), then print a summary.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Do not run the ledger sink in this process (overrides `sink.enabled`).
    #[arg(long)]
    pub no_sink: bool,
}

/// Runs until interrupted (Ctrl-C / SIGTERM) or, with `--until-caught-up`, caught up.
pub async fn run(
    config: Config,
    payments: PaymentsConfig,
    sink: SinkConfig,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let codec = codec(&config)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let signal_tx = shutdown_tx.clone();
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        info!("signal received, stopping after the current commit");
        let _ = signal_tx.send(true);
    });
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    // The payment lookup reads the stores of the pipelines this process runs (docs/
    // architecture.md, "Interactive queries").
    let queries = Arc::new(InteractiveQueries::default());
    if !config.http.listen_address.is_empty() {
        let bound = health::serve(
            &config.http.listen_address,
            health.clone(),
            metrics.registry.clone(),
            super::payment::routes(queries.clone(), &config.instance_id)?,
        )
        .await
        .with_context(|| format!("http.listen_address {}", config.http.listen_address))?;
        let advertised = super::payment::advertised_address(&config, bound);
        if advertised.is_none() {
            warn!(
                listen_address = %config.http.listen_address,
                "http.advertised_address is not set and the listen address is a wildcard: \
                 the other instances cannot forward payment lookups here"
            );
        }
        queries.set_http_address(advertised);
    }
    let (upstream_done_tx, upstream_done_rx) = watch::channel(false);
    let sink = if sink.enabled && !args.no_sink {
        let sink = LedgerSink::new(
            config.clone(),
            sink,
            codec.clone(),
            health.clone(),
            SinkMetrics::register(&metrics.registry),
        )
        .await?;
        Some(tokio::spawn(
            sink.run(shutdown_rx.clone(), upstream_done_rx),
        ))
    } else {
        None
    };
    let payment_metrics = PaymentMetrics::register(&metrics.registry);
    let pipeline = Pipeline::new(
        config.clone(),
        payments_topology(&config, &payments, &payment_metrics),
        codec.clone(),
        metrics.clone(),
        health.clone(),
    )
    .await?
    .with_interactive_queries(queries.clone());
    let rejoin = Rejoin {
        config: config.clone(),
        payments: payments.clone(),
        payment_metrics: payment_metrics.clone(),
        codec,
        metrics,
        health,
        queries,
    };
    let mut pipeline = tokio::spawn(rejoin.run(pipeline, shutdown_rx, args.until_caught_up));
    // Whichever ends first decides: a failed sink stops the pipeline (so an orchestrator
    // restarts the process) and a finished pipeline lets the sink drain its outputs.
    let (pipeline_result, sink_result) = match sink {
        None => (pipeline.await?, None),
        Some(mut sink) => tokio::select! {
            pipeline_result = &mut pipeline => {
                let pipeline_result = pipeline_result?;
                let _ = upstream_done_tx.send(true);
                if pipeline_result.is_err() {
                    let _ = shutdown_tx.send(true);
                }
                (pipeline_result, Some(sink.await?))
            }
            sink_result = &mut sink => {
                let sink_result = sink_result?;
                if let Err(e) = &sink_result {
                    error!(error = %e, "ledger sink stopped; stopping the pipeline");
                }
                let _ = shutdown_tx.send(true);
                (pipeline.await?, Some(sink_result))
            }
        },
    };
    let summary = match pipeline_result {
        Ok(summary) => summary,
        // The environment failed in a way starting again may cure (the broker or the
        // registry unreachable past the runtime's own retries): exit with EX_TEMPFAIL
        // (75, sysexits.h) so an orchestrator restarts the instance.
        Err(e) if e.is_retriable() => {
            error!(error = %e, "pipeline stopped; starting again may succeed");
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
        Err(e) => {
            error!(error = %e, "pipeline stopped");
            return Err(e.into());
        }
    };
    let sink_summary = match sink_result {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Err(e.into()),
        None => None,
    };
    print_summary(
        &summary,
        &payment_metrics,
        sink_summary.as_ref(),
        started.elapsed().as_secs_f64(),
    );
    Ok(ExitCode::SUCCESS)
}

/// What a new pipeline is made of, when the consumer of the running one was fenced out
/// of the group.
struct Rejoin {
    config: Config,
    payments: PaymentsConfig,
    payment_metrics: PaymentMetrics,
    codec: Arc<paystream_schemas::Codec>,
    metrics: Metrics,
    health: Arc<Health>,
    queries: Arc<InteractiveQueries>,
}

impl Rejoin {
    /// Runs `pipeline`; when its consumer fails for good
    /// ([`paystream_runtime::Error::ConsumerFatal`]: the others took this instance over
    /// after it was paused or cut off for longer than `processing.peer_timeout_ms`), runs
    /// a new one — a new consumer and producer, which rejoin the group and fence the old
    /// ones — instead of stopping the instance.
    async fn run(
        self,
        mut pipeline: Pipeline,
        shutdown: watch::Receiver<bool>,
        until_caught_up: bool,
    ) -> paystream_runtime::Result<RunSummary> {
        loop {
            match pipeline.run(shutdown.clone(), until_caught_up).await {
                Err(paystream_runtime::Error::ConsumerFatal { message }) if !*shutdown.borrow() => {
                    warn!(
                        error = %message,
                        "the consumer was fenced out of the group (the others took this \
                         instance over); rejoining with a new consumer and producer"
                    );
                }
                result => return result,
            }
            pipeline = Pipeline::new(
                self.config.clone(),
                payments_topology(&self.config, &self.payments, &self.payment_metrics),
                self.codec.clone(),
                self.metrics.clone(),
                self.health.clone(),
            )
            .await?
            .with_interactive_queries(self.queries.clone());
        }
    }
}

/// Exit code of a run stopped by a failure that starting again may cure (sysexits.h).
const EX_TEMPFAIL: u8 = 75;

fn print_summary(
    summary: &RunSummary,
    payments: &PaymentMetrics,
    sink: Option<&SinkSummary>,
    wall_s: f64,
) {
    let dead_lettered: u64 = summary.dead_lettered.values().sum();
    let reasons: Vec<String> = summary
        .dead_lettered
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    let processing_s = summary.processing_ms as f64 / 1000.0;
    println!("events read              {}", summary.input_records);
    println!("duplicates dropped       {}", summary.duplicates_dropped);
    println!(
        "dead-lettered            {dead_lettered}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(" "))
        }
    );
    if summary.misrouted > 0 {
        println!(
            "misrouted records        {} (not on their key's murmur2 partition; auths and settlements rerouted)",
            summary.misrouted
        );
    }
    let cleaned = payments.free_text_cleaned_total();
    if cleaned > 0 {
        println!(
            "free text cleaned        {cleaned} (control characters replaced or cut to length in a PSP's reason text; processed)"
        );
    }
    println!("status changes emitted   {}", payments.status_changes());
    let movements: Vec<String> = payments
        .movements_by_kind()
        .iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(kind, (n, amount_minor))| format!("{kind}={n}/{amount_minor}"))
        .collect();
    if !movements.is_empty() {
        println!(
            "money movements          {} (kind=entries/amount in minor units, all currencies)",
            movements.join(" ")
        );
    }
    println!(
        "journal entries emitted  {}",
        payments.journal_entries.get()
    );
    println!("transactions committed   {}", summary.commits);
    println!(
        "enforced processing      {} records (processed after holding back max_task_idle_ms)",
        summary.enforced_processing
    );
    if let Some(sink) = sink {
        println!(
            "ledger sink              {} batches, {} journal entries and {} postings written, {} skipped as already posted",
            sink.batches, sink.entries_written, sink.postings_written, sink.entries_skipped
        );
        if sink.dead_lettered > 0 {
            println!(
                "sink dead-lettered       {} (sink_rejected: refused by PostgreSQL for their data, in <topic>.dlq)",
                sink.dead_lettered
            );
        }
    }
    println!(
        "processing time_s        {processing_s:.1} (first record read to the last pipeline commit; wall {wall_s:.1})"
    );
    let commit_s = summary.commit_ms as f64 / 1000.0;
    println!(
        "commit time_s            {commit_s:.1} ({:.0} % of processing time: commits, no record processed meanwhile)",
        100.0 * commit_s / processing_s.max(0.001)
    );
    let phases: Vec<String> = summary
        .commit_phases_ms
        .iter()
        .map(|(phase, ms)| format!("{phase}={:.1}", *ms as f64 / 1000.0))
        .collect();
    println!("commit phases_s          {}", phases.join(" "));
    let first_read = summary.first_record_unix_ms;
    let last_ledger = sink.and_then(|s| s.last_write_commit_unix_ms);
    if let Some(first_read) = first_read {
        println!("first record read        {first_read} (unix_ms)");
    }
    if let Some(last_ledger) = last_ledger {
        println!("last ledger commit       {last_ledger} (unix_ms)");
    }
    match (first_read, last_ledger) {
        (Some(first), Some(last)) if last > first => {
            let end_to_end_s = (last - first) as f64 / 1000.0;
            println!(
                "end to end time_s        {end_to_end_s:.1} (first record read to the last ledger row committed)"
            );
            println!(
                "events/s end to end      {:.0}",
                summary.input_records as f64 / end_to_end_s
            );
        }
        _ => println!(
            "events/s (pipeline)      {:.0} (no ledger rows written in this run)",
            summary.input_records as f64 / processing_s.max(0.001)
        ),
    }
}
