//! The node's copy of the national catalog: fetched from the gateway, kept in the store
//! so a restart works while the gateway is away, and replaced when a new version appears.
//!
//! The versions before the current one are kept too (the last [`KEPT_VERSIONS`], and
//! the one built into this release): an application is judged against the version it
//! names, which never changes, so a delivery filed just before a new catalog arrived
//! is still judged by the rules it was filed under, and its verdict is final.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use prost::Message;
use tongban_proto::{rules::catalog::Catalog, v1::GetCatalogResponse};
use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::{gateway_client::GatewayClient, store::Store};

const SETTING: &str = "catalog";
/// Earlier versions, newest first, as length-delimited `GetCatalogResponse`s.
const HISTORY_SETTING: &str = "catalog_history";
/// Earlier versions kept beside the current one.
pub const KEPT_VERSIONS: usize = 8;

/// The current catalog and the recent ones; cheap to read.
pub struct CatalogCopy {
    versions: RwLock<Versions>,
    /// Wakes the refresher before its turn: a peer named a version this node does not
    /// know, or this node changed the catalog.
    refresh_now: tokio::sync::Notify,
    /// Versions deliveries named that this node never fetched (an earlier ledger
    /// version, say): fetched exactly by the refresher, at most [`MAX_WANTED`].
    wanted: std::sync::Mutex<Vec<String>>,
}

/// The most versions waited for at once (a peer cannot make the list grow).
const MAX_WANTED: usize = 8;

struct Versions {
    current: Arc<Catalog>,
    /// Earlier versions, newest first, with their encoding (to save them).
    earlier: Vec<(Arc<Catalog>, Vec<u8>)>,
    /// The catalog built into this release (a node that never reached the gateway
    /// judges by it, so its peers may name it).
    embedded: Arc<Catalog>,
}

