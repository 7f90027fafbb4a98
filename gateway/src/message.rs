//! A relayed message body, holding no more than the call is charged for.
//!
//! Almost every message comes in one DATA frame: that chunk is kept as it came and
//! charged its length, with no copy and no allocation. A message in several frames
//! keeps up to [`MAX_CHUNKS`] of them as they came, each charged its length and
//! [`CHUNK_OVERHEAD`], and leaves in as many frames; frames smaller than that overhead,
//! and all beyond the first [`MAX_CHUNKS`], are copied together into a buffer charged
//! its capacity. A message sent in 1-byte frames is thus one buffer of about its size,
//! not a 32-byte handle per byte each keeping h2's read buffer alive.

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};

use crate::error::GatewayError;

/// Something that buffered bytes are charged to while a message is read (an admitted
/// call's `crate::admission::Permit`).
pub trait Budget {
    fn charge(&mut self, bytes: usize) -> Result<(), GatewayError>;
}

/// No budget (tests, and reads the gateway bounds otherwise).
impl Budget for () {
    fn charge(&mut self, _: usize) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// Largest message relayed: gRPC's default 4 MiB limit (which nodes enforce too) plus
/// the 5-byte frame header.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 5;

/// Chunks a message holds at most, the first included: a large message in a few large
/// frames is relayed without a copy, and no message holds more handles than this.
const MAX_CHUNKS: usize = 16;

/// Charged for each chunk kept after the first, beside its length. A chunk is a slice
/// of the buffer h2 read it into and keeps that whole buffer alive: 8 KiB is that
/// buffer's usual size (tokio-util's `FramedRead` starts there), far more than the
/// chunk's 32-byte handle. A smaller chunk costs less to copy than to keep. (The first
/// chunk, one per call, is bounded by the call limits with the rest of the call.)
const CHUNK_OVERHEAD: usize = 8 * 1024;

/// First capacity of the buffer small chunks are copied into; it then doubles, so the
/// copying stays linear and the capacity within twice what it holds.
const FIRST_JOINED: usize = 4 * 1024;

/// The DATA of one stream, whole.
#[derive(Debug, Default)]
pub struct Message {
    first: Bytes,
    /// Only allocated when a message spans several frames (boxed: the usual message
    /// moves 8 bytes for it).
    rest: Option<Box<Rest>>,
}

/// What came after the first chunk, in order: `kept`, then `joined`.
#[derive(Debug, Default)]
struct Rest {
    /// Chunks as they came, and earlier runs of `joined`.
    kept: Vec<Bytes>,
    /// Small chunks since the last one kept, copied together.
    joined: BytesMut,
}

/// Why a message could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error(transparent)]
    Broken(#[from] h2::Error),
    /// The gateway's admission refused to buffer more.
    #[error(transparent)]
    Refused(GatewayError),
}

impl From<Bytes> for Message {
    fn from(first: Bytes) -> Self {
        Self { first, rest: None }
    }
}

impl Message {
    /// Reads a stream's DATA to its end, up to [`MAX_MESSAGE`] bytes, what each chunk
    /// holds charged to `budget` before it is kept. Each chunk's window is handed back
    /// as it is read, so the connection keeps flowing for other calls.
    pub async fn read(body: &mut RecvStream, budget: &mut impl Budget) -> Result<Self, ReadError> {
        let mut message = Self::default();
        let mut total = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            total += chunk.len();
            if total > MAX_MESSAGE {
                return Err(ReadError::TooLarge);
            }
            if message.first.is_empty() {
                budget.charge(chunk.len()).map_err(ReadError::Refused)?;
                message.first = chunk;
            } else if !chunk.is_empty() {
                message.push(chunk, budget).map_err(ReadError::Refused)?;
            }
        }
        Ok(message)
    }

    /// Adds a chunk after the first.
    fn push(&mut self, chunk: Bytes, budget: &mut impl Budget) -> Result<(), GatewayError> {
        let rest = match &mut self.rest {
            Some(rest) => rest,
            None => {
                budget.charge(size_of::<Rest>())?;
                self.rest.insert(Box::default())
            }
        };
        rest.push(chunk, budget)
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The whole message as one buffer: free for the usual single chunk, a copy for a
    /// message that came in several frames (decoded calls only; relays send the chunks).
    pub fn contiguous(&self) -> Bytes {
        let Some(rest) = &self.rest else {
            return self.first.clone();
        };
        let len = rest.kept.iter().map(Bytes::len).sum::<usize>() + rest.joined.len();
        let mut all = Vec::with_capacity(self.first.len() + len);
        all.extend_from_slice(&self.first);
        for chunk in &rest.kept {
            all.extend_from_slice(chunk);
        }
        all.extend_from_slice(&rest.joined);
        Bytes::from(all)
    }

    /// Queues the chunks on `stream`, the last one ending it if `end_stream`. Queued
    /// without waiting for window: the message is bounded by [`MAX_MESSAGE`], windows
    /// are large, and h2 sends as they open.
    pub fn send(self, stream: &mut SendStream<Bytes>, end_stream: bool) -> Result<(), h2::Error> {
        let Self { first, rest } = self;
        let Some(rest) = rest else {
            return stream.send_data(first, end_stream);
        };
        let Rest { kept, joined } = *rest;
        let joined = (!joined.is_empty()).then(|| joined.freeze());
        let mut chunks = std::iter::once(first).chain(kept).chain(joined).peekable();
        while let Some(chunk) = chunks.next() {
            stream.send_data(chunk, end_stream && chunks.peek().is_none())?;
        }
        Ok(())
    }
}

impl Rest {
    /// Chunks held, the message's first included.
    fn chunks(&self) -> usize {
        1 + self.kept.len() + usize::from(!self.joined.is_empty())
    }

