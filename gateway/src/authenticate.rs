//! Phase 1: who is calling. The identity was read from the verified client certificate
//! once per connection by the accept loop, and travels with the call.

use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::trust::identity::PeerIdentity;

use crate::{call::Call, error::GatewayError};

/// The calling node's region prefix. Only nodes may originate relayed calls.
pub fn calling_region(call: &Call) -> Result<RegionPrefix, GatewayError> {
    match &call.peer.identity {
        PeerIdentity::Region(prefix) => Ok(*prefix),
        PeerIdentity::Gateway => Err(GatewayError::PermissionDenied(
            "a gateway certificate cannot originate federation calls".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::test_support::call;

    const DELIVER: &str = "/tongban.federation.v1.Gateway/DeliverApplication";

    #[test]
    fn nodes_are_named_by_their_certificate_and_gateways_refused() {
        let c = call(DELIVER, "spiffe://tongban/region/4403", &[]);
        assert_eq!(calling_region(&c).unwrap().as_str(), "4403");
        let c = call(DELIVER, "spiffe://tongban/gateway", &[]);
        let err = calling_region(&c).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
}
