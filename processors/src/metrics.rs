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
//! - `paystream_money_movements_total{kind,psp,merchant}` and
//!   `paystream_money_movement_amount_minor_total{kind,psp,merchant,currency}`: journal
//!   entries by kind (AUTHORIZATION, CAPTURE, REFUND, CHARGEBACK_OPENED, …) and the money
//!   they moved ([`crate::ledger::movement_amount_minor`]). Refund rate and chargeback rate
//!   by merchant or PSP are ratios of these (docs/operations: `config/prometheus/alerts.yml`
//!   records them). One instance labels at most [`MERCHANT_LABELS_MAX`] merchants; the
//!   others count under `merchant="other"`, so the series stay bounded.
//! - `paystream_free_text_cleaned_total{topic,field}`: input events whose free text (a
//!   decline reason) held control characters, replaced by U+FFFD, or was cut to length —
//!   processed, never dead-lettered for it. Unlike the counts above it is counted when
//!   the record is read, so a record read again after an aborted transaction counts
//!   again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use paystream_schemas::{JournalEntry, PaymentStatusChanged, ReconciliationException};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use paystream_runtime::Forward;

use crate::ProcessorContext;
use crate::names::sinks;

/// At most this many merchants get a label of their own in the money movement metrics,
/// per instance; the others count under [`OTHER_MERCHANTS`].
pub const MERCHANT_LABELS_MAX: usize = 1_000;

/// The merchant label of merchants past [`MERCHANT_LABELS_MAX`].
pub const OTHER_MERCHANTS: &str = "other";

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
    /// Journal entries, by kind, PSP and merchant.
    pub money_movements: IntCounterVec,
    /// The money they moved, minor units, by kind, PSP, merchant and currency.
    pub money_movement_amount_minor: IntCounterVec,
    /// The merchants with a label of their own (at most [`MERCHANT_LABELS_MAX`]).
    merchant_labels: Arc<Mutex<HashSet<String>>>,
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
            Box::new(metrics.money_movements.clone()),
            Box::new(metrics.money_movement_amount_minor.clone()),
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
            money_movements: counter_vec(
                "paystream_money_movements_total",
                "Journal entries (money movements) produced, by kind, PSP and merchant",
                &["kind", "psp", "merchant"],
            ),
            money_movement_amount_minor: counter_vec(
                "paystream_money_movement_amount_minor_total",
                "Money moved by journal entries, in minor units of the currency, by kind, PSP, merchant and currency",
                &["kind", "psp", "merchant", "currency"],
            ),
            merchant_labels: Arc::default(),
            status_changes: Arc::default(),
        }
    }

    /// The label of `merchant_id`: itself while fewer than [`MERCHANT_LABELS_MAX`]
    /// merchants have one, else `other`.
    fn merchant_label(&self, merchant_id: &str) -> String {
        let mut labels = self
            .merchant_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if labels.contains(merchant_id) {
            return merchant_id.to_string();
        }
        if labels.len() < MERCHANT_LABELS_MAX {
            labels.insert(merchant_id.to_string());
            return merchant_id.to_string();
        }
        OTHER_MERCHANTS.to_string()
    }

    /// Journal entries produced in committed transactions, and the money they moved,
    /// by kind: `(count, amount in minor units summed over currencies)`.
    pub fn movements_by_kind(&self) -> BTreeMap<String, (u64, u64)> {
        use prometheus::core::Collector;
        let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (vec, is_amount) in [
            (&self.money_movements, false),
            (&self.money_movement_amount_minor, true),
        ] {
            for family in vec.collect() {
                for metric in family.get_metric() {
                    let kind = metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == "kind")
                        .map(|l| l.value().to_string())
                        .unwrap_or_default();
                    let value = metric.get_counter().value() as u64;
                    let slot = by_kind.entry(kind).or_default();
                    if is_amount {
                        slot.1 += value;
                    } else {
                        slot.0 += value;
                    }
                }
            }
        }
        by_kind
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
        for ((kind, psp, merchant, currency), (n, amount_minor)) in &counts.movements {
            let merchant = self.merchant_label(merchant);
            self.money_movements
                .with_label_values(&[kind, psp.as_str(), merchant.as_str()])
                .inc_by(*n);
            self.money_movement_amount_minor
                .with_label_values(&[kind, psp.as_str(), merchant.as_str(), currency.as_str()])
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
    /// Journal entries and the money they moved (minor units), by kind, PSP, merchant and
    /// currency.
    pub movements: BTreeMap<(&'static str, String, String, String), (u64, u64)>,
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
            sinks::JOURNAL_ENTRY => {
                if let Some(entry) = value.downcast_ref::<JournalEntry>() {
                    self.journal_entries += 1;
                    let currency = entry
                        .postings
                        .first()
                        .map(|p| p.currency.clone())
                        .unwrap_or_default();
                    let slot = self
                        .movements
                        .entry((
                            entry.kind.as_str(),
                            entry.psp.clone().unwrap_or_default(),
                            entry.merchant_id.clone().unwrap_or_default(),
                            currency,
                        ))
                        .or_insert((0, 0));
                    slot.0 += 1;
                    slot.1 = slot
                        .1
                        .saturating_add(crate::ledger::movement_amount_minor(entry).max(0) as u64);
                }
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

    fn running_since_ms(&self) -> i64 {
        self.inner.running_since_ms()
    }

    fn partition_time_ms(&self, input: usize) -> i64 {
        self.inner.partition_time_ms(input)
    }
}
