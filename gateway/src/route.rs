//! Phase 3: where the call goes. The target region comes from metadata and is matched
//! against the registry by longest registered prefix.

use std::sync::Arc;

use tongban_proto::{
    contract::metadata,
    rules::region::{RegionCode, RegionTable},
};

use crate::{
    call::Call,
    error::GatewayError,
    registry::{Registry, Route},
};

/// Parses `tongban-target-region` and finds its route.
pub fn resolve(
    call: &Call,
    registry: &Registry,
    regions: &RegionTable,
) -> Result<(RegionCode, Arc<Route>), GatewayError> {
    let target = metadata::region_code(
        &call.headers,
        &metadata::names::TARGET_REGION,
        metadata::TARGET_REGION,
    )?
    .ok_or(GatewayError::InvalidMetadata {
        key: metadata::TARGET_REGION,
        problem: "required on relayed calls".into(),
    })?;
    // A county code may be historical (ID numbers keep theirs), but its province must
    // exist; that separates "unknown region" from "no node for a known region".
    if !regions.is_known_province(&target) {
        return Err(GatewayError::UnknownRegion(format!(
            "{target} (unknown province {})",
            target.province()
        )));
    }
    registry
        .lookup(&target)
        .map(|route| (target, route))
        .ok_or_else(|| GatewayError::NoRoute(target.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::test_support::call;

    const DELIVER: &str = "/tongban.federation.v1.Gateway/DeliverApplication";
    const NODE: &str = "spiffe://tongban/region/31";

    #[test]
    fn targets_are_parsed_and_told_apart() {
        let registry = Registry::default();
        let regions = RegionTable::embedded();
        let code = |meta: &[(&'static str, &str)]| {
            resolve(&call(DELIVER, NODE, meta), &registry, regions)
                .map(|_| ())
                .unwrap_err()
        };
        let missing = code(&[]);
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        assert!(missing.to_string().contains(metadata::TARGET_REGION));
        let malformed = code(&[(metadata::TARGET_REGION, "44")]);
        assert!(malformed.to_string().contains("6-digit"), "{malformed}");
        let unknown = code(&[(metadata::TARGET_REGION, "990000")]);
        assert!(
            matches!(unknown, GatewayError::UnknownRegion(_)),
            "{unknown}"
        );
        let unregistered = code(&[(metadata::TARGET_REGION, "650102")]);
        assert!(
            matches!(unregistered, GatewayError::NoRoute(_)),
            "{unregistered}"
        );
    }
}
