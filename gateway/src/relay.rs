//! The relayed `tongban.federation.v1.Gateway` service: the whole path of a call in one
//! place — authenticate, authorize, route, forward, audit.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use tongban_proto::region::RegionTable;
use tonic::{body::Body, server::NamedService};

use crate::{
    audit::{self, AuditKeys, AuditRecord, Outcome},
    authenticate, authorize,
    error::GatewayError,
    forward,
    registry::Registry,
    route,
};

const SERVICE: &str = "tongban.federation.v1.Gateway";

/// Maps a relayed gateway method to the same method on the node service.
fn node_path(method: &str) -> Option<&'static str> {
    Some(match method {
        "DeliverApplication" => "/tongban.federation.v1.Node/DeliverApplication",
        "QueryStatus" => "/tongban.federation.v1.Node/QueryStatus",
        "PushStatus" => "/tongban.federation.v1.Node/PushStatus",
        _ => return None,
    })
}

/// The relay as a tower service that tonic routes `/tongban.federation.v1.Gateway/*` to.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayState>,
}

struct RelayState {
    registry: Arc<Registry>,
    regions: &'static RegionTable,
}

impl Relay {
    pub fn new(registry: Arc<Registry>, regions: &'static RegionTable) -> Self {
        Self {
            inner: Arc::new(RelayState { registry, regions }),
        }
    }
}

impl NamedService for Relay {
    const NAME: &'static str = SERVICE;
}

impl tower::Service<http::Request<Body>> for Relay {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.inner.clone();
        Box::pin(async move { Ok(state.relay(req).await) })
    }
}

impl RelayState {
    async fn relay(&self, req: http::Request<Body>) -> http::Response<Body> {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let method = parts
            .uri
            .path()
            .strip_prefix("/tongban.federation.v1.Gateway/")
            .unwrap_or(parts.uri.path())
            .to_owned();
        let keys = AuditKeys::from_headers(&parts.headers);
        let mut caller_text = None;
        let mut target_text = None;

        let result = async {
            let node_path =
                node_path(&method).ok_or_else(|| GatewayError::UnknownMethod(method.clone()))?;
            let caller = *authenticate::calling_region(&parts.extensions)?;
            caller_text = Some(caller.to_string());
            authorize::check_origin_claim(&parts.headers, &caller)?;
            let (target, route) = route::resolve(&parts.headers, &self.registry, self.regions)?;
            target_text = Some(target.to_string());
            forward::forward(&route, parts, body, node_path, &caller).await
        }
        .await;

        let elapsed = started.elapsed();
        let audit = |outcome: Outcome<'_>| {
            audit::record(
                &keys,
                &AuditRecord {
                    method: &method,
                    caller: caller_text.as_deref(),
                    target: target_text.as_deref(),
                    outcome,
                    elapsed,
                },
            )
        };
        match result {
            Ok(relayed) => {
                let grpc_status = relayed.grpc_status.as_ref().and_then(|v| v.to_str().ok());
                audit(Outcome::Relayed { grpc_status });
                relayed.response
            }
            Err(error) => {
                let status = error.to_status();
                audit(Outcome::Refused {
                    code: status.code(),
                    message: status.message(),
                });
                status.into_http()
            }
        }
    }
}
