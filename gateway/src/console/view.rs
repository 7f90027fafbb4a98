//! What `/console/data` answers: the console's numbers, computed from the newest
//! sample and an older one (rates and quantiles over the window between them, like
//! Prometheus's `rate()` and `histogram_quantile()`), plus totals since start.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tongban_proto::region::{RegionCode, RegionPrefix, RegionTable};

use super::{
    reading::{Buckets, Labels, Reading},
    sample::Sample,
};
use crate::metrics::RecentError;

/// The window rates are taken over (or less, while the console has been up less long).
const RATE_WINDOW_MS: u64 = 30_000;

const CALLS: &str = "tongban_gateway_calls_total";
const CALL_SECONDS: &str = "tongban_gateway_call_duration_seconds";
const CASE_EVENTS: &str = "tongban_gateway_case_events_total";
const DELIVERY_SECONDS: &str = "tongban_gateway_delivery_duration_seconds";
const VERDICTS: &str = "tongban_gateway_verdicts_total";
const UPSTREAM_UP: &str = "tongban_gateway_upstream_up";
const CONNECT_FAILURES: &str = "tongban_gateway_upstream_connect_failures";
const CACHE_EVENTS: &str = "tongban_recognition_cache_events_total";
const CERT_EXPIRY: &str = "tongban_certificate_expiry_seconds";
const NODE_PENDING: &str = "tongban_node_outbox_pending";
const NODE_OLDEST: &str = "tongban_node_outbox_oldest_pending_seconds";
const NODE_FAILED: &str = "tongban_node_outbox_failed";
const NODE_BLOCKED: &str = "tongban_node_outbox_blocked";
const NODE_FAILING: &str = "tongban_node_outbox_failing";
const NODE_OUTCOMES: &str = "tongban_node_case_outcomes_total";
const NODE_FILINGS: &str = "tongban_node_filings_total";
const NODE_FIRST_STATUS: &str = "tongban_node_time_to_first_status_seconds";

/// The whole console view.
#[derive(Debug, Serialize)]
pub struct ConsoleView {
    pub generated_unix_ms: u64,
    /// Seconds between the two samples rates are taken over (0 before the second).
    pub window_seconds: f64,
    pub samples: usize,
    /// False when the gateway runs with `[telemetry] metrics = false`: no call counts.
    pub call_metrics: bool,
    pub gateway: GatewayRow,
    pub regions: Vec<RegionRow>,
    pub matrix: Vec<MatrixCell>,
    pub fairness: Fairness,
    pub caches: Vec<CacheRow>,
    pub nodes: Vec<NodeRow>,
    pub recent_errors: Vec<RecentError>,
}

#[derive(Debug, Serialize)]
pub struct GatewayRow {
    pub calls_per_second: f64,
    pub calls_total: f64,
    pub error_ratio: Option<f64>,
    pub certificate_days_left: Option<f64>,
    pub resident_mib: Option<f64>,
    pub uptime_seconds: Option<f64>,
}

