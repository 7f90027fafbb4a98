//! The `tongban.federation.v1.Node` service: what the gateway calls on this node.
//!
//! Only the gateway's certificate may call it, and the calling region is the one the
//! gateway verified (`tongban-verified-origin`). A delivery is checked to the same
//! standard as a local filing before the platform sees it, and applied once per
//! idempotency key.

use std::sync::Arc;

use opentelemetry::{KeyValue, trace::SpanKind};
use prost::Message;
use tongban_proto::{
    metadata,
    region::{RegionCode, RegionPrefix},
    resident_id::ResidentId,
    v1::{
        AssertIdentityRequest, AssertIdentityResponse, DeliverApplicationRequest,
        DeliverApplicationResponse, FetchHolderLicensesRequest, FetchHolderLicensesResponse,
        FetchLicenseRequest, FetchLicenseResponse, PushStatusRequest, PushStatusResponse,
        QueryStatusRequest, QueryStatusResponse, node_server,
    },
};
use tongban_runtime::{
    identity::PeerIdentity, incoming::PeerInfo, trace_context::TraceParent, traces::Span,
};
use tonic::{Request, Response, Status};

use crate::{context::NodeContext, error::NodeError};

/// The node's federation service.
pub struct FederationService {
    pub ctx: Arc<NodeContext>,
    /// The region's issuer: identity assertions and licenses.
    pub issuer: Arc<crate::issuer::Issuer>,
}

/// The region the gateway verified for this call.
fn verified_origin<T>(request: &Request<T>) -> Result<RegionPrefix, NodeError> {
    match request.extensions().get::<PeerInfo>().map(|p| &p.identity) {
        Some(PeerIdentity::Gateway) => {}
        _ => {
            return Err(NodeError::PermissionDenied(
                "only the federation gateway may call a node".into(),
            ));
        }
    }
    let value = request
        .metadata()
        .get(metadata::VERIFIED_ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| NodeError::invalid(metadata::VERIFIED_ORIGIN, "missing"))?;
    RegionPrefix::parse(value)
        .map_err(|e| NodeError::invalid(metadata::VERIFIED_ORIGIN, e.to_string()))
}

fn required_code(value: &str, name: &str) -> Result<RegionCode, NodeError> {
    RegionCode::parse(value).map_err(|e| NodeError::invalid(name, e.to_string()))
}

/// An incoming call in progress: its span, and what its metrics need.
struct Served {
    span: Span,
    method: &'static str,
    origin: String,
    trace_id: String,
    started: std::time::Instant,
}

impl FederationService {
    /// Starts serving an incoming call of `method`: its span is a child of the
    /// gateway's.
    fn start<T>(&self, method: &'static str, request: &Request<T>) -> Served {
        let started = std::time::Instant::now();
        let parent = request
            .metadata()
            .get(metadata::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        // The verified origin (set by the gateway), bounded to a region prefix's length.
        let origin: String = request
            .metadata()
            .get(metadata::VERIFIED_ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RegionPrefix::parse(v).ok())
            .map(|p| p.to_string())
            .unwrap_or_default();
        let traces = &self.ctx.traces;
        let span = if traces.enabled() {
            traces.span(
                format!("tongban.federation.v1.Node/{method}"),
                SpanKind::Server,
                parent.as_ref(),
                vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("tongban.origin", origin.clone()),
                    KeyValue::new("tongban.target", self.ctx.region.to_string()),
                ],
            )
        } else {
            Span::passthrough(parent.as_ref())
        };
        Served {
            span,
            method,
            origin,
            trace_id: parent.map(|p| p.trace_id_hex()).unwrap_or_default(),
            started,
        }
    }

    /// Ends an incoming call: its outcome on its span, in the metrics and in the
    /// audit trail.
    fn answered<R>(
        &self,
        mut served: Served,
        result: Result<R, NodeError>,
    ) -> Result<Response<R>, Status> {
        let result = result.map_err(Status::from);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        served.span.grpc_outcome(code);
        self.ctx
            .audit
            .served(served.method, &served.origin, code, &served.trace_id);
        if let Some(metrics) = &self.ctx.metrics {
            metrics.server_call(
                served.method,
                &served.origin,
                code,
                served.started.elapsed(),
            );
        }
        result.map(Response::new)
    }

