//! The connection check at start-up: one metadata request with the process's client
//! settings, watching librdkafka's error callback and log (`ErrorRecorder`) so that a
//! rejected password or certificate is reported at once and named
//! ([`ConnectionProblem`]); an unreachable cluster is retried ([`check_connection`]).

use super::client_config;
use crate::config::Config;

/// Why a connection check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionProblem {
    /// The brokers rejected the SASL credentials. Not retried.
    Authentication,
    /// The TLS handshake failed: an untrusted or mismatched certificate, or a port that
    /// does not speak TLS. Not retried.
    Tls,
    /// No broker answered in time. Retried a bounded number of times.
    Unreachable,
}

impl ConnectionProblem {
    /// Classifies a librdkafka error reason (the error callback's text).
    pub fn classify(reason: &str) -> Self {
        let lower = reason.to_ascii_lowercase();
        if lower.contains("sasl authentication")
            || lower.contains("authentication failed")
            || lower.contains("saslauthenticate")
        {
            ConnectionProblem::Authentication
        } else if lower.contains("ssl handshake")
            || lower.contains("certificate verify failed")
            || lower.contains("ssl_handshake")
            // The broker's alerts: a missing or rejected client certificate (mutual TLS).
            || lower.contains("ssl alert")
            || lower.contains("alert bad certificate")
            || lower.contains("certificate required")
        {
            ConnectionProblem::Tls
        } else {
            ConnectionProblem::Unreachable
        }
    }

    fn fix(self) -> &'static str {
        match self {
            ConnectionProblem::Authentication => {
                "check kafka.sasl_username, kafka.sasl_mechanism and the password \
                 (PAYSTREAM_KAFKA__SASL_PASSWORD or kafka.sasl_password_file)"
            }
            ConnectionProblem::Tls => {
                "set kafka.ssl_ca_location to the CA that signed the brokers' certificates, \
                 check that the certificates name the hosts in kafka.bootstrap_servers, \
                 that kafka.security_protocol matches the listener, and, if the brokers \
                 require client certificates (mutual TLS), kafka.ssl_certificate_location \
                 and kafka.ssl_key_location"
            }
            ConnectionProblem::Unreachable => {
                "check kafka.bootstrap_servers, that the brokers run, and that \
                 kafka.security_protocol matches the listener on that port"
            }
        }
    }
}

/// Records the last error librdkafka reports through the error callback (the detailed
/// reason that a failed metadata request does not carry).
#[derive(Default)]
struct ErrorRecorder {
    last: std::sync::Mutex<Option<String>>,
}

impl ErrorRecorder {
    /// Keeps `reason` unless a more telling one (authentication, TLS) is already kept.
    fn record(&self, reason: &str) {
        let mut last = self.last.lock().expect("error recorder");
        let telling = |r: &str| ConnectionProblem::classify(r) != ConnectionProblem::Unreachable;
        if last
            .as_deref()
            .is_none_or(|kept| !telling(kept) || telling(reason))
        {
            *last = Some(reason.to_string());
        }
    }
}

impl rdkafka::ClientContext for ErrorRecorder {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        // librdkafka reports TLS handshake failures as log lines, not errors.
        use rdkafka::config::RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            tracing::debug!(
                fac,
                log_message,
                "kafka client log during the connection check"
            );
            self.record(log_message);
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error during the connection check");
        self.record(reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorRecorder {}

/// Attempts of [`check_connection`] while no broker answers.
pub const CONNECTION_ATTEMPTS: usize = 4;

/// Longest one attempt of [`check_connection`] waits for a broker (or
/// `kafka.request_timeout_ms`, if shorter).
pub const CONNECTION_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks that the brokers can be reached and accept this configuration's TLS and SASL
/// settings, by fetching the cluster's metadata (Kafka `Metadata` request) with one
/// client made from [`client_config`]. An unreachable cluster is retried
/// [`CONNECTION_ATTEMPTS`] times with exponential backoff (1 s, 2 s, 4 s), each retry
/// logged (about half a minute in all); a rejected password or certificate fails at once.
///
/// # Errors
/// [`crate::Error::Connection`] naming the problem, librdkafka's reason and the keys to fix.
pub async fn check_connection(config: &Config) -> Result<(), crate::Error> {
    use backon::{ExponentialBuilder, Retryable};

    let attempt_timeout = std::time::Duration::from_millis(config.kafka.request_timeout_ms)
        .min(CONNECTION_ATTEMPT_TIMEOUT);
    let attempt = || {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || probe(&config, attempt_timeout))
                .await
                .unwrap_or_else(|e| Err((ConnectionProblem::Unreachable, e.to_string())))
        }
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_secs(1))
                .with_max_times(CONNECTION_ATTEMPTS - 1),
        )
        .when(|(problem, _)| *problem == ConnectionProblem::Unreachable)
        .notify(|(_, reason), delay| {
            tracing::warn!(
                bootstrap_servers = %config.kafka.bootstrap_servers,
                reason = %reason,
                retry_in_ms = delay.as_millis() as u64,
                "kafka not reachable; retrying"
            )
        })
        .await
        .map_err(|(problem, reason)| crate::Error::Connection {
            target: format!(
                "kafka {} ({})",
                config.kafka.bootstrap_servers, config.kafka.security_protocol
            ),
            problem: match problem {
                ConnectionProblem::Authentication => "SASL authentication failed",
                ConnectionProblem::Tls => "TLS handshake failed",
                ConnectionProblem::Unreachable => "no broker answered",
            },
            reason,
            fix: problem.fix(),
        })
}

/// One metadata request, watching the error callback so that a rejected credential or
/// certificate ends the attempt at once instead of at the timeout.
fn probe(config: &Config, timeout: std::time::Duration) -> Result<(), (ConnectionProblem, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer<ErrorRecorder> = client_config(config)
        .create_with_context(ErrorRecorder::default())
        .map_err(|e| (ConnectionProblem::Tls, e.to_string()))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let slice = std::time::Duration::from_millis(500)
            .min(deadline.saturating_duration_since(std::time::Instant::now()));
        match consumer.fetch_metadata(None, slice) {
            Ok(_) => return Ok(()),
            Err(e) => {
                // Error events reach the context only when the client is polled.
                let _ = consumer.poll(std::time::Duration::ZERO);
                let last = consumer
                    .context()
                    .last
                    .lock()
                    .expect("error recorder")
                    .clone();
                let reason = last.unwrap_or_else(|| e.to_string());
                let problem = ConnectionProblem::classify(&reason);
                if problem != ConnectionProblem::Unreachable
                    || std::time::Instant::now() >= deadline
                {
                    return Err((problem, reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionProblem;

    #[test]
    fn librdkafka_reasons_are_classified() {
        // Reasons as librdkafka 2.x reports them (seen on the local stack).
        let cases = [
            (
                "sasl_ssl://127.0.0.1:19192/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 324ms in state AUTH_REQ)",
                ConnectionProblem::Authentication,
            ),
            (
                "sasl_ssl://127.0.0.1:19192/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified (after 9ms in state SSL_HANDSHAKE)",
                ConnectionProblem::Tls,
            ),
            (
                "ssl://127.0.0.1:19193/bootstrap: Receive failed: ssl3_read_bytes error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)",
                ConnectionProblem::Tls,
            ),
            (
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
                ConnectionProblem::Unreachable,
            ),
        ];
        for (reason, expected) in cases {
            assert_eq!(ConnectionProblem::classify(reason), expected, "{reason}");
        }
    }
}
