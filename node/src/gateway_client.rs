//! The node's client for the gateway: one pooled mTLS HTTP/2 channel, and the metadata
//! the gateway routes and authorizes on. A failed call says whether it may be retried,
//! as its maker (gateway or node) stated it: callers never re-decide that from codes.

use std::sync::Arc;

use tongban_proto::contract::retry::Retry;
use tongban_proto::{
    contract::metadata,
    rules::message_signature::Signed,
    rules::region::{RegionCode, RegionPrefix},
    v1::{
        AdoptFeaturedItemRequest, CatalogChangeResponse, CatalogItem, DeliverApplicationRequest,
        DeliverApplicationResponse, GetCatalogRequest, GetCatalogResponse, IdentityVerdict,
        LicenseVerdict, ListLicensesRequest, ListLicensesResponse, LookupLicenseRequest,
        PublishFeaturedItemRequest, PublishRevocationRequest, PublishRevocationResponse,
        PushStatusRequest, PushStatusResponse, QueryStatusRequest, QueryStatusResponse,
        RaiseDisputeRequest, RaiseDisputeResponse, SettleDisputeRequest, SettleDisputeResponse,
        SubmitEvaluationRequest, SubmitEvaluationResponse, VerifyIdentityRequest,
        catalog_client::CatalogClient, gateway_client::GatewayClient as Grpc,
    },
};
use tongban_runtime::{
    observability::trace_context::TraceParent,
    observability::traces::{Span, Traces},
};
use tonic::{Request, Status, metadata::MetadataValue, transport::Channel};

use crate::{
    gateway_replicas::GatewayChannel,
    issuer_keys::SharedIssuerKeys,
    metrics::NodeMetrics,
    observe::{self, client::ClientCall},
};

/// A failed call through the gateway.
#[derive(Debug, thiserror::Error)]
#[error("{:?}: {}", .status.code(), .status.message())]
pub struct CallFailed {
    pub status: Status,
    /// Whether, and when, the same call may be tried again.
    pub retry: Retry,
    /// How long the gateway asked the caller to wait before trying again, if it did
    /// (a shed call).
    pub pushback: Option<std::time::Duration>,
}

impl From<Status> for CallFailed {
    fn from(status: Status) -> Self {
        Self {
            retry: Retry::of(&status),
            pushback: tongban_proto::contract::retry::pushback(&status),
            status,
        }
    }
}

/// Routing facts of one call.
pub struct CallMeta<'a> {
    /// 6-digit code of the region that must handle the call.
    pub target_region: &'a str,
    pub one_thing: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// The trace context the call is made under (the case's); the call is a child
    /// span of it.
    pub trace: Option<TraceParent>,
    /// Which attempt this is (1 for the first), for outbox calls; 0 otherwise.
    pub attempt: u32,
    /// The applicant's home province (deliveries, pushes), for the gateway's counts.
    pub applicant_home: Option<&'a str>,
    /// The stage a push carries, for the gateway's counts.
    pub stage: Option<&'a str>,
}

/// Calls to the gateway on behalf of this node's region.
#[derive(Clone)]
pub struct GatewayClient {
    grpc: Grpc<GatewayChannel>,
    catalog: CatalogClient<GatewayChannel>,
    /// One channel per gateway replica, by endpoint, for what every replica must hear
    /// (revocations).
    replicas: Vec<(String, Grpc<Channel>)>,
    origin: MetadataValue<tonic::metadata::Ascii>,
    signer: MessageSigner,
    traces: Traces,
    metrics: Option<Arc<NodeMetrics>>,
}

/// Signs what this node sends for its region (deliveries, status pushes, revocations)
/// with the issuer key in force, so the receiver can tell the region spoke, not only
/// the gateway that relayed it ([`tongban_proto::rules::message_signature`]).
#[derive(Clone)]
pub struct MessageSigner {
    pub region: RegionPrefix,
    pub keys: SharedIssuerKeys,
}

