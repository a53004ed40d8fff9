//! The error of a configuration that cannot be used, shared by the configuration
//! ([`crate::config`]) and the security settings it checks ([`crate::security`]).

/// A configuration that cannot be used. The message names the key and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or environment could not be read or has unknown or mistyped keys.
    #[error("configuration: {0}")]
    Load(String),
    /// A value is out of range.
    #[error("configuration key {key}: {problem}; {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}
