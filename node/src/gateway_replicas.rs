//! The node's channels to the gateway replicas, and the balance over them.
//!
//! Each replica gets a lazy channel through the federation connector; the balance is
//! tower's power of two choices by calls pending. A replica that cannot be connected
//! to fails its calls at once, which would make it the *least* loaded and so the one
//! most chosen; so every connection attempt is watched, and a replica whose last
//! attempt failed sits out of the balance for a cool-down (growing while it keeps
//! failing), as long as some other replica is up. After the cool-down one call probes
//! it. When every replica is down, calls go through and fail fast, for the outbox to
//! retry, rather than wait.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::Uri;
use tokio::time::Sleep;
use tongban_runtime::{
    trust::connector::{self, FederationConnector},
    trust::tls::{ClientSettings, TlsError},
};
use tonic::transport::Channel;
use tower::{
    Service, ServiceExt,
    balance::p2c::Balance,
    buffer::Buffer,
    discover::ServiceList,
    load::{CompleteOnResponse, PendingRequests},
    util::BoxCloneSyncService,
};

/// The node's channel to the gateway: one replica's, or the balance over all.
pub type GatewayChannel = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    ChannelError,
>;

/// A transport failure on the gateway channel. A concrete type rather than
/// `tower::BoxError`: a boxed error as the service's error type makes the futures of
/// tonic's generated client not `Send` for every lifetime (a known rustc limitation).
/// Its source chain is the original's, which tonic reads to choose the status
/// (UNAVAILABLE when no connection could be made).
#[derive(Debug)]
pub struct ChannelError(tower::BoxError);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// First cool-down of a replica that failed to connect; it doubles per failure since
/// the last success, up to [`MAX_COOL_DOWN`].
const COOL_DOWN: Duration = Duration::from_millis(250);
const MAX_COOL_DOWN: Duration = Duration::from_secs(5);

/// Which replicas failed their last connection attempt, and until when they sit out.
struct Health {
    epoch: Instant,
    /// Per replica: milliseconds since `epoch` until which it sits out (0: up).
    down_until: Vec<AtomicU64>,
    failures: Vec<AtomicU32>,
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn connected(&self, replica: usize) {
        self.down_until[replica].store(0, Ordering::Relaxed);
        self.failures[replica].store(0, Ordering::Relaxed);
    }

    fn failed(&self, replica: usize) {
        let n = self.failures[replica]
            .fetch_add(1, Ordering::Relaxed)
            .min(5);
        let wait = (COOL_DOWN * 2u32.pow(n)).min(MAX_COOL_DOWN);
        let until = self.now_ms() + wait.as_millis() as u64;
        self.down_until[replica].store(until, Ordering::Relaxed);
    }

    /// Until when `replica` sits out, if it does: it is down and another is up.
    fn sits_out(&self, replica: usize) -> Option<Duration> {
        let now = self.now_ms();
        let until = self.down_until[replica].load(Ordering::Relaxed);
        let other_up = self
            .down_until
            .iter()
            .enumerate()
            .any(|(i, d)| i != replica && d.load(Ordering::Relaxed) <= now);
        (until > now && other_up).then(|| Duration::from_millis(until - now))
    }
}

/// The connector of one replica, reporting each attempt's outcome to [`Health`]. It
/// applies the connect timeout itself (tonic's would drop the attempt unseen).
#[derive(Clone)]
struct Watched {
    inner: FederationConnector,
    replica: usize,
    health: Arc<Health>,
    timeout: Duration,
}

impl Service<Uri> for Watched {
    type Response = <FederationConnector as Service<Uri>>::Response;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let attempt = self.inner.call(uri);
        let (replica, health, timeout) = (self.replica, self.health.clone(), self.timeout);
        Box::pin(async move {
            let outcome = match tokio::time::timeout(timeout, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {timeout:?}"),
                )),
            };
            match &outcome {
                Ok(_) => health.connected(replica),
                Err(_) => health.failed(replica),
            }
            outcome
        })
    }
}

/// One replica's channel in the balance: not ready while it sits out.
struct InBalance {
    channel: Channel,
    replica: usize,
    health: Arc<Health>,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Service<http::Request<tonic::body::Body>> for InBalance {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <Channel as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while let Some(rest) = self.health.sits_out(self.replica) {
            let deadline = tokio::time::Instant::now() + rest;
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if wait.deadline() != deadline {
                wait.as_mut().reset(deadline);
            }
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.channel.call(request)
    }
}

/// The channels to the gateway replicas at `urls` (each its own, by URL, for what every
/// replica must hear) and the balance over them. Lazy: the node starts while the
/// gateways are still away.
pub fn connect(
    urls: &[String],
    connector: &FederationConnector,
    settings: &ClientSettings,
) -> Result<(GatewayChannel, Vec<(String, Channel)>), TlsError> {
    let health = Arc::new(Health {
        epoch: Instant::now(),
        down_until: urls.iter().map(|_| AtomicU64::new(0)).collect(),
        failures: urls.iter().map(|_| AtomicU32::new(0)).collect(),
    });
    let replicas = urls
        .iter()
        .enumerate()
        .map(|(replica, url)| {
            let watched = Watched {
                inner: connector.clone(),
                replica,
                health: health.clone(),
                timeout: settings.connect_timeout,
            };
            connector::endpoint(url, settings).map(|e| {
                let channel = e
                    .timeout(settings.request_timeout)
                    .connect_with_connector_lazy(watched);
                (url.clone(), channel)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let balanced = match replicas.as_slice() {
        [(_, one)] => BoxCloneSyncService::new(one.clone().map_err(|e| ChannelError(e.into()))),
        _ => {
            let each = replicas
                .iter()
                .enumerate()
                .map(|(replica, (_, channel))| {
                    let member = InBalance {
                        channel: channel.clone(),
                        replica,
                        health: health.clone(),
                        wait: None,
                    };
                    PendingRequests::new(member, CompleteOnResponse::default())
                })
                .collect::<Vec<_>>();
            let balance = Balance::new(ServiceList::new(each));
            // The balancer is one task's; the buffer shares it among the node's tasks.
            BoxCloneSyncService::new(Buffer::new(balance, 1024).map_err(ChannelError))
        }
    };
    Ok((balanced, replicas))
}
