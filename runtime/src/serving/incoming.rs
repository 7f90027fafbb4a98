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

use rustls::{ServerConfig, server::Acceptor};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    time::{Instant, timeout_at},
};
use tokio_rustls::{LazyConfigAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

pub use crate::serving::handshakes::{DEFAULT_MAX_HANDSHAKES, HandshakeLimits};
use crate::{
    serving::handshakes::{Ended, Slots, count},
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

/// Accepts connections on `listener` until the returned stream is dropped, with
/// `handshake_timeout` and `max_handshakes` as given and the other
/// [`HandshakeLimits`] at their defaults; see [`authenticated_incoming_with_limits`].
pub fn authenticated_incoming(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    revoked: watch::Receiver<Arc<Revoked>>,
    handshake_timeout: Duration,
    max_handshakes: usize,
) -> ReceiverStream<io::Result<AuthenticatedStream>> {
    authenticated_incoming_with_limits(
        listener,
        config,
        revoked,
        HandshakeLimits::new(handshake_timeout, max_handshakes),
    )
}

/// Accepts connections on `listener` until the returned stream is dropped. Handshakes
/// run concurrently (a slow or hostile client cannot stall the accept loop), each
/// holding a slot of the listener's and one of its source address's: a TCP connection
/// beyond `limits.max_pending`, or beyond `limits.max_pending_per_source` from its
/// source, is closed at once, so unauthenticated clients cannot pile up tasks and one
/// host cannot keep everyone else out. A connection must send its whole ClientHello
/// within `limits.client_hello_timeout` and finish the handshake within
/// `limits.timeout`, both from the accept. The current TLS configuration is read
/// from `config` for each new connection, so certificates can be swapped without a
/// restart; each connection is closed as soon as `revoked` names its peer's
/// certificate. How each handshake ended is counted ([`handshake_counts`]).
///
/// [`handshake_counts`]: crate::serving::handshakes::handshake_counts
pub fn authenticated_incoming_with_limits(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    revoked: watch::Receiver<Arc<Revoked>>,
    limits: HandshakeLimits,
) -> ReceiverStream<io::Result<AuthenticatedStream>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Slots::new(&limits);
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
            // Dropping `tcp` closes it: nothing is read from or spent on it.
            let slot = match slots.take(remote_addr.ip()) {
                Ok(slot) => slot,
                Err(refused) => {
                    count(refused);
                    tracing::debug!(%remote_addr, outcome = refused.label(), "connection closed on arrival");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tx, config, revoked) = (tx.clone(), config.clone(), revoked.clone());
            tokio::spawn(async move {
                // Held until the connection is handed on or closed, panics included.
                let _slot = slot;
                match handshake(config, tcp, remote_addr, revoked, &limits).await {
                    Ok(stream) => {
                        count(Ended::Completed);
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Err((ended, reason)) => {
                        count(ended);
                        tracing::debug!(%remote_addr, outcome = ended.label(), %reason, "connection refused at handshake");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS handshake and the peer's identity. The ClientHello is read whole by
/// rustls' `Acceptor` (tokio-rustls' `LazyConfigAcceptor`: TLS records read and
/// reassembled until the ClientHello parses, a fatal alert on anything else) before
/// the first deadline; the TLS configuration in force is taken once it has arrived.
async fn handshake(
    config: watch::Receiver<Arc<ServerConfig>>,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    revoked: watch::Receiver<Arc<Revoked>>,
    limits: &HandshakeLimits,
) -> Result<AuthenticatedStream, (Ended, String)> {
    let failed = |e: io::Error| (Ended::Failed, e.to_string());
    let accepted = Instant::now();
    let deadline = accepted + limits.timeout;
    let hello_deadline = deadline.min(accepted + limits.client_hello_timeout);
    let hello = LazyConfigAcceptor::new(Acceptor::default(), tcp);
    let start = timeout_at(hello_deadline, hello)
        .await
        .map_err(|_| {
            (
                Ended::ClientHelloTimeout,
                "no ClientHello in time".to_owned(),
            )
        })?
        .map_err(failed)?;
    let server_config = config.borrow().clone();
    let stream = timeout_at(deadline, start.into_stream(server_config))
        .await
        .map_err(|_| {
            (
                Ended::HandshakeTimeout,
                "handshake not finished in time".to_owned(),
            )
        })?
        .map_err(failed)?;
    let refused = |reason: String| (Ended::Failed, reason);
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or_else(|| refused("no client certificate".to_owned()))?;
    let identity = PeerIdentity::from_certificate(leaf).map_err(|e| refused(e.to_string()))?;
    let serial = serial_of(leaf)
        .ok_or_else(|| refused("the client certificate does not parse".to_owned()))?;
    Ok(AuthenticatedStream {
        inner: Guarded::new(stream, serial, revoked),
        info: PeerInfo {
            remote_addr,
            identity,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::trust::{
        pki::{DevCa, write_leaf},
        tls::TlsFiles,
    };

    /// A ClientHello begun and never finished holds its slot only until the ClientHello
    /// timeout, not the whole handshake timeout.
    #[tokio::test]
    async fn a_client_hello_never_finished_is_cut_off_at_its_own_timeout() {
        crate::trust::tls::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("tongban-incoming-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = DevCa::generate("test CA").unwrap();
        let leaf = ca
            .issue(&PeerIdentity::Gateway, Duration::from_secs(3600))
            .unwrap();
        let (cert, key) = write_leaf(&dir, &PeerIdentity::Gateway, &leaf).unwrap();
        ca.write(&dir).unwrap();
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert,
            key,
            crl: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_keep, config) = watch::channel(files.server_config().unwrap());
        let _incoming = authenticated_incoming_with_limits(
            listener,
            config,
            watch::channel(Default::default()).1,
            HandshakeLimits {
                timeout: Duration::from_secs(10),
                client_hello_timeout: Duration::from_millis(300),
                max_pending: 4,
                max_pending_per_source: 4,
            },
        );
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A handshake record announcing 512 bytes, of which the first few arrive.
        tcp.write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
        let t0 = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "not closed within 5 s: {read:?}"
        );
        let after = t0.elapsed();
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(3),
            "closed after {after:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
