//! Whether this node may take the delivery at all: the application's origin owned by the
//! region the gateway verified (inside it, and not a city with a node of its own), its
//! target a region this node handles, its case number one of its origin's.

use tongban_proto::{rules::region::RegionCode, v1::Application};

use crate::{
    context::NodeContext,
    error::{NodeError, region_code},
    verified_origin::VerifiedOrigin,
};

/// Admits the application delivered by `origin`; its claimed origin region.
pub fn admit(
    ctx: &NodeContext,
    origin: &VerifiedOrigin,
    application: &Application,
) -> Result<RegionCode, NodeError> {
    let claimed_origin = region_code(&application.origin_region, "application.origin_region")?;
    origin.require(&claimed_origin, "application.origin_region")?;
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
