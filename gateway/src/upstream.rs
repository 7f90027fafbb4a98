//! Connections to nodes: one mTLS HTTP/2 connection per node endpoint, opened on first
//! use, kept alive with pings, reopened after it fails, shared by every call and every
//! region prefix that routes to the node.
//!
//! Built on `h2` directly rather than tonic's `Channel`, deliberately: the channel sends
//! each call through a tower `Buffer` (a hop to its worker task and a wake-up per call),
//! and hyper's client pipes a request body from a task of its own, so HEADERS and DATA
//! leave in two writes. A relayed unary call has its whole body in hand; here it is
//! queued as HEADERS + DATA at once and the connection task writes both in one go. No
//! task is spawned per call; one per connection drives it.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::client::{self, SendRequest};
use http::{
    HeaderMap, Request, Response, Uri,
    uri::{Authority, PathAndQuery, Scheme},
};
use rustls::{ClientConfig, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tongban_runtime::{
    trust::connector::verify_server,
    trust::identity::PeerIdentity,
    trust::tls::{CONNECTION_WINDOW, ClientSettings, MAX_FRAME, STREAM_WINDOW},
};

use crate::{
    coalesced_writes::CoalescedWrites,
    ejection::{CallOutcome, Deadline},
    message::Message,
};

/// After failed connection attempts, calls to that endpoint fail at once (instead of
/// each waiting out a connect timeout) until the back-off passes; then the next call
/// tries again. The back-off doubles per consecutive failure, between these bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Back-off after `failures` consecutive failures, ±20 % so that gateways restarted
/// together do not reconnect in lockstep.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    let base = BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX);
    // Jitter from the clock's nanoseconds: spreading retries needs no better randomness.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
    base.mul_f64(jitter)
}

/// Calls in a row that an endpoint fails (a transport error, or no answer by the call's
/// deadline: `crate::ejection`, never a caller's own reset) before it is ejected: calls
/// skip it (or, if it is the region's only one, fail at once) for a back-off that grows
/// with each ejection in a row. Then it is on probation: the next call probes it, one
/// success restores it, one failure ejects it again.
const EJECT_AFTER: u32 = 5;

/// Why a call could not be relayed to the node.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("endpoint {url:?}: {reason}")]
    BadEndpoint {
        /// Position in the list the pool was built from.
        index: usize,
        url: String,
        reason: String,
    },
    #[error("server name {name:?}: {reason}")]
    BadServerName { name: String, reason: String },
    #[error("connecting to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{last_error} (backing off before the next attempt)")]
    BackingOff { last_error: String },
    #[error("{endpoint}: {source}")]
    Http2 {
        endpoint: String,
        #[source]
        source: h2::Error,
    },
}

/// The endpoints of one node and their connections; calls rotate over the endpoints
/// that are not backing off.
pub struct NodePool {
    endpoints: Box<[Arc<Endpoint>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for NodePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.endpoints.iter().map(|e| &e.url))
            .finish()
    }
}

/// How every connection of a pool is opened.
struct Connector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    /// The identity the node's certificate must name in its URI SAN (the registry's):
    /// the DNS name alone is checked by TLS, the identity here.
    identity: PeerIdentity,
    settings: ClientSettings,
}

struct Endpoint {
    url: String,
    host: String,
    port: u16,
    authority: Authority,
    connector: Arc<Connector>,
    state: Mutex<EndpointState>,
    /// Held while a connection is being opened, so concurrent calls share one attempt.
    connecting: tokio::sync::Mutex<()>,
    /// Some call failed since the last answered one: an answered call must reset the
    /// ejection counters (read first, so the common answered call takes no lock).
    suspect: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct EndpointState {
    live: Option<(u64, SendRequest<Bytes>)>,
    generation: u64,
    /// Until when calls fail at once, and why.
    failed: Option<(Instant, String)>,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// Consecutive calls that failed on the endpoint (see [`EJECT_AFTER`]).
    call_failures: u32,
    /// Ejections in a row (reset by a successful call); the back-off grows with them.
    ejections: u32,
    /// Ejected before and not yet proven by a successful call.
    probation: bool,
    /// Ejections since the pool was built, for the metrics.
    ejected_total: u64,
}

/// An endpoint's state, as the metrics and the console show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointHealth {
    pub url: String,
    /// A connection is open.
    pub connected: bool,
    /// Consecutive failed connection attempts (0 once connected).
    pub failures: u32,
    /// Why calls are refused at once, while they are: the last connection attempt
    /// failed, or the endpoint was ejected.
    pub backing_off: Option<String>,
    /// Times the endpoint was ejected since the pool was built.
    pub ejections: u64,
}

