//! Whether this node may take the delivery at all: the application's origin inside the
//! region the gateway verified, its target a region this node handles, its case number
//! one of its origin's.

use tongban_proto::{
    rules::region::{RegionCode, RegionPrefix},
    v1::Application,
};

use crate::{
    context::NodeContext,
    error::{NodeError, region_code},
};

/// Admits the application delivered by `origin`; its claimed origin region.
pub fn admit(
    ctx: &NodeContext,
    origin: &RegionPrefix,
    application: &Application,
) -> Result<RegionCode, NodeError> {
    let claimed_origin = region_code(&application.origin_region, "application.origin_region")?;
    if !origin.contains(&claimed_origin) {
        return Err(NodeError::PermissionDenied(format!(
            "application.origin_region {claimed_origin} is outside the calling region {origin}"
        )));
    }
    let target = region_code(&application.target_region, "application.target_region")?;
    if !ctx.prefix.contains(&target) {
        // A routing mismatch (registry being changed) may heal: NOT_FOUND is retried.
        return Err(NodeError::NotFound(format!(
            "application.target_region {target} is not handled by region {}",
            ctx.prefix
        )));
    }
    if !application.case_number.starts_with(claimed_origin.as_str()) {
        return Err(NodeError::invalid(
            "application.case_number",
            "must start with the origin region code",
        ));
    }
    Ok(claimed_origin)
}
