//! The caches of verified lookups (moka): bounded by entries, each entry fresh until its
//! own time — never beyond the assertion's or license's own validity or its key's
//! window, short for negative answers — with one issuer call for any number of
//! concurrent misses of one key, explicit invalidation, and counters for hits, misses,
//! loads, evictions, invalidations and grace answers.
//!
//! Freshness is checked on read (a stale entry is dropped and reloaded) rather than by
//! moka's per-entry expiry, whose timer wheel costs about 50 bytes an entry; the
//! capacity bound evicts what is never read again. Entries are kept small for the same
//! reason: 100,000 of them must fit well under the gateway's memory budget.
//!
//! Keys are keyed hashes (HMAC-SHA256 under the configured secret) of what was asked:
//! no raw ID number or license id is ever a key.

use std::{sync::Arc, time::Instant};

use moka::{future::Cache, notification::RemovalCause};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use ring::hmac;

/// The cache counters' name as registered, and as a scrape shows it (the console reads it).
pub const CACHE_EVENTS: &str = "tongban_recognition_cache_events";
pub const CACHE_EVENTS_TOTAL: &str = "tongban_recognition_cache_events_total";

/// A cache key: the first 128 bits of an HMAC, ample against collisions at any size
/// a cache can hold.
pub type Key = [u8; 16];

/// Derives cache keys from what was asked.
pub struct Keyer {
    key: hmac::Key,
}

impl Keyer {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The key of `parts` under `domain`. Parts are ids, codes and names, which never
    /// hold a zero byte, so zero-terminating each keeps different lists of parts apart
    /// (and keeps a lookup's message within one SHA-256 block).
    pub fn key(&self, domain: &str, parts: &[&[u8]]) -> Key {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.as_bytes());
        for part in parts {
            ctx.update(&[0]);
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    /// A short, stable reference for logs: the key's first 6 bytes, hex.
    pub fn log_ref(key: &Key) -> String {
        tongban_proto::rules::digest::hex(&key[..6])
    }
}

/// Something cached with its own lifetime.
pub trait Expiring {
    /// Until when the entry may be answered.
    fn fresh_until(&self) -> Instant;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    event: &'static str,
}

/// The counters of one cache.
#[derive(Clone)]
pub struct CacheStats {
    pub hits: Counter,
    pub misses: Counter,
    pub loads: Counter,
    pub evictions: Counter,
    pub invalidations: Counter,
    pub grace: Counter,
}

impl CacheStats {
    fn new(family: &Family<CacheLabels, Counter>, cache: &'static str) -> Self {
        let c = |event| family.get_or_create(&CacheLabels { cache, event }).clone();
        Self {
            hits: c("hit"),
            misses: c("miss"),
            loads: c("load"),
            evictions: c("eviction"),
            invalidations: c("invalidation"),
            grace: c("grace"),
        }
    }
}

/// One bounded cache with its counters.
pub struct CountedCache<V: Expiring + Send + Sync + 'static> {
    pub cache: Cache<Key, Arc<V>>,
    pub stats: CacheStats,
}

impl<V: Expiring + Send + Sync + 'static> CountedCache<V> {
    fn new(name: &'static str, entries: u64, family: &Family<CacheLabels, Counter>) -> Self {
        let stats = CacheStats::new(family, name);
        let evictions = stats.evictions.clone();
        let cache = Cache::builder()
            .name(name)
            .max_capacity(entries)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _value, cause| {
                // Explicit removals are counted where they are made (staleness as an
                // eviction, revocations as invalidations).
                if matches!(cause, RemovalCause::Expired | RemovalCause::Size) {
                    evictions.inc();
                }
            })
            .build();
        Self { cache, stats }
    }

    /// The entry, if cached and fresh (counted as a hit or a miss; a stale entry is
    /// dropped, counted as an eviction).
    pub async fn get(&self, key: &Key) -> Option<Arc<V>> {
        match self.cache.get(key).await {
            Some(entry) if entry.fresh_until() > Instant::now() => {
                self.stats.hits.inc();
                Some(entry)
            }
            Some(_) => {
                self.cache.invalidate(key).await;
                self.stats.evictions.inc();
                self.stats.misses.inc();
                None
            }
            None => {
                self.stats.misses.inc();
                None
            }
        }
    }

    /// The entry, loading it with `load` if absent: concurrent callers for one key
    /// share a single load. Errors are not cached.
    pub async fn get_or_load<E, F>(&self, key: Key, load: F) -> Result<Arc<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<Arc<V>, E>>,
    {
        let loads = self.stats.loads.clone();
        self.cache
            .try_get_with(key, async move {
                loads.inc();
                load.await
            })
            .await
    }
}