/// One province with a node (or several prefixes of one province).
#[derive(Debug, Serialize)]
pub struct RegionRow {
    /// Two digits.
    pub province: String,
    pub name: String,
    /// Registered prefixes routed to this province's nodes.
    pub prefixes: Vec<String>,
    pub endpoints: usize,
    pub endpoints_up: usize,
    pub connect_failures: f64,
    /// Calls routed to it, per second over the window, and since start.
    pub inbound_per_second: f64,
    pub inbound_total: f64,
    /// Calls it made, per second over the window.
    pub outbound_per_second: f64,
    /// Share of its inbound calls in the window (else since start) that failed.
    pub error_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Identity and license lookups for which it was the issuer, since start, and how
    /// many of them could not be verified (issuer unreachable, nothing cached).
    pub lookups_total: f64,
    pub cannot_verify_total: f64,
    /// `window` or `since start`: what the ratio and latencies cover.
    pub scope: &'static str,
    /// Inbound calls per second in each sampling interval, oldest first.
    pub history: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct MatrixCell {
    pub origin: String,
    pub target: String,
    pub total: f64,
    pub per_second: f64,
    pub errors: f64,
}

/// How applicants of each home province fare.
#[derive(Debug, Serialize)]
pub struct Fairness {
    pub rows: Vec<FairnessRow>,
    /// National median of the provinces' approval ratios.
    pub median_approval_ratio: Option<f64>,
    /// National median of the provinces' median time to first status, in seconds.
    pub median_first_status_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FairnessRow {
    pub home_region: String,
    pub name: String,
    /// From the nodes' scrapes (cases filed at the nodes the console reads).
    pub filings: f64,
    pub accepted: f64,
    pub refused: f64,
    pub first_status_p50_seconds: Option<f64>,
    /// From the gateway's own counts.
    pub delivered: f64,
    pub delivery_failed: f64,
    pub approved: f64,
    pub rejected: f64,
    pub approval_ratio: Option<f64>,
    /// Approval ratio minus the national median.
    pub deviation: Option<f64>,
    pub delivery_p50_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CacheRow {
    pub cache: String,
    pub hits: f64,
    pub misses: f64,
    pub loads: f64,
    pub evictions: f64,
    pub invalidations: f64,
    pub grace: f64,
    pub hit_ratio: Option<f64>,
    pub window_hit_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub region: String,
    pub name: String,
    /// Empty when its `/metrics` was read; else why not.
    pub error: String,
    pub outbox_pending: f64,
    pub outbox_oldest_seconds: f64,
    pub outbox_failed: f64,
    /// Per target province with a backlog.
    pub backlog: Vec<Backlog>,
    pub certificate_days_left: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Backlog {
    pub target: String,
    pub pending: f64,
    pub oldest_seconds: f64,
    /// Pending entries whose attempts so far failed.
    pub failing: f64,
    /// Pending entries waiting for a configuration fix.
    pub blocked: f64,
    /// Dead letters (the series is `tongban_node_outbox_failed`).
    pub failed: f64,
}

fn label<'a>(l: &'a Labels, key: &str) -> &'a str {
    l.get(key).map(String::as_str).unwrap_or("")
}

/// The province (two digits) of a region label, if it has one.
fn province_of(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_digit() && b[1].is_ascii_digit()).then(|| text[..2].to_owned())
}

/// The name of a region given as a prefix ("44") or a full code ("440305").
fn region_name(regions: &RegionTable, prefix: &str) -> String {
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

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
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

fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| s * 1000.0)
}

fn is_ok(l: &Labels) -> bool {
    label(l, "code") == "OK"
}

/// Counter increase between readings (a reset counts from zero).
fn increase(new: f64, old: f64) -> f64 {
    if new >= old { new - old } else { new }
}

/// Calls by target province, total and failed, in one reading.
fn calls_by_target(r: &Reading) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let total = r.group(CALLS, |l| province_of(label(l, "target")));
    let failed = r.group(CALLS, |l| {
        (!is_ok(l))
            .then(|| province_of(label(l, "target")))
            .flatten()
    });
    (total, failed)
}

