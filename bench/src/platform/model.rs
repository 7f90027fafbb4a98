//! The platform-adapter scenario's figures: where deliveries go ([`Kind`]), the
//! options, one round's measured window and one row of the table.

use std::time::Duration;

/// Where the deliveries go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Embedded,
    Http,
}

impl Kind {
    pub(super) const ALL: [Kind; 2] = [Kind::Embedded, Kind::Http];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Embedded => "embedded platform (SQLite in the node)",
            Self::Http => "HTTP adapter → reference platform process",
        }
    }
}

/// Options of the scenario.
pub struct Options {
    pub rounds: u32,
    pub seconds: f64,
    pub warmup: f64,
    pub inflight: Vec<usize>,
}

/// One kind's measured window in one round.
pub(super) struct Window {
    pub(super) round: u32,
    pub(super) calls: u64,
    pub(super) elapsed: Duration,
    /// Latency of the window's answered deliveries (`None` without any).
    pub(super) mean_us: Option<u64>,
    pub(super) p50_us: Option<u64>,
    pub(super) p99_us: Option<u64>,
    pub(super) node_cpu_s: f64,
    /// NaN for the embedded platform (no process of its own).
    pub(super) platform_cpu_s: f64,
}

impl Window {
    pub(super) fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU µs per delivery; NaN without a delivery.
    pub(super) fn per_call_us(&self, cpu_s: f64) -> f64 {
        match self.calls {
            0 => f64::NAN,
            n => cpu_s * 1e6 / n as f64,
        }
    }

    pub(super) fn node_us(&self) -> f64 {
        self.per_call_us(self.node_cpu_s)
    }

    pub(super) fn platform_us(&self) -> f64 {
        self.per_call_us(self.platform_cpu_s)
    }

    /// The node's and the platform process's, or the node's alone when the platform
    /// runs inside it.
    pub(super) fn total_us(&self) -> f64 {
        if self.platform_cpu_s.is_nan() {
            self.node_us()
        } else {
            self.per_call_us(self.node_cpu_s + self.platform_cpu_s)
        }
    }
}

/// One kind at one in-flight count, over all rounds.
pub(super) struct Row {
    pub(super) kind: Kind,
    pub(super) inflight: usize,
    pub(super) windows: Vec<Window>,
    /// Latency of the measured deliveries of all rounds together.
    pub(super) latency: hdrhistogram::Histogram<u64>,
    /// Answered deliveries in the measured windows; failed ones, warm-ups' included.
    pub(super) calls: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

impl Row {
    pub(super) fn window(&self, round: u32) -> Option<&Window> {
        self.windows.iter().find(|w| w.round == round)
    }
}
