//! Each delivery is applied once per (origin, idempotency key): a replay answers with
//! the first outcome and creates nothing; the same key with different content is a
//! caller's error, never silently taken for a replay.

use prost::Message;
use tongban_proto::{
    contract::metadata::{self, MAX_IDEMPOTENCY_KEY},
    rules::region::RegionPrefix,
    v1::{Application, DeliverApplicationResponse},
};
use tonic::metadata::MetadataMap;

use crate::{context::NodeContext, error::NodeError};

/// The delivery's idempotency key: required, bounded as the contract bounds it.
pub fn key(metadata: &MetadataMap) -> Result<String, NodeError> {
    match metadata::idempotency_key(metadata.as_ref()) {
        Ok(Some(key)) => Ok(key.to_owned()),
        Ok(None) | Err(_) => Err(NodeError::invalid(
            metadata::IDEMPOTENCY_KEY,
            format!("required, 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        )),
    }
}

/// The first answer to a delivery with this key from `origin`, marked as a duplicate,
/// if there was one.
pub async fn earlier(
    ctx: &NodeContext,
    origin: &RegionPrefix,
    key: &str,
    application: &Application,
    payload_sha256: &str,
) -> Result<Option<DeliverApplicationResponse>, NodeError> {
    let Some((case_number, first_sha256, response)) = ctx
        .store
        .inbound(origin.to_string(), key.to_owned())
        .await?
    else {
        return Ok(None);
    };
    if case_number != application.case_number || first_sha256 != payload_sha256 {
        return Err(NodeError::FailedPrecondition(format!(
            "idempotency key {key:?} was used for a different application"
        )));
    }
    let mut first = DeliverApplicationResponse::decode(response.as_slice())
        .map_err(|e| NodeError::FailedPrecondition(format!("stored answer unreadable: {e}")))?;
    first.duplicate = true;
    Ok(Some(first))
}
