//! The relayed `tongban.federation.v1.Gateway` service: the whole path of a call in one
//! place — authenticate, authorize, route, forward, audit.

use std::{sync::Arc, time::Instant};

use h2::RecvStream;
use http::request::Parts;
use tongban_proto::region::RegionTable;
use tongban_runtime::identity::PeerIdentity;

use crate::{
    audit::{self, AuditKeys, AuditRecord, Outcome},
    authenticate, authorize,
    error::GatewayError,
    forward::{self, Answer},
    registry::Registry,
    route,
};

/// Path prefix of the relayed methods.
pub const PATH_PREFIX: &str = "/tongban.federation.v1.Gateway/";

/// Maps a relayed gateway method to the same method on the node service.
fn node_path(method: &str) -> Option<&'static str> {
    Some(match method {
        "DeliverApplication" => "/tongban.federation.v1.Node/DeliverApplication",
        "QueryStatus" => "/tongban.federation.v1.Node/QueryStatus",
        "PushStatus" => "/tongban.federation.v1.Node/PushStatus",
        _ => return None,
    })
}

/// Relays calls to nodes; shared by every connection.
pub struct Relay {
    registry: Arc<Registry>,
    regions: &'static RegionTable,
}

impl Relay {
    pub fn new(registry: Arc<Registry>, regions: &'static RegionTable) -> Self {
        Self { registry, regions }
    }

    /// Relays one call (`parts` and its request `body`) from the peer `identity` and
    /// returns the answer for the caller: the node's, or the gateway's own refusal.
    pub async fn relay(
        &self,
        parts: Parts,
        body: &mut RecvStream,
        identity: &PeerIdentity,
    ) -> Answer {
        let started = Instant::now();
        let path = parts.uri.path();
        let method = path.strip_prefix(PATH_PREFIX).unwrap_or(path).to_owned();
        let keys = AuditKeys::from_headers(&parts.headers);
        let mut caller_text = None;
        let mut target_text = None;

        let result = async {
            let node_path =
                node_path(&method).ok_or_else(|| GatewayError::UnknownMethod(method.clone()))?;
            let caller = authenticate::calling_region(identity)?;
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
            Ok(answer) => {
                let grpc_status = answer.grpc_status().and_then(|v| v.to_str().ok());
                audit(Outcome::Relayed { grpc_status });
                answer
            }
            Err(error) => {
                let status = error.to_status();
                audit(Outcome::Refused {
                    code: status.code(),
                    message: status.message(),
                });
                Answer::from_status(status)
            }
        }
    }
}
