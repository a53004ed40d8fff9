//! `paystream ledger init|verify|balance|history`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use paystream_ledger_sink::service::create_database_if_missing;
use paystream_ledger_sink::{
    LedgerDatabase, SinkConfig, account_balance, payment_history, verify as verify_ledger,
};
use paystream_testkit::traffic::ExpectedOutcome;

/// Options of `paystream ledger verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also compare the ledger with what `paystream produce --expect-out FILE` said a
    /// correct pipeline makes of its traffic: journal entries, payments by status and
    /// every account balance.
    #[arg(long)]
    pub expect: Option<PathBuf>,
}

/// Options of `paystream ledger balance`.
#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// The account, e.g. `psp_receivable:adyen`, `merchant_payable:<merchant id>`,
    /// `bank:settlement`, `expense:psp_fees:stripe`.
    #[arg(long)]
    pub account: String,
    /// The balance at this moment: RFC 3339 (`2026-11-22T10:00:00Z`) or milliseconds
    /// since the Unix epoch. Counts postings of journal entries that occurred at or
    /// before it. Default: now, from the running totals.
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `paystream ledger history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The payment id.
    #[arg(long)]
    pub payment: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Creates the database if missing and applies the migrations.
pub async fn init(sink: SinkConfig) -> anyhow::Result<ExitCode> {
    create_database_if_missing(&sink).await?;
    LedgerDatabase::connect(&sink, 1).await?;
    println!("ledger database ready");
    Ok(ExitCode::SUCCESS)
}

/// Prints ledger counts, invariant checks and the records the sink dead-lettered (by
/// topic and reason; accounted for, so never a failure); exit 1 when any check fails.
pub async fn verify(sink: SinkConfig, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let database = LedgerDatabase::connect(&sink, 2).await?;
    let report = verify_ledger(database.pool()).await?;
    println!("journal entries          {}", report.journal_entries);
    println!("postings                 {}", report.postings);
    println!("accounts                 {}", report.accounts);
    let statuses: Vec<String> = report
        .payments_by_status
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect();
    println!("payments by status       {}", statuses.join(" "));
    println!("unbalanced entries       {}", report.unbalanced_entries);
    println!(
        "entries without postings {}",
        report.entries_without_postings
    );
    println!("postings without entry   {}", report.postings_without_entry);
    println!("balance mismatches       {}", report.balance_mismatches);
    println!("sequence violations      {}", report.sequence_violations);
    println!(
        "captured > authorized    {} payments",
        report.captured_over_authorized
    );
    println!(
        "refunded + charged back > captured {} payments",
        report.refunded_over_captured
    );
    println!(
        "captured after void      {} payments",
        report.captured_after_void
    );
    let exceptions: Vec<String> = report
        .exceptions_by_kind
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    println!("reconciliation exceptions {}", exceptions.join(" "));
    // Accounted for, not lost: listed, never a verification failure.
    let sink_dead_letters: Vec<String> = report
        .sink_dead_letters
        .iter()
        .map(|((topic, reason), n)| format!("{topic}/{reason}={n}"))
        .collect();
    println!(
        "sink dead letters        {}",
        if sink_dead_letters.is_empty() {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                report.sink_dead_letters.values().sum::<i64>(),
                sink_dead_letters.join(" ")
            )
        }
    );
    let mut ok = report.is_verified();
    if let Some(path) = &args.expect {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let expected: ExpectedOutcome = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a produce --expect-out file", path.display()))?;
        let differences = compare(&database, &report, &expected).await?;
        for difference in &differences {
            println!("differs from produced traffic: {difference}");
        }
        println!(
            "matches produced traffic: {}",
            if differences.is_empty() { "yes" } else { "no" }
        );
        ok &= differences.is_empty();
    }
    println!("ledger verified: {}", if ok { "yes" } else { "no" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints an account's balance per currency; exit 1 when the account has no postings.
pub async fn balance(sink: SinkConfig, args: BalanceArgs) -> anyhow::Result<ExitCode> {
    let at_ms = args
        .at
        .as_deref()
        .map(|at| super::parse_time_ms("--at", at))
        .transpose()?;
    let database = LedgerDatabase::connect(&sink, 1).await?;
    let balances = account_balance(database.pool(), &args.account, at_ms).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&balances)?);
    } else if !balances.is_empty() {
        println!(
            "{:<40} {:<8} {:>18} {:>18} {:>18} {:>9}",
            "account", "currency", "debit_minor", "credit_minor", "balance_minor", "postings"
        );
        for b in &balances {
            println!(
                "{:<40} {:<8} {:>18} {:>18} {:>18} {:>9}",
                b.account,
                b.currency,
                b.debit_total_minor,
                b.credit_total_minor,
                b.balance_minor,
                b.postings
            );
        }
    }
    if balances.is_empty() {
        eprintln!(
            "paystream: account {:?} has no postings{}",
            args.account,
            args.at
                .map(|at| format!(" at or before {at}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a payment's history; exit 1 when the ledger knows nothing of it.
pub async fn history(sink: SinkConfig, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let database = LedgerDatabase::connect(&sink, 1).await?;
    let history = payment_history(database.pool(), &args.payment).await?;
    if history.is_empty() {
        eprintln!(
            "paystream: the ledger has no payment {:?} (no status, journal entry or exception)",
            args.payment
        );
        return Ok(ExitCode::from(1));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(ExitCode::SUCCESS);
    }
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
    };
    println!("payment {}", history.payment_id);
    if let Some(p) = &history.status {
        println!(
            "status   {} (merchant {}, {} {} requested, last event {}, at {})",
            p.status,
            p.merchant_id,
            p.amount_minor,
            p.currency,
            p.last_event_id,
            time(p.updated_at_ms)
        );
    }
    for entry in &history.entries {
        println!(
            "{} {:<18} entry {} (event {})",
            time(entry.occurred_at_ms),
            entry.kind,
            entry.id,
            entry.caused_by_event_id
        );
        for p in &entry.postings {
            println!(
                "    {:<6} {:<48} {:>15} {}",
                p.side, p.account, p.amount_minor, p.currency
            );
        }
    }
    for x in &history.exceptions {
        println!(
            "{} exception {} expected {} actual {} {}",
            time(x.detected_at_ms),
            x.kind,
            x.expected_amount_minor
                .map_or("-".into(), |v| v.to_string()),
            x.actual_amount_minor.map_or("-".into(), |v| v.to_string()),
            x.currency.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn compare(
    database: &LedgerDatabase,
    report: &paystream_ledger_sink::VerifyReport,
    expected: &ExpectedOutcome,
) -> anyhow::Result<Vec<String>> {
    let mut differences = Vec::new();
    if report.journal_entries as u64 != expected.journal_entries {
        differences.push(format!(
            "journal entries {} != expected {}",
            report.journal_entries, expected.journal_entries
        ));
    }
    if report.postings as u64 != expected.postings {
        differences.push(format!(
            "postings {} != expected {}",
            report.postings, expected.postings
        ));
    }
    for (status, n) in &expected.payments_by_status {
        let found = report.payments_by_status.get(status).copied().unwrap_or(0) as u64;
        if found != *n {
            differences.push(format!("{status} payments {found} != expected {n}"));
        }
    }
    // Every kind the traffic makes certain (not MISSING_IN_PSP, which depends on the
    // settlement window against stream time, nor STUCK_PAYMENT, on wall-clock time).
    for kind in [
        "AMOUNT_MISMATCH",
        "CURRENCY_MISMATCH",
        "ORPHAN_EVENT",
        "MISSING_IN_LEDGER",
        "CAPTURE_EXCEEDS_AUTHORIZATION",
        "REFUND_EXCEEDS_CAPTURED",
        "CHARGEBACK_EXCEEDS_CAPTURED",
        "ILLEGAL_MONEY_MOVEMENT",
    ] {
        let want = expected.exceptions.get(kind).copied().unwrap_or(0);
        let found = report.exceptions_by_kind.get(kind).copied().unwrap_or(0) as u64;
        if want != found {
            differences.push(format!("{kind} exceptions {found} != expected {want}"));
        }
    }
    let found = paystream_ledger_sink::balance::all_balances(database.pool()).await?;
    for (key, minor) in &expected.balances_minor {
        match found.get(key) {
            Some(v) if v == minor => {}
            other => differences.push(format!("balance of {key}: {other:?} != expected {minor}")),
        }
    }
    for key in found.keys() {
        if !expected.balances_minor.contains_key(key) {
            differences.push(format!("unexpected account {key}"));
        }
    }
    Ok(differences)
}