    async fn deliver(
        &self,
        request: Request<DeliverApplicationRequest>,
        trace: Option<TraceParent>,
    ) -> Result<DeliverApplicationResponse, NodeError> {
        let origin = verified_origin(&request)?;
        let key = request
            .metadata()
            .get(metadata::IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| {
                NodeError::invalid(metadata::IDEMPOTENCY_KEY, "required, 1 to 128 characters")
            })?
            .to_owned();
        // The case's trace (empty if the call came without one).
        let trace_id = trace.map(|t| t.trace_id_hex()).unwrap_or_default();
        let application = request
            .into_inner()
            .application
            .ok_or_else(|| NodeError::invalid("application", "required"))?;

        let payload = application.encode_to_vec();
        let payload_sha256 = tongban_proto::digest::sha256_hex(&payload);
        // A replay answers with the first outcome and creates nothing; the same key with
        // different content is a caller's error, never silently taken as a replay.
        if let Some((case_number, first_sha256, response)) = self
            .ctx
            .store
            .inbound(origin.to_string(), key.clone())
            .await?
        {
            if case_number != application.case_number || first_sha256 != payload_sha256 {
                return Err(NodeError::FailedPrecondition(format!(
                    "idempotency key {key:?} was used for a different application"
                )));
            }
            let mut first =
                DeliverApplicationResponse::decode(response.as_slice()).map_err(|e| {
                    NodeError::FailedPrecondition(format!("stored answer unreadable: {e}"))
                })?;
            first.duplicate = true;
            return Ok(first);
        }

        let claimed_origin =
            required_code(&application.origin_region, "application.origin_region")?;
        if !origin.contains(&claimed_origin) {
            return Err(NodeError::PermissionDenied(format!(
                "application.origin_region {claimed_origin} is outside the calling region {origin}"
            )));
        }
        let target = required_code(&application.target_region, "application.target_region")?;
        if !self.ctx.prefix.contains(&target) {
            // A routing mismatch (registry being changed) may heal: NOT_FOUND is retried.
            return Err(NodeError::NotFound(format!(
                "application.target_region {target} is not handled by region {}",
                self.ctx.prefix
            )));
        }
        if !application.case_number.starts_with(claimed_origin.as_str()) {
            return Err(NodeError::invalid(
                "application.case_number",
                "must start with the origin region code",
            ));
        }
        // Same standard as a local filing (同标准办理): the ID number and the form are
        // checked against the catalog here too.
        let today = tongban_proto::calendar::business_now().date();
        let applicant = application
            .applicant
            .as_ref()
            .ok_or_else(|| NodeError::invalid("application.applicant", "required"))?;
        let id = ResidentId::parse(&applicant.id_number, self.ctx.regions, today)
            .map_err(|e| NodeError::invalid("application.applicant.id_number", e.to_string()))?;
        if let Some(problem) = tongban_proto::text::problem(&applicant.name) {
            return Err(NodeError::invalid("application.applicant.name", problem));
        }
        // Judged by the catalog version the application names (it never changes), so
        // the verdict is final: a form that fails under its own version's rules fails
        // for good. A version this node does not know (newer than its copy, or older
        // than the ones it keeps) is a configuration matter: the sender keeps the case
        // pending, counted as blocked, until the catalogs agree.
        let named = application.catalog_version.as_str();
        let catalog = if named.is_empty() {
            self.ctx.catalog.get()
        } else {
            self.ctx.catalog.version(named).ok_or_else(|| {
                NodeError::UnknownCatalog(format!(
                    "the application names catalog {named:?}, which this node does not \
                     know (it has {}); deliver again once the catalogs agree",
                    self.ctx.catalog.get().version
                ))
            })?
        };
        let item = catalog.item(&application.one_thing_id).ok_or_else(|| {
            NodeError::invalid(
                "application.one_thing_id",
                format!("unknown in catalog {}", catalog.version),
            )
        })?;
        item.validate_form(&application.form, self.ctx.regions, today)
            .map_err(|e| {
                NodeError::invalid(
                    "application.form",
                    format!("{e} (catalog {})", catalog.version),
                )
            })?;

        let submitted = self
            .ctx
            .platform
            .submit(
                &application,
                &id.keyed_hash(&self.ctx.id_hash_key),
                &payload,
            )
            .await?;
        // The platform's database and the store are two: a crash here leaves the case
        // taken and its key unrecorded. The sender's retry (same key) then finds no key,
        // and the platform, idempotent by case number, answers with the case it has:
        // nothing is created twice (tests/tests/faults.rs proves it with this point).
        crate::crash_point::crash_point(crate::crash_point::AFTER_PLATFORM_SUBMIT);
        let response = DeliverApplicationResponse {
            case_number: application.case_number.clone(),
            handling_reference: submitted.case.reference.clone(),
            status: Some(submitted.case.status.clone()),
            duplicate: !submitted.created,
        };
        self.ctx
            .store
            .remember_inbound(
                origin.to_string(),
                key,
                application.case_number.clone(),
                payload_sha256,
                trace,
                id.as_str().get(..2).unwrap_or_default().to_owned(),
                DeliverApplicationResponse {
                    duplicate: false,
                    ..response.clone()
                }
                .encode_to_vec(),
            )
            .await?;
        tracing::info!(
            case = %application.case_number,
            origin = %claimed_origin,
            created = submitted.created,
            %trace_id,
            "delivery accepted"
        );
        Ok(response)
    }

