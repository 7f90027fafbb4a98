//! Revoked certificates: the serials the federation CA's revocation lists name, and the
//! guard that closes a connection once its peer's certificate is among them.
//!
//! New handshakes are refused by rustls itself (the verifiers are built with the same
//! lists, see [`crate::trust::tls`]). A connection opened before the revocation would live on,
//! so each one is wrapped in a [`Guarded`] stream: when a reload publishes new lists
//! that name its peer, the stream fails its next read or write at once (a watcher task
//! wakes an idle one), and the HTTP/2 connection above it ends.

use std::{
    collections::HashSet,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use rustls::pki_types::CertificateRevocationListDer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{oneshot, watch},
};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// Certificate serials revoked by the lists in force (one federation CA issues every
/// certificate, so the serial alone names one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    serials: HashSet<Vec<u8>>,
}

/// A serial as comparable bytes: DER integers may carry a leading zero byte.
fn normal(serial: &[u8]) -> Vec<u8> {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    serial[start..].to_vec()
}

impl Revoked {
    /// The serials of `lists` (already checked to be well formed).
    pub fn from_lists(lists: &[CertificateRevocationListDer<'_>]) -> Result<Self, String> {
        let mut serials = HashSet::new();
        for (i, der) in lists.iter().enumerate() {
            let (_, list) = CertificateRevocationList::from_der(der.as_ref())
                .map_err(|e| format!("revocation list {}: {e}", i + 1))?;
            serials.extend(
                list.iter_revoked_certificates()
                    .map(|r| normal(r.raw_serial())),
            );
        }
        Ok(Self { serials })
    }

    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    /// Whether the certificate with this serial is revoked.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.serials.contains(&normal(serial))
    }
}

/// The serial of a DER certificate, if it parses.
pub fn serial_of(certificate: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(certificate)
        .ok()
        .map(|(_, cert)| normal(cert.raw_serial()))
}

/// What the stream and its watcher share.
#[derive(Debug, Default)]
struct Verdict {
    revoked: AtomicBool,
    /// The task last blocked on the stream, woken when the verdict changes.
    waker: AtomicWaker,
}

/// A connection stream that fails once its peer's certificate is revoked.
pub struct Guarded<S> {
    inner: S,
    verdict: Arc<Verdict>,
    /// Dropped with the stream, which ends its watcher.
    _closed: oneshot::Sender<()>,
}

impl<S> Guarded<S> {
    /// Wraps `inner`, whose peer presented the certificate with `serial`, and watches
    /// `revoked` for as long as the stream lives.
    pub fn new(inner: S, serial: Vec<u8>, mut revoked: watch::Receiver<Arc<Revoked>>) -> Self {
        let verdict = Arc::new(Verdict::default());
        let (closed_tx, mut closed) = oneshot::channel::<()>();
        let shared = verdict.clone();
        let check = move |list: &Revoked| {
            if list.contains(&serial) {
                shared.revoked.store(true, Ordering::Release);
                shared.waker.wake();
                true
            } else {
                false
            }
        };
        if !check(&revoked.borrow_and_update()) {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut closed => break,
                        changed = revoked.changed() => {
                            if changed.is_err() || check(&revoked.borrow_and_update()) {
                                break;
                            }
                        }
                    }
                }
            });
        }
        Self {
            inner,
            verdict,
            _closed: closed_tx,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `Err` once the peer is revoked. Reads register the task to be woken if it
    /// becomes so (a connection's task always has a read pending, idle or not);
    /// writes only look, sparing the hot path a second registration per frame.
    fn check(&self, wake: Option<&Context<'_>>) -> io::Result<()> {
        if let Some(cx) = wake {
            self.verdict.waker.register(cx.waker());
        }
        if self.verdict.revoked.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the peer's certificate has been revoked",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(Some(cx))?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(None)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(None)?;
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
