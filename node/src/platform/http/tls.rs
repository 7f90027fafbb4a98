//! TLS towards a province's platform, and errors that say which side is wrong.
//!
//! A TLS misconfiguration between a connector and the system behind it is the most
//! repeated complaint of X-Road's users, because the error does not say which
//! certificate or CA is at fault. [`explain`] turns rustls's error into a sentence that
//! names the file to fix: the node's CA file, the platform's certificate, the node's
//! client certificate, or the platform's client CA.

use std::{path::Path, sync::Arc};

use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

use super::config::PlatformTls;

/// A TLS file the node could not use; names the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum PlatformTlsError {
    #[error("[platform.tls] {setting} = {path}: {reason}")]
    File {
        setting: &'static str,
        path: String,
        reason: String,
    },
    #[error("[platform.tls]: {0}")]
    Config(String),
}

fn file_error(setting: &'static str, path: &Path, reason: impl ToString) -> PlatformTlsError {
    PlatformTlsError::File {
        setting,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PlatformTlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(setting, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The client configuration: the platform verified against `tls.ca` (TLS 1.2 or 1.3,
/// as provincial platforms run both), the node's certificate presented if configured.
pub fn client_config(tls: &PlatformTls) -> Result<ClientConfig, PlatformTlsError> {
    tongban_runtime::trust::tls::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca", &tls.ca)? {
        roots
            .add(cert)
            .map_err(|e| file_error("ca", &tls.ca, format!("not a usable CA: {e}")))?;
    }
    let builder = match &tls.server_name {
        None => ClientConfig::builder().with_root_certificates(roots),
        Some(name) => {
            let verifier = NamedVerifier::new(roots, name)?;
            ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("cert", cert)?;
            let pem = std::fs::read(key).map_err(|e| file_error("key", key, e))?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| file_error("key", key, format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| file_error("cert", cert, format!("does not match the key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(PlatformTlsError::Config(
                "cert and key go together: set both for mutual TLS, or neither".into(),
            ));
        }
    };
    Ok(config)
}

/// The platform's certificate verified as usual (chain to the CA, validity, usage)
/// but for `server_name` instead of the URL's host: a platform reached by an address
/// its certificate does not carry. Not "dangerous" but for rustls's name for it.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl NamedVerifier {
    fn new(roots: RootCertStore, name: &str) -> Result<Self, PlatformTlsError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|e| {
            PlatformTlsError::Config(format!(
                "server_name = {name:?} is not a DNS name or IP: {e}"
            ))
        })?;
        let inner = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| PlatformTlsError::Config(format!("ca: {e}")))?;
        Ok(Self { inner, name })
    }
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A sentence naming what is wrong, when `error` (or one of its causes) is a TLS or
/// connection failure; `None` otherwise.
pub fn explain(
    error: &(dyn std::error::Error + 'static),
    tls: &PlatformTls,
    url: &str,
) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(rustls_error, tls, url));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some(format!("nothing listens at {url} (connection refused)"));
            }
            // An I/O error's `source` skips the error it wraps (hyper wraps rustls's
            // error in two of them): look inside instead.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = e.source();
    }
    None
}

fn explain_rustls(error: &rustls::Error, tls: &PlatformTls, url: &str) -> String {
    let ca = tls.ca.display();
    let ours = tls
        .cert
        .as_ref()
        .map_or_else(|| "none configured".to_owned(), |c| c.display().to_string());
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the platform's certificate at {url} is not signed by the CA the node trusts \
                 ([platform.tls] ca = {ca}): give the node the CA that signed the platform's \
                 certificate, or have the platform serve one this CA signed"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the platform's certificate does not name the host of {url}: set \
                     [platform.tls] server_name to a name it carries, or reissue it for this host"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the platform's certificate at {url} has expired: renew it at the platform")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the platform's certificate at {url} is not valid yet: check the clocks of the \
                 node and the platform"
            ),
            CertificateError::Revoked => {
                format!("the platform's certificate at {url} is revoked")
            }
            other => {
                format!("the platform's certificate at {url} was refused ({other:?}); CA file {ca}")
            }
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the platform requires a client certificate (mutual TLS) and the node sent \
                 none: set [platform.tls] cert and key"
                    .to_owned()
            }
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied => format!(
                "the platform refused the node's client certificate ([platform.tls] cert = \
                 {ours}): it is not signed by a CA the platform trusts for clients, or it \
                 expired or was revoked ({alert:?})"
            ),
            AlertDescription::CertificateExpired => format!(
                "the platform says the node's client certificate ([platform.tls] cert = {ours}) \
                 has expired"
            ),
            AlertDescription::HandshakeFailure if tls.cert.is_none() => {
                "the platform ended the handshake; it may require a client certificate: set \
                 [platform.tls] cert and key"
                    .to_owned()
            }
            other => format!("the platform ended the TLS handshake ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "{url} did not answer TLS: is the platform serving plain HTTP, or another \
             protocol, on that port?"
        ),
        other => format!("TLS with the platform at {url} failed: {other}"),
    }
}

/// The configuration as reqwest takes it.
pub fn shared(config: ClientConfig) -> Arc<ClientConfig> {
    Arc::new(config)
}