    /// Keeps `chunk` as it came if it is large and the message holds few chunks (the
    /// joined run before it then kept as one), else copies it onto `joined`.
    fn push(&mut self, chunk: Bytes, budget: &mut impl Budget) -> Result<(), GatewayError> {
        // Kept, the count grows by one: the joined run, if any, turns into a kept chunk.
        if chunk.len() >= CHUNK_OVERHEAD && self.chunks() < MAX_CHUNKS {
            let run = !self.joined.is_empty();
            // The run's capacity is charged already; its handle is kept as a chunk's.
            budget.charge(chunk.len() + CHUNK_OVERHEAD * (1 + usize::from(run)))?;
            if run {
                self.kept.push(std::mem::take(&mut self.joined).freeze());
            }
            self.kept.push(chunk);
            return Ok(());
        }
        let needed = self.joined.len() + chunk.len();
        let capacity = self.joined.capacity();
        if needed > capacity {
            // `read` stops a message at MAX_MESSAGE, so no buffer grows past it.
            let grown = needed.max((2 * capacity).clamp(FIRST_JOINED, MAX_MESSAGE));
            budget.charge(grown - capacity)?;
            // Allocated at exactly the size charged; the old buffer goes.
            let mut joined = BytesMut::with_capacity(grown);
            joined.extend_from_slice(&self.joined);
            self.joined = joined;
        }
        // Copied: the slice, and the read buffer behind it, are let go.
        self.joined.extend_from_slice(&chunk);
        Ok(())
    }
}

#[cfg(test)]
impl Message {
    /// Chunks held.
    fn chunks(&self) -> usize {
        self.rest.as_ref().map_or(1, |rest| rest.chunks())
    }

