//! Phase 3: where the call goes. The target region comes from metadata and is matched
//! against the registry by longest registered prefix.

use std::sync::Arc;

use http::HeaderMap;
use tongban_proto::{
    metadata,
    region::{RegionCode, RegionTable},
};

use crate::{
    error::GatewayError,
    registry::{Registry, Route},
};

/// Parses `tongban-target-region` and finds its route.
pub fn resolve(
    headers: &HeaderMap,
    registry: &Registry,
    regions: &RegionTable,
) -> Result<(RegionCode, Arc<Route>), GatewayError> {
    let raw = headers
        .get(metadata::TARGET_REGION)
        .ok_or(GatewayError::InvalidMetadata {
            key: metadata::TARGET_REGION,
            problem: "required on relayed calls".into(),
        })?;
    let target = raw
        .to_str()
        .ok()
        .and_then(|s| RegionCode::parse(s).ok())
        .ok_or_else(|| GatewayError::InvalidMetadata {
            key: metadata::TARGET_REGION,
            problem: "must be a 6-digit GB/T 2260 code".into(),
        })?;
    // A county code may be historical (ID numbers keep theirs), but its province must
    // exist; that separates "unknown region" from "no node for a known region".
    if !regions.is_known_province(&target) {
        return Err(GatewayError::NoRoute(format!(
            "{target} (unknown province {})",
            target.province()
        )));
    }
    registry
        .lookup(&target)
        .map(|route| (target, route))
        .ok_or_else(|| GatewayError::NoRoute(target.to_string()))
}
