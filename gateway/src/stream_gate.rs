//! Whether a connection takes its next stream now: the HTTP/2-level half of admission
//! (`Admission::defers`). An origin over its share of a congested gateway is slowed by
//! its own calls rather than answered faster: its connection stops taking new streams
//! (they wait in h2, bounded by `max_concurrent_streams`) while the connection is still
//! driven, so answers go out and frames come in. Holding is not free: h2 buffers what
//! the waiting streams send, up to the connection's window, so that window is charged
//! to the origin's bytes while it holds; when the budget or the origin's share of it
//! refuses, its streams are reset with REFUSED_STREAM instead (the caller knows they
//! were never processed). A greedy caller that retries refusals at once would spin
//! through refusals; one whose streams wait cannot.

use std::{pin::Pin, sync::Arc, task::Poll, time::Duration};

use bytes::Bytes;
use h2::{RecvStream, server::SendResponse};
use http::Request;
use tokio::time::{Instant, Sleep};
use tongban_runtime::trust::{identity::PeerIdentity, tls::CONNECTION_WINDOW};

use crate::admission::{Admission, BytesHeld};

/// How often a holding connection looks again (its own calls finishing wake it sooner;
/// the allowances change every 50 ms window).
const RECHECK: Duration = Duration::from_millis(10);

/// What to do with the connection's next stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    Accept,
    /// Leave new streams waiting in h2.
    Hold,
    /// Accept and reset each with REFUSED_STREAM.
    Refuse,
}

/// One connection's gate.
pub struct StreamGate {
    admission: Arc<Admission>,
    /// The caller's province slot; none for callers that are not regions.
    slot: Option<usize>,
    /// The window charged while holding.
    held: Option<BytesHeld>,
    recheck: Pin<Box<Sleep>>,
}

impl StreamGate {
    pub fn new(admission: Arc<Admission>, identity: &PeerIdentity) -> Self {
        Self {
            admission,
            slot: Admission::slot_of_identity(identity),
            held: None,
            recheck: Box::pin(tokio::time::sleep(RECHECK)),
        }
    }

    /// What to do with the next stream now; a draining connection takes all it gets
    /// (its last streams are those the GOAWAY covers).
    pub fn decide(&mut self, draining: bool) -> Take {
        let Some(slot) = self.slot else {
            return Take::Accept;
        };
        if draining || !self.admission.defers(slot) {
            self.held = None;
            return Take::Accept;
        }
        if self.held.is_none() {
            match self
                .admission
                .reserve_bytes(slot, CONNECTION_WINDOW as usize)
            {
                Some(held) => {
                    self.held = Some(held);
                    self.admission.held_connection(slot);
                    self.recheck.as_mut().reset(Instant::now() + RECHECK);
                }
                None => return Take::Refuse,
            }
        }
        Take::Hold
    }

    /// Handles a stream the connection accepted: counted against the origin's window;
    /// refused (false) when `take` says so.
    pub fn admit(&self, take: Take, respond: &mut SendResponse<Bytes>) -> bool {
        let Some(slot) = self.slot else {
            return true;
        };
        if take == Take::Refuse {
            self.admission.refused_stream(slot);
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            return false;
        }
        self.admission.started(slot);
        true
    }

    /// Ready when a holding connection should look again.
    pub async fn recheck(&mut self) {
        self.recheck.as_mut().await;
        self.recheck.as_mut().reset(Instant::now() + RECHECK);
    }
}

/// The connection's next stream; while holding, none: the connection is only driven
/// (frames read and written) and new streams stay queued in h2.
pub async fn next_stream<T>(
    connection: &mut h2::server::Connection<T, Bytes>,
    take: Take,
) -> Option<Result<(Request<RecvStream>, SendResponse<Bytes>), h2::Error>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    std::future::poll_fn(|cx| {
        if take == Take::Hold {
            return match connection.poll_closed(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(None),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                Poll::Pending => Poll::Pending,
            };
        }
        connection.poll_accept(cx)
    })
    .await
}
