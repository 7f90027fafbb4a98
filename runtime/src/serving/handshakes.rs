//! Handshakes in progress at a federation listener: the limits on them
//! ([`HandshakeLimits`]), the slots a handshake holds while it runs — one of the
//! listener's and one of its source address's — and how handshakes ended, counted for
//! the process's `/metrics`.
//!
//! A slot is an RAII guard: whatever ends a handshake (done, refused, timed out, or a
//! panic unwinding its task) drops the guard and gives both slots back; nothing is
//! decremented by hand. The per-source bound is what keeps one host from holding every
//! slot with idle TCP connects (no certificate is needed to hold a slot): it can hold
//! its share and no more, so a registered member connecting from elsewhere always finds
//! one free.
//!
//! Sources are IPv4 addresses and IPv6 /64 prefixes (one host is usually given a whole
//! /64, so a per-address bound there would bound nothing); an IPv4 address seen as an
//! IPv4-mapped IPv6 address (a dual-stack listener) is the IPv4 address.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::serving::connection_slots::{self, ConnectionSlots, Refusal};

/// Handshakes a listener runs at once unless configured otherwise.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// Handshakes one source address may have in progress at once unless configured
/// otherwise: a member connects with one or two at a time, and a host holding 16 of
/// the 256 slots leaves the others 240.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 16;

/// Time a new connection gets to send its whole ClientHello unless configured
/// otherwise: a client sends it right after the TCP handshake, so even a slow link
/// needs a fraction of this; an idle connection gives its slots back after it.
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds on a listener's handshakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// The whole handshake, from the TCP accept to the verified client certificate.
    pub timeout: Duration,
    /// From the TCP accept to the whole ClientHello read (capped by `timeout`).
    pub client_hello_timeout: Duration,
    /// Handshakes in progress at once; a TCP connection beyond is closed at once.
    pub max_pending: usize,
    /// Handshakes in progress at once from one source (capped by `max_pending`); a TCP
    /// connection from that source beyond is closed at once.
    pub max_pending_per_source: usize,
}

impl HandshakeLimits {
    /// `timeout` and `max_pending` as given, the rest at their defaults.
    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Self {
            timeout,
            client_hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
            max_pending,
            max_pending_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        }
    }
}

/// How a connection's handshake ended; each is counted ([`handshake_counts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Verified: the connection is served.
    Completed,
    /// Refused by TLS or by the identity checks (wrong CA, no certificate, plaintext).
    Failed,
    /// Closed on arrival: every slot of the listener was taken.
    RefusedBusy,
    /// Closed on arrival: every slot of its source address was taken.
    RefusedPerSource,
    /// No whole ClientHello within the ClientHello timeout.
    ClientHelloTimeout,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
}

impl Ended {
    pub const ALL: [Ended; 6] = [
        Ended::Completed,
        Ended::Failed,
        Ended::RefusedBusy,
        Ended::RefusedPerSource,
        Ended::ClientHelloTimeout,
        Ended::HandshakeTimeout,
    ];

    /// The `outcome` label of `tongban_federation_handshakes_total`.
    pub fn label(self) -> &'static str {
        match self {
            Ended::Completed => "completed",
            Ended::Failed => "failed",
            Ended::RefusedBusy => "refused_busy",
            Ended::RefusedPerSource => "refused_per_source",
            Ended::ClientHelloTimeout => "client_hello_timeout",
            Ended::HandshakeTimeout => "handshake_timeout",
        }
    }
}

/// Counts of every federation listener in this process (a gateway or a node runs one),
/// so they reach `/metrics` through the process collector whoever started the listener.
static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// Counts one handshake that ended as `ended`.
pub(crate) fn count(ended: Ended) {
    COUNTS[ended as usize].fetch_add(1, Ordering::Relaxed);
}

/// How the handshakes of this process's federation listeners have ended so far.
pub fn handshake_counts() -> [(Ended, u64); 6] {
    Ended::ALL.map(|ended| (ended, COUNTS[ended as usize].load(Ordering::Relaxed)))
}

