//! Phase 1: who is calling. The identity was read from the verified client certificate
//! once per connection by the accept loop, and travels with the connection.

use tongban_proto::region::RegionPrefix;
use tongban_runtime::identity::PeerIdentity;

use crate::error::GatewayError;

/// The calling node's region prefix. Only nodes may originate relayed calls.
pub fn calling_region(identity: &PeerIdentity) -> Result<RegionPrefix, GatewayError> {
    match identity {
        PeerIdentity::Region(prefix) => Ok(*prefix),
        PeerIdentity::Gateway => Err(GatewayError::PermissionDenied(
            "a gateway certificate cannot originate federation calls".into(),
        )),
    }
}
