//! The ledger sink's configuration: the `[sink]` section of the configuration file
//! (`PAYSTREAM_SINK__<KEY>` in the environment), which the sink owns — read from the
//! same sources as the runtime's sections ([`ConfigSources::section`]), its secrets
//! from their files and validated here, before anything connects.

use std::path::PathBuf;

use paystream_common::config::{ConfigError, ConfigSources};
use paystream_common::security::{redact_url, resolve_secret, url_has_password};
use secrecy::SecretString;
use serde::Deserialize;

/// The PostgreSQL ledger sink.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Run the sink in the same process as the pipeline.
    pub enabled: bool,
    /// PostgreSQL connection URL, `postgres://user@host:port/database`, with libpq's TLS
    /// parameters: `?sslmode=verify-full&sslrootcert=/path/ca.pem` (production; also
    /// `sslcert`/`sslkey` for client certificates). Keep the password out of it: use
    /// `database_password`.
    pub database_url: String,
    /// The database user's password: from `PAYSTREAM_SINK__DATABASE_PASSWORD` or
    /// `database_password_file`.
    pub database_password: Option<SecretString>,
    /// File holding the database password.
    pub database_password_file: Option<PathBuf>,
    /// Most rows (records) written in one database transaction.
    pub batch_rows_max: usize,
    /// How long a batch waits for more records after its first, milliseconds (10): the
    /// pipeline's outputs arrive in one burst per committed transaction.
    pub batch_linger_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            enabled: true,
            database_url: "postgres://postgres@127.0.0.1:15432/paystream".to_string(),
            database_password: None,
            database_password_file: None,
            batch_rows_max: 5_000,
            batch_linger_ms: 10,
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    /// The URL's password, if one was put there after all, is redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkConfig")
            .field("enabled", &self.enabled)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_password", &self.database_password)
            .field("database_password_file", &self.database_password_file)
            .field("batch_rows_max", &self.batch_rows_max)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .finish()
    }
}

impl SinkConfig {
    /// The top-level key of the section.
    pub const SECTION: &'static str = "sink";

    /// Reads the `[sink]` section from `sources` (its defaults when absent), the
    /// database password from `database_password_file` when set, and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Load`] for an unknown or mistyped key; [`ConfigError::Invalid`]
    /// naming the key and the fix.
    pub fn load(sources: &ConfigSources) -> Result<SinkConfig, ConfigError> {
        let mut config: SinkConfig = sources.section(Self::SECTION)?;
        resolve_secret(
            &mut config.database_password,
            &config.database_password_file,
            "sink.database_password",
            "sink.database_password_file",
        )?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values without connecting.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem, fix| Err(ConfigError::Invalid { key, problem, fix });
        if url_has_password(&self.database_url) && self.database_password.is_some() {
            return invalid(
                "sink.database_url",
                "holds a password and sink.database_password is set too".into(),
                "remove the password from the URL",
            );
        }
        if self.enabled
            && !(self.database_url.starts_with("postgres://")
                || self.database_url.starts_with("postgresql://"))
        {
            return invalid(
                "sink.database_url",
                "is not a postgres:// URL".into(),
                "set it to postgres://user@host:port/database",
            );
        }
        if !(1..=100_000).contains(&self.batch_rows_max) {
            return invalid(
                "sink.batch_rows_max",
                format!("{} is out of range", self.batch_rows_max),
                "use 1 to 100000",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    fn key_of(result: Result<(), ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_values_are_checked_by_key() {
        SinkConfig::default().validate().unwrap();
        let mut config = SinkConfig {
            database_url: "postgres://ledger:hunter2-pg@db/ledger".into(),
            database_password: Some(SecretString::from("hunter2-pg".to_string())),
            ..SinkConfig::default()
        };
        assert_eq!(key_of(config.validate()), "sink.database_url");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2-pg"), "{printed}");
        assert!(
            printed.contains("postgres://ledger:***@db/ledger"),
            "{printed}"
        );
        config.database_password = None;
        config.batch_rows_max = 0;
        assert_eq!(key_of(config.validate()), "sink.batch_rows_max");
        config.batch_rows_max = 10;
        config.database_url = "mysql://db/ledger".into();
        assert_eq!(key_of(config.validate()), "sink.database_url");
        config.enabled = false;
        config
            .validate()
            .expect("a disabled sink needs no PostgreSQL URL");
    }

    #[test]
    fn the_section_is_read_from_the_sources_and_unknown_keys_name_themselves() {
        let sources = ConfigSources::from_figment(Figment::new().merge(Toml::string(
            "[kafka]\nbootstrap_servers = \"k:1\"\n[sink]\nbatch_rows_max = 7\n",
        )));
        assert_eq!(SinkConfig::load(&sources).unwrap().batch_rows_max, 7);
        // The runtime reads its sections with `sink` set aside, and refuses it otherwise.
        sources.config(&[SinkConfig::SECTION]).unwrap();
        let err = sources.config(&[]).unwrap_err().to_string();
        assert!(err.contains("unknown key `sink`"), "{err}");

        let absent = ConfigSources::from_figment(Figment::new());
        assert_eq!(SinkConfig::load(&absent).unwrap().batch_rows_max, 5_000);

        let typo = ConfigSources::from_figment(
            Figment::new().merge(Toml::string("[sink]\nbatch_row_max = 7\n")),
        );
        let err = SinkConfig::load(&typo).unwrap_err().to_string();
        assert!(err.contains("batch_row_max"), "{err}");
    }
}
