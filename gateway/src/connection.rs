//! The federation listener's HTTP/2 server. Every authenticated connection is served
//! with `h2` directly: relayed calls (`/tongban.federation.v1.Gateway/*`) run inside the
//! connection's own task; the other gRPC services (catalog, health, reflection) go
//! through tonic's router, once `authorize` admits them. Who may call what is decided
//! there, not here.
//!
//! Deliberately not tonic's server: it runs each call as a task of its own behind
//! several tower layers and body adapters — about a sixth of the instructions of a
//! relayed call under callgrind — and the answer then waits for another task turn to be
//! written. Here the connection's task queues the answer and writes it in the same turn.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::{
    RecvStream,
    server::{self, SendResponse},
};
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame};
use tokio::task::JoinSet;
use tongban_runtime::{
    process::shutdown::ShutdownSignal,
    serving::incoming::{AuthenticatedStream, PeerInfo},
    trust::identity::PeerIdentity,
    trust::tls::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW},
};
use tower::ServiceExt;

use crate::{
    answer::Answer,
    authorize,
    call::{Body, Call},
    coalesced_writes::CoalescedWrites,
    keepalive::keepalive,
    membership::removed,
    methods,
    relay::Relay,
    stream_gate::{StreamGate, Take, next_stream},
};

/// HTTP/2 limits and timers of the federation listener.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Streams a peer may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Largest header block accepted (gRPC metadata included).
    pub max_header_list_size: u32,
    /// Ping interval on every connection, and how long a ping may go unanswered.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After shutdown is signalled, how long open calls may take to finish.
    pub drain_timeout: Duration,
    /// Connections one identity may hold open; one more is closed on arrival.
    pub max_connections_per_identity: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            // Each stream may hold a 4 MiB message; this bounds a connection's share.
            max_concurrent_streams: 256,
            max_header_list_size: 64 * 1024,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            max_connections_per_identity: 32,
        }
    }
}

/// What a connection's streams are dispatched to.
pub struct Services {
    pub relay: Relay,
    /// Every other gRPC service of the listener.
    pub grpc: tonic::service::Routes,
}

type StreamTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A timer not meant to fire (until reset).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Serves connections from `incoming` until `shutdown` fires, then lets open calls
/// finish (GOAWAY, up to `drain_timeout`) and returns.
pub async fn serve<I>(
    mut incoming: I,
    services: Arc<Services>,
    settings: ServerSettings,
    shutdown: ShutdownSignal,
) where
    I: futures_util::Stream<Item = io::Result<AuthenticatedStream>> + Unpin,
{
    let settings = Arc::new(settings);
    let mut connections = JoinSet::new();
    // Open connections per identity; only this loop touches it.
    let mut open = OpenPerIdentity::default();
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            next = incoming.next() => match next {
                Some(Ok(stream)) => {
                    let identity = stream.peer().identity.clone();
                    if let Err(count) = open.admit(&identity, settings.max_connections_per_identity) {
                        tracing::warn!(
                            %identity,
                            open = count,
                            remote = %stream.peer().remote_addr,
                            "connection closed: this identity has the most connections allowed"
                        );
                        continue;
                    }
                    let serve = serve_connection(
                        stream,
                        services.clone(),
                        settings.clone(),
                        shutdown.clone(),
                    );
                    let task = connections.spawn(serve);
                    open.spawned(task.id(), identity);
                }
                Some(Err(error)) => tracing::debug!(%error, "incoming connection failed"),
                None => break,
            },
            // Reap finished connections so the set does not grow; a connection task
            // that panicked gives its identity's slot back like one that returned.
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let task = match &done {
                    Ok((task, ())) => *task,
                    Err(error) => error.id(),
                };
                open.ended(task);
            }
        }
    }
    drop(incoming);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "calls still open after the drain timeout; closing their connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Connections open per identity, by the task that serves each.
#[derive(Default)]
struct OpenPerIdentity {
    counts: HashMap<PeerIdentity, usize>,
    tasks: HashMap<tokio::task::Id, PeerIdentity>,
}

impl OpenPerIdentity {
    /// Counts a new connection of `identity`, or says how many it holds already when
    /// that is `max`.
    fn admit(&mut self, identity: &PeerIdentity, max: usize) -> Result<(), usize> {
        let count = self.counts.entry(identity.clone()).or_insert(0);
        if *count >= max {
            return Err(*count);
        }
        *count += 1;
        Ok(())
    }

