//! The national one-thing catalog service. The gateway is the catalog's source of truth
//! for the federation; nodes fetch it at start and keep a copy.

use std::sync::Arc;

use tongban_proto::{
    rules::catalog::Catalog,
    v1::{GetCatalogRequest, GetCatalogResponse, catalog_server},
};
use tonic::{Request, Response, Status};

/// Serves one loaded catalog version.
pub struct CatalogService {
    version: String,
    full: Arc<GetCatalogResponse>,
}

impl CatalogService {
    pub fn new(catalog: &Catalog) -> Self {
        Self {
            version: catalog.version.clone(),
            full: Arc::new(catalog.to_proto()),
        }
    }
}

#[tonic::async_trait]
impl catalog_server::Catalog for CatalogService {
    async fn get_catalog(
        &self,
        request: Request<GetCatalogRequest>,
    ) -> Result<Response<GetCatalogResponse>, Status> {
        if request.get_ref().known_version == self.version {
            return Ok(Response::new(GetCatalogResponse {
                version: self.version.clone(),
                not_modified: true,
                items: Vec::new(),
            }));
        }
        Ok(Response::new((*self.full).clone()))
    }
}