impl CatalogCopy {
    /// Starts from the copies saved in the store, or the catalog built into this release.
    pub async fn load(store: &Store) -> Self {
        let decode = |bytes: &[u8]| {
            GetCatalogResponse::decode(bytes)
                .ok()
                .and_then(|resp| Catalog::from_proto(&resp).ok())
        };
        let saved = match store.setting(SETTING).await {
            Ok(Some(bytes)) => decode(&bytes),
            _ => None,
        };
        let mut earlier = Vec::new();
        if let Ok(Some(bytes)) = store.setting(HISTORY_SETTING).await {
            let mut rest = bytes.as_slice();
            while !rest.is_empty() && earlier.len() < KEPT_VERSIONS {
                let Ok(one) = prost::encoding::decode_length_delimiter(&mut rest) else {
                    break;
                };
                let Some(encoded) = rest.get(..one) else {
                    break;
                };
                if let Some(catalog) = decode(encoded) {
                    earlier.push((Arc::new(catalog), encoded.to_vec()));
                }
                rest = &rest[one..];
            }
        }
        let embedded = Arc::new(Catalog::embedded());
        Self {
            versions: RwLock::new(Versions {
                current: saved.map_or_else(|| embedded.clone(), Arc::new),
                earlier,
                embedded,
            }),
            refresh_now: tokio::sync::Notify::new(),
            wanted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Asks the refresher to fetch `version` exactly: a delivery names it.
    pub fn want_version(&self, version: &str) {
        if !tongban_proto::rules::catalog::is_catalog_id(version) {
            return;
        }
        let mut wanted = self
            .wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if wanted.len() < MAX_WANTED && !wanted.iter().any(|v| v == version) {
            wanted.push(version.to_owned());
        }
        drop(wanted);
        self.want_refresh();
    }

    /// Fetches each wanted version this node still lacks and keeps it as an earlier one.
    async fn fetch_wanted(&self, client: &GatewayClient, store: &Store) {
        let wanted = std::mem::take(
            &mut *self
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for version in wanted {
            if self.version(&version).is_some() {
                continue;
            }
            match client.get_catalog_version(version.clone()).await {
                Ok(response) => match Catalog::from_proto(&response) {
                    Ok(catalog) => {
                        let history = self.add_earlier(catalog, response.encode_to_vec());
                        if let Err(error) = store.set_setting(HISTORY_SETTING, history).await {
                            tracing::warn!(%error, "could not save the earlier catalog versions");
                        }
                    }
                    Err(error) => tracing::warn!(%version, %error, "catalog version unusable"),
                },
                // Unknown to the gateway: the delivery stays refused as unknown.
                Err(failed) if failed.status.code() == tonic::Code::NotFound => {}
                Err(failed) => {
                    tracing::debug!(%version, error = %failed, "catalog version not fetched yet");
                    self.want_version(&version);
                }
            }
        }
    }

    /// Keeps `catalog` beside the current one, as the newest earlier version; the
    /// earlier versions' encoding to save.
    fn add_earlier(&self, catalog: Catalog, encoded: Vec<u8>) -> Vec<u8> {
        let mut versions = self
            .versions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        versions.earlier.insert(0, (Arc::new(catalog), encoded));
        versions.earlier.truncate(KEPT_VERSIONS);
        history(&versions.earlier)
    }

    /// Asks the refresher to fetch the gateway's catalog now.
    pub fn want_refresh(&self) {
        self.refresh_now.notify_one();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.versions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The catalog in force.
    pub fn get(&self) -> Arc<Catalog> {
        self.read().current.clone()
    }

    /// The catalog of `version`, if it is the current one or a recent one.
    pub fn version(&self, version: &str) -> Option<Arc<Catalog>> {
        let versions = self.read();
        std::iter::once(&versions.current)
            .chain(versions.earlier.iter().map(|(c, _)| c))
            .chain(std::iter::once(&versions.embedded))
            .find(|c| c.version == version)
            .cloned()
    }

    /// Installs `catalog` as current; the one it replaces becomes the newest earlier
    /// version. Returns the earlier versions' encoding to save.
    fn replace(&self, catalog: Catalog, previous_encoded: Option<Vec<u8>>) -> Vec<u8> {
        let mut versions = self
            .versions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = std::mem::replace(&mut versions.current, Arc::new(catalog));
        if let Some(encoded) = previous_encoded {
            versions
                .earlier
                .retain(|(c, _)| c.version != previous.version);
            versions.earlier.insert(0, (previous, encoded));
            versions.earlier.truncate(KEPT_VERSIONS);
        }
        history(&versions.earlier)
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
        self.install(store, response).await?;
        Ok(true)
    }

    /// Makes `response` the current catalog, keeping the one it replaces, and saves both.
    async fn install(&self, store: &Store, response: GetCatalogResponse) -> Result<(), String> {
        let catalog = Catalog::from_proto(&response).map_err(|e| e.to_string())?;
        let version = catalog.version.clone();
        // The copy being replaced, as saved (the embedded catalog has none: it is
        // known anyway).
        let previous = store.setting(SETTING).await.ok().flatten();
        if let Err(error) = store.set_setting(SETTING, response.encode_to_vec()).await {
            tracing::warn!(%error, "could not save the catalog copy");
        }
        let history = self.replace(catalog, previous);
        if let Err(error) = store.set_setting(HISTORY_SETTING, history).await {
            tracing::warn!(%error, "could not save the earlier catalog versions");
        }
        tracing::info!(%version, "catalog updated from the gateway");
        Ok(())
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
            self.fetch_wanted(&client, &store).await;
            let wait = if synced {
                period
            } else {
                Duration::from_secs(2)
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.refresh_now.notified() => {}
            }
        }
    }
}

/// The earlier versions as saved: length-delimited, newest first.
fn history(earlier: &[(Arc<Catalog>, Vec<u8>)]) -> Vec<u8> {
    let mut history = Vec::new();
    for (_, encoded) in earlier {
        prost::encoding::encode_length_delimiter(encoded.len(), &mut history).unwrap_or_default();
        history.extend_from_slice(encoded);
    }
    history
}

#[cfg(test)]
mod tests {
    use tongban_proto::rules::catalog::Catalog;

    use super::*;

    fn version(name: &str) -> GetCatalogResponse {
        let mut response = Catalog::embedded().to_proto();
        response.version = name.to_owned();
        response
    }

    /// Each replaced version stays known, across a restart, up to the limit.
    #[tokio::test]
    async fn recent_versions_are_kept_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("tongban-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("node.sqlite")).unwrap();
        let copy = CatalogCopy::load(&store).await;
        let embedded = copy.get().version.clone();
        let names: Vec<String> = (0..KEPT_VERSIONS + 3)
            .map(|i| format!("2027.{i:02}"))
            .collect();
        for name in &names {
            copy.install(&store, version(name)).await.unwrap();
        }
        let last = names.last().unwrap();
        assert_eq!(&copy.get().version, last);
        drop(copy);
        let copy = CatalogCopy::load(&store).await;
        assert_eq!(&copy.get().version, last, "current restored");
        for (i, name) in names.iter().enumerate() {
            // The current one and the KEPT_VERSIONS before it.
            let kept = i + 1 + KEPT_VERSIONS >= names.len();
            assert_eq!(copy.version(name).is_some(), kept, "{name}");
        }
        assert!(
            copy.version(&embedded).is_some(),
            "the built-in catalog is always known"
        );
        assert!(copy.version("1999.01").is_none());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
