//! The caches of verified lookups (moka): bounded by the bytes their entries hold (each
//! entry weighed by its `Footprint`, moka's own bookkeeping included; the configured
//! entry counts bound them too), each entry fresh until its own time — never beyond the
//! assertion's or license's own validity or its key's window, short for negative
//! answers — with one issuer call for any number of concurrent misses of one key,
//! explicit invalidation, and counters for hits, misses, loads, evictions,
//! invalidations, grace answers and entries too large to cache. The bytes each cache
//! holds are published as `tongban_recognition_cache_bytes`.
//!
//! An entry larger than [`MAX_ENTRY_BYTES`] (a license stating a huge `fields` map) is
//! answered but never cached: one hostile issuer's answers cannot push every other
//! region's entries out.
//!
//! Freshness is checked on read (a stale entry is dropped and reloaded) rather than by
//! moka's per-entry expiry, whose timer wheel costs about 50 bytes an entry; the
//! capacity bound evicts what is never read again. Entries are kept small for the same
//! reason.
//!
//! Keys are keyed hashes (HMAC-SHA256 under the configured secret) of what was asked:
//! no raw ID number or license id is ever a key.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use moka::{future::Cache, notification::RemovalCause};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use ring::hmac;

use super::footprint::{ENTRY_OVERHEAD, Footprint};

/// The cache counters' name as registered, and as a scrape shows it (the console reads it).
pub const CACHE_EVENTS: &str = "tongban_recognition_cache_events";
pub const CACHE_EVENTS_TOTAL: &str = "tongban_recognition_cache_events_total";
/// The gauge of the bytes each cache holds.
pub const CACHE_BYTES: &str = "tongban_recognition_cache_bytes";

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

/// Something cached with its own lifetime, and weighed by its bytes.
pub trait Expiring: Footprint {
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
    /// Loaded (and answered) but too large to cache.
    pub too_large: Counter,
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
            too_large: c("too_large"),
        }
    }
}

/// Largest entry a cache keeps (its footprint): far above a real license (a few fields)
/// or a holder's list of them, far below a cache's bytes. A larger one is answered
/// from its load but not kept.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Why a load left nothing in the cache.
enum Unloaded<V, E> {
    Failed(E),
    /// Loaded, and answered to every caller sharing the load, but too large to keep.
    TooLarge(Arc<V>),
}

/// Most loads one caller makes for one key when the loads it shared failed for their
/// own callers' reasons (see [`CountedCache::get_or_load`]).
const LOADS_PER_CALLER: usize = 3;

/// One bounded cache with its counters.
pub struct CountedCache<V: Expiring + Send + Sync + 'static> {
    pub cache: Cache<Key, Arc<V>>,
    pub stats: CacheStats,
}

