//! The data-sharing responsibility list on the console (数据共享责任清单): for each
//! commitment of the list (province, data, supplier), the share of the lookups of that
//! data the gateway got an answer for (要数难), over the window when lookups happened in
//! it, else since start, against the availability committed to, as the alert
//! `TongbanSupplyBelowCommitment` judges it; and how many recognized answers of it the
//! regions' windows disputed (数不准), from the nodes' counts.

use std::collections::BTreeMap;

use serde::Serialize;
use tongban_proto::rules::region::RegionTable;

use super::{
    figures::{VERDICTS, Window, increase, label, ratio, region_name},
    reading::Reading,
};
use crate::sharing::COMMITMENT;

/// The nodes' counts of disputes raised at their windows (`tongban_node` metric).
const DISPUTES_RAISED: &str = "tongban_node_disputes_raised_total";

#[derive(Debug, Serialize)]
pub struct SupplyRow {
    /// The province (`44`).
    pub region: String,
    pub name: String,
    /// `identity` or a license type.
    pub data: String,
    pub supplier: String,
    pub committed: f64,
    /// Lookups of the data counted in `scope`.
    pub lookups: f64,
    /// Of which answered (anything but "cannot verify now"); `None` without lookups.
    pub measured: Option<f64>,
    /// `window` or `since start`.
    pub scope: &'static str,
    pub below: bool,
    /// 数不准: recognized answers of this data the regions' windows disputed (counted at
    /// the nodes read, since their start), and their share of the recognized lookups.
    pub disputed: f64,
    pub disputed_share: Option<f64>,
}

/// Disputes raised at the nodes read, by issuing province and data.
fn disputed(nodes: &[(&String, &Result<Reading, String>)]) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for (_, reading) in nodes {
        let Ok(reading) = reading else { continue };
        let raised = reading.group(DISPUTES_RAISED, |l| {
            Some(format!("{}\t{}", label(l, "issuer"), label(l, "data")))
        });
        for (key, n) in raised {
            *counts.entry(key).or_insert(0.0) += n;
        }
    }
    counts
}

/// One row per commitment the gateway exports.
pub fn supply(
    w: &Window<'_>,
    nodes: &[(&String, &Result<Reading, String>)],
    regions: &RegionTable,
) -> Vec<SupplyRow> {
    let disputes = disputed(nodes);
    let recognized = w.new.group(VERDICTS, |l| {
        (label(l, "verdict") == "recognized")
            .then(|| Some(format!("{}\t{}", label(l, "target"), label(l, "data"))))
            .flatten()
    });
    let key =
        |l: &super::reading::Labels| Some(format!("{}\t{}", label(l, "target"), label(l, "data")));
    let unanswered = |l: &super::reading::Labels| {
        (label(l, "verdict") == "cannot_verify_now")
            .then(|| key(l))
            .flatten()
    };
    let (all_new, all_old) = (w.new.group(VERDICTS, key), w.old.group(VERDICTS, key));
    let (no_new, no_old) = (
        w.new.group(VERDICTS, unanswered),
        w.old.group(VERDICTS, unanswered),
    );
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let committed = w.new.group(COMMITMENT, |l| {
        Some(format!(
            "{}\t{}\t{}",
            label(l, "target"),
            label(l, "data"),
            label(l, "supplier")
        ))
    });
    committed
        .into_iter()
        .filter_map(|(k, committed)| {
            let mut parts = k.splitn(3, '\t');
            let (region, data, supplier) = (parts.next()?, parts.next()?, parts.next()?);
            let key = format!("{region}\t{data}");
            let in_window = increase(get(&all_new, &key), get(&all_old, &key));
            let (scope, lookups, unanswered) = if in_window > 0.0 {
                let failed = increase(get(&no_new, &key), get(&no_old, &key));
                ("window", in_window, failed)
            } else {
                ("since start", get(&all_new, &key), get(&no_new, &key))
            };
            let measured = ratio(unanswered, lookups).map(|failed| 1.0 - failed);
            let disputed = get(&disputes, &key);
            Some(SupplyRow {
                disputed,
                disputed_share: ratio(disputed, get(&recognized, &key)),
                name: region_name(regions, region),
                region: region.to_owned(),
                data: data.to_owned(),
                supplier: supplier.to_owned(),
                committed,
                lookups,
                below: measured.is_some_and(|m| m < committed),
                measured,
                scope,
            })
        })
        .collect()
}
