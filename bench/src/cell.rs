//! What a measurement yields: a target's measured window in one round ([`Round`]), and
//! a target at one payload and concurrency over all rounds ([`Cell`]).

use std::time::Duration;

use crate::{judgement::Tally, load, target::Target};

/// One target's measured window in one round.
pub struct Round {
    pub index: u32,
    pub calls: u64,
    pub elapsed: Duration,
    pub proxy_cpu_s: f64,
    pub node_cpu_s: f64,
}

impl Round {
    pub fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    pub fn per_call_us(&self, cpu_s: f64) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        cpu_s * 1e6 / self.calls as f64
    }
    pub fn proxy_us(&self) -> f64 {
        self.per_call_us(self.proxy_cpu_s)
    }
    pub fn node_us(&self) -> f64 {
        self.per_call_us(self.node_cpu_s)
    }
    pub fn total_us(&self) -> f64 {
        self.per_call_us(self.proxy_cpu_s + self.node_cpu_s)
    }
}

/// One target at one payload and concurrency, over all rounds.
pub struct Cell {
    pub target: Target,
    pub payload: usize,
    pub inflight: usize,
    /// Calls, errors and latency of all rounds together.
    pub stats: load::RunStats,
    /// Throughput and CPU round by round: rounds are interleaved, so a round of one
    /// target compares best with the same round of another, the machine's state being
    /// closest then.
    pub rounds: Vec<Round>,
    pub upstream_conns: usize,
}

impl Cell {
    pub fn p(&self, q: f64) -> u64 {
        self.stats.latency_us.value_at_quantile(q)
    }
    /// The median latency of the answered calls; `None` without any (an empty
    /// histogram reads 0, which is no latency).
    pub fn p50(&self) -> Option<u64> {
        (!self.stats.latency_us.is_empty()).then(|| self.p(0.5))
    }
    /// Where this cell is, as goals name it: `gateway at 256 B / 1 in flight`.
    pub fn place(&self) -> String {
        format!(
            "{} at {} / {} in flight",
            self.target.label(),
            size_label(self.payload),
            self.inflight
        )
    }
    /// Its answered and failed calls, for a goal that compares it.
    pub fn tally(&self) -> Tally {
        Tally::new(self.place(), self.stats.calls, self.stats.errors)
    }
    pub fn round(&self, index: u32) -> Option<&Round> {
        self.rounds.iter().find(|r| r.index == index)
    }
}

/// Which measured window: payload size, calls in flight, round.
#[derive(Clone, Copy)]
pub struct Slot {
    pub payload: usize,
    pub inflight: usize,
    pub round: u32,
}

/// Adds `other`'s calls and rounds to `into` (the same target, payload and concurrency).
pub fn merge(into: &mut Cell, other: Cell) {
    into.stats.calls += other.stats.calls;
    into.stats.errors += other.stats.errors;
    into.stats.elapsed += other.stats.elapsed;
    let _ = into.stats.latency_us.add(&other.stats.latency_us);
    if into.stats.first_error.is_none() {
        into.stats.first_error = other.stats.first_error;
    }
    into.rounds.extend(other.rounds);
    into.upstream_conns = into.upstream_conns.max(other.upstream_conns);
}

/// A payload size as the tables show it: `256 B`, `4 KiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}
