//! One module per command.

pub mod dlq;
pub mod ledger;
pub mod payment;
pub mod produce;
pub mod replay;
pub mod run;
pub mod schemas;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paystream_runtime::Config;
use paystream_schemas::Codec;
use paystream_schemas::codec::RegistryAccess;
use secrecy::ExposeSecret;

/// The registry codec for `config`: its URL, timeout, basic authentication and CA.
///
/// # Errors
/// When the registry client cannot be built (a malformed URL).
pub fn codec(config: &Config) -> anyhow::Result<Arc<Codec>> {
    let registry = &config.schema_registry;
    let ca_pem =
        match &registry.ca_location {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("schema_registry.ca_location: reading {}", path.display())
            })?),
            None => None,
        };
    let access = RegistryAccess {
        basic_auth_username: (!registry.basic_auth_username.is_empty())
            .then(|| registry.basic_auth_username.clone()),
        basic_auth_password: registry
            .basic_auth_password
            .as_ref()
            .map(|p| p.expose_secret().to_string()),
        ca_pem,
    };
    Ok(Arc::new(Codec::with_access(
        &registry.url,
        Duration::from_millis(registry.timeout_ms),
        &access,
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

pub use paystream_testkit::traffic::now_ms;
