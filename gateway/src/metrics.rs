//! The gateway's per-call metrics, served on its admin port's `/metrics`:
//!
//! - `tongban_gateway_calls_total{method, origin, target, code}`: every call, by the
//!   caller's registered region, the target's province and the gRPC code it ended with;
//! - `tongban_gateway_call_duration_seconds{method, origin, target}`: time from arrival
//!   to the answer;
//! - `tongban_gateway_case_events_total{home_region, event}` and
//!   `tongban_gateway_delivery_duration_seconds{home_region}`: how applicants of each
//!   home province fare (deliveries, their failures, decisions pushed back), from the
//!   `tongban-applicant-home` and `tongban-case-stage` metadata nodes send; unequal
//!   treatment shows as a difference between provinces.
//!
//! - `tongban_gateway_verdicts_total{method, target, data, verdict}`: identity and
//!   license lookups by the issuing province, the data fetched (`identity` or the
//!   license type, as the responsibility list names it) and the verdict's outcome; `cannot_verify_now`
//!   is the number that shows an issuer the gateway cannot reach (the call itself ends
//!   OK: the verdict is the answer).
//!
//! The last [`RECENT_ERRORS`] calls that ended with an error are kept for the operator
//! console (method, regions, code, trace id: never a message, which may quote input).
//!
//! Labels are small copies (static method names, region prefixes, code names). A call's
//! series are found once per label set through the families (a read lock and a SipHash
//! lookup each) and kept in [`SeriesCache`]: recording a call is then one lookup with a
//! fast hasher and a few atomic operations. Origins are registered prefixes and targets
//! provinces: the series stay bounded by the registry.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tongban_proto::{contract::codes::code_name, contract::metadata, rules::region::RegionPrefix};

use crate::{
    answer::Answer,
    audit::CallAudit,
    call::{Call, MethodRef},
    error::GatewayError,
    methods,
};

/// Latency buckets, in seconds: 0.5 ms to 10 s.
/// The names this module registers, and as a scrape shows them (prometheus-client adds
/// `_total` to a counter's name): the console reads them from here.
pub const CALLS: &str = "tongban_gateway_calls";
pub const CALLS_TOTAL: &str = "tongban_gateway_calls_total";
pub const CALL_SECONDS: &str = "tongban_gateway_call_duration_seconds";
pub const CASE_EVENTS: &str = "tongban_gateway_case_events";
pub const CASE_EVENTS_TOTAL: &str = "tongban_gateway_case_events_total";
pub const DELIVERY_SECONDS: &str = "tongban_gateway_delivery_duration_seconds";
pub const VERDICTS: &str = "tongban_gateway_verdicts";
pub const VERDICTS_TOTAL: &str = "tongban_gateway_verdicts_total";
pub const UPSTREAM_UP: &str = "tongban_gateway_upstream_up";
pub const UPSTREAM_CONNECT_FAILURES: &str = "tongban_gateway_upstream_connect_failures";
pub const UPSTREAM_EJECTIONS: &str = "tongban_gateway_upstream_ejections";

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A region label: a prefix, or empty when not known (a refused call).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct RegionLabel(Option<RegionPrefix>);

impl EncodeLabelValue for RegionLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.0.as_ref().map(RegionPrefix::as_str).unwrap_or(""))
    }
}

/// A province label (2 digits), or empty.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ProvinceLabel(Option<[u8; 2]>);

impl ProvinceLabel {
    fn of(text: &str) -> Self {
        let b = text.as_bytes();
        Self(match b {
            [a, c, ..] if a.is_ascii_digit() && c.is_ascii_digit() => Some([*a, *c]),
            _ => None,
        })
    }
}

impl EncodeLabelValue for ProvinceLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        if let Some([a, b]) = self.0 {
            encoder.write_char(char::from(a))?;
            encoder.write_char(char::from(b))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    origin: RegionLabel,
    target: ProvinceLabel,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    origin: RegionLabel,
    target: ProvinceLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    method: &'static str,
    target: ProvinceLabel,
    /// `identity` or the license type (bounded by the catalog's); empty for none.
    data: Option<std::sync::Arc<str>>,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HomeEventLabels {
    home_region: ProvinceLabel,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HomeLabels {
    home_region: ProvinceLabel,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What a call's metrics need from its request, taken before it is forwarded.
pub struct CallFacts {
    method: &'static str,
    /// For deliveries and pushes: the applicant's home province, as the node stated it.
    home: Option<ProvinceLabel>,
    /// For pushes: whether the stage pushed is a decision, and which.
    decision: Option<&'static str>,
}

/// How many failed calls the console lists.
pub const RECENT_ERRORS: usize = 50;

/// A call that ended with an error, as the console lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecentError {
    /// When it ended, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub method: &'static str,
    /// The caller's registered region, empty if unknown.
    pub origin: String,
    /// The target region code, empty if not routed.
    pub target: String,
    /// The gRPC code, or for a lookup answered OK the verdict that failed it
    /// (`cannot_verify_now`).
    pub code: &'static str,
    /// Empty when the call carried no trace context.
    pub trace_id: String,
}

/// Series already found in their families, by their labels: handles to the same
/// counters and histograms the families export.
struct SeriesCache<K, M>(Mutex<HashMap<K, M, foldhash::fast::RandomState>>);

impl<K: Eq + Hash, M> SeriesCache<K, M> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::default()))
    }

    /// Runs `update` on the series of `key`, found through `find` the first time.
    fn with(&self, key: K, find: impl FnOnce(&K) -> M, update: impl FnOnce(&M)) {
        let Ok(mut series) = self.0.lock() else {
            // A panic elsewhere while holding the lock: count through the family.
            update(&find(&key));
            return;
        };
        update(series.entry(key).or_insert_with_key(find));
    }
}

