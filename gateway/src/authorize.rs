//! Phase 2: may the caller make this call? The registry admits: a region's certificate
//! from the federation CA is not enough, the region must be registered (and is cut off
//! once it is removed). The method table says who may call a method and whether it must
//! carry an idempotency key. A node originates only for codes its certificate's region
//! owns: inside its prefix, and not delegated to a node of their own (a province's
//! certificate does not act for a city that runs its own node). The verified origin
//! the target is given comes from the certificate, never from the caller.
//!
//! Every "who may do what" decision of the gateway is here, wherever it is asked: the
//! relay's phases, the connection's check on calls to the gateway's own services
//! ([`check_local_call`]), and the recognition service's on revocations
//! ([`check_revoker`]).

use tongban_proto::{
    contract::metadata,
    rules::region::{RegionCode, RegionPrefix},
};
use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    call::Call,
    error::GatewayError,
    methods::{self, KeyPolicy, Method},
    registry::Registry,
};

/// The most metadata (header names and values, in bytes) a call may carry. Tongban's own
/// keys need a few hundred bytes; a node's HTTP/2 server refuses header blocks over
/// 16 KiB with a bare HTTP 431, which its caller would see as UNKNOWN, so the gateway
/// refuses much less than that itself, with a precise code.
pub const MAX_METADATA: usize = 8 * 1024;

/// Refuses a call whose metadata is larger than [`MAX_METADATA`].
pub fn check_metadata_size(call: &Call) -> Result<(), GatewayError> {
    let size: usize = call
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_METADATA {
        Err(GatewayError::MetadataTooLarge {
            size,
            max: MAX_METADATA,
        })
    } else {
        Ok(())
    }
}

/// A region's certificate is admitted only while the region is registered; the
/// gateway's own identity is left to the method table.
pub fn check_member(identity: &PeerIdentity, registry: &Registry) -> Result<(), GatewayError> {
    match identity {
        PeerIdentity::Region(_) if !registry.is_member(identity) => {
            Err(GatewayError::PermissionDenied(format!(
                "{identity} is not registered in the federation"
            )))
        }
        _ => Ok(()),
    }
}

/// The method table's callers for `method`: whether `identity` may call it at all.
pub fn check_method_callers(identity: &PeerIdentity, method: &Method) -> Result<(), GatewayError> {
    if method.callers.admit(identity) {
        Ok(())
    } else {
        Err(GatewayError::PermissionDenied(format!(
            "{identity} may not call {}",
            method.name
        )))
    }
}

/// A call to one of the gateway's own gRPC services (catalog, health, reflection), at
/// `path`: only registered members, and then the table's callers for the method. A
/// path the table does not name is left to the router (it answers UNIMPLEMENTED).
pub fn check_local_call(
    identity: &PeerIdentity,
    path: &str,
    registry: &Registry,
) -> Result<(), GatewayError> {
    check_member(identity, registry)?;
    match methods::lookup(path) {
        Some(method) => check_method_callers(identity, method),
        None => Ok(()),
    }
}

/// Only a license's issuer revokes it, as its certificate proves: the caller's region
/// must contain the region that issued the license (named by the license id).
pub fn check_revoker(caller: &RegionPrefix, issuer: &RegionCode) -> Result<(), GatewayError> {
    if caller.contains(issuer) {
        Ok(())
    } else {
        Err(GatewayError::PermissionDenied(format!(
            "region {caller} cannot revoke a license issued by region {issuer}"
        )))
    }
}

/// Checks the table's callers for `method` and the `tongban-origin-region` claim
/// against the caller's region: the claimed code must lie inside it, and the node
/// registered for the code's longest registered prefix (`owner`) must be the caller.
/// No claim is a claim of the caller's own region (`44` → `440000`): leaving it out
/// never skips the check. What the body names is the node's to check, against the
/// carve-outs the gateway sends with the verified origin.
pub fn check_caller(
    call: &Call,
    method: &Method,
    caller: &RegionPrefix,
    owner: impl Fn(&RegionCode) -> Option<PeerIdentity>,
) -> Result<(), GatewayError> {
    check_method_callers(&call.peer.identity, method)?;
    let claimed = metadata::region_code(
        &call.headers,
        &metadata::names::ORIGIN_REGION,
        metadata::ORIGIN_REGION,
    )?
    .unwrap_or_else(|| RegionCode::from_prefix(caller));
    if !caller.contains(&claimed) {
        return Err(GatewayError::PermissionDenied(format!(
            "certificate for region {caller} cannot originate as region {claimed}"
        )));
    }
    match owner(&claimed) {
        Some(owner) if owner == call.peer.identity => Ok(()),
        Some(owner) => Err(GatewayError::PermissionDenied(format!(
            "region {claimed} is served by its own node ({owner}); certificate for region \
             {caller} cannot originate for it"
        ))),
        None => Err(GatewayError::PermissionDenied(format!(
            "region {claimed} is not registered in the federation"
        ))),
    }
}

