//! The payments application's business metrics (docs/architecture.md), beside
//! the runtime's in one Prometheus registry. They count committed outputs only: the
//! lifecycle counts what it forwards in the open transaction ([`OutputCounts`]) and adds
//! it here when the transaction commits, so an aborted and re-processed record counts
//! once.
//!
//! - `paystream_payments_total{status}`: payments that reached each status. The decline
//!   rate is `rate(…{status="DECLINED"}) / (rate(…{status="AUTHORIZED"}) +
//!   rate(…{status="DECLINED"}))`.
//! - `paystream_payment_amount_minor_total{status,currency}`: the payments' amounts in
//!   minor units of `currency` (ISO 4217 exponent: 100 per EUR, 1 per JPY), summed per
//!   status reached. Currencies are validated at input, so at most the ~180 codes of
//!   the standard label it.
//! - `paystream_reconciliation_exceptions_total{kind}`: exceptions raised.
//! - `paystream_journal_entries_total`: journal entries produced.
//! - `paystream_free_text_cleaned_total{topic,field}`: input events whose free text (a
//!   decline reason) held control characters, replaced by U+FFFD, or was cut to length —
//!   processed, never dead-lettered for it. Unlike the counts above it is counted when
//!   the record is read, so a record read again after an aborted transaction counts
//!   again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paystream_schemas::{JournalEntry, PaymentStatusChanged, ReconciliationException};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use paystream_runtime::Forward;

use crate::ProcessorContext;
use crate::names::sinks;

/// The business metrics, cheap to clone (shared counters).
#[derive(Clone)]
pub struct PaymentMetrics {
    /// Payments that reached a status, by status.
    pub payments: IntCounterVec,
    /// Amounts of payments that reached a status, minor units, by status and currency.
    pub payment_amount_minor: IntCounterVec,
    /// Reconciliation exceptions raised, by kind.
    pub reconciliation_exceptions: IntCounterVec,
    /// Journal entries produced.
    pub journal_entries: IntCounter,
    /// Input events whose free text was cleaned, by topic and field (counted when read).
    pub free_text_cleaned: IntCounterVec,
    /// Status changes produced (for the run summary).
    status_changes: Arc<AtomicU64>,
}

impl PaymentMetrics {
    /// The metrics, registered in `registry` (the runtime's).
    ///
    /// # Panics
    /// When `registry` already holds them: one application per registry.
    pub fn register(registry: &Registry) -> Self {
        let metrics = PaymentMetrics::unregistered();
        for collector in [
            Box::new(metrics.payments.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.payment_amount_minor.clone()),
            Box::new(metrics.reconciliation_exceptions.clone()),
            Box::new(metrics.journal_entries.clone()),
            Box::new(metrics.free_text_cleaned.clone()),
        ] {
            registry
                .register(collector)
                .expect("the payments metrics are registered once");
        }
        metrics
    }

