//! Serving a router over TLS (or, for development, plain HTTP): the server's rustls
//! configuration from PEM files (ring, TLS 1.2 and 1.3, HTTP/1.1; with `client_ca`,
//! mutual TLS), and an axum listener whose connections are TLS streams. Handshakes run
//! in tasks of their own, so a slow or silent client holds up nobody else; a failed
//! one is logged with the peer and rustls' reason (`UnknownCA`, `peer sent no
//! certificates`), so an operator can tell which side is misconfigured.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::Router;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tongban_runtime::process::shutdown::ShutdownSignal;

use super::{config::TlsSettings, error::ReferenceError};

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> ReferenceError {
    ReferenceError::Tls {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ReferenceError> {
    let pem = std::fs::read(path).map_err(|e| tls_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The server's TLS configuration from its files; each error names the file at fault.
pub fn server_tls(settings: &TlsSettings) -> Result<Arc<ServerConfig>, ReferenceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&settings.cert)?;
    let key_pem = std::fs::read(&settings.key).map_err(|e| tls_error(&settings.key, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| tls_error(&settings.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&settings.cert, e))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| tls_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        tls_error(
            &settings.key,
            format!(
                "does not fit the certificate {}: {e}",
                settings.cert.display()
            ),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An axum listener yielding handshaken TLS connections.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` until `shutdown`, handshaking each connection in a task.
    pub fn spawn(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: ShutdownSignal,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            let stop = shutdown.wait();
            tokio::pin!(stop);
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = &mut stop => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of descriptors, say: wait rather than spin.
                            tracing::warn!(%error, "accepting a connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended at shutdown; axum stops accepting then too.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` on `listener` until `shutdown`: over TLS with `tls`, plain HTTP
/// without (development). In-flight requests finish first.
pub async fn serve_router(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.wait())
                .await
        }
        Some(config) => {
            let listener = TlsListener::spawn(listener, config, shutdown.clone())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.wait())
                .await
        }
    }
}
