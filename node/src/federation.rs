//! The `tongban.federation.v1.Node` service: what the gateway calls on this node.
//!
//! Only the gateway's certificate may call it, and the calling region is the one the
//! gateway verified (`tongban-verified-origin`), which owns the codes inside it but not
//! those of a city with a node of its own ([`VerifiedOrigin`]). Deliveries and status
//! pushes must also be signed by a region that owns them, by this node's own copy of the
//! registry ([`crate::signed_calls`]): the gateway cannot speak for a region. What was
//! signed is kept with the case. A delivery is checked to the same
//! standard as a local filing before the platform sees it, and applied once per
//! idempotency key ([`crate::delivery`]). Each call is recorded once, however it ends
//! ([`crate::observe::served`]); the platform calls it makes carry the call's trace
//! ([`crate::observe::platform::under`]).

use std::sync::Arc;

use tongban_proto::v1::{
    AssertIdentityRequest, AssertIdentityResponse, DeliverApplicationRequest,
    DeliverApplicationResponse, FetchHolderLicensesRequest, FetchHolderLicensesResponse,
    FetchLicenseRequest, FetchLicenseResponse, PushStatusRequest, PushStatusResponse,
    QueryStatusRequest, QueryStatusResponse, RaiseDisputeRequest, RaiseDisputeResponse,
    RecordAccessesRequest, RecordAccessesResponse, SettleDisputeRequest, SettleDisputeResponse,
    SubmitEvaluationRequest, SubmitEvaluationResponse, node_server,
};
use tongban_runtime::{serving::incoming::PeerInfo, trust::identity::PeerIdentity};
use tonic::{Request, Response, Status};

use tongban_proto::rules::region::RegionCode;

use crate::{
    context::NodeContext,
    delivery,
    error::{NodeError, region_code},
    observe::{platform as platform_calls, served::Served},
    signed_calls::{SignatureCheck, SignedMessage},
    store::StatusReport,
    verified_origin::VerifiedOrigin,
};

/// How far past the last status known a pushed sequence may go. A case's sequence rises
/// by one with each change at the handling region, and pushes may be lost or reordered,
/// so gaps are normal; but no case changes a million times, and a push that far ahead
/// would make every real status after it look old (ignored), freezing the case.
pub const MAX_SEQUENCE_STEP: u64 = 1_000_000;

/// Refuses a pushed `sequence` more than [`MAX_SEQUENCE_STEP`] beyond `last`, the
/// sequence of the status stored for the case.
fn check_sequence(sequence: u64, last: u64) -> Result<(), NodeError> {
    if sequence.saturating_sub(last) > MAX_SEQUENCE_STEP {
        return Err(NodeError::invalid(
            "status.sequence",
            format!(
                "{sequence} is more than {MAX_SEQUENCE_STEP} beyond the case's last known \
                 sequence {last}"
            ),
        ));
    }
    Ok(())
}

