//! A region removed from the registry loses its open connections, not only its calls:
//! each connection task watches the registry and, when a reload no longer lists its
//! peer, closes. The check runs once per reload and per connection, never per call.

use std::sync::Arc;

use tokio::sync::watch;
use tongban_runtime::trust::identity::PeerIdentity;

use crate::registry::Registry;

/// Resolves once a registry put in force after `changes` was taken no longer lists
/// `identity`. Never resolves for the gateway's own identity (not a member: the method
/// table decides what it may call), nor once the registry can no longer change. A
/// region already unregistered when it connected keeps being refused per call.
pub async fn removed(identity: &PeerIdentity, mut changes: watch::Receiver<Arc<Registry>>) {
    if matches!(identity, PeerIdentity::Region(_)) {
        while changes.changed().await.is_ok() {
            if !changes.borrow_and_update().is_member(identity) {
                return;
            }
        }
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SharedRegistry;

    fn region(prefix: &str) -> PeerIdentity {
        PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
    }

    /// Whether `removed` resolves once an empty registry (listing nobody) is applied.
    async fn after_reload(identity: &PeerIdentity, shared: &SharedRegistry) -> bool {
        let changes = shared.changes();
        shared.replace(Registry::default());
        let wait = removed(identity, changes);
        tokio::time::timeout(std::time::Duration::from_millis(50), wait)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_region_no_longer_listed_is_removed_and_the_gateway_never() {
        let shared = SharedRegistry::new(Registry::default());
        assert!(after_reload(&region("31"), &shared).await);
        assert!(!after_reload(&PeerIdentity::Gateway, &shared).await);
        // No reload: nothing to act on, even for a region that is not listed.
        let shanghai = region("31");
        let quiet = removed(&shanghai, shared.changes());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), quiet).await;
        assert!(waited.is_err());
    }
}
