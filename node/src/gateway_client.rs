//! The node's client for the gateway: one pooled mTLS HTTP/2 channel, and the metadata
//! the gateway routes and authorizes on. A failed call says whether it may be retried,
//! as its maker (gateway or node) stated it: callers never re-decide that from codes.

use tongban_proto::retry::Retry;
use tongban_proto::{
    metadata,
    region::RegionCode,
    v1::{
        DeliverApplicationRequest, DeliverApplicationResponse, GetCatalogRequest,
        GetCatalogResponse, PushStatusRequest, PushStatusResponse, QueryStatusRequest,
        QueryStatusResponse, catalog_client::CatalogClient, gateway_client::GatewayClient as Grpc,
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
    origin: MetadataValue<tonic::metadata::Ascii>,
}

impl GatewayClient {
    pub fn new(channel: Channel, origin: &RegionCode) -> Result<Self, CallFailed> {
        Ok(Self {
            grpc: Grpc::new(channel.clone()),
            catalog: CatalogClient::new(channel),
            origin: ascii(origin.as_str(), metadata::ORIGIN_REGION)?,
        })
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