/// Builds the view from the samples, oldest first.
pub fn build(
    history: &[std::sync::Arc<Sample>],
    recent_errors: Vec<RecentError>,
    regions: &RegionTable,
    call_metrics: bool,
    now_unix_ms: u64,
) -> ConsoleView {
    let empty = Reading::default();
    let newest = history.last();
    let new = newest.map_or(&empty, |s| &s.gateway);
    // The base of the rates: the oldest sample still inside the window.
    let base_sample = newest.and_then(|last| {
        history
            .iter()
            .find(|s| last.unix_ms.saturating_sub(s.unix_ms) <= RATE_WINDOW_MS && s.at < last.at)
    });
    let old = base_sample.map_or(&empty, |s| &s.gateway);
    let window_seconds = match (newest, base_sample) {
        (Some(n), Some(b)) => n.at.duration_since(b.at).as_secs_f64(),
        _ => 0.0,
    };
    let per_second = |delta: f64| {
        if window_seconds > 0.0 {
            delta / window_seconds
        } else {
            0.0
        }
    };

    // Regions: every registered prefix, grouped by province.
    let mut provinces: BTreeMap<String, (BTreeSet<String>, usize, usize, f64)> = BTreeMap::new();
    for (l, up) in new.label_sets(UPSTREAM_UP) {
        let prefix = label(l, "region");
        let Some(province) = province_of(prefix) else {
            continue;
        };
        let entry = provinces.entry(province).or_default();
        entry.0.insert(prefix.to_owned());
        entry.1 += 1;
        entry.2 += usize::from(up >= 1.0);
    }
    for (l, failures) in new.label_sets(CONNECT_FAILURES) {
        if let Some(province) = province_of(label(l, "region"))
            && let Some(entry) = provinces.get_mut(&province)
        {
            entry.3 += failures;
        }
    }
    let (in_new, failed_new) = calls_by_target(new);
    let (in_old, failed_old) = calls_by_target(old);
    let out_new = new.group(CALLS, |l| province_of(label(l, "origin")));
    let out_old = old.group(CALLS, |l| province_of(label(l, "origin")));
    let by_target = |l: &Labels| province_of(label(l, "target"));
    let lat_new = new.group_buckets(CALL_SECONDS, by_target);
    let lat_old = old.group_buckets(CALL_SECONDS, by_target);
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let lookups = new.group(VERDICTS, by_target);
    let cannot_verify = new.group(VERDICTS, |l| {
        (label(l, "verdict") == "cannot_verify_now")
            .then(|| by_target(l))
            .flatten()
    });

    // Calls by target in every sample, read once; each interval's rate from two of them.
    let inbound: Vec<BTreeMap<String, f64>> = history
        .iter()
        .map(|s| s.gateway.group(CALLS, |l| province_of(label(l, "target"))))
        .collect();
    let intervals: Vec<BTreeMap<String, f64>> = history
        .windows(2)
        .zip(inbound.windows(2))
        .map(|(pair, counts)| {
            let seconds = pair[1].at.duration_since(pair[0].at).as_secs_f64();
            counts[1]
                .iter()
                .map(|(k, v)| {
                    let delta = increase(*v, get(&counts[0], k));
                    (k.clone(), if seconds > 0.0 { delta / seconds } else { 0.0 })
                })
                .collect()
        })
        .collect();

    let region_rows = provinces
        .into_iter()
        .map(
            |(province, (prefixes, endpoints, endpoints_up, connect_failures))| {
                let total_new = get(&in_new, &province);
                let window_calls = increase(total_new, get(&in_old, &province));
                let window_failed =
                    increase(get(&failed_new, &province), get(&failed_old, &province));
                let all = lat_new.get(&province).cloned().unwrap_or_default();
                let window_lat = all.since(&lat_old.get(&province).cloned().unwrap_or_default());
                let (scope, error_ratio, lat) = if window_calls > 0.0 {
                    ("window", ratio(window_failed, window_calls), window_lat)
                } else {
                    (
                        "since start",
                        ratio(get(&failed_new, &province), total_new),
                        all,
                    )
                };
                RegionRow {
                    name: region_name(regions, &province),
                    prefixes: prefixes.into_iter().collect(),
                    endpoints,
                    endpoints_up,
                    connect_failures,
                    inbound_per_second: per_second(window_calls),
                    inbound_total: total_new,
                    outbound_per_second: per_second(increase(
                        get(&out_new, &province),
                        get(&out_old, &province),
                    )),
                    error_ratio,
                    p50_ms: ms(lat.quantile(0.5)),
                    p99_ms: ms(lat.quantile(0.99)),
                    lookups_total: get(&lookups, &province),
                    cannot_verify_total: get(&cannot_verify, &province),
                    scope,
                    history: intervals.iter().map(|r| get(r, &province)).collect(),
                    province,
                }
            },
        )
        .collect();

    // Origin × target, by province.
    let pair = |l: &Labels| {
        Some(format!(
            "{}>{}",
            province_of(label(l, "origin"))?,
            province_of(label(l, "target"))?
        ))
    };
    let pairs_new = new.group(CALLS, pair);
    let pairs_old = old.group(CALLS, pair);
    let pair_errors = new.group(CALLS, |l| if is_ok(l) { None } else { pair(l) });
    let matrix = pairs_new
        .iter()
        .filter_map(|(key, total)| {
            let (origin, target) = key.split_once('>')?;
            Some(MatrixCell {
                origin: origin.to_owned(),
                target: target.to_owned(),
                total: *total,
                per_second: per_second(increase(*total, get(&pairs_old, key))),
                errors: get(&pair_errors, key),
            })
        })
        .collect();

    let nodes: Vec<(&String, &Result<Reading, String>)> =
        newest.map(|s| s.nodes.iter().collect()).unwrap_or_default();

    ConsoleView {
        generated_unix_ms: now_unix_ms,
        window_seconds,
        samples: history.len(),
        call_metrics,
        gateway: gateway_row(new, old, per_second, newest.map(|s| s.unix_ms)),
        regions: region_rows,
        matrix,
        fairness: fairness(new, &nodes, regions),
        caches: caches(new, old),
        nodes: nodes
            .iter()
            .map(|(region, reading)| node_row(region, reading, regions))
            .collect(),
        recent_errors,
    }
}

