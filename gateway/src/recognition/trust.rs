//! Cached verdicts follow the registry: each entry remembers the registry generation it
//! was judged under and the key that vouched for it. When the registry changes, every
//! entry whose key left the registry (or its window), and every negative one, is
//! dropped at once; and because a lookup in flight during the change may still cache
//! what the old registry said, an entry older than the registry a call reads is checked
//! again on every read.

use std::{
    sync::{Arc, atomic::Ordering},
    time::SystemTime,
};

use super::{
    cache::{CountedCache, Expiring, Key},
    lookup::{HolderList, IdentityEntry, LicenseEntry, Recognition},
};
use crate::registry::{Registry, Route};

/// A cached value some registry generation vouched for.
pub trait Vouched {
    /// Whether it still stands under `generation`, whose route for it is `route`.
    fn stands(&self, route: &Route, generation: u64, now: SystemTime) -> bool;
    /// Whether it still stands in `registry` (of `generation`).
    fn stands_in(&self, registry: &Registry, generation: u64, now: SystemTime) -> bool;
}

impl Vouched for IdentityEntry {
    fn stands(&self, route: &Route, generation: u64, now: SystemTime) -> bool {
        self.signer
            .stands(Some(&route.issuer_keys), generation, now)
    }
    fn stands_in(&self, registry: &Registry, generation: u64, now: SystemTime) -> bool {
        self.signer.stands_in(registry, generation, now)
    }
}

impl Vouched for LicenseEntry {
    fn stands(&self, route: &Route, generation: u64, now: SystemTime) -> bool {
        self.signer
            .stands(Some(&route.issuer_keys), generation, now)
    }
    fn stands_in(&self, registry: &Registry, generation: u64, now: SystemTime) -> bool {
        self.signer.stands_in(registry, generation, now)
    }
}

/// A holder list stands while every license on it does.
impl Vouched for HolderList {
    fn stands(&self, route: &Route, generation: u64, now: SystemTime) -> bool {
        (self.licenses.iter()).all(|(_, entry)| entry.stands(route, generation, now))
    }
    fn stands_in(&self, registry: &Registry, generation: u64, now: SystemTime) -> bool {
        (self.licenses.iter()).all(|(_, entry)| entry.stands_in(registry, generation, now))
    }
}

/// Drops from `cache` every entry that does not stand in `registry`.
fn purge<V>(cache: &CountedCache<V>, registry: &Arc<Registry>, generation: u64, now: SystemTime)
where
    V: Expiring + Vouched + Send + Sync + 'static,
{
    let registry = registry.clone();
    let predicate = move |_: &Key, entry: &Arc<V>| !entry.stands_in(&registry, generation, now);
    // Refused only when the cache was built without invalidation closures (it is not);
    // the check on read covers the entries all the same.
    if cache.cache.invalidate_entries_if(predicate).is_err() {
        tracing::error!("cache purge refused; stale verdicts are dropped as they are read");
    }
}

impl Recognition {
    /// The registry generation in force: read before a call takes its route, so an
    /// entry it caches is never tagged newer than the registry it was judged under.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The registry changed (to `registry`, already in force): a new generation, and
    /// every cached verdict it no longer vouches for dropped.
    pub fn registry_changed(&self, registry: &Arc<Registry>) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let now = SystemTime::now();
        purge(&self.caches.identity, registry, generation, now);
        purge(&self.caches.licenses, registry, generation, now);
        purge(&self.caches.grace, registry, generation, now);
        purge(&self.caches.holder_lists, registry, generation, now);
        tracing::info!(
            generation,
            "registry changed: cached verdicts it no longer vouches for dropped"
        );
    }

    /// `entry` (from `cache` under `key`) if it stands under the call's `generation`
    /// and `route`; else it is dropped from the cache (counted) and `None`.
    pub(super) async fn standing<V>(
        &self,
        cache: &CountedCache<V>,
        key: &Key,
        entry: Option<Arc<V>>,
        route: &Route,
        generation: u64,
    ) -> Option<Arc<V>>
    where
        V: Expiring + Vouched + Send + Sync + 'static,
    {
        let entry = entry?;
        if entry.stands(route, generation, SystemTime::now()) {
            return Some(entry);
        }
        cache.cache.invalidate(key).await;
        cache.stats.invalidations.inc();
        None
    }

    /// [`CountedCache::get_or_load`], never answering with an entry another call
    /// cached under an earlier registry that the call's no longer vouches for: that one
    /// is dropped and loaded again (and after a second such race, loaded for this call
    /// alone).
    pub(super) async fn load_standing<V, E, F, Fut>(
        &self,
        cache: &CountedCache<V>,
        key: Key,
        load: F,
        its_callers_own: fn(&E) -> bool,
        (route, generation): (&Route, u64),
    ) -> Result<Arc<V>, E>
    where
        V: Expiring + Vouched + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<V>, E>>,
    {
        for _ in 0..2 {
            let entry = cache.get_or_load(key, &load, its_callers_own).await?;
            let entry = self
                .standing(cache, &key, Some(entry), route, generation)
                .await;
            if let Some(entry) = entry {
                return Ok(entry);
            }
        }
        load().await
    }
}
