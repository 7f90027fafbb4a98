//! A relayed message body as it arrived: its DATA chunks, never copied together. A
//! message that came in several frames leaves in as many; almost all come in one.

use bytes::Bytes;
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

/// The DATA of one stream, whole.
#[derive(Debug, Default)]
pub struct Message {
    first: Bytes,
    /// Only allocated when a message spans several frames.
    rest: Vec<Bytes>,
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
        Self {
            first,
            rest: Vec::new(),
        }
    }
}

impl Message {
    /// Reads a stream's DATA to its end, up to [`MAX_MESSAGE`] bytes, each chunk charged
    /// to `budget` before it is kept. Each chunk's window is handed back as it is read,
    /// so the connection keeps flowing for other calls.
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
            budget.charge(chunk.len()).map_err(ReadError::Refused)?;
            if message.first.is_empty() {
                message.first = chunk;
            } else if !chunk.is_empty() {
                message.rest.push(chunk);
            }
        }
        Ok(message)
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The whole message as one buffer: free for the usual single chunk, a copy for a
    /// message that came in several frames (decoded calls only; relays never join).
    pub fn contiguous(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut all =
            Vec::with_capacity(self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>());
        all.extend_from_slice(&self.first);
        for chunk in &self.rest {
            all.extend_from_slice(chunk);
        }
        Bytes::from(all)
    }

    /// Queues the chunks on `stream`, the last one ending it if `end_stream`. Queued
    /// without waiting for window: the message is bounded by [`MAX_MESSAGE`], windows
    /// are large, and h2 sends as they open.
    pub fn send(self, stream: &mut SendStream<Bytes>, end_stream: bool) -> Result<(), h2::Error> {
        let Self { first, rest } = self;
        if rest.is_empty() {
            return stream.send_data(first, end_stream);
        }
        stream.send_data(first, false)?;
        let last = rest.len() - 1;
        for (i, chunk) in rest.into_iter().enumerate() {
            stream.send_data(chunk, end_stream && i == last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an h2 server over an in-memory pipe that reads each request as a [`Message`]
    /// and echoes it back; returns a client for it.
    async fn echo_server() -> h2::client::SendRequest<Bytes> {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.unwrap();
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    match Message::read(&mut body, &mut ()).await {
                        Ok(message) => {
                            let mut stream = respond
                                .send_response(http::Response::new(()), false)
                                .unwrap();
                            message.send(&mut stream, true).unwrap();
                        }
                        Err(ReadError::TooLarge) => {
                            let response = http::Response::builder().status(413).body(()).unwrap();
                            respond.send_response(response, true).unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                });
            }
        });
        let (client, connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(connection);
        client
    }

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
        let frames = 1 + echoed.rest.len();
        let mut bytes = echoed.first.to_vec();
        for chunk in &echoed.rest {
            bytes.extend_from_slice(chunk);
        }
        (status, bytes, frames)
    }

    #[tokio::test]
    async fn a_message_in_many_frames_is_relayed_whole_and_in_order() {
        let mut client = echo_server().await;
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
    async fn a_message_over_the_limit_is_refused() {
        let mut client = echo_server().await;
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
