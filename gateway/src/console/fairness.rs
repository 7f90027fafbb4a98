//! How applicants of each home province fare: filings, outcomes and time to first
//! status from the nodes' scrapes, deliveries and decisions from the gateway's own
//! counts, and each province's approval ratio against the national median.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tongban_proto::rules::region::RegionTable;

use super::{
    figures::{
        CASE_EVENTS, DELIVERY_SECONDS, NODE_FILINGS, NODE_FIRST_STATUS, NODE_OUTCOMES, label,
        median, ms, province_of, ratio, region_name,
    },
    reading::{Buckets, Labels, Reading},
};

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

/// One row per home province, and the national medians.
pub fn fairness(
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