/// A listener's handshake slots: one of the listener's and one of its source's per
/// handshake, the same guards the plain HTTP listeners count connections with
/// ([`crate::serving::connection_slots`], sources keyed by its `client_key`).
#[derive(Debug)]
pub(crate) struct Slots {
    inner: ConnectionSlots,
}

/// The slots one handshake holds; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Slot {
    _inner: connection_slots::Slot,
}

impl Slots {
    pub(crate) fn new(limits: &HandshakeLimits) -> Arc<Self> {
        let overall = limits.max_pending.max(1);
        let per_source = limits.max_pending_per_source.clamp(1, overall);
        Arc::new(Self {
            inner: ConnectionSlots::new(overall, per_source),
        })
    }

    /// A slot for a handshake from `ip`, or why there is none. The source's own bound
    /// is checked first, so a source over its share is counted as such even while the
    /// listener is full.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Ended> {
        self.inner
            .try_take(ip)
            .map(|slot| Slot { _inner: slot })
            .map_err(|refusal| match refusal {
                Refusal::Full => Ended::RefusedBusy,
                Refusal::ClientShare => Ended::RefusedPerSource,
            })
    }

    /// Slots free at the listener, and held by sources.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.inner.free(), self.inner.open())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn slots(max_pending: usize, per_source: usize) -> Arc<Slots> {
        Slots::new(&HandshakeLimits {
            max_pending,
            max_pending_per_source: per_source,
            ..HandshakeLimits::new(Duration::from_secs(5), 0)
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_source_holds_its_share_and_another_still_finds_a_slot() {
        let slots = slots(8, 2);
        let a = [slots.take(ip("127.0.0.2")), slots.take(ip("127.0.0.2"))];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(
            slots.take(ip("127.0.0.2")).unwrap_err(),
            Ended::RefusedPerSource
        );
        let b = slots.take(ip("127.0.0.1")).unwrap();
        assert_eq!(slots.held(), (5, 3));
        drop(a);
        drop(b);
        assert_eq!(slots.held(), (8, 0));
        assert_eq!(slots.inner.open(), 0, "no source left behind");
    }

    #[test]
    fn a_full_listener_refuses_and_gives_the_source_slot_back() {
        let slots = slots(2, 2);
        let held = [slots.take(ip("10.0.0.1")), slots.take(ip("10.0.0.2"))];
        assert_eq!(slots.take(ip("10.0.0.3")).unwrap_err(), Ended::RefusedBusy);
        assert_eq!(slots.held(), (0, 2));
        drop(held);
        assert_eq!(slots.held(), (2, 0));
    }

    #[test]
    fn the_share_is_capped_by_the_slots_and_at_least_one() {
        // A share over the slots is the slots: one source may take them all, and no more.
        let wide = slots(3, 16);
        let _all: Vec<Slot> = (0..3).map(|_| wide.take(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(
            wide.take(ip("10.0.0.1")).unwrap_err(),
            Ended::RefusedPerSource
        );
        assert_eq!(wide.take(ip("10.0.0.2")).unwrap_err(), Ended::RefusedBusy);
        // A share of 0 is 1.
        let narrow = slots(3, 0);
        let _one = narrow.take(ip("10.0.0.1")).unwrap();
        assert_eq!(
            narrow.take(ip("10.0.0.1")).unwrap_err(),
            Ended::RefusedPerSource
        );
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64_and_a_mapped_ipv4_its_address() {
        let slots = slots(8, 1);
        let _a = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            slots.take(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Ended::RefusedPerSource
        );
        let _b = slots.take(ip("2001:db8:1:3::1")).unwrap();
        let _c = slots.take(ip("192.0.2.7")).unwrap();
        assert_eq!(
            slots.take(ip("::ffff:192.0.2.7")).unwrap_err(),
            Ended::RefusedPerSource
        );
    }

    #[tokio::test]
    async fn a_panicking_handshake_task_gives_its_slots_back() {
        let slots = slots(4, 4);
        let slot = slots.take(ip("127.0.0.2")).unwrap();
        let task = tokio::spawn(async move {
            let _slot = slot;
            panic!("a handshake task panics");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(slots.held(), (4, 0));
    }
}
