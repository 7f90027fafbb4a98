//! One TLS record and one `writev` for everything h2 writes between two flushes, on
//! both kinds of connection (callers' and nodes').
//!
//! h2 copies a DATA frame's payload into its own write buffer when the payload is under
//! a threshold, and otherwise queues the payload and writes it at once (the buffer before
//! it, then the payload), flushing before it may buffer any other frame. The threshold
//! is 256 bytes when the transport says it writes vectored, as tokio-rustls does, and
//! 1,024 otherwise. Over tokio-rustls each of those writes is a TLS record of its own
//! and a system call: a gRPC message of 256 bytes (261 with its prefix) cost a record
//! and a `writev` per call on each side, where many calls' frames could have shared one.
//!
//! [`CoalescedWrites`] says it does not write vectored (so h2 copies payloads under
//! 1,024 bytes into its buffer and batches them with other streams' frames) and gathers
//! the separate writes h2 then makes into a [`BufWriter`], handed to TLS at h2's flush:
//! one record (up to TLS's 16 KiB) and one `writev`, at the cost of one extra copy of
//! bytes TLS is about to copy and encrypt anyway. A write as large as the buffer goes
//! straight through.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};

/// Holds h2's full write buffer (16 KiB) and a queued payload up to 16 KiB behind it.
const CAPACITY: usize = 32 * 1024;

/// A transport whose writes are gathered until flushed; see the module's notes.
#[derive(Debug)]
pub struct CoalescedWrites<S> {
    inner: BufWriter<S>,
}

impl<S: AsyncWrite> CoalescedWrites<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner: BufWriter::with_capacity(CAPACITY, inner),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // h2 reads this when the connection is made, to choose its threshold; tokio's
    // `poll_write_buf`, which h2 writes through, reads it per write and so never calls
    // `poll_write_vectored` (left at its default: the first non-empty slice).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn writes_reach_the_peer_only_at_flush_and_whole() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut near = CoalescedWrites::new(near);
        near.write_all(b"head").await.unwrap();
        near.write_all(&[7u8; 300]).await.unwrap();
        let mut got = [0u8; 304];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            far.read_exact(&mut got),
        )
        .await;
        assert!(
            early.is_err(),
            "nothing may reach the peer before the flush"
        );
        near.flush().await.unwrap();
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], b"head");
        assert!(got[4..].iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn a_write_larger_than_the_buffer_goes_through_whole() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut near = CoalescedWrites::new(near);
        let big = vec![3u8; CAPACITY * 3];
        near.write_all(b"x").await.unwrap();
        near.write_all(&big).await.unwrap();
        near.flush().await.unwrap();
        let mut got = vec![0u8; big.len() + 1];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], b'x');
        assert!(got[1..].iter().all(|b| *b == 3));
        assert!(!near.is_write_vectored());
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut near = CoalescedWrites::new(near);
        far.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        near.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
