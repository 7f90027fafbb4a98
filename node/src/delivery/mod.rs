//! A delivery arriving at the handling node (`DeliverApplication`, called by the
//! gateway for the filing region): the whole sequence in one place, each step a plain
//! function in a module named for it —
//! - [`replay`]: the delivery's idempotency key, and the first answer for a key used
//!   before (nothing is created twice);
//! - [`admit`]: the application's origin owned by the calling region (and by the region
//!   that signed it), its target handled here, its case number its origin's; what was
//!   signed is kept with the case;
//! - [`standard`]: the same standard as a local filing (同标准办理), against the catalog
//!   version the application names;
//! - [`handover`]: the platform takes the case, then the key is remembered with the
//!   answer.
//!
//! The call's span, metrics and audit record are written around it by
//! [`crate::observe::served`].

pub mod admit;
pub mod handover;
pub mod replay;
pub mod standard;

use prost::Message;
use tongban_proto::{
    rules::digest::sha256_hex,
    v1::{DeliverApplicationRequest, DeliverApplicationResponse},
};
use tongban_runtime::observability::trace_context::TraceParent;
use tonic::Request;

use crate::{
    context::NodeContext,
    crash_point::{AFTER_PLATFORM_SUBMIT, crash_point},
    error::NodeError,
    observe,
    signed_calls::SignedMessage,
    verified_origin::VerifiedOrigin,
};
use handover::Inbound;

/// Takes a delivery from `origin` (the region the gateway verified), `signed` by a
/// region (checked against this node's copy of the registry), under the case's `trace`.
pub async fn deliver(
    ctx: &NodeContext,
    (origin, signed): (VerifiedOrigin, &SignedMessage),
    request: Request<DeliverApplicationRequest>,
    trace: Option<TraceParent>,
) -> Result<DeliverApplicationResponse, NodeError> {
    let key = replay::key(request.metadata())?;
    let application = request
        .into_inner()
        .application
        .ok_or_else(|| NodeError::invalid("application", "required"))?;
    let payload = application.encode_to_vec();
    let payload_sha256 = sha256_hex(&payload);
    if let Some(first) =
        replay::earlier(ctx, &origin.prefix(), &key, &application, &payload_sha256).await?
    {
        return Ok(first);
    }
    let claimed_origin = admit::admit(ctx, &origin, &application)?;
    // The signer must own the origin too: a gateway can claim any origin, not sign.
    signed
        .signer
        .require(&claimed_origin, "application.origin_region")?;
    let applicant = standard::check(ctx, &application)?;
    ctx.store
        .keep_signed(signed.evidence(&application.case_number, &key))
        .await?;
    let inbound = Inbound {
        origin: origin.prefix(),
        key,
        payload,
        payload_sha256,
        trace,
    };
    let submitted = handover::submit(ctx, &application, &applicant, &inbound).await?;
    // The platform's database and the store are two: a crash here leaves the case
    // taken and its key unrecorded. The sender's retry (same key) then finds no key,
    // and the platform, idempotent by case number, answers with the case it has:
    // nothing is created twice (tests/tests/integration/faults.rs proves it with this point).
    crash_point(AFTER_PLATFORM_SUBMIT);
    let response = handover::response(&application, &submitted);
    handover::remember(ctx, inbound, &application, &applicant, &response).await?;
    observe::served::delivery_accepted(
        &application.case_number,
        claimed_origin.as_str(),
        submitted.created,
        &trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
    );
    Ok(response)
}
