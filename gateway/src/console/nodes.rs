//! The nodes the console reads: each one's outbox (pending, oldest, dead letters, per
//! target province) and certificate, or why its `/metrics` could not be read.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tongban_proto::rules::region::RegionTable;

use super::{
    figures::{
        CERT_EXPIRY, NODE_BLOCKED, NODE_DUE_SOON, NODE_FAILED, NODE_FAILING, NODE_OLDEST,
        NODE_OVERDUE, NODE_PENDING, label, region_name,
    },
    reading::{Labels, Reading},
};

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
    /// Open cases filed at the node past their promised date, and within two working
    /// days of it; with the pairs (handling province, one-thing) that have any.
    pub cases_overdue: f64,
    pub cases_due_soon: f64,
    pub time_limits: Vec<TimeLimit>,
}

#[derive(Debug, Default, Serialize)]
pub struct TimeLimit {
    pub handling_region: String,
    pub one_thing: String,
    pub due_soon: f64,
    pub overdue: f64,
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

/// One node's row.
pub fn node_row(region: &str, reading: &Result<Reading, String>, regions: &RegionTable) -> NodeRow {
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
            cases_overdue: 0.0,
            cases_due_soon: 0.0,
            time_limits: Vec::new(),
        },
        Ok(r) => {
            let all = backlog(r);
            let limits = time_limits(r);
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
                cases_overdue: limits.iter().map(|l| l.overdue).sum(),
                cases_due_soon: limits.iter().map(|l| l.due_soon).sum(),
                time_limits: limits,
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

/// A node's open cases due soon and overdue, per handling province and one-thing with
/// any.
fn time_limits(node: &Reading) -> Vec<TimeLimit> {
    let pair = |l: &Labels| {
        Some(format!(
            "{}\t{}",
            label(l, "handling_region"),
            label(l, "one_thing")
        ))
    };
    let due = node.group(NODE_DUE_SOON, pair);
    let overdue = node.group(NODE_OVERDUE, pair);
    let mut pairs: BTreeSet<&String> = due.keys().collect();
    pairs.extend(overdue.keys());
    pairs
        .into_iter()
        .filter_map(|p| {
            let (handling_region, one_thing) = p.split_once('\t')?;
            let limit = TimeLimit {
                handling_region: handling_region.to_owned(),
                one_thing: one_thing.to_owned(),
                due_soon: due.get(p).copied().unwrap_or(0.0),
                overdue: overdue.get(p).copied().unwrap_or(0.0),
            };
            (limit.due_soon > 0.0 || limit.overdue > 0.0).then_some(limit)
        })
        .collect()
}
