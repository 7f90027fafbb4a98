//! What every part of the console view computes with: the series it reads, their
//! labels, the window rates are taken over, and the arithmetic of counters (increase,
//! ratio, median), as Prometheus's `rate()` and `histogram_quantile()` would.

use std::sync::Arc;

use tongban_proto::rules::region::{RegionCode, RegionPrefix, RegionTable};

use super::{
    reading::{Labels, Reading},
    sample::Sample,
};

/// The window rates are taken over (or less, while the console has been up less long).
const RATE_WINDOW_MS: u64 = 30_000;

pub use crate::{
    metrics::{
        CALL_SECONDS, CALLS_TOTAL as CALLS, CASE_EVENTS_TOTAL as CASE_EVENTS, DELIVERY_SECONDS,
        UPSTREAM_CONNECT_FAILURES as CONNECT_FAILURES, UPSTREAM_UP, VERDICTS_TOTAL as VERDICTS,
    },
    recognition::cache::CACHE_EVENTS_TOTAL as CACHE_EVENTS,
};
pub use tongban_proto::contract::node_metrics::{
    CASE_OUTCOMES_TOTAL as NODE_OUTCOMES, CASES_DUE_SOON as NODE_DUE_SOON,
    CASES_OVERDUE as NODE_OVERDUE, FILINGS_TOTAL as NODE_FILINGS, OUTBOX_BLOCKED as NODE_BLOCKED,
    OUTBOX_FAILED as NODE_FAILED, OUTBOX_FAILING as NODE_FAILING,
    OUTBOX_OLDEST_PENDING as NODE_OLDEST, OUTBOX_PENDING as NODE_PENDING,
    TIME_TO_FIRST_STATUS as NODE_FIRST_STATUS,
};
pub use tongban_runtime::observability::process_metrics::CERTIFICATE_EXPIRY as CERT_EXPIRY;

/// The samples a view is computed from: the newest, and the base of the rates (the
/// oldest sample still inside the window).
pub struct Window<'a> {
    pub history: &'a [Arc<Sample>],
    pub newest: Option<&'a Arc<Sample>>,
    /// The gateway's newest reading, and its reading at the base (empty without one).
    pub new: &'a Reading,
    pub old: &'a Reading,
    /// Seconds between the two samples (0 before the second).
    pub seconds: f64,
}

impl<'a> Window<'a> {
    /// The window over `history` (oldest first); `empty` stands in for a missing sample.
    pub fn over(history: &'a [Arc<Sample>], empty: &'a Reading) -> Self {
        let newest = history.last();
        let base = newest.and_then(|last| {
            history.iter().find(|s| {
                last.unix_ms.saturating_sub(s.unix_ms) <= RATE_WINDOW_MS && s.at < last.at
            })
        });
        let seconds = match (newest, base) {
            (Some(n), Some(b)) => n.at.duration_since(b.at).as_secs_f64(),
            _ => 0.0,
        };
        Self {
            history,
            newest,
            new: newest.map_or(empty, |s| &s.gateway),
            old: base.map_or(empty, |s| &s.gateway),
            seconds,
        }
    }

    /// A counter's increase over the window, per second.
    pub fn per_second(&self, delta: f64) -> f64 {
        if self.seconds > 0.0 {
            delta / self.seconds
        } else {
            0.0
        }
    }
}

pub fn label<'a>(l: &'a Labels, key: &str) -> &'a str {
    l.get(key).map(String::as_str).unwrap_or("")
}

/// The province (two digits) of a region label, if it has one.
pub fn province_of(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_digit() && b[1].is_ascii_digit()).then(|| text[..2].to_owned())
}

/// The name of a region given as a prefix ("44") or a full code ("440305").
pub fn region_name(regions: &RegionTable, prefix: &str) -> String {
    RegionCode::parse(prefix)
        .ok()
        .or_else(|| {
            RegionPrefix::parse(prefix)
                .ok()
                .map(|p| RegionCode::from_prefix(&p))
        })
        .and_then(|code| regions.get(&code).map(|d| d.name.clone()))
        .unwrap_or_default()
}

pub fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

pub fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| s * 1000.0)
}

pub fn is_ok(l: &Labels) -> bool {
    label(l, "code") == "OK"
}

/// Counter increase between readings (a reset counts from zero).
pub fn increase(new: f64, old: f64) -> f64 {
    if new >= old { new - old } else { new }
}
