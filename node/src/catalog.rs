//! The node's copy of the national catalog: fetched from the gateway, kept in the store
//! so a restart works while the gateway is away, and replaced when a new version appears.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use prost::Message;
use tongban_proto::{catalog::Catalog, v1::GetCatalogResponse};
use tongban_runtime::shutdown::ShutdownSignal;

use crate::{gateway_client::GatewayClient, store::Store};

const SETTING: &str = "catalog";

/// The current catalog; cheap to read.
pub struct CatalogCopy {
    current: RwLock<Arc<Catalog>>,
}

impl CatalogCopy {
    /// Starts from the copy saved in the store, or the catalog built into this release.
    pub async fn load(store: &Store) -> Self {
        let saved = match store.setting(SETTING).await {
            Ok(Some(bytes)) => GetCatalogResponse::decode(bytes.as_slice())
                .ok()
                .and_then(|resp| Catalog::from_proto(&resp).ok()),
            _ => None,
        };
        Self {
            current: RwLock::new(Arc::new(saved.unwrap_or_else(Catalog::embedded))),
        }
    }

    /// The catalog in force.
    pub fn get(&self) -> Arc<Catalog> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, catalog: Catalog) {
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(catalog),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(catalog),
        }
    }

    /// Fetches the gateway's catalog; returns whether a new version was installed.
    pub async fn refresh(&self, client: &GatewayClient, store: &Store) -> Result<bool, String> {
        let known = self.get().version.clone();
        let response = client
            .get_catalog(known)
            .await
            .map_err(|failed| failed.to_string())?;
        if response.not_modified {
            return Ok(false);
        }
        let catalog = Catalog::from_proto(&response).map_err(|e| e.to_string())?;
        let version = catalog.version.clone();
        if let Err(error) = store.set_setting(SETTING, response.encode_to_vec()).await {
            tracing::warn!(%error, "could not save the catalog copy");
        }
        self.replace(catalog);
        tracing::info!(%version, "catalog updated from the gateway");
        Ok(true)
    }

    /// Keeps the copy fresh: quickly until the first success, then every `period`.
    pub async fn run_refresher(
        self: Arc<Self>,
        client: GatewayClient,
        store: Store,
        period: Duration,
        shutdown: ShutdownSignal,
    ) {
        let mut synced = false;
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            match self.refresh(&client, &store).await {
                Ok(_) => synced = true,
                Err(error) => {
                    tracing::debug!(%error, "catalog refresh failed; keeping the current copy")
                }
            }
            let wait = if synced {
                period
            } else {
                Duration::from_secs(2)
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