    /// Bytes held, as far as they can be seen: the chunks' lengths, the joined buffer's
    /// capacity, the handles and the box (not the read buffers chunks are slices of:
    /// [`CHUNK_OVERHEAD`] stands for those).
    fn held(&self) -> usize {
        self.first.len()
            + self.rest.as_ref().map_or(0, |rest| {
                size_of::<Rest>()
                    + rest.kept.capacity() * size_of::<Bytes>()
                    + rest.kept.iter().map(Bytes::len).sum::<usize>()
                    + rest.joined.capacity()
            })
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// A budget that counts what it is charged, refusing past `refuse_over`.
    #[derive(Debug, Default)]
    struct Counted {
        charged: usize,
        refuse_over: Option<usize>,
    }

    impl Budget for Counted {
        fn charge(&mut self, bytes: usize) -> Result<(), GatewayError> {
            self.charged += bytes;
            match self.refuse_over {
                Some(limit) if self.charged > limit => {
                    Err(GatewayError::Overloaded("budget used up".into()))
                }
                _ => Ok(()),
            }
        }
    }

    /// What the echo server held of a message it read whole.
    #[derive(Debug)]
    struct Seen {
        chunks: usize,
        held: usize,
        charged: usize,
    }

    /// Runs an h2 server over an in-memory pipe that reads each request as a [`Message`]
    /// charged to a `budget()` and echoes it back (413 when too large, 429 when
    /// refused); returns a client for it and what it held of each message.
    async fn echo_server(
        budget: fn() -> Counted,
    ) -> (
        h2::client::SendRequest<Bytes>,
        mpsc::UnboundedReceiver<Seen>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let (seen, held) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // h2's guard against small frames piling up unread is off: these tests are
            // of what a message holds once read.
            let mut connection = h2::server::Builder::new()
                .data_frame_budget(usize::MAX)
                .handshake(server_io)
                .await
                .unwrap();
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    let mut budget = budget();
                    let status = match Message::read(&mut body, &mut budget).await {
                        Ok(message) => {
                            let (chunks, held) = (message.chunks(), message.held());
                            let charged = budget.charged;
                            seen.send(Seen {
                                chunks,
                                held,
                                charged,
                            })
                            .unwrap();
                            let mut stream = respond
                                .send_response(http::Response::new(()), false)
                                .unwrap();
                            message.send(&mut stream, true).unwrap();
                            return;
                        }
                        Err(ReadError::TooLarge) => 413,
                        Err(ReadError::Refused(_)) => 429,
                        Err(e) => panic!("{e}"),
                    };
                    let response = http::Response::builder().status(status).body(()).unwrap();
                    respond.send_response(response, true).unwrap();
                });
            }
        });
        let (client, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        (client, held)
    }

    /// Sends `chunks` as a request, each a DATA frame of its own; the answer's status,
    /// body and chunks as read.
    async fn call(
        client: &mut h2::client::SendRequest<Bytes>,
        chunks: &[Bytes],
    ) -> (u16, Vec<u8>, usize) {
        let request = http::Request::post("http://node/echo").body(()).unwrap();
        let (response, mut stream) = client.send_request(request, false).unwrap();
        for chunk in chunks {
            stream.send_data(chunk.clone(), false).unwrap();
        }
        stream.send_data(Bytes::new(), true).unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let echoed = Message::read(&mut body, &mut ()).await.unwrap();
        (status, echoed.contiguous().to_vec(), echoed.chunks())
    }

    /// `payload` one byte per frame.
    fn one_byte_frames(payload: &Bytes) -> Vec<Bytes> {
        (0..payload.len()).map(|i| payload.slice(i..=i)).collect()
    }

    #[tokio::test]
    async fn a_message_in_many_frames_is_relayed_whole_and_in_order() {
        let (mut client, _seen) = echo_server(Counted::default).await;
        let chunks: Vec<Bytes> = (0u8..5)
            .map(|i| Bytes::from(vec![i; 10_000 + usize::from(i)]))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let (status, echoed, frames) = call(&mut client, &chunks).await;
        assert_eq!(status, 200);
        assert_eq!(echoed, expected);
        assert!(frames > 1, "the echo kept the frames apart: {frames}");

        // One frame stays one chunk (the path of almost every call).
        let (_, echoed, frames) = call(&mut client, &[Bytes::from_static(b"one")]).await;
        assert_eq!((echoed.as_slice(), frames), (b"one".as_slice(), 1));
    }

    #[tokio::test]
    async fn a_message_in_one_byte_frames_holds_about_what_it_is_charged() {
        let (mut client, mut seen) = echo_server(Counted::default).await;
        let payload: Bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (status, echoed, _) = call(&mut client, &one_byte_frames(&payload)).await;
        assert_eq!(status, 200);
        assert_eq!(echoed, payload, "relayed whole and in order");
        let seen = seen.recv().await.unwrap();
        assert!(seen.chunks <= 2, "100,000 frames held as {seen:?}");
        assert!(seen.charged >= seen.held, "{seen:?}");
        assert!(seen.charged <= 2 * payload.len() + FIRST_JOINED, "{seen:?}");
    }

    #[tokio::test]
    async fn large_and_small_frames_mixed_keep_their_order_within_the_chunk_bound() {
        let (mut client, mut seen) = echo_server(Counted::default).await;
        // Large frames kept, the small ones between them joined into runs, until the
        // bound; then everything is joined.
        let mut chunks = Vec::new();
        for i in 0..40u8 {
            chunks.push(Bytes::from(vec![i; CHUNK_OVERHEAD + usize::from(i)]));
            chunks.extend((0..3).map(|j| Bytes::from(vec![i ^ j; 1 + usize::from(j)])));
        }
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let (status, echoed, _) = call(&mut client, &chunks).await;
        assert_eq!(status, 200);
        assert_eq!(echoed, expected);
        let seen = seen.recv().await.unwrap();
        assert_eq!(seen.chunks, MAX_CHUNKS, "{seen:?}");
        assert!(seen.charged >= seen.held, "{seen:?}");
        let bound = 2 * expected.len() + MAX_CHUNKS * CHUNK_OVERHEAD + FIRST_JOINED;
        assert!(seen.charged <= bound, "{seen:?}");
    }

    #[tokio::test]
    async fn a_budget_that_refuses_mid_message_refuses_the_read() {
        let (mut client, mut seen) = echo_server(|| Counted {
            charged: 0,
            refuse_over: Some(50_000),
        })
        .await;
        let payload = Bytes::from(vec![3u8; 100_000]);
        let (status, _, _) = call(&mut client, &one_byte_frames(&payload)).await;
        assert_eq!(status, 429);
        // Within the budget, a message is read whole.
        let (status, echoed, _) =
            call(&mut client, &one_byte_frames(&payload.slice(..20_000))).await;
        assert_eq!((status, echoed.len()), (200, 20_000));
        assert!(seen.recv().await.unwrap().charged <= 50_000);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused() {
        let (mut client, _seen) = echo_server(Counted::default).await;
        let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
        let mut chunks = vec![chunk; 4];
        chunks.push(Bytes::from_static(&[0; 6]));
        let (status, _, _) = call(&mut client, &chunks).await;
        assert_eq!(status, 413);
        // Exactly the limit passes.
        chunks.pop();
        chunks.push(Bytes::from_static(&[0; 5]));
        let (status, echoed, _) = call(&mut client, &chunks).await;
        assert_eq!((status, echoed.len()), (200, MAX_MESSAGE));
    }
}
