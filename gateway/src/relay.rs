//! The relayed `tongban.federation.v1.Gateway` service: the whole path of a call in one
//! place — authenticate, authorize, route, forward, audit.

use std::sync::Arc;

use h2::RecvStream;
use http::request::Parts;
use tongban_proto::region::RegionTable;
use tongban_runtime::identity::PeerIdentity;

use crate::{
    audit::{AuditKeys, CallAudit},
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
        let path = parts.uri.path();
        let requested = path.strip_prefix(PATH_PREFIX).unwrap_or(path);
        let node_path = node_path(requested);
        let method = match node_path {
            Some(_) => requested.to_owned(),
            None => printable(requested),
        };
        let mut audit = CallAudit::start(method, AuditKeys::from_headers(&parts.headers));

        let result = async {
            let node_path =
                node_path.ok_or_else(|| GatewayError::UnknownMethod(audit.method().to_owned()))?;
            let caller = authenticate::calling_region(identity)?;
            audit.caller = Some(caller.to_string());
            authorize::check_origin_claim(&parts.headers, &caller)?;
            let (target, route) = route::resolve(&parts.headers, &self.registry, self.regions)?;
            audit.target = Some(target.to_string());
            forward::forward(&route, parts, body, node_path, &caller).await
        }
        .await;

        match result {
            Ok(answer) => {
                audit.relayed(answer.grpc_status().and_then(|v| v.to_str().ok()));
                answer
            }
            Err(error) => {
                let status = error.to_status();
                // The trail keeps the whole reason; the caller gets the public part.
                audit.refused(status.code(), &error.to_string());
                Answer::from_status(status)
            }
        }
    }
}

/// A caller-chosen method name as it may appear in logs and errors: printable ASCII
/// only (a path may carry bytes that log readers take for line breaks), at most 64.
fn printable(method: &str) -> String {
    method
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn unknown_method_names_are_made_printable_and_short() {
        assert_eq!(
            printable("Delete\u{85}{\"audit\":\"relayed\"}\u{2028}x"),
            "Delete{\"audit\":\"relayed\"}x"
        );
        assert_eq!(printable(&"a".repeat(500)).len(), 64);
    }
}
