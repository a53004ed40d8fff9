//! The payments application's own configuration: the `[payments]` section of the
//! configuration file (`PAYSTREAM_PAYMENTS__<KEY>` in the environment), read from the
//! same sources as the runtime's sections ([`ConfigSources::section`]) and validated
//! here, before anything connects.
//!
//! The lifecycle's stream-time settings (`processing.orphan_timeout_ms`,
//! `settlement_window_ms`, `pending_retention_ms`, `event_time_skew_max_ms`) are still read
//! from the runtime's `[processing]` section, where today's configuration files have
//! them; new settings of the application live here.

use paystream_common::config::{ConfigError, ConfigSources};
use serde::Deserialize;

use crate::defaults::{
    MOVEMENT_REORDER_WAIT_MS, STUCK_PAYMENT_TIMEOUT_MS, UNCAPTURED_AUTHORIZATION_TIMEOUT_MS,
};

/// The largest `payments.movement_reorder_wait_ms`: 1 minute. Every capture, void,
/// refund, chargeback and settlement waits this long before it reaches the ledger.
pub const MOVEMENT_REORDER_WAIT_MS_MAX: i64 = 60_000;

/// The `[payments]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Wall-clock time a payment may wait in INITIATED for its auth outcome, from when
    /// the lifecycle applied it, before a `STUCK_PAYMENT` reconciliation exception is
    /// raised, milliseconds (default 900000, 15 minutes; 0 turns the check off). On
    /// wall-clock time, so that it fires when traffic stops.
    pub stuck_payment_timeout_ms: i64,
    /// Wall-clock time an authorization under manual capture may wait for its first
    /// capture or a void before `STUCK_PAYMENT` is raised, milliseconds (default
    /// 604800000, 7 days — about when card networks let an authorization expire; 0
    /// turns the check off).
    pub uncaptured_authorization_timeout_ms: i64,
    /// The reorder wait of money movements, milliseconds of wall-clock time (default
    /// 1000; at most [`MOVEMENT_REORDER_WAIT_MS_MAX`]; 0 applies each movement as it is
    /// read). A payment's captures, voids, refunds, chargebacks and settlement wait until
    /// none of them arrived for this long, then apply in the order they happened (their
    /// `occurred_at`, `settled_at`): a void read before the partial capture that preceded it still
    /// releases only the rest (docs/architecture.md, "Order of money movements").
    pub movement_reorder_wait_ms: i64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            stuck_payment_timeout_ms: STUCK_PAYMENT_TIMEOUT_MS,
            uncaptured_authorization_timeout_ms: UNCAPTURED_AUTHORIZATION_TIMEOUT_MS,
            movement_reorder_wait_ms: MOVEMENT_REORDER_WAIT_MS,
        }
    }
}

impl PaymentsConfig {
    /// The top-level key of the section.
    pub const SECTION: &'static str = "payments";

    /// Reads the `[payments]` section from `sources` (its defaults when absent) and
    /// validates it.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for an unknown or mistyped key; [`ConfigError::Invalid`]
    /// naming the key and the fix.
    pub fn load(sources: &ConfigSources) -> Result<PaymentsConfig, ConfigError> {
        let config: PaymentsConfig = sources.section(Self::SECTION)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values without connecting.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "payments.stuck_payment_timeout_ms",
                self.stuck_payment_timeout_ms,
            ),
            (
                "payments.uncaptured_authorization_timeout_ms",
                self.uncaptured_authorization_timeout_ms,
            ),
        ] {
            if value < 0 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("{value} is negative"),
                    fix: "use a number of milliseconds, or 0 to turn the check off",
                });
            }
        }
        let wait_ms = self.movement_reorder_wait_ms;
        if !(0..=MOVEMENT_REORDER_WAIT_MS_MAX).contains(&wait_ms) {
            return Err(ConfigError::Invalid {
                key: "payments.movement_reorder_wait_ms",
                problem: format!(
                    "{wait_ms} is outside 0..={MOVEMENT_REORDER_WAIT_MS_MAX}: every capture, void, refund, \
                     chargeback and settlement waits this long before it reaches the ledger"
                ),
                fix: "use about a second (default 1000), or 0 to apply movements in the order \
                      they are read",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sources of a file holding `toml` (and the directory that keeps it).
    fn sources(toml: &str) -> (tempfile::TempDir, ConfigSources) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paystream.toml");
        std::fs::write(&path, toml).unwrap();
        let sources = ConfigSources::load(Some(&path)).unwrap();
        (dir, sources)
    }

    #[test]
    fn the_section_is_optional_and_checked() {
        assert_eq!(
            PaymentsConfig::load(&sources("").1).unwrap(),
            PaymentsConfig::default()
        );
        let config =
            PaymentsConfig::load(&sources("[payments]\nstuck_payment_timeout_ms = 0\n").1).unwrap();
        assert_eq!(config.stuck_payment_timeout_ms, 0);
        let error = PaymentsConfig::load(&sources("[payments]\nstuck_payment_timeout_ms = -1\n").1)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("payments.stuck_payment_timeout_ms"),
            "{error}"
        );
        let error = PaymentsConfig::load(&sources("[payments]\nstuck_timeout = 5\n").1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("stuck_timeout"), "{error}");
        let error =
            PaymentsConfig::load(&sources("[payments]\nmovement_reorder_wait_ms = 600000\n").1)
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("payments.movement_reorder_wait_ms"),
            "{error}"
        );
    }

    #[test]
    fn the_runtime_accepts_the_section() {
        let (_dir, sources) = sources("[payments]\nstuck_payment_timeout_ms = 60000\n");
        sources.config(&[PaymentsConfig::SECTION]).unwrap();
        assert!(sources.config(&[]).is_err(), "unknown to the runtime alone");
    }
}
