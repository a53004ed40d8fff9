//! The payments application's names: its topics by logical name ([`topics`]), with
//! their full names under one configuration ([`PaymentTopics`]), the sinks its
//! processors forward to ([`sinks`]) and the tables the ledger sink writes.

use paystream_common::config::Config;

/// The topics of the payments application, by logical name.
pub mod topics {
    use paystream_runtime::TopicRef;

    pub const PAYMENT_INITIATED: TopicRef = TopicRef::External("payment_initiated");
    pub const AUTH_SUCCESS: TopicRef = TopicRef::External("auth_success");
    pub const AUTH_FAILURE: TopicRef = TopicRef::External("auth_failure");
    pub const SETTLEMENT: TopicRef = TopicRef::External("settlement");
    pub const CAPTURE: TopicRef = TopicRef::External("capture");
    pub const VOID: TopicRef = TopicRef::External("void");
    pub const REFUND: TopicRef = TopicRef::External("refund");
    pub const CHARGEBACK: TopicRef = TopicRef::External("chargeback");
    pub const PAYMENT_STATUS: TopicRef = TopicRef::External("payment_status");
    pub const LEDGER_ENTRIES: TopicRef = TopicRef::External("ledger_entries");
    pub const RECONCILIATION_EXCEPTIONS: TopicRef = TopicRef::External("reconciliation_exceptions");
    /// Deduplicated payments, re-keyed by payment id (`<app>-payments-by-id`).
    pub const PAYMENTS_BY_ID: TopicRef = TopicRef::Internal("payments-by-id");
}

/// The names processors forward to ([`paystream_runtime::Forward::To`]).
pub mod sinks {
    /// Deduplicated payments to the repartition topic, passed through byte for byte.
    pub const REPARTITION: &str = "repartition";
    pub const PAYMENT_STATUS: &str = "payment_status";
    pub const JOURNAL_ENTRY: &str = "journal_entry";
    pub const RECONCILIATION_EXCEPTION: &str = "reconciliation_exception";
}

/// The PostgreSQL tables the ledger sink writes.
pub const LEDGER_SINK_TABLES: [&str; 7] = [
    "journal_entries",
    "postings",
    "accounts",
    "account_balances",
    "payments",
    "reconciliation_exceptions",
    "sink_offsets",
];

/// The full names of the payments application's topics under one configuration.
#[derive(Debug, Clone)]
pub struct PaymentTopics {
    pub payment_initiated: String,
    pub auth_success: String,
    pub auth_failure: String,
    pub settlement: String,
    pub capture: String,
    pub void: String,
    pub refund: String,
    pub chargeback: String,
    pub payment_status: String,
    pub ledger_entries: String,
    pub reconciliation_exceptions: String,
    pub payments_by_id: String,
    /// `topics.prefix`.
    prefix: String,
}

impl PaymentTopics {
    /// Names for `config`'s prefix and application id.
    pub fn new(config: &Config) -> Self {
        let names = paystream_common::topics::TopicNames::new(config);
        PaymentTopics {
            payment_initiated: names.resolve(topics::PAYMENT_INITIATED),
            auth_success: names.resolve(topics::AUTH_SUCCESS),
            auth_failure: names.resolve(topics::AUTH_FAILURE),
            settlement: names.resolve(topics::SETTLEMENT),
            capture: names.resolve(topics::CAPTURE),
            void: names.resolve(topics::VOID),
            refund: names.resolve(topics::REFUND),
            chargeback: names.resolve(topics::CHARGEBACK),
            payment_status: names.resolve(topics::PAYMENT_STATUS),
            ledger_entries: names.resolve(topics::LEDGER_ENTRIES),
            reconciliation_exceptions: names.resolve(topics::RECONCILIATION_EXCEPTIONS),
            payments_by_id: names.resolve(topics::PAYMENTS_BY_ID),
            prefix: config.topics.prefix.clone(),
        }
    }

    /// The eight input topics.
    pub fn inputs(&self) -> [&str; 8] {
        [
            &self.payment_initiated,
            &self.auth_success,
            &self.auth_failure,
            &self.settlement,
            &self.capture,
            &self.void,
            &self.refund,
            &self.chargeback,
        ]
    }

    /// The three topics the ledger sink reads (the outputs it writes to PostgreSQL).
    pub fn sink_inputs(&self) -> [&str; 3] {
        [
            &self.ledger_entries,
            &self.payment_status,
            &self.reconciliation_exceptions,
        ]
    }

    /// The input topic a user named: by base name (`settlement`), full name
    /// (`<prefix>settlement`) or its dead-letter topic's name (`<prefix>settlement.dlq`).
    pub fn resolve_input(&self, name: &str) -> Option<&str> {
        let name = name.strip_suffix(".dlq").unwrap_or(name);
        let prefixed = format!("{}{name}", self.prefix);
        self.inputs()
            .into_iter()
            .find(|input| *input == name || *input == prefixed)
    }
}
