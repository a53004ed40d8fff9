//! Secure connections and secrets: how paystream authenticates to Kafka (TLS, mTLS and
//! SASL), where secrets come from, and how they are kept out of `Debug` output, logs,
//! errors and metrics.
//!
//! Kafka settings map one-to-one onto librdkafka's (`security.protocol`,
//! `sasl.mechanism`, `ssl.ca.location`, …; see librdkafka's CONFIGURATION.md and Kafka's
//! security protocol, KIP-12 for TLS/SASL, KIP-84/KIP-554 for SCRAM). They are applied to
//! every client the process creates through [`crate::kafka::client_config`].
//!
//! A secret (`kafka.sasl_password`, `kafka.ssl_key_password`,
//! `schema_registry.basic_auth_password`, `sink.database_password`) is given either as
//! its value — from the environment, e.g. `PAYSTREAM_KAFKA__SASL_PASSWORD` — or as a file
//! holding it, `<key>_file` (a mounted Kubernetes or Docker secret). Setting both is an
//! error. Values are held as [`SecretString`], whose `Debug` prints `[REDACTED]`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config_error::ConfigError;

/// Kafka `security.protocol`: transport and authentication of every broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (the local stack).
    #[default]
    Plaintext,
    /// TLS; with a client certificate and key, mutual TLS.
    Ssl,
    /// SASL authentication without TLS: the password crosses the network in the clear
    /// with `PLAIN`. Not for production.
    SaslPlaintext,
    /// SASL over TLS: the production setting.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka / Java client spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// True for `SSL` and `SASL_SSL`.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// True for `SASL_PLAINTEXT` and `SASL_SSL`.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "{s:?} is not a security protocol: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SecurityProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Kafka `sasl.mechanism` (KIP-43 PLAIN, KIP-84 SCRAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    /// Username and password sent as they are: only over TLS.
    Plain,
    /// Salted challenge-response, SHA-256 (RFC 7677).
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[default]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka / Java client spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(format!(
                "{s:?} is not a supported SASL mechanism: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SaslMechanism {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Resolves a secret given as a value (`key`) or a file (`key_file`) into the value:
/// the file's content without its trailing newline.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key` when both are set, or `key_file` when the file
/// cannot be read or is empty.
pub fn resolve_secret(
    value: &mut Option<SecretString>,
    file: &Option<PathBuf>,
    key: &'static str,
    file_key: &'static str,
) -> Result<(), ConfigError> {
    // An empty setting (e.g. `PAYSTREAM_KAFKA__SASL_PASSWORD_FILE=`) is no setting.
    let Some(path) = file.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if value.is_some() {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("is set and so is {file_key}"),
            fix: "set only one of them",
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key: file_key,
        problem: format!("cannot read {}: {e}", path.display()),
        fix: "point it at a readable file holding only the secret",
    })?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            key: file_key,
            problem: format!("{} is empty", path.display()),
            fix: "write the secret into the file",
        });
    }
    *value = Some(SecretString::from(secret.to_string()));
    Ok(())
}

/// librdkafka properties that hold secrets or that the `kafka.*` security keys own: they
/// may not appear in `kafka.client_properties`, so a password never sits in plain text in
/// a map that is printed and merged, and the checked settings cannot be overridden.
pub(crate) const RESERVED_CLIENT_PROPERTIES: [&str; 11] = [
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

/// Fails with an error naming `key` when `path` is not a readable file.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key`.
pub fn check_readable(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            key,
            problem: format!("cannot read {}: {e}", path.display()),
            fix: "point it at a readable PEM file",
        })
}

/// `url` with the password of its user-info part (`scheme://user:password@host`)
/// replaced by `***`, for `Debug` output, logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            if user_info.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

/// True when `url` carries a password in its user-info part.
pub fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn protocols_and_mechanisms_parse_in_either_case() {
        assert_eq!(
            "sasl_ssl".parse::<SecurityProtocol>(),
            Ok(SecurityProtocol::SaslSsl)
        );
        assert_eq!("SSL".parse::<SecurityProtocol>(), Ok(SecurityProtocol::Ssl));
        assert!("tls".parse::<SecurityProtocol>().is_err());
        assert_eq!(
            "scram-sha-512".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha512)
        );
        assert_eq!(
            "SCRAM_SHA_256".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha256)
        );
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://ledger:s3cr%40t@db:5432/paystream?sslmode=verify-full"),
            "postgres://ledger:***@db:5432/paystream?sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://ledger@db/paystream"),
            "postgres://ledger@db/paystream"
        );
        assert_eq!(
            redact_url("https://user:pw@registry:8081/apis"),
            "https://user:***@registry:8081/apis"
        );
        assert!(url_has_password("postgres://a:b@h/d"));
        assert!(!url_has_password("postgres://a@h/d"));
    }

    #[test]
    fn a_secret_comes_from_its_file_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "hunter2\n").unwrap();
        let mut value = None;
        resolve_secret(&mut value, &Some(file.clone()), "k", "k_file").unwrap();
        assert_eq!(value.unwrap().expose_secret(), "hunter2");

        let mut both = Some(SecretString::from("x".to_string()));
        let err = resolve_secret(&mut both, &Some(file), "k", "k_file").unwrap_err();
        assert!(err.to_string().contains("k_file"), "{err}");

        let mut missing = None;
        let err = resolve_secret(
            &mut missing,
            &Some(dir.path().join("absent")),
            "k",
            "k_file",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("configuration key k_file"),
            "{err}"
        );
    }
}
