//! How a federation client connects, for tonic channels: TCP, TLS 1.3 with the client
//! configuration in force (a reload replaces it for new connections), the server's URI
//! SAN compared with the identity it must have, HTTP/2 agreed by ALPN, and the stream
//! guarded so that it closes if the server's certificate is revoked later.
//!
//! tonic's own TLS (`ClientTlsConfig`) offers TLS 1.2 and checks the DNS name only, so
//! no federation client uses it (the tonic dependency is built without TLS).

use std::{future::Future, io, pin::Pin, sync::Arc, task::Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ClientConnection, pki_types::ServerName};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::Endpoint;

use crate::{
    trust::identity::PeerIdentity,
    trust::revocation::{Guarded, Revoked, serial_of},
    trust::tls::{CONNECTION_WINDOW, ClientSettings, STREAM_WINDOW, TlsError, TlsFiles},
};

/// The client side of a process's TLS, as reloads update it.
#[derive(Clone)]
pub struct ClientTls {
    pub config: watch::Receiver<Arc<ClientConfig>>,
    pub revoked: watch::Receiver<Arc<Revoked>>,
}

/// Checks, after the handshake, that the server is `expected` by its certificate's URI
/// SAN (TLS has checked the chain and the DNS name) and agreed to HTTP/2; returns its
/// certificate's serial.
pub fn verify_server(
    connection: &ClientConnection,
    expected: &PeerIdentity,
) -> Result<Vec<u8>, String> {
    let leaf = verify_server_identity(connection, expected)?;
    if connection.alpn_protocol() != Some(b"h2") {
        return Err("the server did not agree to HTTP/2 (ALPN h2)".into());
    }
    serial_of(leaf).ok_or_else(|| "the server's certificate does not parse".into())
}

/// Checks, after the handshake, that the server is `expected` by its certificate's URI
/// SAN; returns its certificate.
pub fn verify_server_identity<'c>(
    connection: &'c ClientConnection,
    expected: &PeerIdentity,
) -> Result<&'c [u8], String> {
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("the server presented no certificate")?;
    match PeerIdentity::from_certificate(leaf.as_ref()) {
        Ok(identity) if identity == *expected => Ok(leaf.as_ref()),
        Ok(identity) => Err(format!(
            "the server presented {identity}, it must be {expected}"
        )),
        Err(e) => Err(format!("the server's identity: {e}")),
    }
}

/// Opens connections to one federation server that must be `server`.
#[derive(Clone)]
pub struct FederationConnector {
    tls: ClientTls,
    server: PeerIdentity,
    server_name: ServerName<'static>,
}

impl FederationConnector {
    /// A connector to `server`, whose certificate must carry `server_name` as DNS SAN
    /// (its identity's unless configured otherwise) and its identity as URI SAN.
    pub fn new(tls: ClientTls, server: PeerIdentity, server_name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        Ok(Self {
            tls,
            server,
            server_name,
        })
    }

    /// A connector that keeps the configuration `files` hold now (for tools and
    /// tests; a process that reloads keeps the watches it publishes to).
    pub fn from_files(files: &TlsFiles, server: PeerIdentity) -> Result<Self, TlsError> {
        let tls = ClientTls {
            config: watch::channel(files.client_rustls_config()?).1,
            revoked: watch::channel(files.revoked()?).1,
        };
        let name = server.dns_name();
        Self::new(tls, server, &name)
    }
}

type Connected = TokioIo<Guarded<TlsStream<TcpStream>>>;

impl tower::Service<Uri> for FederationConnector {
    type Response = Connected;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.config.borrow().clone();
        let revoked = self.tls.revoked.clone();
        let server = self.server.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
            let serial = verify_server(tls.get_ref().1, &server)
                .map_err(|reason| io::Error::new(io::ErrorKind::PermissionDenied, reason))?;
            Ok(TokioIo::new(Guarded::new(tls, serial, revoked)))
        })
    }
}

/// A TLS-only endpoint for `url` (which must be `https://`) with the federation's
/// connection settings, to connect through a [`FederationConnector`]. No per-call
/// deadline is set (`settings.request_timeout`): a client-side timer per call costs a
/// wake-up per call, so callers choose.
pub fn endpoint(url: &str, settings: &ClientSettings) -> Result<Endpoint, TlsError> {
    if !url.starts_with("https://") {
        return Err(TlsError::Config(format!(
            "endpoint {url:?} must use https:// (federation traffic is never plaintext)"
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| TlsError::Config(format!("endpoint {url:?}: {e}")))?;
    Ok(endpoint
        .connect_timeout(settings.connect_timeout)
        .http2_keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        // Windows large enough that a multi-call connection carrying 64 KiB messages
        // does not stall on (and pay writes for) WINDOW_UPDATE frames.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW))
}