    async fn query(
        &self,
        request: Request<QueryStatusRequest>,
    ) -> Result<QueryStatusResponse, NodeError> {
        let origin = verified_origin(&request)?;
        let case_number = request.into_inner().case_number;
        let case = self.ctx.platform.case(&case_number).await?.ok_or_else(|| {
            NodeError::NotFound(format!("case {case_number:?} is not handled here"))
        })?;
        let case_origin = required_code(&case.origin_region, "case.origin_region")?;
        // Only the filing region (and its sub-regions' nodes) may read a case's status.
        if !origin.contains(&case_origin) {
            return Err(NodeError::PermissionDenied(format!(
                "region {origin} did not file case {case_number}"
            )));
        }
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
        let handling = required_code(&record.target_region, "case.target_region")?;
        if !origin.contains(&handling) {
            return Err(NodeError::PermissionDenied(format!(
                "region {origin} does not handle case {}",
                push.case_number
            )));
        }
        let applied = crate::metrics::apply_status(
            &self.ctx.store,
            self.ctx.metrics.as_deref(),
            push.case_number,
            status,
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
        let served = self.start("DeliverApplication", &request);
        let trace = served.span.context();
        self.answered(served, self.deliver(request, trace).await)
    }

    async fn query_status(
        &self,
        request: Request<QueryStatusRequest>,
    ) -> Result<Response<QueryStatusResponse>, Status> {
        let served = self.start("QueryStatus", &request);
        self.answered(served, self.query(request).await)
    }

    async fn push_status(
        &self,
        request: Request<PushStatusRequest>,
    ) -> Result<Response<PushStatusResponse>, Status> {
        let served = self.start("PushStatus", &request);
        self.answered(served, self.push(request).await)
    }

    async fn assert_identity(
        &self,
        request: Request<AssertIdentityRequest>,
    ) -> Result<Response<AssertIdentityResponse>, Status> {
        let served = self.start("AssertIdentity", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .assert_identity(requester, request.into_inner())
                .await
        };
        self.answered(served, answer.await)
    }

    async fn fetch_license(
        &self,
        request: Request<FetchLicenseRequest>,
    ) -> Result<Response<FetchLicenseResponse>, Status> {
        let served = self.start("FetchLicense", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .fetch_license(requester, request.into_inner())
                .await
        };
        self.answered(served, answer.await)
    }

    async fn fetch_holder_licenses(
        &self,
        request: Request<FetchHolderLicensesRequest>,
    ) -> Result<Response<FetchHolderLicensesResponse>, Status> {
        let served = self.start("FetchHolderLicenses", &request);
        let answer = async {
            let requester = verified_origin(&request)?;
            self.issuer
                .fetch_holder_licenses(requester, request.into_inner())
                .await
        };
        self.answered(served, answer.await)
    }
}