impl EndpointHealth {
    /// Whether calls can be expected to reach the endpoint: connected, or not yet
    /// tried, and not ejected.
    pub fn up(&self) -> bool {
        (self.connected || self.failures == 0) && self.backing_off.is_none()
    }
}

impl NodePool {
    /// The state of each endpoint.
    pub fn health(&self) -> Vec<EndpointHealth> {
        self.endpoints
            .iter()
            .map(|e| {
                let state = e.lock();
                EndpointHealth {
                    url: e.url.clone(),
                    connected: state.live.is_some(),
                    failures: state.failures,
                    backing_off: state
                        .failed
                        .as_ref()
                        .filter(|(until, _)| Instant::now() < *until)
                        .map(|(_, reason)| reason.clone()),
                    ejections: state.ejected_total,
                }
            })
            .collect()
    }

    /// A pool for `urls` (`https://host:port`), verifying the node as `server`: TLS checks
    /// its certificate's DNS name, and the pool its URI SAN.
    /// Nothing connects until the first call.
    pub fn new(
        urls: &[String],
        tls: Arc<ClientConfig>,
        server: &PeerIdentity,
        settings: &ClientSettings,
    ) -> Result<Self, UpstreamError> {
        let server_dns_name = server.dns_name();
        let server_name = ServerName::try_from(server_dns_name.clone()).map_err(|e| {
            UpstreamError::BadServerName {
                name: server_dns_name.clone(),
                reason: e.to_string(),
            }
        })?;
        let connector = Arc::new(Connector {
            tls: TlsConnector::from(tls),
            server_name,
            identity: server.clone(),
            settings: settings.clone(),
        });
        let endpoints = urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                Endpoint::parse(url, connector.clone())
                    .map(Arc::new)
                    .map_err(|reason| UpstreamError::BadEndpoint {
                        index,
                        url: url.clone(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(UpstreamError::BadEndpoint {
                index: 0,
                url: String::new(),
                reason: "at least one endpoint is required".into(),
            });
        }
        Ok(Self {
            endpoints: endpoints.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
    }

    /// Sends a unary call (metadata `headers` with its whole `body`) to `path` on the
    /// node under `deadline` and returns the node's answer as it arrives (headers now,
    /// body and trailers to read), with the report the caller settles once the answer is
    /// read whole or broke off; dropped unsettled, the call was given up ([`CallReport`]).
    pub async fn call(
        &self,
        headers: HeaderMap,
        path: &'static str,
        body: Message,
        deadline: Deadline,
    ) -> Result<(Response<h2::RecvStream>, CallReport), UpstreamError> {
        let (endpoint, (generation, mut sender)) = self.ready_sender().await?;
        let report = CallReport {
            endpoint: endpoint.clone(),
            generation,
            deadline,
            outcome: None,
        };
        let http2 = |report: CallReport, source: h2::Error| {
            report.ended(CallOutcome::of_error(&source));
            UpstreamError::Http2 {
                endpoint: endpoint.url.clone(),
                source,
            }
        };
        let mut request = Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.version_mut() = http::Version::HTTP_2;
        *request.uri_mut() = endpoint.uri(path);
        *request.headers_mut() = headers;
        let (response, mut stream) = match sender.send_request(request, body.is_empty()) {
            Ok(sent) => sent,
            Err(e) => {
                endpoint.forget(generation);
                return Err(http2(report, e));
            }
        };
        if !body.is_empty() {
            // Queued at once, so HEADERS and DATA leave in the same write.
            if let Err(e) = body.send(&mut stream, true) {
                return Err(http2(report, e));
            }
        }
        match response.await {
            Ok(response) => Ok((response, report)),
            Err(e) => Err(http2(report, e)),
        }
    }

    /// A connection ready for a new call, from the endpoints in rotation. An endpoint
    /// that cannot be reached is skipped for the next: nothing has been sent yet, so
    /// trying another is safe. The last error is returned if none can be reached.
    async fn ready_sender(
        &self,
    ) -> Result<(&Arc<Endpoint>, (u64, SendRequest<Bytes>)), UpstreamError> {
        let n = self.endpoints.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let mut error = None;
        for i in 0..n {
            let endpoint = &self.endpoints[(start + i) % n];
            match endpoint.ready_sender().await {
                Ok(sender) => return Ok((endpoint, sender)),
                Err(e) => error = Some(e),
            }
        }
        // The pool is never empty (checked in `new`), so an error was recorded.
        Err(error.unwrap_or(UpstreamError::BadEndpoint {
            index: 0,
            url: String::new(),
            reason: "no endpoints".into(),
        }))
    }
}

impl Endpoint {
    fn parse(url: &str, connector: Arc<Connector>) -> Result<Self, String> {
        let bad = |reason: &str| reason.to_owned();
        let uri: Uri = url.parse().map_err(|_| bad("not a URI"))?;
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(bad(
                "must use https:// (federation traffic is never plaintext)",
            ));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("must not have a path"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        Ok(Self {
            url: url.to_owned(),
            host,
            port,
            authority,
            connector,
            state: Mutex::new(EndpointState::default()),
            connecting: tokio::sync::Mutex::new(()),
            suspect: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn uri(&self, path: &'static str) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_static(path));
        // Scheme, authority and an absolute path are all present, so this cannot fail;
        // fall back to the bare path rather than panic.
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static(path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        // The state is a few plain fields, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live connection with room for one more stream. A connection found dead here
    /// (before anything is written) is replaced once.
    async fn ready_sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), UpstreamError> {
        let mut retried = false;
        loop {
            let (generation, sender) = self.sender().await?;
            match sender.ready().await {
                Ok(sender) => return Ok((generation, sender)),
                Err(source) => {
                    self.forget(generation);
                    if retried {
                        return Err(UpstreamError::Http2 {
                            endpoint: self.url.clone(),
                            source,
                        });
                    }
                    retried = true;
                }
            }
        }
    }

    /// The live connection, opening one if there is none.
    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), UpstreamError> {
        if let Some(live) = self.live_or_backoff()? {
            return Ok(live);
        }
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected (or failed) while we waited.
        if let Some(live) = self.live_or_backoff()? {
            return Ok(live);
        }
        // Boxed: the TLS and HTTP/2 handshakes' state is kilobytes, which every call's
        // future would otherwise carry (and copy when its task is boxed) for the rare
        // call that connects.
        match Box::pin(self.connect()).await {
            Ok((sender, connection)) => {
                let mut state = self.lock();
                state.generation += 1;
                let generation = state.generation;
                state.live = Some((generation, sender.clone()));
                state.failed = None;
                state.failures = 0;
                drop(state);
                let settings = &self.connector.settings;
                tokio::spawn(drive(
                    connection,
                    Arc::downgrade(self),
                    generation,
                    settings.keepalive_interval,
                    settings.keepalive_timeout,
                ));
                Ok((generation, sender))
            }
            Err(e) => {
                let mut state = self.lock();
                state.failures = state.failures.saturating_add(1);
                state.failed = Some((Instant::now() + backoff(state.failures), e.to_string()));
                Err(e)
            }
        }
    }

    fn live_or_backoff(&self) -> Result<Option<(u64, SendRequest<Bytes>)>, UpstreamError> {
        let state = self.lock();
        if let Some((generation, sender)) = &state.live {
            return Ok(Some((*generation, sender.clone())));
        }
        match &state.failed {
            Some((until, reason)) if Instant::now() < *until => Err(UpstreamError::BackingOff {
                last_error: reason.clone(),
            }),
            _ => Ok(None),
        }
    }

    /// A call was answered whole: the endpoint is sound.
    fn call_answered(&self) {
        if !self.suspect.load(Ordering::Relaxed) {
            return;
        }
        self.suspect.store(false, Ordering::Relaxed);
        let mut state = self.lock();
        state.call_failures = 0;
        state.ejections = 0;
        state.probation = false;
    }

    /// A call on connection `generation` failed, or its deadline ran out; enough of them
    /// in a row (one while on probation) eject the endpoint.
    fn call_failed(&self, generation: u64) {
        let mut state = self.lock();
        state.call_failures = state.call_failures.saturating_add(1);
        // Under the lock, after the count: an answered call that clears the flag then
        // finds this failure counted and resets it.
        self.suspect.store(true, Ordering::Relaxed);
        if state.call_failures < EJECT_AFTER && !state.probation {
            return;
        }
        state.call_failures = 0;
        state.ejections = state.ejections.saturating_add(1);
        state.ejected_total += 1;
        state.probation = true;
        let wait = backoff(state.ejections);
        let reason = format!(
            "ejected for {} ms: calls failed or ran out their deadline ({} in a row)",
            wait.as_millis(),
            state.ejections
        );
        tracing::warn!(endpoint = %self.url, %reason, "node endpoint ejected");
        state.failed = Some((Instant::now() + wait, reason));
        if state.live.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.live = None;
        }
    }

    /// Drops connection `generation` if it is still the live one.
    fn forget(&self, generation: u64) {
        let mut state = self.lock();
        if state.live.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.live = None;
        }
    }

    async fn connect(&self) -> Result<(SendRequest<Bytes>, Connection), UpstreamError> {
        let connector = &self.connector;
        let fail = |reason: String| UpstreamError::Connect {
            endpoint: self.url.clone(),
            reason,
        };
        let opened = tokio::time::timeout(connector.settings.connect_timeout, async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| fail(format!("tcp: {e}")))?;
            tcp.set_nodelay(true)
                .map_err(|e| fail(format!("tcp: {e}")))?;
            let peer: Option<SocketAddr> = tcp.peer_addr().ok();
            let tls = connector
                .tls
                .connect(connector.server_name.clone(), tcp)
                .await
                .map_err(|e| fail(format!("tls: {e}")))?;
            // The registry's identity, by URI SAN (TLS checked the chain and DNS name).
            verify_server(tls.get_ref().1, &connector.identity)
                .map_err(|reason| fail(format!("tls: {reason}")))?;
            let (sender, connection) = client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME)
                .enable_push(false)
                .handshake::<_, Bytes>(CoalescedWrites::new(tls))
                .await
                .map_err(|e| fail(format!("http/2: {e}")))?;
            Ok((sender, connection, peer))
        })
        .await
        .map_err(|_| {
            fail(format!(
                "timed out after {:?}",
                connector.settings.connect_timeout
            ))
        })??;
        let (sender, connection, peer) = opened;
        tracing::debug!(endpoint = %self.url, peer = ?peer, "connected to node");
        Ok((sender, connection))
    }
}

/// How one call went on its endpoint, for outlier ejection ([`CallOutcome`]), counted
/// when the report is dropped: settled by whoever read the answer, else the call was
/// given up (its caller reset it or went away, or a timer ran out): see [`Deadline`].
pub struct CallReport {
    endpoint: Arc<Endpoint>,
    generation: u64,
    deadline: Deadline,
    outcome: Option<CallOutcome>,
}

impl CallReport {
    /// The endpoint answered the call whole (whatever its gRPC status).
    pub fn answered(mut self) {
        self.outcome = Some(CallOutcome::Answered);
    }

    /// The call ended otherwise, as `outcome` (an HTTP/2 error, an answer the gateway
    /// would not take: [`CallOutcome::of_error`], [`CallOutcome::of_read`]).
    pub fn ended(mut self, outcome: CallOutcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for CallReport {
    fn drop(&mut self) {
        let outcome = match self.outcome {
            Some(outcome) => outcome,
            // Given up: the report's only clock read, off the answered path.
            None => self.deadline.given_up_at(Instant::now()),
        };
        if outcome == CallOutcome::Answered {
            self.endpoint.call_answered();
        } else if outcome.counts_against_endpoint() {
            self.endpoint.call_failed(self.generation);
        }
    }
}

type Connection = client::Connection<CoalescedWrites<TlsStream<TcpStream>>, Bytes>;

/// Runs one connection until it closes or stops answering keep-alive pings, then
/// retires it so the next call opens a fresh one.
async fn drive(
    mut connection: Connection,
    endpoint: Weak<Endpoint>,
    generation: u64,
    interval: Duration,
    timeout: Duration,
) {
    let keepalive = crate::keepalive::keepalive(connection.ping_pong(), interval, timeout);
    let reason = tokio::select! {
        ended = &mut connection => match ended {
            Ok(()) => "closed".to_owned(),
            Err(e) => e.to_string(),
        },
        reason = keepalive => reason,
    };
    if let Some(endpoint) = endpoint.upgrade() {
        tracing::info!(endpoint = %endpoint.url, %reason, "connection to node ended");
        endpoint.forget(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let within = |d: Duration, base: Duration| d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2);
        assert!(within(backoff(1), BACKOFF_MIN));
        assert!(within(backoff(2), BACKOFF_MIN * 2));
        assert!(within(backoff(3), BACKOFF_MIN * 4));
        assert!(within(backoff(50), BACKOFF_MAX));
    }
}
