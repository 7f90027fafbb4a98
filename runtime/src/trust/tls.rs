//! TLS 1.3 configuration for federation traffic: mutual authentication in both
//! directions against the federation CA and its revocation lists, from PEM files.
//! Clients connect through [`crate::trust::connector`].

use std::{path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    client::WebPkiServerVerifier,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use tokio::sync::watch;

use crate::trust::revocation::Revoked;
use serde::{Deserialize, Serialize};

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
    /// PEM file with the federation CA's certificate revocation lists (`X509 CRL`
    /// blocks), if it revokes any: a peer whose certificate they name is refused at the
    /// handshake, and its open connections are closed when a reload brings the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
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
        let mut paths = vec![&mut self.ca, &mut self.cert, &mut self.key];
        paths.extend(self.crl.as_mut());
        paths
    }

    /// Every file a reload reads again (watched for changes).
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca.clone(), self.cert.clone(), self.key.clone()];
        paths.extend(self.crl.clone());
        paths
    }

    fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    }

    /// Every `what` block of the PEM file at `path`; at least one.
    fn blocks<T: PemObject>(path: &PathBuf, what: &str) -> Result<Vec<T>, TlsError> {
        let pem = Self::read(path)?;
        let blocks = T::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if blocks.is_empty() {
            return Err(TlsError::Pem {
                path: path.clone(),
                reason: format!("no {what} block"),
            });
        }
        Ok(blocks)
    }

    fn certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        Self::blocks(path, "CERTIFICATE")
    }

    /// The server side: TLS 1.3 only, HTTP/2 only, client certificate required and
    /// verified against the federation CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut verifier = WebPkiClientVerifier::builder(Arc::new(self.roots()?));
        let crls = self.revocation_lists()?;
        if !crls.is_empty() {
            // Leaves only: the CA is the trust anchor, revoked by replacing the bundle.
            verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.ca.display())))?;
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
        let mut verifier = WebPkiServerVerifier::builder(Arc::new(self.roots()?));
        let crls = self.revocation_lists()?;
        if !crls.is_empty() {
            verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.ca.display())))?;
        let mut config = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// A digest of every file's content, to tell whether a reload changed any.
    pub fn fingerprint(&self) -> Result<[u8; 32], TlsError> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for path in self.watched() {
            let content = Self::read(&path)?;
            digest.update(&(content.len() as u64).to_be_bytes());
            digest.update(&content);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.finish().as_ref());
        Ok(out)
    }

    /// The revocation lists of `crl`, if configured (none otherwise).
    pub fn revocation_lists(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        match &self.crl {
            None => Ok(Vec::new()),
            Some(path) => Self::blocks(path, "X509 CRL"),
        }
    }

    /// The serials the revocation lists name, for closing open connections.
    pub fn revoked(&self) -> Result<Arc<Revoked>, TlsError> {
        let lists = self.revocation_lists()?;
        Revoked::from_lists(&lists)
            .map(Arc::new)
            .map_err(|reason| TlsError::Pem {
                path: self.crl.clone().unwrap_or_default(),
                reason,
            })
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
}

/// The TLS files read and checked whole, before any of it is put in force.
pub struct TlsRead {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    revoked: Arc<Revoked>,
}

impl TlsFiles {
    /// Everything a process takes from its TLS files: both sides' configurations and
    /// the revoked serials. Any bad file fails the whole read.
    pub fn read_all(&self) -> Result<TlsRead, TlsError> {
        Ok(TlsRead {
            server: self.server_config()?,
            client: self.client_rustls_config()?,
            revoked: self.revoked()?,
        })
    }
}

/// TLS as a process holds it while it runs, each part on a watch: listeners take the
/// server side per handshake, connectors the client side per connection, and every
/// open connection watches the revoked serials. A reload replaces all three at once.
pub struct TlsInForce {
    pub server: watch::Sender<Arc<ServerConfig>>,
    pub client: watch::Sender<Arc<ClientConfig>>,
    pub revoked: watch::Sender<Arc<Revoked>>,
}

impl TlsInForce {
    pub fn new(read: TlsRead) -> Self {
        Self {
            server: watch::channel(read.server).0,
            client: watch::channel(read.client).0,
            revoked: watch::channel(read.revoked).0,
        }
    }

    /// Puts `read` in force; returns how many serials are revoked now.
    pub fn replace(&self, read: TlsRead) -> usize {
        let serials = read.revoked.len();
        self.server.send_replace(read.server);
        self.client.send_replace(read.client);
        self.revoked.send_replace(read.revoked);
        serials
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