/// Sizes and lifetimes of the caches.
#[derive(Clone, Debug)]
pub struct CacheLimits {
    pub identity_entries: u64,
    pub license_entries: u64,
}

/// Every cache of the recognition service.
pub struct Caches<I, L, H>
where
    I: Expiring + Send + Sync + 'static,
    L: Expiring + Send + Sync + 'static,
    H: Expiring + Send + Sync + 'static,
{
    pub identity: CountedCache<I>,
    pub licenses: CountedCache<L>,
    /// Past-freshness copies of recognized licenses, kept for their type's grace.
    pub grace: CountedCache<L>,
    pub holder_lists: CountedCache<H>,
    /// Revoked licenses by key of their id: consulted on every answer, so neither a
    /// cached verdict nor a lookup in flight when the revocation came can answer
    /// "recognized" again.
    pub revoked: Cache<Key, ()>,
}

/// How long a revocation is remembered: longer than any cached verdict can live.
const REVOCATION_MEMORY: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

impl<I, L, H> Caches<I, L, H>
where
    I: Expiring + Send + Sync + 'static,
    L: Expiring + Send + Sync + 'static,
    H: Expiring + Send + Sync + 'static,
{
    /// The caches, their counters registered in `registry`.
    pub fn new(limits: &CacheLimits, registry: &mut Registry) -> Self {
        let family = Family::<CacheLabels, Counter>::default();
        registry.register(
            CACHE_EVENTS,
            "Recognition cache events by cache (identity, license, license_grace, holder_licenses) and event (hit, miss, load, eviction, invalidation, grace)",
            family.clone(),
        );
        Self {
            identity: CountedCache::new("identity", limits.identity_entries, &family),
            licenses: CountedCache::new("license", limits.license_entries, &family),
            grace: CountedCache::new("license_grace", limits.license_entries, &family),
            holder_lists: CountedCache::new(
                "holder_licenses",
                (limits.license_entries / 4).max(16),
                &family,
            ),
            revoked: Cache::builder()
                .name("revoked")
                .max_capacity(1_000_000)
                // Every new revocation is kept, the oldest forgotten when full: the
                // default policy (TinyLFU) admits a new key only if it is read more
                // often than the one it would evict, and a full set would then turn
                // fresh revocations away.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(REVOCATION_MEMORY)
                .build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    struct Entry(Instant);

    impl Expiring for Entry {
        fn fresh_until(&self) -> Instant {
            self.0
        }
    }

    #[test]
    fn keys_depend_on_every_part_and_the_secret() {
        let keyer = Keyer::new(b"secret");
        let a = keyer.key("license", &[b"ab", b"c"]);
        assert_eq!(a, keyer.key("license", &[b"ab", b"c"]));
        assert_ne!(a, keyer.key("license", &[b"a", b"bc"]));
        assert_ne!(a, keyer.key("identity", &[b"ab", b"c"]));
        assert_ne!(a, Keyer::new(b"other").key("license", &[b"ab", b"c"]));
        assert_eq!(Keyer::log_ref(&a).len(), 12);
    }

    #[tokio::test]
    async fn concurrent_misses_load_once_and_entries_expire_on_their_own_time() {
        let family = Family::<CacheLabels, Counter>::default();
        let cache: Arc<CountedCache<Entry>> = Arc::new(CountedCache::new("t", 100, &family));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load::<(), _>([1; 16], async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Arc::new(Entry(Instant::now() + Duration::from_millis(200))))
                    })
                    .await
                    .is_ok()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(cache.stats.loads.get(), 1);
        assert!(cache.get(&[1; 16]).await.is_some());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            cache.get(&[1; 16]).await.is_none(),
            "expired on its own TTL"
        );
        assert_eq!((cache.stats.hits.get(), cache.stats.misses.get()), (1, 1));
        // A failed load is not cached.
        let failed = cache
            .get_or_load::<&str, _>([2; 16], async { Err("down") })
            .await;
        assert!(failed.is_err());
        assert!(cache.cache.get(&[2; 16]).await.is_none());
    }
}
