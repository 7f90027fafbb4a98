//! The revoked licenses this replica remembers, by key of their id, each charged to the
//! registered member that published it (its issuer), with that member's ceiling and rate.
//!
//! Not a cache (moka): a cache makes room by forgetting, and a forgotten revocation lets
//! a verdict cached before it, or a grace copy, answer "recognized" again — a flood of
//! made-up revocations could push the real ones out. Here a revocation is remembered for
//! the whole `memory` and never less; a member at its ceiling (`max_per_issuer`) has its
//! new revocations refused instead, and its node's outbox publishes them again later.
//! Revocations the shared log holds were accepted by some replica: they are always
//! applied, and counted.
//!
//! A map from key to issuer answers `contains` (read on every verdict: one hash lookup
//! under a read lock) and a queue in the order remembered says what to forget when
//! `memory` has passed; expired revocations are forgotten whenever one is admitted.
//! About 60 bytes a revocation (see the test `bytes_per_revocation`).
//!
//! Metrics: `tongban_gateway_revoked_licenses{issuer}` (remembered now),
//! `tongban_gateway_revoked_licenses_ceiling` and
//! `tongban_gateway_revocations_refused_total{issuer, reason}` (`ceiling`, `rate`). The
//! series of the members registered at start are there from the start, at 0, so an
//! alert on `increase()` sees the first refusal.

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroU32,
    sync::{RwLock, RwLockWriteGuard},
    time::{Duration, SystemTime},
};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tongban_proto::rules::region::RegionPrefix;

use super::cache::Key;
use crate::config::RevocationSettings;

/// The names registered, and as a scrape shows them.
pub const REMEMBERED: &str = "tongban_gateway_revoked_licenses";
pub const CEILING: &str = "tongban_gateway_revoked_licenses_ceiling";
pub const REFUSED: &str = "tongban_gateway_revocations_refused";
pub const REFUSED_TOTAL: &str = "tongban_gateway_revocations_refused_total";

/// The pushback stated at the ceiling: a place frees only when a revocation of the
/// member's is forgotten (days), or when an operator raises the ceiling; a minute is
/// the longest a caller honours (`tongban_proto::contract::retry::pushback`).
pub const CEILING_PUSHBACK: Duration = Duration::from_secs(60);

/// Why a member's revocation was not admitted; the message names the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "region {issuer} has {max} revocations remembered at the gateway, its ceiling \
         ([recognition.revocations] max_per_issuer; each is remembered {}): this one is \
         not applied; retry later",
        humantime::format_duration(*memory)
    )]
    Ceiling {
        issuer: RegionPrefix,
        max: usize,
        memory: Duration,
    },
    #[error(
        "region {issuer} publishes revocations faster than {per_second} a second after a \
         burst of {burst} ([recognition.revocations] per_second, burst): this one is not \
         applied; retry in {} ms",
        wait.as_millis()
    )]
    Rate {
        issuer: RegionPrefix,
        per_second: u32,
        burst: u32,
        wait: Duration,
    },
}

impl Refusal {
    /// When the caller may try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Ceiling { .. } => CEILING_PUSHBACK,
            Self::Rate { wait, .. } => *wait,
        }
    }
}

/// What became of a revocation read from the shared log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// Remembered now.
    New,
    /// Remembered already.
    Known,
    /// Published longer than `memory` ago: nothing to remember.
    Expired,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabel {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    issuer: String,
    reason: &'static str,
}

/// One member's share.
struct Issuer {
    remembered: usize,
    /// Places held for revocations admitted and not yet remembered (being written to
    /// the shared log): counted against the ceiling, so concurrent ones cannot pass it.
    reserved: usize,
    gauge: Gauge,
    refused_ceiling: Counter,
    refused_rate: Counter,
    /// Refused at the ceiling since its last revocation remembered (logged once).
    at_ceiling: bool,
}

#[derive(Default)]
struct Set {
    /// Each remembered revocation's issuer, an index into `issuers`.
    by_key: HashMap<Key, u32>,
    /// (remembered since, Unix seconds; key), in the order remembered: the oldest
    /// first, but for log rows applied late, which are then forgotten late, never early.
    order: VecDeque<(u32, Key)>,
    issuers: Vec<Issuer>,
    index: HashMap<RegionPrefix, u32>,
}

