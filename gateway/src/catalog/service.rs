//! The `Catalog` gRPC service: the catalog in force for any member (nodes fetch it at
//! start and keep a copy), and the changes a region's node asks for — publishing its
//! featured one-things and adopting others' — in the caller's name, which only its
//! certificate gives.

use std::sync::Arc;

use tongban_proto::{
    rules::{
        catalog::{CatalogItem, ChangeRefused},
        region::RegionPrefix,
    },
    v1::{
        AdoptFeaturedItemRequest, CatalogChangeResponse, GetCatalogRequest, GetCatalogResponse,
        PublishFeaturedItemRequest, catalog_server,
    },
};
use tongban_runtime::{serving::incoming::PeerInfo, trust::identity::PeerIdentity};
use tonic::{Request, Response, Status};

use super::source::{CatalogChangeError, CatalogSource, Changed};

/// Serves the catalog in force and records regions' changes to it.
pub struct CatalogService {
    source: Arc<CatalogSource>,
}

impl CatalogService {
    pub fn new(source: Arc<CatalogSource>) -> Self {
        Self { source }
    }
}

#[tonic::async_trait]
impl catalog_server::Catalog for CatalogService {
    async fn get_catalog(
        &self,
        request: Request<GetCatalogRequest>,
    ) -> Result<Response<GetCatalogResponse>, Status> {
        let asked = request.get_ref();
        let known = if asked.version.is_empty() {
            &asked.known_version
        } else {
            &asked.version
        };
        if self.source.behind(known) {
            self.source.catch_up().await.map_err(|error| {
                tracing::warn!(%error, "catalog ledger unread: a fetch is refused");
                Status::unavailable("the catalog ledger cannot be read now; retry")
            })?;
        }
        if !asked.version.is_empty() {
            return match self.source.version(&asked.version) {
                Some(exactly) => Ok(Response::new(exactly)),
                // Not quoted: anything may be sent there.
                None => Err(Status::not_found(
                    "the catalog version asked for is not one this gateway can rebuild",
                )),
            };
        }
        let served = self.source.served();
        if *known == served.response.version {
            return Ok(Response::new(GetCatalogResponse {
                version: served.response.version.clone(),
                not_modified: true,
                items: Vec::new(),
            }));
        }
        Ok(Response::new((*served.response).clone()))
    }

    async fn publish_featured_item(
        &self,
        request: Request<PublishFeaturedItemRequest>,
    ) -> Result<Response<CatalogChangeResponse>, Status> {
        let region = calling_region(&request)?;
        let item = request
            .into_inner()
            .item
            .ok_or_else(|| Status::invalid_argument("item: required"))?;
        let item = CatalogItem::from_proto(&item)
            .map_err(|e| Status::invalid_argument(format!("item: {e}")))?;
        answer(self.source.publish(&region, item).await)
    }

    async fn adopt_featured_item(
        &self,
        request: Request<AdoptFeaturedItemRequest>,
    ) -> Result<Response<CatalogChangeResponse>, Status> {
        let region = calling_region(&request)?;
        let item_id = &request.get_ref().item_id;
        answer(self.source.adopt(&region, item_id).await)
    }
}

/// The calling node's region, from its verified certificate (the connection put it
/// on the request): a gateway's certificate changes no catalog.
fn calling_region<T>(request: &Request<T>) -> Result<RegionPrefix, Status> {
    match request.extensions().get::<PeerInfo>().map(|p| &p.identity) {
        Some(PeerIdentity::Region(prefix)) => Ok(*prefix),
        _ => Err(Status::permission_denied(
            "only a region's node changes the catalog, in its own name",
        )),
    }
}

fn answer(
    changed: Result<Changed, CatalogChangeError>,
) -> Result<Response<CatalogChangeResponse>, Status> {
    match changed {
        Ok(changed) => Ok(Response::new(CatalogChangeResponse {
            version: changed.version,
            changed: changed.recorded,
        })),
        Err(error) => {
            let message = error.to_string();
            Err(match error {
                CatalogChangeError::Refused(ChangeRefused::Invalid(_)) => {
                    Status::invalid_argument(message)
                }
                CatalogChangeError::Refused(ChangeRefused::NotYours { .. }) => {
                    Status::permission_denied(message)
                }
                CatalogChangeError::Refused(ChangeRefused::Unknown { .. }) => {
                    Status::not_found(message)
                }
                CatalogChangeError::NoLedger => Status::failed_precondition(message),
                CatalogChangeError::Ledger(_) | CatalogChangeError::Shared(_) => {
                    tracing::error!(%error, "catalog ledger could not be written");
                    Status::unavailable(message)
                }
            })
        }
    }
}
