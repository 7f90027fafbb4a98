//! Citizens' satisfaction (好差评) by handling province, from the nodes' counts of the
//! evaluations given at them (each counted once, where the case was filed): the share
//! at least basically satisfied, against the median of the provinces, as the alert
//! `TongbanSatisfactionDeviates` judges it.

use std::collections::BTreeMap;

use serde::Serialize;
use tongban_proto::{contract::node_metrics::EVALUATIONS_TOTAL, rules::region::RegionTable};

use super::{
    figures::{label, region_name},
    reading::Reading,
};

/// The levels counted as satisfied.
const SATISFIED: [&str; 3] = ["very_satisfied", "satisfied", "basically_satisfied"];

#[derive(Debug, Serialize)]
pub struct SatisfactionRow {
    /// The handling province (`44`).
    pub handling_region: String,
    pub name: String,
    pub evaluations: f64,
    pub satisfied: f64,
    pub ratio: f64,
    /// `ratio` less the provinces' median.
    pub vs_median: f64,
}

/// One row per handling province rated at any node read.
pub fn satisfaction(
    nodes: &[(&String, &Result<Reading, String>)],
    regions: &RegionTable,
) -> Vec<SatisfactionRow> {
    let mut counts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (_, reading) in nodes {
        let Ok(reading) = reading else { continue };
        let by_level = reading.group(EVALUATIONS_TOTAL, |l| {
            Some(format!(
                "{}\t{}",
                label(l, "handling_region"),
                label(l, "level")
            ))
        });
        for (key, n) in by_level {
            let Some((province, level)) = key.split_once('\t') else {
                continue;
            };
            let entry = counts.entry(province.to_owned()).or_default();
            entry.0 += n;
            if SATISFIED.contains(&level) {
                entry.1 += n;
            }
        }
    }
    let mut ratios: Vec<f64> = counts
        .values()
        .filter(|(all, _)| *all > 0.0)
        .map(|(all, good)| good / all)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = match ratios.len() {
        0 => 0.0,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    };
    counts
        .into_iter()
        .filter(|(_, (all, _))| *all > 0.0)
        .map(|(province, (all, good))| SatisfactionRow {
            name: region_name(regions, &province),
            handling_region: province,
            evaluations: all,
            satisfied: good,
            ratio: good / all,
            vs_median: good / all - median,
        })
        .collect()
}
