//! The reference platform: the embedded platform ([`super::embedded`]) served over the
//! published contract ([`super::contract`]) as a process of its own (`tongban platform
//! serve`), so the contract has a running implementation and a province without a
//! platform has one.
//!
//! A request's path: TLS (`listen.rs`, mutual when configured) → authentication
//! (`auth.rs`: none, bearer or HMAC signature) → the operation (`cases.rs`: take-over,
//! case, event feed, with the take-over's checks in `takeover.rs`; `register.rs`:
//! persons, licenses, revocation feed, health) → the answer (`view.rs`: status codes
//! through the configured table; `problem.rs`: RFC 9457 problems naming the field at
//! fault). The clerk's API (`clerk.rs`) has a listener of its own. `config.rs` is the
//! file, `state.rs` what the handlers share, `error.rs` why a start failed.
//!
//! [`contract_router`] and [`serve_with`] let tests wrap the contract's routes in
//! layers of their own (a platform that answers `201` to repeats, a feed that drops an
//! event) and serve the result with the same TLS and authentication.

pub mod auth;
pub mod cases;
pub mod clerk;
pub mod config;
pub mod error;
pub mod listen;
pub mod problem;
pub mod register;
pub mod state;
pub mod takeover;
#[cfg(test)]
mod tests;
pub mod view;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::DefaultBodyLimit, middleware};
use tokio::{net::TcpListener, task::JoinHandle};
use tongban_runtime::process::shutdown::ShutdownSignal;

pub use auth::{Authenticator, SecretCheck};
pub use config::{AuthSettings, ReferenceConfig, TlsSettings};
pub use error::ReferenceError;
pub use listen::{serve_router, server_tls};
pub use problem::ApiProblem;
pub use state::PlatformState;

use crate::platform::embedded::EmbeddedPlatform;

/// The contract's operations over `state`, without authentication (which
/// [`serve_with`] adds around whatever router it is given).
pub fn contract_router(state: Arc<PlatformState>) -> Router {
    Router::new()
        .merge(cases::routes())
        .merge(register::routes())
        .fallback(|| async { ApiProblem::not_found("no such operation in the contract") })
        .method_not_allowed_fallback(|| async {
            ApiProblem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                crate::platform::contract::wire::problem::BAD_REQUEST,
                "Method not allowed",
                "the contract has no such method on this path",
            )
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(problem::MAX_BODY))
}

/// A reference platform serving: where, and its state.
pub struct RunningPlatform {
    /// The contract's address.
    pub addr: SocketAddr,
    /// The clerk's API's address.
    pub clerk_addr: SocketAddr,
    /// Whether the contract is served over TLS.
    pub tls: bool,
    /// Whether the clerk's API is (off loopback).
    pub clerk_tls: bool,
    pub state: Arc<PlatformState>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningPlatform {
    /// The contract's base URL (`https://127.0.0.1:7400`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The clerk's API's base URL.
    pub fn clerk_url(&self) -> String {
        let scheme = if self.clerk_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.clerk_addr)
    }

    pub fn platform(&self) -> &Arc<EmbeddedPlatform> {
        &self.state.platform
    }

    /// Waits until every listener has stopped (after shutdown was triggered).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the reference platform of `config`: binds both listeners, serves in
/// background tasks until `shutdown`, and returns their addresses.
pub async fn serve(
    config: ReferenceConfig,
    shutdown: ShutdownSignal,
) -> Result<RunningPlatform, ReferenceError> {
    serve_with(config, shutdown, |router| router).await
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ReferenceError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ReferenceError::Bind { what, addr, source })
}

/// [`serve`], with the contract's router passed through `wrap` before authentication
/// and TLS are put around it (tests make deliberately broken platforms so).
pub async fn serve_with(
    config: ReferenceConfig,
    shutdown: ShutdownSignal,
    wrap: impl FnOnce(Router) -> Router,
) -> Result<RunningPlatform, ReferenceError> {
    // Everything that can fail on a file fails before a port is bound.
    let tls = config.tls.as_ref().map(server_tls).transpose()?;
    let auth = Arc::new(Authenticator::from_settings(&config.auth)?);
    let clerk_token = config
        .clerk_token_file
        .as_deref()
        .map(|path| SecretCheck::new(&state::read_secret(path)?))
        .transpose()?;
    let state = PlatformState::open(&config).await?;

    let listener = bind("listen", config.listen).await?;
    let clerk_listener = bind("clerk_listen", config.clerk_listen).await?;
    let addr = local(&listener, "listen", config.listen)?;
    let clerk_addr = local(&clerk_listener, "clerk_listen", config.clerk_listen)?;
    announce(&config, addr, clerk_addr);

    let router = wrap(contract_router(state.clone()))
        .layer(middleware::from_fn_with_state(auth, auth::authenticate));
    let mut tasks = Vec::new();
    let stop = shutdown.clone();
    let is_tls = tls.is_some();
    let contract_tls = tls.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = serve_router(listener, contract_tls, router, stop).await {
            tracing::error!(%error, "reference platform listener");
        }
    }));
    let clerk = clerk::router(state.clone(), clerk_token);
    let stop = shutdown.clone();
    // Plain HTTP on loopback; off loopback the config requires [tls], used here too.
    let clerk_tls = if clerk_addr.ip().is_loopback() {
        None
    } else {
        tls.clone()
    };
    let clerk_is_tls = clerk_tls.is_some();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = serve_router(clerk_listener, clerk_tls, clerk, stop).await {
            tracing::error!(%error, "clerk listener");
        }
    }));
    if let Some(step) = config.auto_approve_after {
        let platform = state.platform.clone();
        tasks.push(tokio::spawn(platform.run_clerk(step, shutdown)));
    }
    Ok(RunningPlatform {
        addr,
        clerk_addr,
        tls: is_tls,
        clerk_tls: clerk_is_tls,
        state,
        tasks,
    })
}

fn local(
    listener: &TcpListener,
    what: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, ReferenceError> {
    listener
        .local_addr()
        .map_err(|source| ReferenceError::Bind { what, addr, source })
}

/// Logs what was started, and what a production platform must not run with.
fn announce(config: &ReferenceConfig, addr: SocketAddr, clerk_addr: SocketAddr) {
    let auth = match &config.auth {
        AuthSettings::None => "none",
        AuthSettings::Bearer { .. } => "bearer",
        AuthSettings::Hmac { .. } => "hmac",
    };
    let mutual = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    tracing::info!(
        %addr, %clerk_addr, auth, tls = config.tls.is_some(), mutual_tls = mutual,
        region = %config.region, "reference platform serving"
    );
    if config.tls.is_none() {
        tracing::warn!("the contract is served over plain HTTP: development only");
    }
    if matches!(config.auth, AuthSettings::None) && !mutual {
        tracing::warn!("callers are not authenticated: development only");
    }
    if let Some(step) = config.auto_approve_after {
        tracing::warn!(?step, "demo clerk on: every case is approved by itself");
    }
}