    /// The connection just admitted is served by `task`.
    fn spawned(&mut self, task: tokio::task::Id, identity: PeerIdentity) {
        self.tasks.insert(task, identity);
    }

    /// `task` ended, however it ended: its identity's slot is given back.
    fn ended(&mut self, task: tokio::task::Id) {
        let Some(identity) = self.tasks.remove(&task) else {
            return;
        };
        if let Some(count) = self.counts.get_mut(&identity) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&identity);
            }
        }
    }
}

async fn serve_connection(
    stream: AuthenticatedStream,
    services: Arc<Services>,
    settings: Arc<ServerSettings>,
    shutdown: ShutdownSignal,
) {
    let peer = Arc::new(stream.peer().clone());
    // Taken before the handshake, so a reload during it is not missed.
    let removed = removed(&peer.identity, services.relay.registry_changes());
    tokio::pin!(removed);
    let cut_off = tokio::time::sleep(FAR);
    tokio::pin!(cut_off);
    let handshake = server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(settings.max_concurrent_streams)
        // A held connection's callers may give up on streams still waiting to be taken:
        // no reason to close the connection for that (h2's default is 20).
        .max_pending_accept_reset_streams(settings.max_concurrent_streams as usize)
        .max_header_list_size(settings.max_header_list_size)
        .handshake::<_, Bytes>(CoalescedWrites::new(stream));
    let mut connection = match tokio::time::timeout(settings.keepalive_timeout, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(remote = %peer.remote_addr, %error, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = %peer.remote_addr, "HTTP/2 handshake timed out");
            return;
        }
    };
    let keepalive = keepalive(
        connection.ping_pong(),
        settings.keepalive_interval,
        settings.keepalive_timeout,
    );
    tokio::pin!(keepalive);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut draining = false;
    let mut streams: FuturesUnordered<StreamTask> = FuturesUnordered::new();
    let mut gate = StreamGate::new(services.relay.admission().clone(), &peer.identity);
    loop {
        let take = gate.decide(draining);
        tokio::select! {
            // Calls first: an answer they queue is then written by the poll of the
            // connection below, in the same turn of this task.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            accepted = next_stream(&mut connection, take) => match accepted {
                Some(Ok((request, mut respond))) => {
                    if gate.admit(take, &mut respond) {
                        streams.push(dispatch(request, respond, &services, &peer));
                    }
                }
                Some(Err(error)) => {
                    if !error.is_go_away() && !error.is_io() {
                        tracing::debug!(remote = %peer.remote_addr, %error, "HTTP/2 connection error");
                    }
                    break;
                }
                // The peer closed, or the GOAWAY drain finished.
                None => break,
            },
            // The origin's share may have come back through its other connections.
            () = gate.recheck(), if take == Take::Hold => {}
            reason = &mut keepalive => {
                tracing::debug!(remote = %peer.remote_addr, %reason, "closing connection");
                break;
            }
            _ = &mut stop, if !draining => {
                draining = true;
                connection.graceful_shutdown();
            }
            // Calls in flight may finish (their routes were taken at their start) until
            // the drain timeout; a stream held open longer (a health watch) is cut.
            () = &mut removed, if !draining => {
                tracing::info!(identity = %peer.identity, remote = %peer.remote_addr, "closing connection: region removed from the registry");
                draining = true;
                connection.graceful_shutdown();
                cut_off.as_mut().reset(tokio::time::Instant::now() + settings.drain_timeout);
            }
            () = &mut cut_off => break,
        }
    }
}

/// Starts the handling of one stream.
fn dispatch(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    services: &Arc<Services>,
    peer: &Arc<PeerInfo>,
) -> StreamTask {
    let services = services.clone();
    let peer = peer.clone();
    if methods::is_gateway_service(request.uri().path()) {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let call = Call::from_request(parts, Body::Stream(body), peer);
            // Pinned where it is built: the relay's state is large, and moving it into
            // a wrapper cost more instructions than the rest of the call's own logic.
            let relay = std::pin::pin!(services.relay.handle(call));
            // A caller's reset drops the relay, which resets the call to the node too
            // (and audits it as abandoned).
            if let Some(answer) = unless_reset(|cx| respond.poll_reset(cx), relay).await {
                send_answer(respond, answer);
            }
        })
    } else {
        Box::pin(serve_grpc(request, respond, services, peer))
    }
}

