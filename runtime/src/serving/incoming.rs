//! The accept loop for federation listeners: TCP accept, TLS 1.3 handshake with a
//! required client certificate, and the peer's identity read once per connection.
//!
//! tonic's own TLS listener cannot take CRLs or a hot-swapped configuration and would
//! re-parse the certificate on every request; this loop does the handshake itself and
//! hands tonic a stream whose `ConnectInfo` is the parsed [`PeerInfo`], which tonic puts
//! into every request's extensions.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::{
    trust::identity::PeerIdentity,
    trust::revocation::{Guarded, Revoked, serial_of},
};

/// What the server knows about the peer of a connection; in every request's extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    pub identity: PeerIdentity,
}

/// A TLS connection whose client certificate was verified and names a federation identity.
pub struct AuthenticatedStream {
    inner: Guarded<TlsStream<TcpStream>>,
    info: PeerInfo,
}

impl AuthenticatedStream {
    /// The verified peer of this connection.
    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Handshakes a listener runs at once unless configured otherwise.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// Accepts connections on `listener` until the returned stream is dropped. Handshakes
/// run concurrently (a slow or hostile client cannot stall the accept loop), at most
/// `max_handshakes` at once (a TCP connection beyond is closed at once, so
/// unauthenticated clients cannot pile up tasks), and are cut off after
/// `handshake_timeout`. The current TLS configuration is read from `config` for
/// each new connection, so certificates can be swapped without a restart; each
/// connection is closed as soon as `revoked` names its peer's certificate.
pub fn authenticated_incoming(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    revoked: watch::Receiver<Arc<Revoked>>,
    handshake_timeout: Duration,
    max_handshakes: usize,
) -> ReceiverStream<io::Result<AuthenticatedStream>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(max_handshakes.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%remote_addr, "connection closed: too many handshakes in progress");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.borrow().clone());
            let tx = tx.clone();
            let revoked = revoked.clone();
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(
                    handshake_timeout,
                    handshake(acceptor, tcp, remote_addr, revoked),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(reason)) => {
                        tracing::debug!(%remote_addr, %reason, "connection refused at handshake");
                    }
                    Err(_) => tracing::debug!(%remote_addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    revoked: watch::Receiver<Arc<Revoked>>,
) -> Result<AuthenticatedStream, String> {
    let stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or("no client certificate")?;
    let identity = PeerIdentity::from_certificate(leaf).map_err(|e| e.to_string())?;
    let serial = serial_of(leaf).ok_or("the client certificate does not parse")?;
    Ok(AuthenticatedStream {
        inner: Guarded::new(stream, serial, revoked),
        info: PeerInfo {
            remote_addr,
            identity,
        },
    })
}