/// The revoked set with its bounds and metrics.
pub struct Revoked {
    set: RwLock<Set>,
    memory: Duration,
    max_per_issuer: usize,
    per_second: u32,
    burst: u32,
    limiter: DefaultKeyedRateLimiter<RegionPrefix>,
    remembered: Family<IssuerLabel, Gauge>,
    refused: Family<RefusalLabels, Counter>,
}

/// A place under a member's ceiling, held until used by [`Revoked::insert`] or dropped
/// (a revocation the shared log did not take).
pub struct Reservation<'a> {
    revoked: &'a Revoked,
    issuer: u32,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut set = self.revoked.write();
        if let Some(issuer) = set.issuers.get_mut(self.issuer as usize) {
            issuer.reserved = issuer.reserved.saturating_sub(1);
        }
    }
}

/// Seconds since the Unix epoch, as remembered (0 before it; saturated in 2106).
fn unix_seconds(t: SystemTime) -> u32 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Revoked {
    /// The set with `settings`' bounds, its metrics registered in `registry`, with
    /// series for `members` (the members registered now) from the start.
    pub fn new(
        settings: &RevocationSettings,
        members: impl IntoIterator<Item = RegionPrefix>,
        registry: &mut Registry,
    ) -> Self {
        let quota =
            Quota::per_second(non_zero(settings.per_second)).allow_burst(non_zero(settings.burst));
        let revoked = Self {
            set: RwLock::default(),
            memory: settings.memory,
            max_per_issuer: settings.max_per_issuer,
            per_second: settings.per_second,
            burst: settings.burst,
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            remembered: Family::default(),
            refused: Family::default(),
        };
        let ceiling = Gauge::<i64>::default();
        ceiling.set(i64::try_from(settings.max_per_issuer).unwrap_or(i64::MAX));
        registry.register(
            REMEMBERED,
            "Revoked licenses this gateway remembers, by the registered member that published them (issuer)",
            revoked.remembered.clone(),
        );
        registry.register(
            CEILING,
            "Most revoked licenses remembered at once for one member ([recognition.revocations] max_per_issuer)",
            ceiling,
        );
        registry.register(
            REFUSED,
            "Revocations refused by the member that published them (issuer) and why: ceiling (max_per_issuer remembered) or rate (per_second, burst)",
            revoked.refused.clone(),
        );
        {
            let mut set = revoked.write();
            for member in members {
                revoked.issuer_index(&mut set, member);
            }
        }
        revoked
    }

    fn write(&self) -> RwLockWriteGuard<'_, Set> {
        // The set is plain values, consistent after any panic.
        self.set.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the license of `key` is remembered as revoked.
    pub fn contains(&self, key: &Key) -> bool {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        set.by_key.contains_key(key)
    }

    /// Revocations of `issuer`'s remembered now.
    pub fn remembered(&self, issuer: &RegionPrefix) -> usize {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        set.index
            .get(issuer)
            .map_or(0, |&i| set.issuers[i as usize].remembered)
    }

    /// Admits a new revocation published by `issuer`: a place under its ceiling, then a
    /// token of its rate (neither taken when refused).
    pub fn admit(&self, issuer: RegionPrefix) -> Result<Reservation<'_>, Refusal> {
        self.admit_at(issuer, SystemTime::now())
    }

    /// A token of `issuer`'s rate for a revocation remembered already (never refused at
    /// the ceiling: it takes no place), so repeating one cannot write the shared log at
    /// any speed.
    pub fn pace(&self, issuer: RegionPrefix) -> Result<(), Refusal> {
        let mut set = self.write();
        let index = self.issuer_index(&mut set, issuer);
        match self.limiter.check_key(&issuer) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                set.issuers[index as usize].refused_rate.inc();
                Err(self.rate_refusal(issuer, &not_until))
            }
        }
    }

    fn rate_refusal(
        &self,
        issuer: RegionPrefix,
        not_until: &governor::NotUntil<<governor::clock::DefaultClock as Clock>::Instant>,
    ) -> Refusal {
        let wait = not_until.wait_time_from(self.limiter.clock().now());
        // Whole milliseconds, rounded up: the pushback's unit.
        let wait = Duration::from_millis(wait.as_micros().div_ceil(1000).max(1) as u64);
        Refusal::Rate {
            issuer,
            per_second: self.per_second,
            burst: self.burst,
            wait,
        }
    }

    fn admit_at(&self, issuer: RegionPrefix, now: SystemTime) -> Result<Reservation<'_>, Refusal> {
        let mut set = self.write();
        self.forget_expired(&mut set, now);
        let index = self.issuer_index(&mut set, issuer);
        let share = &mut set.issuers[index as usize];
        if share.remembered + share.reserved >= self.max_per_issuer {
            share.refused_ceiling.inc();
            if !share.at_ceiling {
                share.at_ceiling = true;
                tracing::warn!(%issuer, max_per_issuer = self.max_per_issuer, "revocations refused: the member is at its ceiling");
            }
            return Err(Refusal::Ceiling {
                issuer,
                max: self.max_per_issuer,
                memory: self.memory,
            });
        }
        if let Err(not_until) = self.limiter.check_key(&issuer) {
            share.refused_rate.inc();
            return Err(self.rate_refusal(issuer, &not_until));
        }
        share.reserved += 1;
        Ok(Reservation {
            revoked: self,
            issuer: index,
            used: false,
        })
    }

    /// Remembers the revocation of `key` in the place `reservation` holds; whether it
    /// is new (the shared log's follower may have remembered it first).
    pub fn insert(&self, key: Key, mut reservation: Reservation<'_>) -> bool {
        let mut set = self.write();
        // The place becomes the revocation's (or is not needed): given back here.
        reservation.used = true;
        let issuer = reservation.issuer;
        if let Some(share) = set.issuers.get_mut(issuer as usize) {
            share.reserved = share.reserved.saturating_sub(1);
        }
        let since = unix_seconds(SystemTime::now());
        self.remember(&mut set, key, issuer, since)
    }

    /// Remembers a revocation the shared log holds, published by `issuer` at
    /// `published`: never refused (a replica accepted it), counted all the same.
    pub fn insert_logged(
        &self,
        key: Key,
        issuer: RegionPrefix,
        published: SystemTime,
    ) -> Remembered {
        self.insert_logged_at(key, issuer, published, SystemTime::now())
    }

    fn insert_logged_at(
        &self,
        key: Key,
        issuer: RegionPrefix,
        published: SystemTime,
        now: SystemTime,
    ) -> Remembered {
        // A memory too long to add (configured absurdly) never expires.
        if published
            .checked_add(self.memory)
            .is_some_and(|until| until <= now)
        {
            return Remembered::Expired;
        }
        let mut set = self.write();
        self.forget_expired(&mut set, now);
        let index = self.issuer_index(&mut set, issuer);
        // Never later than now: a publisher's clock ahead must not make it last longer.
        let since = unix_seconds(published.min(now));
        if self.remember(&mut set, key, index, since) {
            Remembered::New
        } else {
            Remembered::Known
        }
    }

    fn remember(&self, set: &mut Set, key: Key, issuer: u32, since: u32) -> bool {
        if set.by_key.contains_key(&key) {
            return false;
        }
        set.by_key.insert(key, issuer);
        set.order.push_back((since, key));
        let share = &mut set.issuers[issuer as usize];
        share.remembered += 1;
        share.at_ceiling = false;
        share.gauge.set(share.remembered as i64);
        true
    }

    /// Forgets the revocations remembered for `memory` by `now`, oldest first.
    fn forget_expired(&self, set: &mut Set, now: SystemTime) {
        let Some(cutoff) = now.checked_sub(self.memory).map(unix_seconds) else {
            return;
        };
        while let Some(&(since, key)) = set.order.front() {
            if since > cutoff {
                break;
            }
            set.order.pop_front();
            if let Some(issuer) = set.by_key.remove(&key) {
                let share = &mut set.issuers[issuer as usize];
                share.remembered = share.remembered.saturating_sub(1);
                share.gauge.set(share.remembered as i64);
            }
        }
        // A flood's worth of room given back once it has all expired.
        if set.order.capacity() > 4 * set.order.len().max(1024) {
            set.order.shrink_to_fit();
            set.by_key.shrink_to_fit();
        }
    }

    /// The index of `issuer`'s share, made (with its series) on first sight.
    fn issuer_index(&self, set: &mut Set, issuer: RegionPrefix) -> u32 {
        if let Some(&index) = set.index.get(&issuer) {
            return index;
        }
        let index = u32::try_from(set.issuers.len()).unwrap_or(u32::MAX);
        let label = issuer.as_str().to_owned();
        let refused = |reason| {
            self.refused
                .get_or_create(&RefusalLabels {
                    issuer: label.clone(),
                    reason,
                })
                .clone()
        };
        set.issuers.push(Issuer {
            remembered: 0,
            reserved: 0,
            gauge: self
                .remembered
                .get_or_create(&IssuerLabel {
                    issuer: label.clone(),
                })
                .clone(),
            refused_ceiling: refused("ceiling"),
            refused_rate: refused("rate"),
            at_ceiling: false,
        });
        set.index.insert(issuer, index);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> RegionPrefix {
        RegionPrefix::parse(p).unwrap()
    }

    fn key(n: u32) -> Key {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }

    fn settings(max_per_issuer: usize, per_second: u32, burst: u32) -> RevocationSettings {
        RevocationSettings {
            memory: Duration::from_secs(3600),
            max_per_issuer,
            per_second,
            burst,
        }
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    /// Admits and remembers `n` revocations of `issuer`, keys from `first`, at `now`.
    fn publish(revoked: &Revoked, issuer: &str, first: u32, n: u32, now: SystemTime) {
        for k in first..first + n {
            let reservation = revoked.admit_at(prefix(issuer), now).unwrap();
            assert!(revoked.insert(key(k), reservation));
        }
    }

    #[test]
    fn the_ceiling_refuses_new_revocations_and_forgets_none() {
        let mut registry = Registry::default();
        let revoked = Revoked::new(&settings(3, 1000, 1000), [prefix("31")], &mut registry);
        let now = SystemTime::now();
        publish(&revoked, "31", 0, 3, now);
        let refused = revoked.admit_at(prefix("31"), now).err().unwrap();
        assert!(
            matches!(refused, Refusal::Ceiling { max: 3, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("max_per_issuer"), "{refused}");
        assert_eq!(refused.retry_after(), CEILING_PUSHBACK);
        // Every one of the first three is still remembered: nothing was evicted.
        assert!((0..3).all(|k| revoked.contains(&key(k))));
        // Another member is not held back by 31's ceiling.
        publish(&revoked, "44", 10, 3, now);
        assert_eq!(
            (
                revoked.remembered(&prefix("31")),
                revoked.remembered(&prefix("44"))
            ),
            (3, 3)
        );
        let text = scrape(&registry);
        for line in [
            "tongban_gateway_revoked_licenses{issuer=\"31\"} 3",
            "tongban_gateway_revoked_licenses{issuer=\"44\"} 3",
            "tongban_gateway_revoked_licenses_ceiling 3",
            "tongban_gateway_revocations_refused_total{issuer=\"31\",reason=\"ceiling\"} 1",
            "tongban_gateway_revocations_refused_total{issuer=\"31\",reason=\"rate\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn concurrent_admissions_cannot_pass_the_ceiling_and_dropped_ones_give_their_place_back() {
        let revoked = Revoked::new(&settings(2, 1000, 1000), [], &mut Registry::default());
        let now = SystemTime::now();
        let a = revoked.admit_at(prefix("31"), now).unwrap();
        let b = revoked.admit_at(prefix("31"), now).unwrap();
        assert!(revoked.admit_at(prefix("31"), now).is_err());
        // b's log write failed: its place is free again.
        drop(b);
        let c = revoked.admit_at(prefix("31"), now).unwrap();
        assert!(revoked.insert(key(1), a));
        // The follower remembered key 1 first: c's insert finds it, and gives back.
        assert!(!revoked.insert(key(1), c));
        assert_eq!(revoked.remembered(&prefix("31")), 1);
        assert!(revoked.admit_at(prefix("31"), now).is_ok());
    }

    #[test]
    fn expiry_forgets_after_memory_and_frees_the_issuers_places() {
        let revoked = Revoked::new(&settings(2, 1000, 1000), [], &mut Registry::default());
        let start = SystemTime::now();
        publish(&revoked, "31", 0, 2, start);
        assert!(revoked.admit_at(prefix("31"), start).is_err());
        // Not a second early.
        let almost = start + Duration::from_secs(3599);
        assert!(revoked.admit_at(prefix("31"), almost).is_err());
        assert!(revoked.contains(&key(0)));
        let later = start + Duration::from_secs(3601);
        let reservation = revoked.admit_at(prefix("31"), later).unwrap();
        assert!(!revoked.contains(&key(0)) && !revoked.contains(&key(1)));
        assert_eq!(revoked.remembered(&prefix("31")), 0);
        drop(reservation);
    }

    #[test]
    fn log_rows_are_never_refused_count_for_their_issuer_and_expire_from_their_publication() {
        let mut registry = Registry::default();
        let revoked = Revoked::new(&settings(2, 1, 1), [], &mut registry);
        let now = SystemTime::now();
        // Beyond the ceiling and the rate: accepted by another replica, applied here.
        for k in 0..5 {
            let published = now - Duration::from_secs(600);
            let logged = revoked.insert_logged_at(key(k), prefix("31"), published, now);
            assert_eq!(logged, Remembered::New);
        }
        assert_eq!(
            revoked.insert_logged_at(key(0), prefix("31"), now, now),
            Remembered::Known
        );
        assert_eq!(revoked.remembered(&prefix("31")), 5);
        // The member's own publications here are held to its ceiling, counting those.
        assert!(matches!(
            revoked.admit_at(prefix("31"), now),
            Err(Refusal::Ceiling { .. })
        ));
        // A row older than `memory` is not loaded; the others go when their hour since
        // publication is up, not an hour after they were applied.
        let old = now - Duration::from_secs(3601);
        assert_eq!(
            revoked.insert_logged_at(key(9), prefix("31"), old, now),
            Remembered::Expired
        );
        assert!(!revoked.contains(&key(9)));
        let later = now + Duration::from_secs(3000 + 1);
        assert!(revoked.admit_at(prefix("31"), later).is_ok());
        assert_eq!(revoked.remembered(&prefix("31")), 0);
        assert!(scrape(&registry).contains("tongban_gateway_revoked_licenses{issuer=\"31\"} 0"));
    }

    #[test]
    fn the_rate_refuses_past_the_burst_and_says_when_a_token_is_free() {
        let mut registry = Registry::default();
        let revoked = Revoked::new(&settings(1000, 10, 5), [prefix("31")], &mut registry);
        let now = SystemTime::now();
        publish(&revoked, "31", 0, 5, now);
        let refused = revoked.admit_at(prefix("31"), now).err().unwrap();
        let Refusal::Rate { wait, .. } = refused else {
            panic!("{refused}");
        };
        // One token every 100 ms.
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(refused.retry_after(), wait);
        assert!(refused.to_string().contains("per_second"), "{refused}");
        // Per member: 44 has its own burst.
        publish(&revoked, "44", 100, 5, now);
        let text = scrape(&registry);
        assert!(
            text.contains(
                "tongban_gateway_revocations_refused_total{issuer=\"31\",reason=\"rate\"} 1"
            ),
            "{text}"
        );
    }

    /// What a remembered revocation costs: the map's and the queue's storage, at the
    /// capacities they grew to (a hash table's buckets and control bytes, a ring
    /// buffer's slots), over 1,000 to 400,000 revocations (40 members at a ceiling of
    /// 10,000).
    #[test]
    fn bytes_per_revocation() {
        for n in [1_000u32, 10_000, 100_000, 400_000] {
            let revoked = Revoked::new(&settings(usize::MAX, 1, 1), [], &mut Registry::default());
            let now = SystemTime::now();
            for k in 0..n {
                revoked.insert_logged_at(key(k), prefix("31"), now, now);
            }
            let set = revoked.set.read().unwrap();
            let map = set.by_key.capacity() * (size_of::<(Key, u32)>() + 1);
            let queue = set.order.capacity() * size_of::<(u32, Key)>();
            let per = (map + queue) as f64 / f64::from(n);
            println!("{n} revocations: {per:.0} bytes each (map {map} B, queue {queue} B)");
            assert!(per < 100.0, "{per}");
        }
    }
}
