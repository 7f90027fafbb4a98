//! The operator listener: the routes that change a running process (reload, revoke,
//! replay, close) and the views an operator reads (the console, dead letters), served
//! over HTTPS with a client certificate required. The caller is the operator its
//! certificate names (`spiffe://tongban/operator/<name>`, see
//! [`crate::trust::operator`]), with the role the process's roster gives that name:
//! reads need `viewer`, anything else `operator`. Every request that is not a read, and
//! every refusal, is written to the audit trail with the operator's name.
//!
//! Probes and `/metrics` stay on the plaintext admin listener: Kubernetes and Prometheus
//! hold no operator certificate, and nothing there changes state.
//!
//! TLS is the process's own (its certificate, the federation CA and its revocation
//! lists, as reloads put them in force), offered as HTTP/1.1 so that curl, a browser
//! behind `tongban operator proxy` and the CLI all speak it.

use std::{io, net::SocketAddr, pin::pin, sync::Arc};

use axum::{
    Router,
    extract::{Extension, Request},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutLayer;

use crate::{
    audit::trail::AuditTrail,
    process::shutdown::ShutdownSignal,
    serving::{
        connection_slots::ConnectionSlots,
        plain_http::{self, HttpLimits},
    },
    trust::operator::{Operator, OperatorName, Role, Roster},
};

/// `[operators]` in a gateway's or a node's config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Address of the operator listener. Keep it on loopback or a private network: it
    /// asks for a certificate, but nothing else needs to reach it.
    pub listen: SocketAddr,
    /// Operator name → role (`viewer` or `operator`); names not listed are refused.
    pub roster: Roster,
}

/// Everything the operator listener needs besides its routes.
pub struct OperatorListener {
    pub listener: TcpListener,
    pub roster: Arc<Roster>,
    /// The process's server TLS as reloads put it in force (federation ALPN replaced).
    pub tls: watch::Receiver<Arc<ServerConfig>>,
    pub audit: Option<AuditTrail>,
    pub limits: HttpLimits,
}

/// Who is calling, as the connection's certificate and the roster say.
#[derive(Clone, Debug)]
enum Caller {
    Operator(Operator),
    /// Authenticated by TLS but not an operator of this process, and why.
    Refused(String),
}

/// Serves `router` to operators until `shutdown`, then lets open requests finish.
pub async fn serve(
    operators: OperatorListener,
    router: Router,
    shutdown: ShutdownSignal,
) -> io::Result<()> {
    let OperatorListener {
        listener,
        roster,
        tls,
        audit,
        limits,
    } = operators;
    let router = router
        .layer(middleware::from_fn(move |caller, request, next| {
            authorize(audit.clone(), caller, request, next)
        }))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let slots = ConnectionSlots::new(limits.max_connections, limits.max_connections_per_client);
    let graceful = GracefulShutdown::new();
    let mut stop = pin!(shutdown.wait());
    while let Some((stream, peer)) =
        plain_http::accept_until("operator", &listener, stop.as_mut()).await
    {
        let Ok(slot) = slots.try_take(peer.ip()) else {
            tracing::debug!(listener = "operator", %peer, "connection closed at accept: no slot");
            continue;
        };
        let acceptor = TlsAcceptor::from(http1_only(&tls.borrow()));
        let (router, roster, watcher) = (router.clone(), roster.clone(), graceful.watcher());
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let io = plain_http::idle_bounded(stream, limits.idle_timeout).into_inner();
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "operator listener: TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let caller = caller_of(&tls, &roster);
            let service = TowerToHyperService::new(router.layer(Extension((caller, peer))));
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let connection = watcher.watch(http.serve_connection(TokioIo::new(tls), service));
            if let Err(error) = connection.await {
                tracing::debug!(listener = "operator", %peer, %error, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The process's server TLS, offering HTTP/1.1 instead of the federation's HTTP/2.
fn http1_only(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn caller_of<S>(tls: &tokio_rustls::server::TlsStream<S>, roster: &Roster) -> Caller {
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return Caller::Refused("no client certificate".to_owned());
    };
    match OperatorName::from_certificate(leaf) {
        Err(error) => Caller::Refused(format!("not an operator certificate: {error}")),
        Ok(name) => match roster.role_of(&name) {
            Some(role) => Caller::Operator(Operator { name, role }),
            None => Caller::Refused(format!("operator {name} is not on this process's roster")),
        },
    }
}

/// Lets a request through if its caller's role allows it, recording what is not a read.
async fn authorize(
    audit: Option<AuditTrail>,
    Extension((caller, peer)): Extension<(Caller, SocketAddr)>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let read = matches!(method, http::Method::GET | http::Method::HEAD);
    let needed = if read { Role::Viewer } else { Role::Operator };
    let refusal = match &caller {
        Caller::Refused(why) => Some(why.clone()),
        Caller::Operator(operator) if operator.role < needed => Some(format!(
            "operator {} is a {}; {method} {} needs the {} role",
            operator.name,
            operator.role.as_str(),
            request.uri().path(),
            needed.as_str()
        )),
        Caller::Operator(_) => None,
    };
    let response = match refusal {
        Some(why) => {
            tracing::warn!(%peer, %method, path, why, "operator request refused");
            (http::StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
        }
        None => {
            if let Caller::Operator(operator) = &caller {
                request.extensions_mut().insert(operator.clone());
            }
            next.run(request).await
        }
    };
    let status = response.status();
    if !read || status == http::StatusCode::FORBIDDEN {
        record(audit.as_ref(), &caller, peer, &method, &path, status);
    }
    response
}

fn record(
    audit: Option<&AuditTrail>,
    caller: &Caller,
    peer: SocketAddr,
    method: &http::Method,
    path: &str,
    status: http::StatusCode,
) {
    let (operator, role, refused) = match caller {
        Caller::Operator(o) => (Some(o.name.as_str()), o.role.as_str(), None),
        Caller::Refused(why) => (None, "none", Some(why.as_str())),
    };
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    tracing::info!(operator, role, refused, %method, path, status = status.as_u16(), "operator action");
    if let Some(trail) = audit {
        trail.record(
            serde_json::json!({
                "at": at, "event": "operator", "operator": operator, "role": role,
                "refused": refused, "method": method.as_str(), "path": path, "status": status.as_u16(),
                "remote": peer.to_string(),
            })
            .to_string(),
        );
    }
}
