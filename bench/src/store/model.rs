//! The node-store scenario's figures: the origin node's configurations ([`Config`]),
//! the options, one round's measured batch and one row of the table.

use std::time::Duration;

/// How the origin node (31) keeps its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Config {
    Sqlite,
    Postgres1,
    Postgres2,
}

impl Config {
    pub(super) const ALL: [Config; 3] = [Config::Sqlite, Config::Postgres1, Config::Postgres2];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite (the default), 1 node",
            Self::Postgres1 => "PostgreSQL, 1 replica",
            Self::Postgres2 => "PostgreSQL, 2 replicas (filings on both)",
        }
    }

    /// A short name for keys, folders and progress lines.
    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres1 => "pg1",
            Self::Postgres2 => "pg2",
        }
    }

    /// Node processes of the origin: the node and its further replicas.
    pub(super) fn replicas(self) -> usize {
        match self {
            Self::Sqlite | Self::Postgres1 => 1,
            Self::Postgres2 => 2,
        }
    }

    pub(super) fn on_postgres(self) -> bool {
        self != Self::Sqlite
    }
}

/// Options of the scenario.
pub struct Options {
    pub rounds: u32,
    /// Measured filings per configuration and round.
    pub filings: usize,
    /// Filings before the measured ones (delivered before the measurement starts).
    pub warmup: usize,
    /// Filings in flight.
    pub inflight: usize,
}

/// CPU seconds spent in one measured batch; NaN where a reading is missing (or, for
/// PostgreSQL, where there is no cluster).
#[derive(Clone, Copy, Debug)]
pub(super) struct Spent {
    /// The origin's node process(es).
    pub(super) origin: f64,
    /// Every process of the PostgreSQL cluster (postmaster, backends, background workers).
    pub(super) postgres: f64,
    /// The rest of the federation (gateway, 44's node, 31's platform process): the
    /// same work in every configuration, shown for context, not counted.
    pub(super) others: f64,
}

/// One configuration's measured batch in one round.
pub(super) struct Round {
    pub(super) round: u32,
    /// Filings receipted (201).
    pub(super) filed: u64,
    /// From the first measured filing to the last receipt.
    pub(super) filing_elapsed: Duration,
    /// From the first measured filing until every receipted case was at 44's platform;
    /// `None` when some never arrived.
    pub(super) delivered_elapsed: Option<Duration>,
    pub(super) cpu: Spent,
}

impl Round {
    pub(super) fn filings_per_s(&self) -> f64 {
        self.filed as f64 / self.filing_elapsed.as_secs_f64()
    }

    /// NaN when not every case was delivered: no rate to give.
    pub(super) fn deliveries_per_s(&self) -> f64 {
        self.delivered_elapsed
            .map_or(f64::NAN, |d| self.filed as f64 / d.as_secs_f64())
    }

    /// CPU µs per receipted filing; NaN without one.
    fn per_filing_us(&self, cpu_s: f64) -> f64 {
        match self.filed {
            0 => f64::NAN,
            n => cpu_s * 1e6 / n as f64,
        }
    }

    pub(super) fn origin_us(&self) -> f64 {
        self.per_filing_us(self.cpu.origin)
    }

    pub(super) fn postgres_us(&self) -> f64 {
        self.per_filing_us(self.cpu.postgres)
    }

    /// The origin's node process(es) and, on PostgreSQL, the cluster's processes.
    pub(super) fn total_us(&self) -> f64 {
        if self.cpu.postgres.is_nan() {
            self.origin_us()
        } else {
            self.per_filing_us(self.cpu.origin + self.cpu.postgres)
        }
    }

    pub(super) fn others_us(&self) -> f64 {
        self.per_filing_us(self.cpu.others)
    }
}

/// What the checks after a round found.
#[derive(Default)]
pub(super) struct Settled {
    /// Receipted in the round (warm-up and measured).
    pub(super) acknowledged: u64,
    /// Of those, held at 44's platform as one case each.
    pub(super) delivered_once: u64,
    /// What is wrong, if anything: cases missing, taken twice or unknown at 44, an
    /// outbox not drained or with dead letters, a database unread.
    pub(super) problems: Vec<String>,
}

/// One configuration over all rounds.
pub(super) struct Row {
    pub(super) config: Config,
    pub(super) rounds: Vec<Round>,
    /// Receipt times of the measured filings of all rounds together.
    pub(super) latency: hdrhistogram::Histogram<u64>,
    /// Failed filings, the warm-ups' included.
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) settled: Vec<Settled>,
}

impl Row {
    pub(super) fn new(config: Config) -> Self {
        Self {
            config,
            rounds: Vec::new(),
            latency: crate::load::new_histogram(),
            errors: 0,
            first_error: None,
            settled: Vec::new(),
        }
    }

    pub(super) fn round(&self, round: u32) -> Option<&Round> {
        self.rounds.iter().find(|r| r.round == round)
    }

    /// Receipted filings over all rounds (warm-ups included).
    pub(super) fn acknowledged(&self) -> u64 {
        self.settled.iter().map(|s| s.acknowledged).sum()
    }
}
