//! The calls the gateway relayed: its own totals, each province's endpoints, traffic,
//! errors and latency (with a per-interval history), and the origin × target matrix.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tongban_proto::rules::region::RegionTable;

use super::{
    figures::{
        CALL_SECONDS, CALLS, CERT_EXPIRY, CONNECT_FAILURES, UPSTREAM_UP, VERDICTS, Window,
        increase, is_ok, label, ms, province_of, ratio, region_name,
    },
    reading::{Labels, Reading},
};

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

/// A province's registered prefixes and the health of their endpoints.
#[derive(Default)]
struct Endpoints {
    prefixes: BTreeSet<String>,
    endpoints: usize,
    up: usize,
    connect_failures: f64,
}

/// Every registered prefix, grouped by province.
fn endpoints_by_province(new: &Reading) -> BTreeMap<String, Endpoints> {
    let mut provinces: BTreeMap<String, Endpoints> = BTreeMap::new();
    for (l, up) in new.label_sets(UPSTREAM_UP) {
        let prefix = label(l, "region");
        let Some(province) = province_of(prefix) else {
            continue;
        };
        let entry = provinces.entry(province).or_default();
        entry.prefixes.insert(prefix.to_owned());
        entry.endpoints += 1;
        entry.up += usize::from(up >= 1.0);
    }
    for (l, failures) in new.label_sets(CONNECT_FAILURES) {
        if let Some(province) = province_of(label(l, "region"))
            && let Some(entry) = provinces.get_mut(&province)
        {
            entry.connect_failures += failures;
        }
    }
    provinces
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

/// Inbound calls per second by target province in each sampling interval, oldest
/// first: calls by target in every sample, read once; each interval's rate from two.
fn inbound_history(w: &Window<'_>) -> Vec<BTreeMap<String, f64>> {
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let inbound: Vec<BTreeMap<String, f64>> = w
        .history
        .iter()
        .map(|s| s.gateway.group(CALLS, |l| province_of(label(l, "target"))))
        .collect();
    w.history
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
        .collect()
}

/// One row per province with registered endpoints.
pub fn region_rows(w: &Window<'_>, regions: &RegionTable) -> Vec<RegionRow> {
    let (new, old) = (w.new, w.old);
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
    let intervals = inbound_history(w);
    endpoints_by_province(new)
        .into_iter()
        .map(|(province, endpoints)| {
            let total_new = get(&in_new, &province);
            let window_calls = increase(total_new, get(&in_old, &province));
            let window_failed = increase(get(&failed_new, &province), get(&failed_old, &province));
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
                prefixes: endpoints.prefixes.into_iter().collect(),
                endpoints: endpoints.endpoints,
                endpoints_up: endpoints.up,
                connect_failures: endpoints.connect_failures,
                inbound_per_second: w.per_second(window_calls),
                inbound_total: total_new,
                outbound_per_second: w
                    .per_second(increase(get(&out_new, &province), get(&out_old, &province))),
                error_ratio,
                p50_ms: ms(lat.quantile(0.5)),
                p99_ms: ms(lat.quantile(0.99)),
                lookups_total: get(&lookups, &province),
                cannot_verify_total: get(&cannot_verify, &province),
                scope,
                history: intervals.iter().map(|r| get(r, &province)).collect(),
                province,
            }
        })
        .collect()
}

/// Origin × target, by province.
pub fn matrix(w: &Window<'_>) -> Vec<MatrixCell> {
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let pair = |l: &Labels| {
        Some(format!(
            "{}>{}",
            province_of(label(l, "origin"))?,
            province_of(label(l, "target"))?
        ))
    };
    let pairs_new = w.new.group(CALLS, pair);
    let pairs_old = w.old.group(CALLS, pair);
    let pair_errors = w
        .new
        .group(CALLS, |l| if is_ok(l) { None } else { pair(l) });
    pairs_new
        .iter()
        .filter_map(|(key, total)| {
            let (origin, target) = key.split_once('>')?;
            Some(MatrixCell {
                origin: origin.to_owned(),
                target: target.to_owned(),
                total: *total,
                per_second: w.per_second(increase(*total, get(&pairs_old, key))),
                errors: get(&pair_errors, key),
            })
        })
        .collect()
}

/// The gateway's own totals, error ratio, certificate, memory and uptime.
pub fn gateway_row(w: &Window<'_>) -> GatewayRow {
    let (new, old) = (w.new, w.old);
    let total = new.sum(CALLS, |_| true);
    let window = increase(total, old.sum(CALLS, |_| true));
    let failed = increase(new.sum(CALLS, |l| !is_ok(l)), old.sum(CALLS, |l| !is_ok(l)));
    let start = new.max("process_start_time_seconds", |_| true);
    let sampled_unix_ms = w.newest.map(|s| s.unix_ms);
    GatewayRow {
        calls_per_second: w.per_second(window),
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