impl<V: Expiring + Send + Sync + 'static> CountedCache<V> {
    /// A cache holding at most `bytes` (its entries' footprints and moka's bookkeeping)
    /// and at most `entries` entries: each entry weighs at least `bytes / entries`.
    fn new(
        name: &'static str,
        bytes: u64,
        entries: u64,
        family: &Family<CacheLabels, Counter>,
    ) -> Self {
        let stats = CacheStats::new(family, name);
        let evictions = stats.evictions.clone();
        let least = (bytes / entries.max(1)).max(1);
        let cache = Cache::builder()
            .name(name)
            .max_capacity(bytes)
            .weigher(move |_key, entry: &Arc<V>| {
                let weight = ((entry.bytes() + ENTRY_OVERHEAD) as u64).max(least);
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
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

    /// Caches `entry` under `key`, unless it is too large to keep (counted).
    pub async fn insert(&self, key: Key, entry: Arc<V>) {
        if entry.bytes() > MAX_ENTRY_BYTES {
            self.stats.too_large.inc();
            return;
        }
        self.cache.insert(key, entry).await;
    }

    /// The entry, loading it with `load` if absent: concurrent callers for one key
    /// share a single load, the one of the caller that came first (whose call is
    /// charged for what it buffers). Errors are not cached, nor an entry over
    /// [`MAX_ENTRY_BYTES`] (counted), which answers every caller sharing its load all
    /// the same. An error that `its_callers_own` says concerned the loading call alone
    /// (its own share of the gateway refused the issuer's answer) answers nobody else:
    /// a caller who shared that load loads again, as its own caller.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        key: Key,
        load: F,
        its_callers_own: fn(&E) -> bool,
    ) -> Result<Arc<V>, E>
    where
        E: Clone + Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<V>, E>>,
    {
        let mut loads = 0;
        loop {
            loads += 1;
            let ran = AtomicBool::new(false);
            let loaded = self
                .cache
                .try_get_with(key, async {
                    ran.store(true, Ordering::Relaxed);
                    self.stats.loads.inc();
                    let entry = load().await.map_err(Unloaded::Failed)?;
                    if entry.bytes() > MAX_ENTRY_BYTES {
                        self.stats.too_large.inc();
                        return Err(Unloaded::TooLarge(entry));
                    }
                    Ok(entry)
                })
                .await;
            let unloaded = match loaded {
                Ok(entry) => return Ok(entry),
                Err(unloaded) => unloaded,
            };
            match &*unloaded {
                Unloaded::TooLarge(entry) => return Ok(entry.clone()),
                Unloaded::Failed(e) if its_callers_own(e) && !ran.load(Ordering::Relaxed) => {
                    // Another caller's refusal is never this caller's answer: after a
                    // few shared loads refused so, it loads alone (its own charge).
                    if loads >= LOADS_PER_CALLER {
                        self.stats.loads.inc();
                        return load().await;
                    }
                }
                Unloaded::Failed(e) => return Err(e.clone()),
            }
        }
    }
}

/// Sizes and lifetimes of the caches.
#[derive(Clone, Debug)]
pub struct CacheLimits {
    pub identity_entries: u64,
    pub license_entries: u64,
    /// Bytes the identity cache may hold.
    pub identity_bytes: u64,
    /// Bytes the license cache may hold; the grace copies and the holder lists may
    /// hold a quarter of it each.
    pub license_bytes: u64,
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
}

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
            "Recognition cache events by cache (identity, license, license_grace, holder_licenses) and event (hit, miss, load, eviction, invalidation, grace, too_large: answered but not cached)",
            family.clone(),
        );
        let (entries, bytes) = (limits.license_entries, limits.license_bytes);
        let caches = Self {
            identity: CountedCache::new(
                "identity",
                limits.identity_bytes,
                limits.identity_entries,
                &family,
            ),
            licenses: CountedCache::new("license", bytes, entries, &family),
            grace: CountedCache::new("license_grace", bytes / 4, entries, &family),
            holder_lists: CountedCache::new(
                "holder_licenses",
                bytes / 4,
                (entries / 4).max(16),
                &family,
            ),
        };
        registry.register_collector(Box::new(CacheBytes(vec![
            ("identity", weighed(&caches.identity.cache)),
            ("license", weighed(&caches.licenses.cache)),
            ("license_grace", weighed(&caches.grace.cache)),
            ("holder_licenses", weighed(&caches.holder_lists.cache)),
        ])));
        caches
    }
}

/// The bytes a cache holds now, as moka last weighed them.
type Weighed = Box<dyn Fn() -> u64 + Send + Sync>;

fn weighed<V: Send + Sync + 'static>(cache: &Cache<Key, Arc<V>>) -> Weighed {
    let cache = cache.clone();
    Box::new(move || cache.weighted_size())
}

/// Publishes each cache's bytes at scrape time.
struct CacheBytes(Vec<(&'static str, Weighed)>);

impl std::fmt::Debug for CacheBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheBytes")
    }
}

