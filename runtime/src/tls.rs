//! TLS 1.3 configuration for federation traffic: mutual authentication in both
//! directions against the federation CA, from PEM files.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A server's TLS configuration, as listeners take it (and reloads replace it).
pub type ServerTls = Arc<ServerConfig>;

/// Where a process finds its certificate, key and the federation CA (PEM files).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file with the federation CA certificate(s) that peers must chain to.
    pub ca: PathBuf,
    /// PEM file with this process's certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM file with this process's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// TLS set-up errors; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Installs ring as the process-wide rustls crypto provider. Call first thing in every
/// binary and test: some dependency may enable a second provider, and rustls then refuses
/// to guess. Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TlsFiles {
    /// The three paths, for config path resolution.
    pub fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.ca, &mut self.cert, &mut self.key]
    }

    fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    }

    fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = Self::read(path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: path.clone(),
                reason: "no CERTIFICATE block".into(),
            });
        }
        Ok(certs)
    }

    /// The server side: TLS 1.3 only, HTTP/2 only, client certificate required and
    /// verified against the federation CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let (chain, key) = self.own_identity()?;
        let mut config = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side for callers that drive rustls themselves (the gateway's upstream
    /// pool): TLS 1.3 only, HTTP/2 only, the server verified against the federation CA
    /// (its DNS name is checked per connection), our certificate presented.
    pub fn client_rustls_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let (chain, key) = self.own_identity()?;
        let mut config = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in Self::certs(&self.ca)? {
            roots.add(ca).map_err(|e| TlsError::Pem {
                path: self.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(roots)
    }

    fn own_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = Self::certs(&self.cert)?;
        let key_pem = Self::read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        Ok((chain, key))
    }

    /// The client side for tonic: verify the server against the federation CA and the
    /// DNS name of the identity it must have, and present our own certificate.
    pub fn client_config(&self, server_dns_name: &str) -> Result<ClientTlsConfig, TlsError> {
        let ca = Self::read(&self.ca)?;
        let cert = Self::read(&self.cert)?;
        let key = Self::read(&self.key)?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(server_dns_name))
    }
}

/// HTTP/2 flow-control windows for federation connections, client and server side.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Largest HTTP/2 frame payload we accept: large enough that a 64 KiB message (plus
/// its 5-byte gRPC header) arrives as one DATA frame, to be relayed without copying.
pub const MAX_FRAME: u32 = 256 * 1024;

/// Connection settings shared by every federation client, so pooled HTTP/2 connections
/// stay warm and dead peers are noticed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    /// Time allowed to open a TCP + TLS connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval on idle connections.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is dropped.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Deadline for a single call unless the caller sets a shorter `grpc-timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a TLS-only endpoint. It sets no per-call deadline
/// (`settings.request_timeout`): a client-side timer per call costs the gateway a
/// wake-up of its event loop per call, so callers choose — the node's client applies
/// `Endpoint::timeout`, the gateway sends `grpc-timeout` for the node to enforce. `https` is enforced because tonic silently speaks plaintext to an
/// `http://` URI even with a TLS config.
pub fn endpoint(
    url: &str,
    tls: ClientTlsConfig,
    settings: &ClientSettings,
) -> Result<Endpoint, TlsError> {
    if !url.starts_with("https://") {
        return Err(TlsError::Config(format!(
            "endpoint {url:?} must use https:// (federation traffic is never plaintext)"
        )));
    }
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| TlsError::Config(format!("endpoint {url:?}: {e}")))?
        .tls_config(tls)
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            TlsError::Config(format!("endpoint {url:?}: {e}{cause}"))
        })
        .map(|ep| {
            ep.connect_timeout(settings.connect_timeout)
                .http2_keep_alive_interval(settings.keepalive_interval)
                .keep_alive_timeout(settings.keepalive_timeout)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true)
                // Windows large enough that a multi-call connection carrying 64 KiB
                // messages does not stall on (and pay writes for) WINDOW_UPDATE frames.
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
        })
}
