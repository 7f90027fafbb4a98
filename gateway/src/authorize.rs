//! Phase 2: may the caller act as the origin it claims? A node originates only for
//! codes inside its own certificate's region; the verified origin it is given comes
//! from the certificate, never from the caller.

use http::HeaderMap;
use tongban_proto::{
    metadata,
    region::{RegionCode, RegionPrefix},
};

use crate::error::GatewayError;

/// Checks the optional `tongban-origin-region` claim against the caller's region.
pub fn check_origin_claim(headers: &HeaderMap, caller: &RegionPrefix) -> Result<(), GatewayError> {
    let Some(value) = headers.get(metadata::ORIGIN_REGION) else {
        return Ok(());
    };
    let claimed = value
        .to_str()
        .ok()
        .and_then(|s| RegionCode::parse(s).ok())
        .ok_or_else(|| GatewayError::InvalidMetadata {
            key: metadata::ORIGIN_REGION,
            problem: "must be a 6-digit GB/T 2260 code".into(),
        })?;
    if caller.contains(&claimed) {
        Ok(())
    } else {
        Err(GatewayError::PermissionDenied(format!(
            "certificate for region {caller} cannot originate as region {claimed}"
        )))
    }
}