/// A state-changing call must carry a well-formed idempotency key, so that the receiver
/// applies it once however often it is retried; any key sent must be well-formed.
pub fn check_key(call: &Call, method: &Method) -> Result<(), GatewayError> {
    let key = metadata::idempotency_key(&call.headers)?;
    if key.is_none() && method.idempotency_key == KeyPolicy::Required {
        return Err(GatewayError::InvalidMetadata {
            key: metadata::IDEMPOTENCY_KEY,
            problem: format!("required on {} (a state-changing call)", method.name),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{call::test_support::call, methods::lookup};

    const DELIVER: &str = "/tongban.federation.v1.Gateway/DeliverApplication";
    const QUERY: &str = "/tongban.federation.v1.Gateway/QueryStatus";

    fn prefix(p: &str) -> RegionPrefix {
        RegionPrefix::parse(p).unwrap()
    }

    fn region(p: &str) -> PeerIdentity {
        PeerIdentity::Region(prefix(p))
    }

    /// Registered: 31, 44, and Shenzhen (4403) with its own node.
    fn owner(code: &RegionCode) -> Option<PeerIdentity> {
        let code = code.as_str();
        ["4403", "44", "31"]
            .into_iter()
            .find(|p| code.starts_with(p))
            .map(region)
    }

    #[test]
    fn origin_claims_must_lie_inside_the_certificate_region() {
        let method = lookup(DELIVER).unwrap();
        let node = "spiffe://tongban/region/31";
        let ok = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "310115")]);
        assert!(check_caller(&ok, method, &prefix("31"), owner).is_ok());
        let none = call(DELIVER, node, &[]);
        assert!(check_caller(&none, method, &prefix("31"), owner).is_ok());
        // No claim is the caller's own region: checked like one.
        let unregistered = call(DELIVER, "spiffe://tongban/region/32", &[]);
        let err = check_caller(&unregistered, method, &prefix("32"), owner).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let foreign = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "440000")]);
        let err = check_caller(&foreign, method, &prefix("31"), owner).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let malformed = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "31")]);
        let err = check_caller(&malformed, method, &prefix("31"), owner).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_province_cannot_originate_for_a_city_with_its_own_node() {
        let method = lookup(DELIVER).unwrap();
        let province = "spiffe://tongban/region/44";
        let guangzhou = call(DELIVER, province, &[(metadata::ORIGIN_REGION, "440100")]);
        assert!(check_caller(&guangzhou, method, &prefix("44"), owner).is_ok());
        let shenzhen = call(DELIVER, province, &[(metadata::ORIGIN_REGION, "440305")]);
        let err = check_caller(&shenzhen, method, &prefix("44"), owner).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.to_string().contains("its own node"), "{err}");
        // Shenzhen's own node may.
        let own = call(
            DELIVER,
            "spiffe://tongban/region/4403",
            &[(metadata::ORIGIN_REGION, "440305")],
        );
        assert!(check_caller(&own, method, &prefix("4403"), owner).is_ok());
        // Without a claim, each acts as its own region: both pass the gateway (what the
        // body names is the node's to check, against the carve-outs).
        let province_unclaimed = call(DELIVER, province, &[]);
        assert!(check_caller(&province_unclaimed, method, &prefix("44"), owner).is_ok());
        let city_unclaimed = call(DELIVER, "spiffe://tongban/region/4403", &[]);
        assert!(check_caller(&city_unclaimed, method, &prefix("4403"), owner).is_ok());
    }

    #[test]
    fn only_registered_regions_are_members() {
        let registry = Registry::default();
        let err = check_member(&region("32"), &registry).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.to_string().contains("not registered"), "{err}");
        assert!(check_member(&PeerIdentity::Gateway, &registry).is_ok());
    }

    #[test]
    fn local_services_admit_members_by_the_table() {
        let registry = Registry::default();
        let health = "/grpc.health.v1.Health/Check";
        let err = check_local_call(&region("32"), health, &registry).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.to_string().contains("not registered"), "{err}");
        // The gateway's own identity is the table's matter; health is for members.
        assert!(check_local_call(&PeerIdentity::Gateway, health, &registry).is_ok());
        assert!(check_local_call(&PeerIdentity::Gateway, "/x.Unknown/Call", &registry).is_ok());
        let deliver = lookup(DELIVER).unwrap();
        let err = check_method_callers(&PeerIdentity::Gateway, deliver).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.to_string().contains("may not call"), "{err}");
    }

    #[test]
    fn only_the_issuing_region_revokes() {
        let code = |c: &str| RegionCode::parse(c).unwrap();
        assert!(check_revoker(&prefix("44"), &code("440305")).is_ok());
        assert!(check_revoker(&prefix("4403"), &code("440305")).is_ok());
        let err = check_revoker(&prefix("31"), &code("440305")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.to_string().contains("cannot revoke"), "{err}");
        assert!(check_revoker(&prefix("4401"), &code("440305")).is_err());
    }

    #[test]
    fn state_changing_calls_need_a_key() {
        let node = "spiffe://tongban/region/31";
        let deliver = lookup(DELIVER).unwrap();
        let query = lookup(QUERY).unwrap();
        let keyless = call(DELIVER, node, &[]);
        let err = check_key(&keyless, deliver).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains(metadata::IDEMPOTENCY_KEY), "{err}");
        assert!(check_key(&call(QUERY, node, &[]), query).is_ok());
        let keyed = call(DELIVER, node, &[(metadata::IDEMPOTENCY_KEY, "deliver:1")]);
        assert!(check_key(&keyed, deliver).is_ok());
        let long = "k".repeat(129);
        let bad = call(QUERY, node, &[(metadata::IDEMPOTENCY_KEY, long.as_str())]);
        assert!(check_key(&bad, query).is_err());
    }
}