impl MessageSigner {
    /// The signature header of `message`, sent as `method` to `target_region` under
    /// `idempotency_key`. Signed per attempt: the receiver refuses old
    /// signatures. The bytes signed are the message's encoding, which is what tonic
    /// frames (uncompressed) and the gateway relays untouched.
    fn sign(
        &self,
        method: &str,
        message: &impl prost::Message,
        target_region: &str,
        idempotency_key: &str,
    ) -> Result<MetadataValue<tonic::metadata::Ascii>, CallFailed> {
        let bytes = message.encode_to_vec();
        let signed = Signed {
            method,
            target_region,
            idempotency_key,
            message: &bytes,
        };
        let signature = self
            .keys
            .get()
            .sign_message(self.region, &signed)
            .map_err(|e| CallFailed {
                status: Status::failed_precondition(e.to_string()),
                // Heals when an operator configures a key: kept pending, never lost.
                retry: Retry::Configuration,
                pushback: None,
            })?;
        ascii(&signature.to_header(), metadata::SIGNATURE)
    }
}

impl GatewayClient {
    /// A client over `channel` (balanced over the replicas) and each replica's own
    /// channel.
    pub fn new(
        channel: GatewayChannel,
        replicas: Vec<(String, Channel)>,
        origin: &RegionCode,
        signer: MessageSigner,
        traces: Traces,
        metrics: Option<Arc<NodeMetrics>>,
    ) -> Result<Self, CallFailed> {
        Ok(Self {
            grpc: Grpc::new(channel.clone()),
            catalog: CatalogClient::new(channel),
            replicas: replicas
                .into_iter()
                .map(|(url, channel)| (url, Grpc::new(channel)))
                .collect(),
            origin: ascii(origin.as_str(), metadata::ORIGIN_REGION)?,
            signer,
            traces,
            metrics,
        })
    }

    /// Awaits a call, recording its outcome on its span and in the metrics
    /// ([`crate::observe::client`]).
    async fn traced<R>(
        &self,
        method: &'static str,
        target: &str,
        span: Span,
        call: impl std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    ) -> Result<R, CallFailed> {
        let started = std::time::Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        observe::client::answered(
            span,
            self.metrics.as_deref(),
            method,
            target,
            code,
            started.elapsed(),
        );
        Ok(result?.into_inner())
    }

    /// The gateway replicas' endpoints.
    pub fn replica_endpoints(&self) -> Vec<String> {
        self.replicas.iter().map(|(url, _)| url.clone()).collect()
    }

    /// A lookup's request (the one-thing it is for, under its span) and its span.
    fn lookup_request<T>(
        &self,
        method: &'static str,
        message: T,
        one_thing: &str,
        trace: Option<TraceParent>,
    ) -> Result<(Request<T>, Span), CallFailed> {
        let call = ClientCall {
            method,
            target: "",
            one_thing,
            attempt: 0,
        };
        let span = observe::client::span(&self.traces, &call, trace.as_ref());
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(metadata::ORIGIN_REGION, self.origin.clone());
        md.insert(metadata::ONE_THING, ascii(one_thing, metadata::ONE_THING)?);
        if let Some(context) = span.context() {
            md.insert(
                metadata::TRACEPARENT,
                ascii(&context.to_string(), metadata::TRACEPARENT)?,
            );
        }
        Ok((request, span))
    }

    /// Verifies an applicant with their home region, through the gateway.
    pub async fn verify_identity(
        &self,
        message: VerifyIdentityRequest,
        trace: Option<TraceParent>,
    ) -> Result<IdentityVerdict, CallFailed> {
        let one_thing = message
            .purpose
            .as_ref()
            .map(|p| p.one_thing_id.clone())
            .unwrap_or_default();
        let (request, span) = self.lookup_request("VerifyIdentity", message, &one_thing, trace)?;
        self.traced(
            "VerifyIdentity",
            "",
            span,
            self.grpc.clone().verify_identity(request),
        )
        .await
    }

