//! Loading: defaults, then the TOML file, then `PAYSTREAM_*` environment variables; and
//! reading secrets from their `<secret>_file` settings.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::Dict;
use serde::de::DeserializeOwned;

use super::{Config, ConfigError};
use crate::security::resolve_secret;

/// The configuration's sources, merged once: built-in defaults, then the TOML file,
/// then `PAYSTREAM_*` environment variables. The runtime's [`Config`] is read from them
/// ([`ConfigSources::config`]), and so is each section an application owns (e.g. the
/// ledger sink's `[sink]`, [`ConfigSources::section`]).
pub struct ConfigSources {
    figment: Figment,
}

impl ConfigSources {
    /// `path` (when given), then the `PAYSTREAM_<SECTION>__<KEY>` variables and
    /// `PAYSTREAM_APPLICATION_ID`/`PAYSTREAM_INSTANCE_ID`.
    ///
    /// # Errors
    /// [`ConfigError::Load`] when `path` does not exist.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
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
        Ok(ConfigSources {
            figment: figment.merge(env),
        })
    }

    /// Sources made of `figment` alone (tests, embedded configurations).
    pub fn from_figment(figment: Figment) -> Self {
        ConfigSources { figment }
    }

    /// The runtime's configuration, secrets read from their files and validated. The
    /// top-level keys named in `application_sections` belong to applications, which
    /// read them with [`Self::section`]; any other key the runtime does not know is an
    /// error.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for bad TOML, an unknown or mistyped key;
    /// [`ConfigError::Invalid`] for a value out of range.
    pub fn config(&self, application_sections: &[&str]) -> Result<Config, ConfigError> {
        let top: Dict = self.figment.extract().map_err(load_error)?;
        let known = serde_aux::serde_introspection::serde_introspect::<Config>();
        if let Some(unknown) = top.keys().find(|key| {
            !known.contains(&key.as_str()) && !application_sections.contains(&key.as_str())
        }) {
            let mut expected: Vec<&str> = known.to_vec();
            expected.extend(application_sections);
            return Err(ConfigError::Load(format!(
                "unknown key `{unknown}`; expected one of {}",
                expected.join(", ")
            )));
        }
        let mut config: Config = self.figment.extract().map_err(load_error)?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// The section `name` an application owns, as `T` (its defaults when the section is
    /// absent). The application reads its secrets and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for a mistyped value or a key `T` does not know.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ConfigError> {
        if !self.figment.contains(name) {
            return Ok(T::default());
        }
        self.figment.extract_inner(name).map_err(load_error)
    }
}

fn load_error(error: figment::Error) -> ConfigError {
    ConfigError::Load(error.to_string())
}

impl Config {
    /// Loads defaults, then `path` (when given), then `PAYSTREAM_*` environment variables,
    /// and validates the result: [`ConfigSources::load`], then
    /// [`ConfigSources::config`] with no application section.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for a missing file, bad TOML or an unknown key;
    /// [`ConfigError::Invalid`] for a value out of range.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        ConfigSources::load(path)?.config(&[])
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
        )
    }
}
