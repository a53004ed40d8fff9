//! One module per command.

pub mod dlq;
pub mod ledger;
pub mod produce;
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
