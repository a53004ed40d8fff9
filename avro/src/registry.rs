//! How the codec reaches a Schema Registry: basic authentication and the CA to trust
//! for HTTPS ([`RegistryAccess`]), the rustls client configuration (ring), and the
//! registry's errors in the codec's terms (a rejected password names the keys to fix).

use schema_registry_converter::error::SRCError;

use crate::error::CodecError;

/// How to reach a secured Schema Registry.
#[derive(Default, Clone)]
pub struct RegistryAccess {
    /// HTTP basic-auth user (Confluent Cloud: the API key).
    pub basic_auth_username: Option<String>,
    /// Its password (Confluent Cloud: the API secret).
    pub basic_auth_password: Option<String>,
    /// PEM CA certificates to trust for `https://`; `None` trusts the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("basic_auth_username", &self.basic_auth_username)
            .field(
                "basic_auth_password",
                &self.basic_auth_password.as_ref().map(|_| "[REDACTED]"),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// The rustls client configuration of the registry's HTTPS client (ring crypto): roots
/// from `ca_pem`, else webpki-roots.
pub(crate) fn tls_client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate =
                    certificate.map_err(|e| format!("reading the CA certificates: {e}"))?;
                roots
                    .add(certificate)
                    .map_err(|e| format!("adding a CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the CA file holds no PEM certificate".to_string());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

pub(crate) fn registry_error(url: &str, e: &SRCError) -> CodecError {
    let mut message = match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    };
    // The registry answers 401/403 (Confluent error codes 40101, 40301) to bad or missing
    // credentials.
    let lower = message.to_ascii_lowercase();
    if ["401", "403", "unauthorized", "forbidden"]
        .iter()
        .any(|m| lower.contains(m))
    {
        message.push_str(
            "; check schema_registry.basic_auth_username and its password \
             (PAYSTREAM_SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD or basic_auth_password_file)",
        );
    } else if lower.contains("certificate") || lower.contains("tls") {
        message
            .push_str("; set schema_registry.ca_location to the CA of the registry's certificate");
    } else if url.starts_with("https://") && lower.contains("error sending request") {
        // reqwest's message does not carry the TLS cause (it sits in the error's source
        // chain, which schema_registry_converter flattens away).
        message.push_str(
            "; the registry is unreachable or its certificate is not trusted: check \
             schema_registry.url and schema_registry.ca_location",
        );
    }
    CodecError::Registry {
        url: url.to_string(),
        message,
        retriable: e.retriable,
    }
}
