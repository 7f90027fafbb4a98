//! The hand-over of a delivered case: the platform takes it (idempotent by case
//! number), then the delivery's key is remembered with the answer, so a replay gets
//! the first answer.

use prost::Message;
use tongban_proto::{
    rules::region::RegionPrefix,
    rules::resident_id::ResidentId,
    v1::{Application, DeliverApplicationResponse},
};
use tongban_runtime::observability::trace_context::TraceParent;

use crate::{context::NodeContext, error::NodeError, platform::Submitted};

/// A delivery as received: who sent it, under which key, and its bytes.
pub struct Inbound {
    pub origin: RegionPrefix,
    pub key: String,
    /// The application as encoded, as the platform keeps it.
    pub payload: Vec<u8>,
    pub payload_sha256: String,
    /// The case's trace, kept with the key.
    pub trace: Option<TraceParent>,
}

/// Submits the application to the province's platform.
pub async fn submit(
    ctx: &NodeContext,
    application: &Application,
    applicant: &ResidentId,
    inbound: &Inbound,
) -> Result<Submitted, NodeError> {
    Ok(ctx
        .platform
        .submit(
            application,
            &applicant.keyed_hash(&ctx.id_hash_key),
            &inbound.payload,
        )
        .await?)
}

/// The answer to the sender: a duplicate when the platform had the case already.
pub fn response(application: &Application, submitted: &Submitted) -> DeliverApplicationResponse {
    DeliverApplicationResponse {
        case_number: application.case_number.clone(),
        handling_reference: submitted.case.reference.clone(),
        status: Some(submitted.case.status.clone()),
        duplicate: !submitted.created,
    }
}

/// Remembers the delivery's key with its answer (stored as a first answer, so a
/// replay is told apart by the replay check, not by what is stored).
pub async fn remember(
    ctx: &NodeContext,
    inbound: Inbound,
    application: &Application,
    applicant: &ResidentId,
    response: &DeliverApplicationResponse,
) -> Result<(), NodeError> {
    let first = DeliverApplicationResponse {
        duplicate: false,
        ..response.clone()
    };
    ctx.store
        .remember_inbound(
            inbound.origin.to_string(),
            inbound.key,
            application.case_number.clone(),
            inbound.payload_sha256,
            inbound.trace,
            applicant.as_str().get(..2).unwrap_or_default().to_owned(),
            first.encode_to_vec(),
        )
        .await?;
    Ok(())
}