/// A call's own series: its count (by code) and its duration.
struct CallSeries {
    calls: Counter,
    duration: Histogram,
}

/// A home province's event count, and for deliveries its duration.
struct HomeSeries {
    events: Counter,
    deliveries: Option<Histogram>,
}

/// The gateway's call metrics.
pub struct GatewayMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    case_events: Family<HomeEventLabels, Counter>,
    deliveries: Family<HomeLabels, Histogram, fn() -> Histogram>,
    verdicts: Family<VerdictLabels, Counter>,
    call_series: SeriesCache<CallLabels, CallSeries>,
    home_series: SeriesCache<HomeEventLabels, HomeSeries>,
    recent_errors: Mutex<VecDeque<RecentError>>,
}

impl GatewayMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            case_events: Family::default(),
            deliveries: Family::new_with_constructor(latency_histogram),
            verdicts: Family::default(),
            call_series: SeriesCache::new(),
            home_series: SeriesCache::new(),
            recent_errors: Mutex::new(VecDeque::with_capacity(RECENT_ERRORS)),
        };
        registry.register(
            CALLS,
            "Calls by method, caller region (origin), target province and gRPC code",
            metrics.calls.clone(),
        );
        registry.register(
            CALL_SECONDS,
            "Time from a call's arrival to its answer, by method, origin and target province",
            metrics.durations.clone(),
        );
        registry.register(
            CASE_EVENTS,
            "Cases by the applicant's home province and event: delivered, delivery_failed (an attempt), approved, rejected (decisions pushed back)",
            metrics.case_events.clone(),
        );
        registry.register(
            DELIVERY_SECONDS,
            "Time to relay a delivery, by the applicant's home province",
            metrics.deliveries.clone(),
        );
        registry.register(
            VERDICTS,
            "Identity and license lookups by method, issuing province (target), data (identity or the license type) and verdict outcome",
            metrics.verdicts.clone(),
        );
        metrics
    }

    /// What `call`'s metrics will need, read before it is forwarded.
    pub fn facts(call: &Call) -> CallFacts {
        let method = match call.method {
            MethodRef::Known(m) => m.name,
            MethodRef::Unknown => "unknown",
        };
        let header = |key| call.headers.get(key).and_then(|v| v.to_str().ok());
        let (home, decision) = match method {
            methods::DELIVER_APPLICATION => (header(metadata::names::APPLICANT_HOME), None),
            methods::PUSH_STATUS => (
                header(metadata::names::APPLICANT_HOME),
                match header(metadata::names::CASE_STAGE) {
                    Some("approved") => Some("approved"),
                    Some("rejected") => Some("rejected"),
                    _ => None,
                },
            ),
            _ => (None, None),
        };
        CallFacts {
            method,
            home: home.map(ProvinceLabel::of),
            decision,
        }
    }

    /// Records how a call ended.
    pub fn record(
        &self,
        facts: &CallFacts,
        audit: &CallAudit,
        result: &Result<Answer, GatewayError>,
        elapsed: Duration,
    ) {
        let code = match result {
            Ok(answer) => answer
                .grpc_status()
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<i32>().ok())
                .map(tonic::Code::from_i32)
                .unwrap_or(tonic::Code::Unknown),
            Err(error) => error.code(),
        };
        let origin = RegionLabel(audit.caller);
        let target = ProvinceLabel(audit.target.map(|t| {
            let b = t.as_str().as_bytes();
            [b[0], b[1]]
        }));
        let seconds = elapsed.as_secs_f64();
        let labels = CallLabels {
            method: facts.method,
            origin,
            target,
            code: code_name(code),
        };
        self.call_series.with(
            labels,
            |l| CallSeries {
                calls: self.calls.get_or_create(l).clone(),
                duration: self
                    .durations
                    .get_or_create(&RouteLabels {
                        method: l.method,
                        origin: l.origin,
                        target: l.target,
                    })
                    .clone(),
            },
            |series| {
                series.calls.inc();
                series.duration.observe(seconds);
            },
        );
        if code != tonic::Code::Ok {
            self.remember_error(facts, audit, code_name(code));
        }
        if let Some(verdict) = audit.verdict {
            self.verdicts
                .get_or_create(&VerdictLabels {
                    method: facts.method,
                    target,
                    data: audit.data.clone(),
                    verdict,
                })
                .inc();
            if verdict == "cannot_verify_now" {
                self.remember_error(facts, audit, verdict);
            }
        }
        let Some(home) = facts.home else { return };
        let ok = code == tonic::Code::Ok;
        let event = if facts.method == methods::DELIVER_APPLICATION {
            if ok { "delivered" } else { "delivery_failed" }
        } else if let (Some(decision), true) = (facts.decision, ok) {
            decision
        } else {
            return;
        };
        self.home_series.with(
            HomeEventLabels {
                home_region: home,
                event,
            },
            |l| HomeSeries {
                events: self.case_events.get_or_create(l).clone(),
                deliveries: (l.event == "delivered").then(|| {
                    self.deliveries
                        .get_or_create(&HomeLabels {
                            home_region: l.home_region,
                        })
                        .clone()
                }),
            },
            |series| {
                series.events.inc();
                if let Some(deliveries) = &series.deliveries {
                    deliveries.observe(seconds);
                }
            },
        );
    }
}

