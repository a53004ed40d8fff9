//! One module per command.

pub mod dlq;
pub mod ledger;
pub mod produce;
pub mod replay;
pub mod run;
pub mod schemas;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use paystream_runtime::Config;
use paystream_schemas::Codec;

/// The registry codec for `config`.
///
/// # Errors
/// When the registry client cannot be built (a malformed URL).
pub fn codec(config: &Config) -> anyhow::Result<Arc<Codec>> {
    Ok(Arc::new(Codec::new(
        &config.schema_registry.url,
        Duration::from_millis(config.schema_registry.timeout_ms),
    )?))
}

/// Parses a moment given on the command line as RFC 3339 (`2026-11-22T10:00:00Z`) or as
/// milliseconds since the Unix epoch; returns milliseconds since the Unix epoch.
///
/// # Errors
/// When `value` is neither, naming `flag` and both accepted forms.
pub fn parse_time_ms(flag: &str, value: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag} {value:?} is neither RFC 3339 (2026-11-22T10:00:00Z) nor milliseconds since the Unix epoch"
            )
        })
}
