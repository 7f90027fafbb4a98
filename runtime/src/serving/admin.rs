//! The plaintext admin listener every process can open for probes and operators:
//! `/healthz` (the process runs) and `/readyz` (it accepts traffic), plus whatever
//! routes the process adds (metrics, consoles). Probes carry no client certificate, so
//! this never shares a port with federation traffic.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, routing::get};
use tokio::net::TcpListener;

use crate::{
    process::shutdown::ShutdownSignal,
    serving::plain_http::{self, HttpLimits},
};

/// Whether the process accepts traffic; shared by everything that reports it.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new(ready: bool) -> Self {
        Self(Arc::new(AtomicBool::new(ready)))
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A condition readiness also depends on: `Err` with the reason while it fails (a
/// store whose disk fails, say).
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `/healthz` and `/readyz`, to be merged into any router.
pub fn probes(readiness: Readiness) -> Router {
    probes_checked(readiness, Vec::new())
}

/// `/healthz` and `/readyz`, where ready also needs every one of `checks` to pass; a
/// failing check is named in the `503` body.
pub fn probes_checked(readiness: Readiness, checks: Vec<(&'static str, ReadinessCheck)>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let answer = if !readiness.is_ready() {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "draining\n".to_owned(),
                    )
                } else {
                    let failing: Vec<String> = checks
                        .iter()
                        .filter_map(|(name, check)| check().err().map(|e| format!("{name}: {e}")))
                        .collect();
                    if failing.is_empty() {
                        (http::StatusCode::OK, "ready\n".to_owned())
                    } else {
                        (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}\n", failing.join("; ")),
                        )
                    }
                };
                async move { answer }
            }),
        )
}

/// `POST /reload`: re-reads what the process may change while it runs (as SIGHUP does)
/// and answers once it is done: `200` with what was loaded, or `422` with why the new
/// files (or some of them) were rejected (the old ones stay in force).
/// `POST /reload?force=true` applies even what a safety check refuses (a registry that
/// drops too many members); a file that cannot be read or parsed is never applied.
pub fn reload(handle: crate::process::reload::ReloadHandle) -> Router {
    Router::new().route(
        "/reload",
        axum::routing::post(
            move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let handle = handle.clone();
                let force = query.as_deref().is_some_and(|q| {
                    q.split('&')
                        .any(|pair| pair == "force=true" || pair == "force=1")
                });
                async move {
                    match handle.reload_with(force).await {
                        Ok(loaded) => (http::StatusCode::OK, format!("reloaded: {loaded}\n")),
                        Err(error) => (
                            http::StatusCode::UNPROCESSABLE_ENTITY,
                            format!("rejected, the previous files stay in force: {error}\n"),
                        ),
                    }
                }
            },
        ),
    )
}

/// `/metrics`: the process's metrics in the OpenMetrics text format Prometheus scrapes.
pub fn metrics(registry: Arc<prometheus_client::registry::Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { metrics_response(&registry) }
        }),
    )
}

/// The scrape answer for `registry` (for processes that refresh gauges first).
pub fn metrics_response(
    registry: &prometheus_client::registry::Registry,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            http::StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics could not be encoded\n".to_owned(),
        )
            .into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown`, within the admin defaults
/// ([`HttpLimits::admin`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    serve_within(listener, router, HttpLimits::admin(), shutdown).await
}

/// Serves `router` on `listener` within `limits` until `shutdown`. The admin listener
/// has its own connection cap apart from every other listener's, and a small share per
/// client, so that `/healthz` and `/readyz` answer while another listener is flooded
/// or one scraper misbehaves.
pub async fn serve_within(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    plain_http::serve("admin", listener, router, limits, shutdown).await
}