fn gateway_row(
    new: &Reading,
    old: &Reading,
    per_second: impl Fn(f64) -> f64,
    sampled_unix_ms: Option<u64>,
) -> GatewayRow {
    let total = new.sum(CALLS, |_| true);
    let window = increase(total, old.sum(CALLS, |_| true));
    let failed = increase(new.sum(CALLS, |l| !is_ok(l)), old.sum(CALLS, |l| !is_ok(l)));
    let start = new.max("process_start_time_seconds", |_| true);
    GatewayRow {
        calls_per_second: per_second(window),
        calls_total: total,
        error_ratio: if window > 0.0 {
            ratio(failed, window)
        } else {
            ratio(new.sum(CALLS, |l| !is_ok(l)), total)
        },
        certificate_days_left: new.min(CERT_EXPIRY, |_| true).map(|s| s / 86_400.0),
        resident_mib: new
            .max("process_resident_memory_bytes", |_| true)
            .map(|b| b / 1_048_576.0),
        uptime_seconds: match (start, sampled_unix_ms) {
            (Some(start), Some(now)) => Some((now as f64 / 1000.0 - start).max(0.0)),
            _ => None,
        },
    }
}

fn fairness(
    gateway: &Reading,
    nodes: &[(&String, &Result<Reading, String>)],
    regions: &RegionTable,
) -> Fairness {
    let home = |l: &Labels| province_of(label(l, "home_region"));
    let event = |name: &'static str| {
        gateway.group(CASE_EVENTS, move |l| {
            (label(l, "event") == name).then(|| home(l)).flatten()
        })
    };
    let delivered = event("delivered");
    let delivery_failed = event("delivery_failed");
    let approved = event("approved");
    let rejected = event("rejected");
    let delivery = gateway.group_buckets(DELIVERY_SECONDS, home);

    let mut filings: BTreeMap<String, f64> = BTreeMap::new();
    let mut accepted: BTreeMap<String, f64> = BTreeMap::new();
    let mut refused: BTreeMap<String, f64> = BTreeMap::new();
    let mut first_status: BTreeMap<String, Buckets> = BTreeMap::new();
    for (_, reading) in nodes {
        let Ok(r) = reading else { continue };
        let add = |into: &mut BTreeMap<String, f64>, from: BTreeMap<String, f64>| {
            for (k, v) in from {
                *into.entry(k).or_insert(0.0) += v;
            }
        };
        add(&mut filings, r.group(NODE_FILINGS, home));
        let outcome = |name: &'static str| {
            r.group(NODE_OUTCOMES, move |l| {
                (label(l, "outcome") == name).then(|| home(l)).flatten()
            })
        };
        add(&mut accepted, outcome("accepted"));
        add(&mut refused, outcome("refused"));
        for (k, b) in r.group_buckets(NODE_FIRST_STATUS, home) {
            let merged = first_status.entry(k).or_default();
            *merged = merged.plus(&b);
        }
    }

    let mut homes: BTreeSet<String> = BTreeSet::new();
    for map in [&delivered, &delivery_failed, &approved, &rejected, &filings] {
        homes.extend(map.keys().cloned());
    }
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let approval = |k: &str| ratio(get(&approved, k), get(&approved, k) + get(&rejected, k));
    let median_approval_ratio = median(homes.iter().filter_map(|h| approval(h)).collect());
    let first_p50 = |k: &str| first_status.get(k).and_then(|b| b.quantile(0.5));
    let median_first_status_seconds = median(homes.iter().filter_map(|h| first_p50(h)).collect());
    let rows = homes
        .iter()
        .map(|h| FairnessRow {
            home_region: h.clone(),
            name: region_name(regions, h),
            filings: get(&filings, h),
            accepted: get(&accepted, h),
            refused: get(&refused, h),
            first_status_p50_seconds: first_p50(h),
            delivered: get(&delivered, h),
            delivery_failed: get(&delivery_failed, h),
            approved: get(&approved, h),
            rejected: get(&rejected, h),
            approval_ratio: approval(h),
            deviation: approval(h).zip(median_approval_ratio).map(|(a, m)| a - m),
            delivery_p50_ms: ms(delivery.get(h).and_then(|b| b.quantile(0.5))),
        })
        .collect();
    Fairness {
        rows,
        median_approval_ratio,
        median_first_status_seconds,
    }
}

