//! Admission: whether the gateway takes on a call now, so that no region's surge can
//! grow its memory or starve the others.
//!
//! Every admitted call holds a [`Permit`] until its answer is handed back: one call in
//! flight for its origin region, its target province and the gateway, and every byte of
//! request and answer it buffers, charged as the bytes arrive. Over a hard limit (calls
//! in flight to one target, calls or bytes in the whole gateway) the call is refused
//! with RESOURCE_EXHAUSTED and `tongban-retry: transient`, before anything grows.
//!
//! Capacity is shared by origin: while the gateway is congested (three quarters of
//! either budget in use) an origin holding more than its fair share — the budget divided
//! by the origins with calls in flight, at most half — is refused first, so a surge from
//! one region is shed from that region while every other keeps being served, and one
//! region alone stops at the congestion mark, leaving the last quarter to the others.
//!
//! Before any of that, at the HTTP/2 level ([`Admission::defers`]): while the gateway is
//! measured busy (`crate::saturation`: the workers' busy share past `busy_threshold`)
//! an origin past its window's fair allowance of new calls, and while three quarters of
//! the calls are in flight an origin holding more than an equal share of them, takes no
//! new stream (`crate::stream_gate`): its streams wait in HTTP/2, the window h2 may
//! buffer for them charged to the origin's bytes, or, when that charge is refused, are
//! reset with REFUSED_STREAM. No call is built, nothing is read, audited or counted but
//! an atomic.
//!
//! Deliberately hand-rolled rather than tower's `ConcurrencyLimit` or `governor`: those
//! limit one key each, and fair share needs every origin's usage at once; here it is a
//! few atomic operations on fixed arrays (one slot per province), no lock, no
//! allocation per call.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use tongban_runtime::serving::handshakes::{
    DEFAULT_CLIENT_HELLO_TIMEOUT, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
};

use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    error::GatewayError,
    message::{Budget, MAX_MESSAGE},
    saturation::{SLOTS, Saturation},
};

/// The operator's limits (`[limits]` in the gateway's config).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Calls in flight in the whole gateway.
    pub max_in_flight: usize,
    /// Calls in flight to one target province (a slow region cannot take them all).
    pub max_in_flight_per_target: usize,
    /// Bytes of requests and answers the gateway buffers at once.
    pub buffer_budget_bytes: usize,
    /// Connections one identity (a region's certificate) may hold open.
    pub max_connections_per_identity: usize,
    /// TLS handshakes in progress at once; new TCP connections beyond are closed.
    pub max_concurrent_handshakes: usize,
    /// TLS handshakes in progress at once from one source address (an IPv6 /64); its
    /// new TCP connections beyond are closed, so one host cannot hold every handshake
    /// slot. At most `max_concurrent_handshakes` (set it that high to turn this off,
    /// e.g. behind a load balancer that hides the nodes' addresses).
    pub max_handshakes_per_source: usize,
    /// Time a new connection gets to send its whole TLS ClientHello (at most
    /// `handshake_timeout`, which bounds the whole handshake); an idle connection gives
    /// its handshake slot back after it.
    #[serde(with = "humantime_serde")]
    pub client_hello_timeout: Duration,
    /// Share of the workers' time busy (measured, `crate::saturation`) from which the
    /// gateway counts as congested and refuses new streams of origins past their fair
    /// allowance of new calls.
    pub busy_threshold: f64,
    /// Calls in flight an origin is never held below while congested.
    pub min_share_calls: usize,
    /// New calls a second an origin is never held below while congested (its allowance
    /// per 50 ms window is at least a twentieth of this): a region's ordinary traffic is
    /// far below it, so only a surge is ever slowed.
    pub min_share_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: 4096,
            max_in_flight_per_target: 1024,
            // Half the chart's 256 MiB memory limit.
            buffer_budget_bytes: 128 << 20,
            max_connections_per_identity: 32,
            max_concurrent_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            client_hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
            // Below saturation: a saturated thread already delays every region's calls.
            busy_threshold: 0.6,
            min_share_calls: 2,
            min_share_per_second: 200,
        }
    }
}

impl Limits {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Every limit must admit something.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.max_in_flight == 0
            || self.max_in_flight_per_target == 0
            || self.max_connections_per_identity == 0
            || self.max_concurrent_handshakes == 0
            || self.max_handshakes_per_source == 0
            || self.client_hello_timeout.is_zero()
            || self.min_share_calls == 0
            || self.min_share_per_second == 0
        {
            return Err("every limit must be at least 1");
        }
        if !(self.busy_threshold > 0.0 && self.busy_threshold <= 1.0) {
            return Err("busy_threshold must be a share of time, above 0 and at most 1");
        }
        if self.buffer_budget_bytes < MAX_MESSAGE * 2 {
            return Err(
                "buffer_budget_bytes must hold at least one request and its answer (8 MiB)",
            );
        }
        Ok(())
    }
}

