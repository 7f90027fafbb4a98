//! The recognition caches: hits, misses, loads, evictions, invalidations and grace
//! answers of each, with hit ratios since start and over the window.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{
    figures::{CACHE_EVENTS, Window, increase, label, ratio},
    reading::Reading,
};

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

/// One row per cache the gateway counts.
pub fn caches(w: &Window<'_>) -> Vec<CacheRow> {
    let (new, old) = (w.new, w.old);
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