impl GatewayMetrics {
    fn remember_error(&self, facts: &CallFacts, audit: &CallAudit, code: &'static str) {
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let error = RecentError {
            unix_ms,
            method: facts.method,
            origin: audit
                .caller
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            target: audit
                .target
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            code,
            trace_id: audit.trace_id(),
        };
        // A poisoned lock only means a panic elsewhere mid-push; the ring is still usable.
        let mut ring = self
            .recent_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.len() == RECENT_ERRORS {
            ring.pop_front();
        }
        ring.push_back(error);
    }

    /// The last failed calls, newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        let ring = self
            .recent_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }
}

/// `tongban_gateway_upstream_up{region, endpoint}` (1 when the endpoint is connected or
/// untried, 0 while connecting to it fails) and
/// `tongban_gateway_upstream_connect_failures{region, endpoint}` (consecutive) and
/// `tongban_gateway_upstream_ejections_total{region, endpoint}` (outlier ejections since
/// the pool was built), read from the pools at scrape time.
#[derive(Debug)]
pub struct UpstreamHealth(pub crate::registry::SharedRegistry);

impl prometheus_client::collector::Collector for UpstreamHealth {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{counter::ConstCounter, gauge::ConstGauge},
        };
        let mut rows = Vec::new();
        for route in self.0.current().routes() {
            for health in route.pool.health() {
                rows.push((route.prefix, health));
            }
        }
        rows.sort_by(|a, b| (a.0, &a.1.url).cmp(&(b.0, &b.1.url)));
        let gauge = |encoder: &mut prometheus_client::encoding::DescriptorEncoder,
                     name: &str,
                     help: &str,
                     value: fn(&crate::upstream::EndpointHealth) -> i64|
         -> Result<(), std::fmt::Error> {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (prefix, health) in &rows {
                let labels = [
                    ("region", prefix.as_str()),
                    ("endpoint", health.url.as_str()),
                ];
                ConstGauge::new(value(health)).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        gauge(
            &mut encoder,
            UPSTREAM_UP,
            "1 when the gateway has a connection to the node endpoint (or has not needed one yet), 0 while connecting fails",
            |h| i64::from(h.up()),
        )?;
        gauge(
            &mut encoder,
            UPSTREAM_CONNECT_FAILURES,
            "Consecutive failed connection attempts to the node endpoint",
            |h| i64::from(h.failures),
        )?;
        let mut family = encoder.encode_descriptor(
            UPSTREAM_EJECTIONS,
            "Times the node endpoint was ejected for failing calls (transport failures and deadlines run out, never a caller's own cancellation)",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (prefix, health) in &rows {
            let labels = [
                ("region", prefix.as_str()),
                ("endpoint", health.url.as_str()),
            ];
            ConstCounter::new(health.ejections).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provinces_are_two_digits_or_empty() {
        assert_eq!(ProvinceLabel::of("44"), ProvinceLabel(Some(*b"44")));
        assert_eq!(ProvinceLabel::of("440305"), ProvinceLabel(Some(*b"44")));
        assert_eq!(ProvinceLabel::of("x4"), ProvinceLabel(None));
        assert_eq!(ProvinceLabel::of(""), ProvinceLabel(None));
    }
}