fn caches(new: &Reading, old: &Reading) -> Vec<CacheRow> {
    let names: BTreeSet<String> = new
        .label_sets(CACHE_EVENTS)
        .map(|(l, _)| label(l, "cache").to_owned())
        .collect();
    names
        .into_iter()
        .map(|cache| {
            let count = |r: &Reading, event: &str| {
                r.sum(CACHE_EVENTS, |l| {
                    label(l, "cache") == cache && label(l, "event") == event
                })
            };
            let hits = count(new, "hit");
            let misses = count(new, "miss");
            let window_hits = increase(hits, count(old, "hit"));
            let window_misses = increase(misses, count(old, "miss"));
            CacheRow {
                hits,
                misses,
                loads: count(new, "load"),
                evictions: count(new, "eviction"),
                invalidations: count(new, "invalidation"),
                grace: count(new, "grace"),
                hit_ratio: ratio(hits, hits + misses),
                window_hit_ratio: ratio(window_hits, window_hits + window_misses),
                cache,
            }
        })
        .collect()
}

fn node_row(region: &str, reading: &Result<Reading, String>, regions: &RegionTable) -> NodeRow {
    let name = region_name(regions, region);
    match reading {
        Err(error) => NodeRow {
            region: region.to_owned(),
            name,
            error: error.clone(),
            outbox_pending: 0.0,
            outbox_oldest_seconds: 0.0,
            outbox_failed: 0.0,
            backlog: Vec::new(),
            certificate_days_left: None,
        },
        Ok(r) => {
            let all = backlog(r);
            NodeRow {
                region: region.to_owned(),
                name,
                error: String::new(),
                outbox_pending: all.iter().map(|b| b.pending).sum(),
                outbox_oldest_seconds: all.iter().map(|b| b.oldest_seconds).fold(0.0, f64::max),
                outbox_failed: all.iter().map(|b| b.failed).sum(),
                backlog: all
                    .into_iter()
                    .filter(|b| b.pending > 0.0 || b.failed > 0.0)
                    .collect(),
                certificate_days_left: r.min(CERT_EXPIRY, |_| true).map(|s| s / 86_400.0),
            }
        }
    }
}

/// A node's outbox per target province, from its `/metrics` (every target it reports,
/// empty ones included), for the console and `tongban backlog`.
pub fn backlog(node: &Reading) -> Vec<Backlog> {
    let target = |l: &Labels| Some(label(l, "target").to_owned());
    let pending = node.group(NODE_PENDING, target);
    let oldest = node.group(NODE_OLDEST, target);
    let failed = node.group(NODE_FAILED, target);
    let blocked = node.group(NODE_BLOCKED, target);
    let failing = node.group(NODE_FAILING, target);
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let mut targets: BTreeSet<&String> = pending.keys().collect();
    targets.extend(failed.keys());
    targets
        .into_iter()
        .map(|t| Backlog {
            target: t.clone(),
            pending: get(&pending, t),
            oldest_seconds: get(&oldest, t),
            failing: get(&failing, t),
            blocked: get(&blocked, t),
            failed: get(&failed, t),
        })
        .collect()
}
