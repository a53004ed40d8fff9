//! Loading: defaults, then the TOML file, then `PAYSTREAM_*` environment variables; and
//! reading secrets from their `<secret>_file` settings.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::{Config, ConfigError};
use crate::security::resolve_secret;

impl Config {
    /// Loads defaults, then `path` (when given), then `PAYSTREAM_*` environment variables,
    /// and validates the result.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for a missing file, bad TOML or an unknown key;
    /// [`ConfigError::Invalid`] for a value out of range.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "file {} does not exist; pass an existing file with --config (see config/)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only PAYSTREAM_SECTION__KEY and the top-level keys are configuration; other
        // PAYSTREAM_* variables (e.g. the local stack's) are not ours to reject.
        let env = Env::prefixed("PAYSTREAM_")
            .filter(|key| {
                key.as_str().contains("__") || key == "application_id" || key == "instance_id"
            })
            .split("__");
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces each `<secret>_file` setting by the secret it holds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a secret is set both ways or its file is unreadable.
    pub fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret(
            &mut self.kafka.sasl_password,
            &self.kafka.sasl_password_file,
            "kafka.sasl_password",
            "kafka.sasl_password_file",
        )?;
        resolve_secret(
            &mut self.kafka.ssl_key_password,
            &self.kafka.ssl_key_password_file,
            "kafka.ssl_key_password",
            "kafka.ssl_key_password_file",
        )?;
        resolve_secret(
            &mut self.schema_registry.basic_auth_password,
            &self.schema_registry.basic_auth_password_file,
            "schema_registry.basic_auth_password",
            "schema_registry.basic_auth_password_file",
        )?;
        resolve_secret(
            &mut self.sink.database_password,
            &self.sink.database_password_file,
            "sink.database_password",
            "sink.database_password_file",
        )
    }
}