/// Usage of one origin or of the whole gateway.
#[derive(Debug, Default)]
struct Usage {
    calls: AtomicUsize,
    bytes: AtomicUsize,
}

/// The gateway's admission state, shared by every connection.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    total: Usage,
    origins: [Usage; SLOTS],
    targets: [AtomicUsize; SLOTS],
    saturation: Arc<Saturation>,
    /// Streams refused at the HTTP/2 level, by province slot.
    deferrals: [AtomicU64; SLOTS],
    /// Connections that started holding their new streams, by province slot.
    holds: [AtomicU64; SLOTS],
}

fn slot_of(text: &str) -> usize {
    match text.as_bytes() {
        [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => {
            usize::from(a - b'0') * 10 + usize::from(b - b'0')
        }
        _ => 0,
    }
}

fn overloaded(reason: String) -> GatewayError {
    GatewayError::Overloaded(reason)
}

/// One origin's share of `capacity` with `active` origins using it: never more than
/// half, so an origin alone stops at the congestion mark.
fn fair_share(capacity: usize, active: usize) -> usize {
    (capacity / active.max(2)).max(1)
}

/// Grows `counter` by `n` unless that passes `limit`; the new value.
fn grow_within(counter: &AtomicUsize, n: usize, limit: usize) -> Option<usize> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v + n <= limit).then_some(v + n)
        })
        .ok()
        .map(|v| v + n)
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            total: Usage::default(),
            origins: std::array::from_fn(|_| Usage::default()),
            targets: std::array::from_fn(|_| AtomicUsize::new(0)),
            saturation: Arc::default(),
            deferrals: std::array::from_fn(|_| AtomicU64::new(0)),
            holds: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The measured business the congestion test reads (its watcher is started by the
    /// server: `Saturation::watch`).
    pub fn saturation(&self) -> &Arc<Saturation> {
        &self.saturation
    }

    /// The province slot admission counts a connection's calls under.
    pub fn slot_of_identity(identity: &PeerIdentity) -> Option<usize> {
        match identity {
            PeerIdentity::Region(prefix) => Some(slot_of(prefix.as_str())),
            _ => None,
        }
    }

    /// Whether a new stream of the origin in `slot` is refused at the HTTP/2 level
    /// (REFUSED_STREAM) before any call is built. Measured busy (`crate::saturation`),
    /// an origin past its window's allowance of new calls is refused; with three
    /// quarters of the calls in flight, an origin holding more than an equal share of
    /// them (and at least `min_share_calls`). Off congestion it is two atomic loads.
    pub fn defers(&self, slot: usize) -> bool {
        if self.saturation.congested() && self.saturation.over_allowance(slot) {
            return true;
        }
        let total = self.total.calls.load(Ordering::Relaxed);
        if total <= self.limits.max_in_flight / 4 * 3 {
            return false;
        }
        // Calls parked at a slow node cost no CPU: counted only when calls are short.
        let mine = self.origins[slot].calls.load(Ordering::Relaxed);
        mine >= self.limits.min_share_calls && mine * self.active_origins() > total
    }

    /// Counts a stream the origin in `slot` started (its window's allowance).
    pub fn started(&self, slot: usize) {
        self.saturation.started(slot);
    }

    /// Counts a stream of the origin in `slot` refused at the HTTP/2 level.
    pub fn refused_stream(&self, slot: usize) {
        self.deferrals[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection of the origin in `slot` starting to hold its new streams.
    pub fn held_connection(&self, slot: usize) {
        self.holds[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections that started holding their streams so far, by province slot.
    pub fn holds(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.holds
            .iter()
            .enumerate()
            .map(|(slot, n)| (slot, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    /// Charges `n` bytes to the origin in `slot` with no call (what a connection holding
    /// its streams lets h2 buffer for them), within the buffer budget and, while it is
    /// mostly used, the origin's fair share of it; given back when dropped.
    pub fn reserve_bytes(self: &Arc<Self>, slot: usize, n: usize) -> Option<BytesHeld> {
        let budget = self.limits.buffer_budget_bytes;
        let total = grow_within(&self.total.bytes, n, budget)?;
        let mine = self.origins[slot].bytes.fetch_add(n, Ordering::Relaxed) + n;
        let held = BytesHeld {
            admission: self.clone(),
            slot,
            n,
        };
        if total > budget / 4 * 3 && mine > fair_share(budget, self.active_origins()) {
            return None;
        }
        Some(held)
    }

    /// Streams refused at the HTTP/2 level so far, by province slot (`/metrics`).
    pub fn deferrals(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.deferrals
            .iter()
            .enumerate()
            .map(|(slot, n)| (slot, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    /// Origins with calls in flight (at least 1: the one asking).
    fn active_origins(&self) -> usize {
        self.origins
            .iter()
            .filter(|u| u.calls.load(Ordering::Relaxed) > 0)
            .count()
            .max(1)
    }

    /// Admits a call from `origin`, or refuses it. The target is added with
    /// [`Permit::target`] once it is known.
    pub fn admit(self: &Arc<Self>, origin: &RegionPrefix) -> Result<Permit, GatewayError> {
        let slot = slot_of(origin.as_str());
        let max = self.limits.max_in_flight;
        // The gateway's count only grows within its limit, so a flood's refused attempts
        // never make the gateway look full to anyone else.
        let total = grow_within(&self.total.calls, 1, max).ok_or_else(|| {
            overloaded(format!(
                "the gateway has {max} calls in flight; retry later"
            ))
        })?;
        let mine = self.origins[slot].calls.fetch_add(1, Ordering::Relaxed) + 1;
        // From here the permit gives the counts back, refused or not.
        let permit = Permit {
            admission: self.clone(),
            origin: slot,
            target: None,
            bytes: 0,
        };
        if total > max / 4 * 3 {
            let fair = fair_share(max, self.active_origins());
            if mine > fair {
                return Err(overloaded(format!(
                    "region {origin} holds more than its share of the gateway ({fair} calls) while it is congested; retry later"
                )));
            }
        }
        Ok(permit)
    }
}

/// One admitted call's share of the gateway; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    origin: usize,
    target: Option<usize>,
    bytes: usize,
}

impl Permit {
    /// Counts the call against its target province.
    pub fn target(&mut self, target: &RegionCode) -> Result<(), GatewayError> {
        let slot = slot_of(target.as_str());
        let a = &self.admission;
        let max = a.limits.max_in_flight_per_target;
        if grow_within(&a.targets[slot], 1, max).is_none() {
            return Err(overloaded(format!(
                "province {slot:02} has {max} calls in flight through the gateway; retry later"
            )));
        }
        self.target = Some(slot);
        Ok(())
    }

    /// Charges `n` more buffered bytes to the call; refused over the gateway's budget, or
    /// over the origin's fair share of it while the budget is mostly used.
    pub fn charge(&mut self, n: usize) -> Result<(), GatewayError> {
        let a = &self.admission;
        let budget = a.limits.buffer_budget_bytes;
        let total = grow_within(&a.total.bytes, n, budget).ok_or_else(|| {
            overloaded("the gateway's buffer budget is used up; retry later".into())
        })?;
        let mine = a.origins[self.origin].bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.bytes += n;
        if total > budget / 4 * 3 && mine > fair_share(budget, a.active_origins()) {
            return Err(overloaded(
                "this region holds more than its share of the gateway's buffers while they are nearly full; retry later"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        a.total.calls.fetch_sub(1, Ordering::Relaxed);
        a.origins[self.origin].calls.fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.target {
            a.targets[t].fetch_sub(1, Ordering::Relaxed);
        }
        if self.bytes > 0 {
            a.total.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
            a.origins[self.origin]
                .bytes
                .fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// Bytes charged without a call ([`Admission::reserve_bytes`]); given back when dropped.
#[derive(Debug)]
pub struct BytesHeld {
    admission: Arc<Admission>,
    slot: usize,
    n: usize,
}

impl Drop for BytesHeld {
    fn drop(&mut self) {
        let a = &self.admission;
        a.total.bytes.fetch_sub(self.n, Ordering::Relaxed);
        a.origins[self.slot]
            .bytes
            .fetch_sub(self.n, Ordering::Relaxed);
    }
}

impl Budget for Permit {
    fn charge(&mut self, bytes: usize) -> Result<(), GatewayError> {
        Permit::charge(self, bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn prefix(p: &str) -> RegionPrefix {
        RegionPrefix::parse(p).unwrap()
    }

    fn small() -> Arc<Admission> {
        Admission::new(Limits {
            max_in_flight: 40,
            max_in_flight_per_target: 25,
            buffer_budget_bytes: 100 << 20,
            ..Limits::default()
        })
    }

    #[test]
    fn a_surging_origin_is_shed_while_others_keep_their_share() {
        let a = small();
        // 31 alone stops at the congestion mark (30 of 40): the last quarter stays free.
        let mut flood: Vec<Permit> = (0..30).map(|_| a.admit(&prefix("31")).unwrap()).collect();
        assert!(a.admit(&prefix("31")).is_err());
        // Beijing arrives and is served.
        let mut beijing: Vec<Permit> = (0..10).map(|_| a.admit(&prefix("11")).unwrap()).collect();
        // Full: anyone is refused now.
        assert!(a.admit(&prefix("11")).is_err());
        beijing.truncate(5);
        // 35 in flight, 31 holds 30 of them (share 20 each): shed, although there is room.
        let refused = a.admit(&prefix("31")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.retry(),
            tongban_proto::contract::retry::Retry::Transient
        );
        assert!(refused.to_string().contains("region 31"), "{refused}");
        assert!(a.admit(&prefix("11")).is_ok());
        flood.truncate(0);
        drop(beijing);
        assert_eq!(a.total.calls.load(Ordering::Relaxed), 0);
        assert!(
            a.origins
                .iter()
                .all(|o| o.calls.load(Ordering::Relaxed) == 0)
        );
    }

    #[test]
    fn a_slow_target_cannot_take_every_slot() {
        let a = small();
        let mut held = Vec::new();
        for _ in 0..25 {
            let mut p = a.admit(&prefix("31")).unwrap();
            p.target(&RegionCode::parse("440305").unwrap()).unwrap();
            held.push(p);
        }
        let mut p = a.admit(&prefix("11")).unwrap();
        assert!(p.target(&RegionCode::parse("440100").unwrap()).is_err());
        let mut q = a.admit(&prefix("11")).unwrap();
        q.target(&RegionCode::parse("310115").unwrap()).unwrap();
        drop(held);
        drop((p, q));
        assert!(a.targets.iter().all(|t| t.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn buffered_bytes_stay_within_the_budget_and_are_given_back() {
        let a = small();
        let mut p = a.admit(&prefix("31")).unwrap();
        p.charge(60 << 20).unwrap();
        let mut q = a.admit(&prefix("11")).unwrap();
        q.charge(30 << 20).unwrap();
        // 90 of 100 MiB in use, two origins: 31 holds more than half.
        assert!(p.charge(1 << 20).is_err());
        let mut r = a.admit(&prefix("11")).unwrap();
        assert!(r.charge(20 << 20).is_err(), "over the budget");
        drop((p, q, r));
        assert_eq!(a.total.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_congested_gateway_refuses_streams_only_of_origins_above_their_share() {
        let a = small();
        let (s31, s11, s44) = (slot_of("31"), slot_of("11"), slot_of("44"));
        let flood: Vec<Permit> = (0..12).map(|_| a.admit(&prefix("31")).unwrap()).collect();
        let steady = a.admit(&prefix("11")).unwrap();
        // 13 of 40 in flight, not measured busy: nobody is refused.
        assert!(!a.defers(s31));
        // Measured busy, the in-flight count says nothing (calls parked at a slow node
        // cost no CPU): only an allowance spent refuses, and none is set yet.
        a.saturation().set_congested(true);
        assert!(!a.defers(s31) && !a.defers(s11));
        a.saturation().set_congested(false);
        drop((flood, steady));
        // Three quarters of the calls in flight: 31 holds 30 of 31, 44 one.
        let many: Vec<Permit> = (0..31)
            .map(|_| {
                a.admit(&prefix("31"))
                    .unwrap_or_else(|_| a.admit(&prefix("44")).unwrap())
            })
            .collect();
        assert!(a.defers(s31));
        assert!(!a.defers(s44));
        drop(many);
        assert!(!a.defers(s31));
    }

    #[test]
    fn limits_must_admit_something() {
        assert!(Limits::default().check().is_ok());
        let zero = Limits {
            max_in_flight: 0,
            ..Limits::default()
        };
        assert!(zero.check().is_err());
        let tiny = Limits {
            buffer_budget_bytes: 1024,
            ..Limits::default()
        };
        assert!(tiny.check().is_err());
        let no_hello = Limits {
            client_hello_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(no_hello.check().is_err());
        for busy_threshold in [0.0, 1.5, f64::NAN] {
            let odd = Limits {
                busy_threshold,
                ..Limits::default()
            };
            assert!(odd.check().is_err(), "{busy_threshold}");
        }
    }
}
