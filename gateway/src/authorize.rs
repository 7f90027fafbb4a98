//! Phase 2: may the caller make this call? The method table says who may call a method
//! and whether it must carry an idempotency key; a node originates only for codes inside
//! its own certificate's region (the verified origin it is given comes from the
//! certificate, never from the caller).

use tongban_proto::{metadata, region::RegionPrefix};

use crate::{
    call::Call,
    error::GatewayError,
    methods::{KeyPolicy, Method},
};

/// Checks the table's callers for `method` and the optional `tongban-origin-region`
/// claim against the caller's region.
pub fn check_caller(
    call: &Call,
    method: &Method,
    caller: &RegionPrefix,
) -> Result<(), GatewayError> {
    if !method.callers.admit(&call.peer.identity) {
        return Err(GatewayError::PermissionDenied(format!(
            "{} may not call {}",
            call.peer.identity, method.name
        )));
    }
    let Some(claimed) = metadata::region_code(&call.headers, metadata::ORIGIN_REGION)? else {
        return Ok(());
    };
    if caller.contains(&claimed) {
        Ok(())
    } else {
        Err(GatewayError::PermissionDenied(format!(
            "certificate for region {caller} cannot originate as region {claimed}"
        )))
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

    #[test]
    fn origin_claims_must_lie_inside_the_certificate_region() {
        let method = lookup(DELIVER).unwrap();
        let node = "spiffe://tongban/region/31";
        let ok = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "310115")]);
        assert!(check_caller(&ok, method, &prefix("31")).is_ok());
        let none = call(DELIVER, node, &[]);
        assert!(check_caller(&none, method, &prefix("31")).is_ok());
        let foreign = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "440000")]);
        let err = check_caller(&foreign, method, &prefix("31")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let malformed = call(DELIVER, node, &[(metadata::ORIGIN_REGION, "31")]);
        let err = check_caller(&malformed, method, &prefix("31")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
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