    /// Looks up one license at its issuing region, through the gateway.
    pub async fn lookup_license(
        &self,
        message: LookupLicenseRequest,
        trace: Option<TraceParent>,
    ) -> Result<LicenseVerdict, CallFailed> {
        let one_thing = message
            .purpose
            .as_ref()
            .map(|p| p.one_thing_id.clone())
            .unwrap_or_default();
        let (request, span) = self.lookup_request("LookupLicense", message, &one_thing, trace)?;
        self.traced(
            "LookupLicense",
            "",
            span,
            self.grpc.clone().lookup_license(request),
        )
        .await
    }

    /// A holder's licenses at one issuing region, through the gateway.
    pub async fn list_licenses(
        &self,
        message: ListLicensesRequest,
        trace: Option<TraceParent>,
    ) -> Result<ListLicensesResponse, CallFailed> {
        let one_thing = message
            .purpose
            .as_ref()
            .map(|p| p.one_thing_id.clone())
            .unwrap_or_default();
        let (request, span) = self.lookup_request("ListLicenses", message, &one_thing, trace)?;
        self.traced(
            "ListLicenses",
            "",
            span,
            self.grpc.clone().list_licenses(request),
        )
        .await
    }

    /// Publishes a revocation to the replica at `endpoint`.
    pub async fn publish_revocation(
        &self,
        endpoint: &str,
        message: PublishRevocationRequest,
        idempotency_key: &str,
    ) -> Result<PublishRevocationResponse, CallFailed> {
        let Some((_, grpc)) = self.replicas.iter().find(|(url, _)| url == endpoint) else {
            // The replica left the configuration: nobody there to tell.
            return Err(CallFailed {
                status: Status::failed_precondition(format!(
                    "gateway endpoint {endpoint} is no longer configured"
                )),
                retry: Retry::Permanent,
                pushback: None,
            });
        };
        let signature = self
            .signer
            .sign("PublishRevocation", &message, "", idempotency_key)?;
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(metadata::ORIGIN_REGION, self.origin.clone());
        md.insert(
            metadata::IDEMPOTENCY_KEY,
            ascii(idempotency_key, metadata::IDEMPOTENCY_KEY)?,
        );
        md.insert(metadata::SIGNATURE, signature);
        Ok(grpc.clone().publish_revocation(request).await?.into_inner())
    }

    fn request<T: prost::Message>(
        &self,
        method: &'static str,
        message: T,
        meta: &CallMeta<'_>,
    ) -> Result<(Request<T>, Span), CallFailed> {
        let call = ClientCall {
            method,
            target: meta.target_region,
            one_thing: meta.one_thing,
            attempt: meta.attempt,
        };
        let span = observe::client::span(&self.traces, &call, meta.trace.as_ref());
        let signature = match SIGNED_METHODS.contains(&method) {
            true => Some(self.signer.sign(
                method,
                &message,
                meta.target_region,
                meta.idempotency_key.unwrap_or_default(),
            )?),
            false => None,
        };
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(
            metadata::TARGET_REGION,
            ascii(meta.target_region, metadata::TARGET_REGION)?,
        );
        md.insert(metadata::ORIGIN_REGION, self.origin.clone());
        md.insert(
            metadata::ONE_THING,
            ascii(meta.one_thing, metadata::ONE_THING)?,
        );
        if let Some(context) = span.context() {
            md.insert(
                metadata::TRACEPARENT,
                ascii(&context.to_string(), metadata::TRACEPARENT)?,
            );
        }
        if let Some(key) = meta.idempotency_key {
            md.insert(
                metadata::IDEMPOTENCY_KEY,
                ascii(key, metadata::IDEMPOTENCY_KEY)?,
            );
        }
        if let Some(home) = meta.applicant_home {
            md.insert(
                metadata::APPLICANT_HOME,
                ascii(home, metadata::APPLICANT_HOME)?,
            );
        }
        if let Some(stage) = meta.stage {
            md.insert(metadata::CASE_STAGE, ascii(stage, metadata::CASE_STAGE)?);
        }
        if let Some(signature) = signature {
            md.insert(metadata::SIGNATURE, signature);
        }
        Ok((request, span))
    }