    /// The metrics, in no registry (for descriptions and tests).
    pub fn unregistered() -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
        };
        PaymentMetrics {
            payments: counter_vec(
                "paystream_payments_total",
                "Payments that reached a status, by status",
                &["status"],
            ),
            payment_amount_minor: counter_vec(
                "paystream_payment_amount_minor_total",
                "Amounts of payments that reached a status, in minor units of the currency",
                &["status", "currency"],
            ),
            reconciliation_exceptions: counter_vec(
                "paystream_reconciliation_exceptions_total",
                "Reconciliation exceptions raised, by kind",
                &["kind"],
            ),
            journal_entries: IntCounter::new(
                "paystream_journal_entries_total",
                "Journal entries produced to ledger_entries",
            )
            .expect("a valid metric"),
            free_text_cleaned: counter_vec(
                "paystream_free_text_cleaned_total",
                "Input events whose free text held control characters (replaced) or was too long (cut), by topic and field; counted when read",
                &["topic", "field"],
            ),
            status_changes: Arc::default(),
        }
    }

    /// Input events whose free text was cleaned, over every topic and field (for the run
    /// summary).
    pub fn free_text_cleaned_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.free_text_cleaned
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_counter().value() as u64)
            .sum()
    }

    /// Status changes produced in committed transactions.
    pub fn status_changes(&self) -> u64 {
        self.status_changes.load(Ordering::Relaxed)
    }

    /// Reconciliation exceptions produced in committed transactions, by kind.
    pub fn exceptions_by_kind(&self) -> BTreeMap<String, u64> {
        use paystream_schemas::ReconciliationExceptionKind;
        ReconciliationExceptionKind::ALL
            .iter()
            .map(|kind| {
                let n = self
                    .reconciliation_exceptions
                    .with_label_values(&[kind.as_str()])
                    .get();
                (kind.as_str().to_string(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Adds a committed transaction's counts.
    pub fn publish(&self, counts: &OutputCounts) {
        self.status_changes
            .fetch_add(counts.status_changes, Ordering::Relaxed);
        self.journal_entries.inc_by(counts.journal_entries);
        for (status, n) in &counts.payments {
            self.payments.with_label_values(&[status]).inc_by(*n);
        }
        for ((status, currency), amount_minor) in &counts.amounts_minor {
            self.payment_amount_minor
                .with_label_values(&[status, currency.as_str()])
                .inc_by(*amount_minor);
        }
        for (kind, n) in &counts.exceptions {
            self.reconciliation_exceptions
                .with_label_values(&[kind])
                .inc_by(*n);
        }
    }
}

impl std::fmt::Debug for PaymentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentMetrics")
            .field("status_changes", &self.status_changes())
            .finish_non_exhaustive()
    }
}

/// What the lifecycle forwarded in the open transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutputCounts {
    pub status_changes: u64,
    pub journal_entries: u64,
    /// Payments that reached a status, by status.
    pub payments: BTreeMap<&'static str, u64>,
    /// Their amounts, minor units, by status and currency.
    pub amounts_minor: BTreeMap<(&'static str, String), u64>,
    /// Reconciliation exceptions, by kind.
    pub exceptions: BTreeMap<&'static str, u64>,
}

impl OutputCounts {
    /// Counts one forwarded record of sink `sink`.
    pub fn count(&mut self, sink: &str, value: &(dyn std::any::Any + Send + Sync)) {
        match sink {
            sinks::PAYMENT_STATUS => {
                if let Some(status) = value.downcast_ref::<PaymentStatusChanged>() {
                    self.status_changes += 1;
                    let name = status.status.as_str();
                    *self.payments.entry(name).or_insert(0) += 1;
                    // Amounts are bounded at the door; the metric saturates rather than wraps.
                    let amount = self
                        .amounts_minor
                        .entry((name, status.currency.clone()))
                        .or_insert(0);
                    *amount = amount.saturating_add(status.amount_minor.max(0) as u64);
                }
            }
            sinks::JOURNAL_ENTRY if value.downcast_ref::<JournalEntry>().is_some() => {
                self.journal_entries += 1;
            }
            sinks::RECONCILIATION_EXCEPTION => {
                if let Some(exception) = value.downcast_ref::<ReconciliationException>() {
                    *self.exceptions.entry(exception.kind.as_str()).or_insert(0) += 1;
                }
            }
            _ => {}
        }
    }
}

/// A [`ProcessorContext`] that counts what goes through it in `counts` (the lifecycle's
/// open transaction) and passes everything on to `inner`.
pub(crate) struct Counting<'a> {
    pub inner: &'a mut dyn ProcessorContext,
    pub counts: &'a mut OutputCounts,
}

impl ProcessorContext for Counting<'_> {
    fn store(&mut self, name: &str) -> crate::Result<&mut dyn paystream_state::KeyValueStore> {
        self.inner.store(name)
    }

    fn forward_record(&mut self, forward: Forward) {
        if let Forward::To { sink, value, .. } = &forward {
            self.counts.count(sink, value.as_ref());
        }
        self.inner.forward_record(forward);
    }

    fn stream_time_ms(&self) -> i64 {
        self.inner.stream_time_ms()
    }

    fn wall_clock_ms(&self) -> i64 {
        self.inner.wall_clock_ms()
    }

    fn partition_time_ms(&self, input: usize) -> i64 {
        self.inner.partition_time_ms(input)
    }
}