/// Runs `work` unless the peer resets the stream first (`poll_reset` is ready); a reset
/// frees h2's stream slot at once, so work left running would no longer be bounded by
/// `max_concurrent_streams`.
async fn unless_reset<F: Future>(
    mut poll_reset: impl FnMut(&mut Context<'_>) -> Poll<Result<h2::Reason, h2::Error>>,
    mut work: Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Queues a whole answer: headers, data and trailers together.
fn send_answer(mut respond: SendResponse<Bytes>, answer: Answer) {
    let Answer {
        head,
        data,
        trailers,
    } = answer;
    let headers_only = data.is_empty() && trailers.is_none();
    // An error here means the caller reset the stream; there is no one to tell.
    let Ok(mut stream) = respond.send_response(Response::from_parts(head, ()), headers_only) else {
        return;
    };
    if headers_only {
        return;
    }
    match trailers {
        None => {
            let _ = data.send(&mut stream, true);
        }
        Some(trailers) => {
            if !data.is_empty() {
                let _ = data.send(&mut stream, false);
            }
            let _ = stream.send_trailers(trailers);
        }
    }
}

/// A non-relayed call, through tonic's router. Its answer may be a stream (health
/// watches, reflection), so it is sent as the caller's window allows, and dropped when
/// the caller resets.
async fn serve_grpc(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    services: Arc<Services>,
    peer: Arc<PeerInfo>,
) {
    let (mut parts, body) = request.into_parts();
    // The registry in force now, not held: a health watch may outlive a reload.
    let admitted =
        authorize::check_local_call(&peer.identity, parts.uri.path(), &services.relay.registry());
    if let Err(refusal) = admitted {
        send_answer(respond, Answer::from_status(refusal.to_status()));
        return;
    }
    parts.extensions.insert(PeerInfo::clone(&peer));
    let request = Request::from_parts(parts, tonic::body::Body::new(IncomingBody::new(body)));
    let call = std::pin::pin!(services.grpc.clone().oneshot(request));
    let Some(Ok(response)) = unless_reset(|cx| respond.poll_reset(cx), call).await else {
        return;
    };
    let (head, mut body) = response.into_parts();
    let end = body.is_end_stream();
    let Ok(mut stream) = respond.send_response(Response::from_parts(head, ()), end) else {
        return;
    };
    if end {
        return;
    }
    loop {
        let next = std::pin::pin!(std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)));
        let Some(frame) = unless_reset(|cx| stream.poll_reset(cx), next).await else {
            return;
        };
        match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "gRPC service body failed");
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send_within_window(&mut stream, data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                        return;
                    }
                }
            },
        }
    }
}

/// Sends `data` no faster than the caller's window opens, so a caller that stops reading
/// cannot make the gateway buffer a stream's output without bound.
async fn send_within_window(
    stream: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        // `poll_capacity` only reports increases, so use what is already assigned first.
        let mut window = stream.capacity();
        if window == 0 {
            window = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(window)) => window,
                Some(Err(e)) => return Err(e),
                // The stream can no longer send.
                None => return Ok(()),
            };
        }
        let chunk = data.split_to(window.min(data.len()));
        stream.send_data(chunk, false)?;
    }
    Ok(())
}

/// A request body read from an h2 stream, for tonic's services.
struct IncomingBody {
    inner: RecvStream,
    data_done: bool,
    done: bool,
}

impl IncomingBody {
    fn new(inner: RecvStream) -> Self {
        Self {
            inner,
            data_done: false,
            done: false,
        }
    }
}

impl HttpBody for IncomingBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match self.inner.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.inner.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let trailers: Poll<Result<Option<HeaderMap>, h2::Error>> = self.inner.poll_trailers(cx);
        match trailers {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.done = true;
                match result {
                    Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Ok(None) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection task that panics gives its identity's slot back (it used to keep
    /// it, until the identity could open no connection at all).
    #[tokio::test]
    async fn a_panicking_connection_task_gives_its_identity_slot_back() {
        let identity = PeerIdentity::Gateway;
        let mut open = OpenPerIdentity::default();
        let mut tasks = JoinSet::new();
        assert!(open.admit(&identity, 1).is_ok());
        let task = tasks.spawn(async { panic!("connection task fails") });
        open.spawned(task.id(), identity.clone());
        assert_eq!(open.admit(&identity, 1), Err(1));
        let Some(done) = tasks.join_next_with_id().await else {
            panic!("one task was spawned");
        };
        let id = match done {
            Ok((id, ())) => id,
            Err(error) => {
                assert!(error.is_panic());
                error.id()
            }
        };
        open.ended(id);
        assert!(open.admit(&identity, 1).is_ok(), "the slot came back");
    }
}
