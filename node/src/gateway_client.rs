//! The node's client for the gateway: one pooled mTLS HTTP/2 channel, and the metadata
//! the gateway routes and authorizes on. A failed call says whether it may be retried,
//! as its maker (gateway or node) stated it: callers never re-decide that from codes.

use tongban_proto::retry::Retry;
use tongban_proto::{
    metadata,
    region::RegionCode,
    v1::{
        DeliverApplicationRequest, DeliverApplicationResponse, GetCatalogRequest,
        GetCatalogResponse, IdentityVerdict, LicenseVerdict, ListLicensesRequest,
        ListLicensesResponse, LookupLicenseRequest, PublishRevocationRequest,
        PublishRevocationResponse, PushStatusRequest, PushStatusResponse, QueryStatusRequest,
        QueryStatusResponse, VerifyIdentityRequest, catalog_client::CatalogClient,
        gateway_client::GatewayClient as Grpc,
    },
};
use tongban_runtime::trace_context::TraceParent;
use tonic::{Request, Status, metadata::MetadataValue, transport::Channel};

/// A failed call through the gateway.
#[derive(Debug, thiserror::Error)]
#[error("{:?}: {}", .status.code(), .status.message())]
pub struct CallFailed {
    pub status: Status,
    /// Whether, and when, the same call may be tried again.
    pub retry: Retry,
}

impl From<Status> for CallFailed {
    fn from(status: Status) -> Self {
        Self {
            retry: Retry::of(&status),
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
    /// W3C trace context of the call (one trace per case).
    pub trace: Option<TraceParent>,
}

/// Calls to the gateway on behalf of this node's region.
#[derive(Clone)]
pub struct GatewayClient {
    grpc: Grpc<Channel>,
    catalog: CatalogClient<Channel>,
    /// One channel per gateway replica, by endpoint, for what every replica must hear
    /// (revocations).
    replicas: Vec<(String, Grpc<Channel>)>,
    origin: MetadataValue<tonic::metadata::Ascii>,
}

impl GatewayClient {
    /// A client over `channel` (balanced over the replicas) and each replica's own
    /// channel.
    pub fn new(
        channel: Channel,
        replicas: Vec<(String, Channel)>,
        origin: &RegionCode,
    ) -> Result<Self, CallFailed> {
        Ok(Self {
            grpc: Grpc::new(channel.clone()),
            catalog: CatalogClient::new(channel),
            replicas: replicas
                .into_iter()
                .map(|(url, channel)| (url, Grpc::new(channel)))
                .collect(),
            origin: ascii(origin.as_str(), metadata::ORIGIN_REGION)?,
        })
    }

    /// The gateway replicas' endpoints.
    pub fn replica_endpoints(&self) -> Vec<String> {
        self.replicas.iter().map(|(url, _)| url.clone()).collect()
    }

    /// A lookup's request: the one-thing it is for and the trace of its case.
    fn lookup_request<T>(
        &self,
        message: T,
        one_thing: &str,
        trace: Option<TraceParent>,
    ) -> Result<Request<T>, CallFailed> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(metadata::ORIGIN_REGION, self.origin.clone());
        md.insert(metadata::ONE_THING, ascii(one_thing, metadata::ONE_THING)?);
        if let Some(trace) = trace {
            md.insert(
                metadata::TRACEPARENT,
                ascii(&trace.to_string(), metadata::TRACEPARENT)?,
            );
        }
        Ok(request)
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
        let request = self.lookup_request(message, &one_thing, trace)?;
        Ok(self
            .grpc
            .clone()
            .verify_identity(request)
            .await?
            .into_inner())
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
        let request = self.lookup_request(message, &one_thing, trace)?;
        Ok(self
            .grpc
            .clone()
            .lookup_license(request)
            .await?
            .into_inner())
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
        let request = self.lookup_request(message, &one_thing, trace)?;
        Ok(self.grpc.clone().list_licenses(request).await?.into_inner())
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
            });
        };
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(metadata::ORIGIN_REGION, self.origin.clone());
        md.insert(
            metadata::IDEMPOTENCY_KEY,
            ascii(idempotency_key, metadata::IDEMPOTENCY_KEY)?,
        );
        Ok(grpc.clone().publish_revocation(request).await?.into_inner())
    }

    fn request<T>(&self, message: T, meta: &CallMeta<'_>) -> Result<Request<T>, CallFailed> {
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
        if let Some(trace) = &meta.trace {
            md.insert(
                metadata::TRACEPARENT,
                ascii(&trace.to_string(), metadata::TRACEPARENT)?,
            );
        }
        if let Some(key) = meta.idempotency_key {
            md.insert(
                metadata::IDEMPOTENCY_KEY,
                ascii(key, metadata::IDEMPOTENCY_KEY)?,
            );
        }
        Ok(request)
    }

    pub async fn deliver(
        &self,
        message: DeliverApplicationRequest,
        meta: &CallMeta<'_>,
    ) -> Result<DeliverApplicationResponse, CallFailed> {
        let request = self.request(message, meta)?;
        Ok(self
            .grpc
            .clone()
            .deliver_application(request)
            .await?
            .into_inner())
    }

    pub async fn query_status(
        &self,
        message: QueryStatusRequest,
        meta: &CallMeta<'_>,
    ) -> Result<QueryStatusResponse, CallFailed> {
        let request = self.request(message, meta)?;
        Ok(self.grpc.clone().query_status(request).await?.into_inner())
    }

    pub async fn push_status(
        &self,
        message: PushStatusRequest,
        meta: &CallMeta<'_>,
    ) -> Result<PushStatusResponse, CallFailed> {
        let request = self.request(message, meta)?;
        Ok(self.grpc.clone().push_status(request).await?.into_inner())
    }

    pub async fn get_catalog(
        &self,
        known_version: String,
    ) -> Result<GetCatalogResponse, CallFailed> {
        Ok(self
            .catalog
            .clone()
            .get_catalog(GetCatalogRequest { known_version })
            .await?
            .into_inner())
    }
}

fn ascii(value: &str, key: &str) -> Result<MetadataValue<tonic::metadata::Ascii>, CallFailed> {
    MetadataValue::try_from(value).map_err(|_| CallFailed {
        status: Status::invalid_argument(format!("metadata `{key}` is not valid ASCII")),
        retry: Retry::Permanent,
    })
}