/// The call's idempotency key, empty without one.
fn idempotency_key<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(tongban_proto::contract::metadata::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Keeps what a region signed about a case (a dispute or its settlement) as evidence,
/// under the call's idempotency key.
async fn keep_evidence<T>(
    ctx: &NodeContext,
    signed: &SignedMessage,
    request: &Request<T>,
    case_number: impl Fn(&T) -> String,
) -> Result<(), NodeError> {
    let key = idempotency_key(request);
    let case = case_number(request.get_ref());
    ctx.store.keep_signed(signed.evidence(&case, &key)).await?;
    Ok(())
}

/// The node's federation service.
pub struct FederationService {
    pub ctx: Arc<NodeContext>,
    /// The region's issuer: identity assertions and licenses.
    pub issuer: Arc<crate::issuer::Issuer>,
}

/// Refuses a caller that is not the gateway.
fn only_the_gateway<T>(request: &Request<T>) -> Result<(), NodeError> {
    match request.extensions().get::<PeerInfo>().map(|p| &p.identity) {
        Some(PeerIdentity::Gateway) => Ok(()),
        _ => Err(NodeError::PermissionDenied(
            "only the federation gateway may call a node".into(),
        )),
    }
}

/// The region the gateway verified for this call, with the codes it does not own.
fn verified_origin<T>(request: &Request<T>) -> Result<VerifiedOrigin, NodeError> {
    only_the_gateway(request)?;
    VerifiedOrigin::from_metadata(request.metadata())
}

impl FederationService {
    async fn query(
        &self,
        request: Request<QueryStatusRequest>,
    ) -> Result<QueryStatusResponse, NodeError> {
        let origin = verified_origin(&request)?;
        let case_number = request.into_inner().case_number;
        let case = self.ctx.platform.case(&case_number).await?.ok_or_else(|| {
            NodeError::NotFound(format!("case {case_number:?} is not handled here"))
        })?;
        let case_origin = region_code(&case.origin_region, "case.origin_region")?;
        // Only the node that owns the filing region may read a case's status.
        origin.require(&case_origin, "case.origin_region")?;
        Ok(QueryStatusResponse {
            case_number,
            handling_region: self.ctx.region.to_string(),
            handling_reference: case.reference,
            status: Some(case.status),
        })
    }

    async fn push(
        &self,
        request: Request<PushStatusRequest>,
    ) -> Result<PushStatusResponse, NodeError> {
        let origin = verified_origin(&request)?;
        let signed = SignatureCheck::of(&request)?;
        let key = idempotency_key(&request);
        let push = request.into_inner();
        let status = push
            .status
            .ok_or_else(|| NodeError::invalid("status", "required"))?;
        match tongban_proto::v1::Stage::try_from(status.stage) {
            Ok(tongban_proto::v1::Stage::Unspecified) | Err(_) => {
                return Err(NodeError::invalid("status.stage", "unknown stage"));
            }
            Ok(_) => {}
        }
        // SQLite integers are signed 64-bit.
        if i64::try_from(status.sequence).is_err() {
            return Err(NodeError::invalid("status.sequence", "out of range"));
        }
        let record = self
            .ctx
            .store
            .application(push.case_number.clone())
            .await?
            // Permanent for the sender (unlike the gateway's "no route", which heals).
            .ok_or_else(|| {
                NodeError::FailedPrecondition(format!(
                    "case {:?} was not filed here",
                    push.case_number
                ))
            })?;
        // Only the node that owns the handling region decides the case (for a joint
        // case, the part it handles): the region the gateway verified, and the one that
        // signed (which a gateway cannot forge).
        let (part, handling, last) = match record.joint() {
            Some(joint) => {
                let owns = |region: &str| {
                    RegionCode::parse(region)
                        .is_ok_and(|code| origin.owns(&code) && signed.signer.owns(&code))
                };
                let part = joint.part_of(owns).ok_or_else(|| {
                    NodeError::PermissionDenied(format!(
                        "case {:?} has no part handled by the calling region",
                        push.case_number
                    ))
                })?;
                let region = region_code(&part.region, "case.parts.region")?;
                (Some(part.id.clone()), region, part.sequence)
            }
            None => (
                None,
                region_code(&record.target_region, "case.target_region")?,
                record.status.sequence,
            ),
        };
        origin.require(&handling, "case.target_region")?;
        signed.signer.require(&handling, "case.target_region")?;
        check_sequence(status.sequence, last)?;
        let key = match key.is_empty() {
            true => format!("push:{}:{}", push.case_number, status.sequence),
            false => key,
        };
        self.ctx
            .store
            .keep_signed(signed.evidence(&push.case_number, &key))
            .await?;
        let applied = crate::metrics::apply_status(
            &self.ctx.store,
            self.ctx.metrics.as_deref(),
            StatusReport {
                case_number: push.case_number,
                part,
                reference: None,
                status,
            },
        )
        .await?;
        Ok(PushStatusResponse { applied })
    }
}

#[tonic::async_trait]
impl node_server::Node for FederationService {
    async fn deliver_application(
        &self,
        request: Request<DeliverApplicationRequest>,
    ) -> Result<Response<DeliverApplicationResponse>, Status> {
        let served = Served::start(&self.ctx, "DeliverApplication", &request);
        let trace = served.trace();
        let answer = async {
            let origin = verified_origin(&request)?;
            let signed = SignatureCheck::of(&request)?;
            delivery::deliver(&self.ctx, (origin, &signed), request, trace).await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }

    async fn query_status(
        &self,
        request: Request<QueryStatusRequest>,
    ) -> Result<Response<QueryStatusResponse>, Status> {
        let served = Served::start(&self.ctx, "QueryStatus", &request);
        let answer = platform_calls::under(served.trace(), self.query(request)).await;
        served.answered(&self.ctx, answer)
    }

    async fn push_status(
        &self,
        request: Request<PushStatusRequest>,
    ) -> Result<Response<PushStatusResponse>, Status> {
        let served = Served::start(&self.ctx, "PushStatus", &request);
        served.answered(&self.ctx, self.push(request).await)
    }

    async fn submit_evaluation(
        &self,
        request: Request<SubmitEvaluationRequest>,
    ) -> Result<Response<SubmitEvaluationResponse>, Status> {
        let served = Served::start(&self.ctx, "SubmitEvaluation", &request);
        let answer = async {
            let origin = verified_origin(&request)?;
            crate::evaluation::receive(&self.ctx, &self.ctx.evaluations, request, origin).await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }

    async fn raise_dispute(
        &self,
        request: Request<RaiseDisputeRequest>,
    ) -> Result<Response<RaiseDisputeResponse>, Status> {
        let served = Served::start(&self.ctx, "RaiseDispute", &request);
        let answer = async {
            let origin = verified_origin(&request)?;
            let signed = SignatureCheck::of(&request)?;
            keep_evidence(&self.ctx, &signed, &request, |r| r.case_number.clone()).await?;
            crate::disputes::receive(&self.ctx, &origin, &signed, request.into_inner()).await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }

    async fn settle_dispute(
        &self,
        request: Request<SettleDisputeRequest>,
    ) -> Result<Response<SettleDisputeResponse>, Status> {
        let served = Served::start(&self.ctx, "SettleDispute", &request);
        let answer = async {
            let origin = verified_origin(&request)?;
            let signed = SignatureCheck::of(&request)?;
            keep_evidence(&self.ctx, &signed, &request, |r| r.case_number.clone()).await?;
            crate::disputes::settled(&self.ctx, &origin, &signed, request.into_inner()).await
        };
        served.answered(&self.ctx, answer.await)
    }

    async fn assert_identity(
        &self,
        request: Request<AssertIdentityRequest>,
    ) -> Result<Response<AssertIdentityResponse>, Status> {
        let served = Served::start(&self.ctx, "AssertIdentity", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .assert_identity(requester.prefix(), request.into_inner())
                .await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }

    async fn fetch_license(
        &self,
        request: Request<FetchLicenseRequest>,
    ) -> Result<Response<FetchLicenseResponse>, Status> {
        let served = Served::start(&self.ctx, "FetchLicense", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .fetch_license(requester.prefix(), request.into_inner())
                .await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }

    async fn fetch_holder_licenses(
        &self,
        request: Request<FetchHolderLicensesRequest>,
    ) -> Result<Response<FetchHolderLicensesResponse>, Status> {
        let served = Served::start(&self.ctx, "FetchHolderLicenses", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .fetch_holder_licenses(requester.prefix(), request.into_inner())
                .await
        };
        let answer = platform_calls::under(served.trace(), answer).await;
        served.answered(&self.ctx, answer)
    }
    async fn record_accesses(
        &self,
        request: Request<RecordAccessesRequest>,
    ) -> Result<Response<RecordAccessesResponse>, Status> {
        let served = Served::start(&self.ctx, "RecordAccesses", &request);
        let answer = async {
            // The gateway reports on its own behalf: no origin is relayed with it.
            only_the_gateway(&request)?;
            crate::access_reports::record(&self.ctx, request.into_inner()).await
        };
        served.answered(&self.ctx, answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_sequence_may_not_jump_past_the_bound() {
        assert!(check_sequence(1, 0).is_ok() && check_sequence(3, 7).is_ok());
        assert!(check_sequence(MAX_SEQUENCE_STEP + 5, 5).is_ok());
        let err = check_sequence(MAX_SEQUENCE_STEP + 6, 5).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("status.sequence"), "{err}");
        assert!(check_sequence(u64::MAX, 0).is_err());
    }
}
