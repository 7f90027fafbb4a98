//! Phase 1: who is calling. The identity was read from the verified client certificate
//! once per connection by the accept loop; here it is taken from the request.

use tongban_proto::region::RegionPrefix;
use tongban_runtime::{identity::PeerIdentity, incoming::PeerInfo};

use crate::error::GatewayError;

/// The calling node's region prefix. Only nodes may originate relayed calls.
pub fn calling_region(extensions: &http::Extensions) -> Result<&RegionPrefix, GatewayError> {
    match extensions.get::<PeerInfo>().map(|p| &p.identity) {
        Some(PeerIdentity::Region(prefix)) => Ok(prefix),
        Some(PeerIdentity::Gateway) => Err(GatewayError::PermissionDenied(
            "a gateway certificate cannot originate federation calls".into(),
        )),
        None => Err(GatewayError::Unauthenticated),
    }
}