    pub async fn deliver(
        &self,
        message: DeliverApplicationRequest,
        meta: &CallMeta<'_>,
    ) -> Result<DeliverApplicationResponse, CallFailed> {
        let (request, span) = self.request("DeliverApplication", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.deliver_application(request);
        self.traced("DeliverApplication", meta.target_region, span, call)
            .await
    }

    pub async fn query_status(
        &self,
        message: QueryStatusRequest,
        meta: &CallMeta<'_>,
    ) -> Result<QueryStatusResponse, CallFailed> {
        let (request, span) = self.request("QueryStatus", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.query_status(request);
        self.traced("QueryStatus", meta.target_region, span, call)
            .await
    }

    pub async fn push_status(
        &self,
        message: PushStatusRequest,
        meta: &CallMeta<'_>,
    ) -> Result<PushStatusResponse, CallFailed> {
        let (request, span) = self.request("PushStatus", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.push_status(request);
        self.traced("PushStatus", meta.target_region, span, call)
            .await
    }

    pub async fn submit_evaluation(
        &self,
        message: SubmitEvaluationRequest,
        meta: &CallMeta<'_>,
    ) -> Result<SubmitEvaluationResponse, CallFailed> {
        let (request, span) = self.request("SubmitEvaluation", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.submit_evaluation(request);
        self.traced("SubmitEvaluation", meta.target_region, span, call)
            .await
    }

    pub async fn raise_dispute(
        &self,
        message: RaiseDisputeRequest,
        meta: &CallMeta<'_>,
    ) -> Result<RaiseDisputeResponse, CallFailed> {
        let (request, span) = self.request("RaiseDispute", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.raise_dispute(request);
        self.traced("RaiseDispute", meta.target_region, span, call)
            .await
    }

    pub async fn settle_dispute(
        &self,
        message: SettleDisputeRequest,
        meta: &CallMeta<'_>,
    ) -> Result<SettleDisputeResponse, CallFailed> {
        let (request, span) = self.request("SettleDispute", message, meta)?;
        let mut grpc = self.grpc.clone();
        let call = grpc.settle_dispute(request);
        self.traced("SettleDispute", meta.target_region, span, call)
            .await
    }

    pub async fn get_catalog(
        &self,
        known_version: String,
    ) -> Result<GetCatalogResponse, CallFailed> {
        Ok(self
            .catalog
            .clone()
            .get_catalog(GetCatalogRequest {
                known_version,
                version: String::new(),
            })
            .await?
            .into_inner())
    }

    /// Exactly `version` of the catalog (one a delivery names).
    pub async fn get_catalog_version(
        &self,
        version: String,
    ) -> Result<GetCatalogResponse, CallFailed> {
        Ok(self
            .catalog
            .clone()
            .get_catalog(GetCatalogRequest {
                known_version: String::new(),
                version,
            })
            .await?
            .into_inner())
    }

    /// Publishes one of this region's featured one-things (or a new version of it).
    pub async fn publish_featured_item(
        &self,
        item: CatalogItem,
    ) -> Result<CatalogChangeResponse, CallFailed> {
        Ok(self
            .catalog
            .clone()
            .publish_featured_item(PublishFeaturedItemRequest { item: Some(item) })
            .await?
            .into_inner())
    }

    /// Adopts another region's featured one-thing.
    pub async fn adopt_featured_item(
        &self,
        item_id: String,
    ) -> Result<CatalogChangeResponse, CallFailed> {
        Ok(self
            .catalog
            .clone()
            .adopt_featured_item(AdoptFeaturedItemRequest { item_id })
            .await?
            .into_inner())
    }
}

/// What a region says to another through the gateway, signed; status queries ask, and
/// lookups are answered with signed objects of their own.
const SIGNED_METHODS: [&str; 5] = [
    "DeliverApplication",
    "PushStatus",
    "SubmitEvaluation",
    "RaiseDispute",
    "SettleDispute",
];

fn ascii(value: &str, key: &str) -> Result<MetadataValue<tonic::metadata::Ascii>, CallFailed> {
    MetadataValue::try_from(value).map_err(|_| CallFailed {
        status: Status::invalid_argument(format!("metadata `{key}` is not valid ASCII")),
        retry: Retry::Permanent,
        pushback: None,
    })
}
