//! paystream configuration: one TOML file plus environment overrides, validated before
//! anything connects.
//!
//! Sources, later wins: built-in defaults (the `Default` impls in `sections.rs`, the one
//! place defaults live) → the TOML file (`--config`, see `config/paystream.local.toml`) →
//! environment variables `PAYSTREAM_<SECTION>__<KEY>` (double underscore between
//! section and key, e.g. `PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS`, `PAYSTREAM_APPLICATION_ID`).
//! Unknown keys are errors, so a typo never silently falls back to a default.
//!
//! An application owns sections of the same file (the ledger sink owns `[sink]`): the
//! runtime's [`Config`] is read with those top-level keys set aside
//! ([`ConfigSources::config`]), and each owner reads and validates its own
//! ([`ConfigSources::section`]).
//!
//! # Parts
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` (here) | this overview and the re-exports: every item keeps its `crate::config::` path |
//! | `sections.rs` | [`Config`] and its section structs ([`KafkaConfig`], [`TopicsConfig`], [`SchemaRegistryConfig`], [`StateConfig`], [`ProcessingConfig`], [`HttpConfig`]) with their defaults |
//! | `load.rs` | [`ConfigSources`] (defaults, file, environment; the runtime's sections and the applications'), [`Config::load`] and [`Config::read_secret_files`] |
//! | `validate.rs` | [`Config::validate`] and the `kafka.*` security checks, without connecting |
//! | `tests.rs` | the unit tests, including loading the shipped config files and the compose file's variables |

mod load;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

pub use crate::config_error::ConfigError;
pub use crate::security::{SaslMechanism, SecurityProtocol};
pub use load::ConfigSources;
pub use sections::{
    Config, HttpConfig, KafkaConfig, ProcessingConfig, SchemaRegistryConfig, StandbyReplicas,
    StateConfig, TopicsConfig,
};