impl prometheus_client::collector::Collector for CacheBytes {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{encoding::EncodeMetric, metrics::gauge::ConstGauge};
        let mut family = encoder.encode_descriptor(
            CACHE_BYTES,
            "Bytes each recognition cache holds, as estimated to bound it (entries and the cache's own bookkeeping)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (cache, bytes) in &self.0 {
            let bytes = i64::try_from(bytes()).unwrap_or(i64::MAX);
            ConstGauge::new(bytes).encode(family.encode_family(&[("cache", *cache)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[derive(Debug)]
    struct Entry(Instant, usize);

    impl Expiring for Entry {
        fn fresh_until(&self) -> Instant {
            self.0
        }
    }

    impl Footprint for Entry {
        fn bytes(&self) -> usize {
            self.1
        }
    }

    fn entry(bytes: usize) -> Arc<Entry> {
        Arc::new(Entry(Instant::now() + Duration::from_secs(60), bytes))
    }

    fn cache(bytes: u64, entries: u64) -> Arc<CountedCache<Entry>> {
        let family = Family::<CacheLabels, Counter>::default();
        Arc::new(CountedCache::new("t", bytes, entries, &family))
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
        let cache = cache(1 << 20, 100);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let load = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Arc::new(Entry(
                        Instant::now() + Duration::from_millis(200),
                        8,
                    )))
                };
                cache
                    .get_or_load::<(), _, _>([1; 16], load, |_| false)
                    .await
                    .is_ok()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
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
            .get_or_load::<&str, _, _>([2; 16], || async { Err("down") }, |_| false)
            .await;
        assert!(failed.is_err());
        assert!(cache.cache.get(&[2; 16]).await.is_none());
    }

    #[tokio::test]
    async fn a_cache_holds_at_most_its_bytes_and_its_entries() {
        // 200 entries of 10 KiB offered to 1 MiB.
        let by_bytes = cache(1 << 20, 100_000);
        for i in 0..200u8 {
            by_bytes.insert([i; 16], entry(10 << 10)).await;
        }
        by_bytes.cache.run_pending_tasks().await;
        let (held, count) = (by_bytes.cache.weighted_size(), by_bytes.cache.entry_count());
        assert!(held <= 1 << 20, "{held}");
        assert!(count > 0 && count <= (1 << 20) / (10 << 10), "{count}");
        assert!(
            held >= count * ((10 << 10) + ENTRY_OVERHEAD as u64),
            "{held} {count}"
        );
        assert!(by_bytes.stats.evictions.get() > 0);
        // Small entries: the entry count bounds them.
        let by_entries = cache(1 << 20, 10);
        for i in 0..100u8 {
            by_entries.insert([i; 16], entry(8)).await;
        }
        by_entries.cache.run_pending_tasks().await;
        assert!(by_entries.cache.entry_count() <= 10);
    }

    #[tokio::test]
    async fn an_entry_too_large_is_answered_to_every_caller_but_never_kept() {
        let cache = cache(1 << 20, 100);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                let load = || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(entry(MAX_ENTRY_BYTES + 1))
                };
                cache
                    .get_or_load::<(), _, _>([3; 16], load, |_| false)
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().1, MAX_ENTRY_BYTES + 1);
        }
        assert_eq!(
            cache.stats.loads.get(),
            1,
            "one load for the callers at once"
        );
        cache.insert([4; 16], entry(MAX_ENTRY_BYTES + 1)).await;
        cache.insert([5; 16], entry(MAX_ENTRY_BYTES)).await;
        cache.cache.run_pending_tasks().await;
        assert!(cache.cache.get(&[3; 16]).await.is_none());
        assert!(cache.cache.get(&[4; 16]).await.is_none());
        assert!(cache.cache.get(&[5; 16]).await.is_some());
        assert_eq!(cache.stats.too_large.get(), 2);
    }

    #[derive(Clone, Debug, PartialEq)]
    enum Why {
        /// The loading caller's own share refused the answer.
        Refused,
        Down,
    }

    #[tokio::test]
    async fn a_load_refused_for_its_caller_is_loaded_again_by_those_who_shared_it() {
        let cache = cache(1 << 20, 100);
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let load = || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(Why::Refused)
                };
                cache
                    .get_or_load([6; 16], load, |e| *e == Why::Refused)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = || async { Ok::<_, Why>(entry(8)) };
        let second = cache.get_or_load([6; 16], waiter, |e| *e == Why::Refused);
        assert_eq!(
            second.await.unwrap().1,
            8,
            "loaded again, as its own caller"
        );
        assert_eq!(first.await.unwrap().unwrap_err(), Why::Refused);
        // Any other failure answers everyone who shared the load.
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let load = || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(Why::Down)
                };
                cache
                    .get_or_load([7; 16], load, |e| *e == Why::Refused)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = cache.get_or_load([7; 16], waiter, |e| *e == Why::Refused);
        assert_eq!(second.await.unwrap_err(), Why::Down);
        assert_eq!(first.await.unwrap().unwrap_err(), Why::Down);
    }
}
