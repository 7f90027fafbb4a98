//! What `/console/data` answers: the console's numbers, computed from the newest
//! sample and an older one (rates and quantiles over the window between them, like
//! Prometheus's `rate()` and `histogram_quantile()`), plus totals since start.
//!
//! This file composes the view; each part is computed by the module for its job:
//! `traffic` (the gateway, regions, origin × target), `fairness` (home provinces),
//! `caches` (recognition caches), `nodes` (outboxes), `satisfaction` (好差评), `supply`
//! (the data-sharing responsibility list), `lists` (who offers which one-thing), over `figures` (the window and
//! the counter arithmetic they share).

use std::sync::Arc;

use serde::Serialize;
use tongban_proto::rules::{catalog::Catalog, region::RegionTable};

use super::{
    caches::caches,
    fairness::fairness,
    figures::Window,
    lists::{ListRow, lists},
    nodes::node_row,
    reading::Reading,
    sample::Sample,
    satisfaction::{SatisfactionRow, satisfaction},
    supply::{SupplyRow, supply},
    traffic::{gateway_row, matrix, region_rows},
};
use crate::metrics::RecentError;

// The view's parts, named here as well: this is where the JSON shape is read from
// (and `tongban backlog` reads a node's outbox with `backlog`).
pub use super::{
    caches::CacheRow,
    fairness::{Fairness, FairnessRow},
    nodes::{Backlog, NodeRow, backlog},
    traffic::{GatewayRow, MatrixCell, RegionRow},
};

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
    /// Citizens' satisfaction by handling province (好差评).
    pub satisfaction: Vec<SatisfactionRow>,
    /// The data-sharing responsibility list against what the gateway measured.
    pub supply: Vec<SupplyRow>,
    /// The catalog in force, and its one-things by list with who offers them.
    pub catalog_version: String,
    pub lists: Vec<ListRow>,
    pub recent_errors: Vec<RecentError>,
}

/// Builds the view from the samples, oldest first.
pub fn build(
    history: &[Arc<Sample>],
    recent_errors: Vec<RecentError>,
    regions: &RegionTable,
    catalog: &Catalog,
    call_metrics: bool,
    now_unix_ms: u64,
) -> ConsoleView {
    let empty = Reading::default();
    let window = Window::over(history, &empty);
    let nodes: Vec<(&String, &Result<Reading, String>)> = window
        .newest
        .map(|s| s.nodes.iter().collect())
        .unwrap_or_default();
    ConsoleView {
        generated_unix_ms: now_unix_ms,
        window_seconds: window.seconds,
        samples: history.len(),
        call_metrics,
        gateway: gateway_row(&window),
        regions: region_rows(&window, regions),
        matrix: matrix(&window),
        fairness: fairness(window.new, &nodes, regions),
        caches: caches(&window),
        nodes: nodes
            .iter()
            .map(|(region, reading)| node_row(region, reading, regions))
            .collect(),
        satisfaction: satisfaction(&nodes, regions),
        supply: supply(&window, &nodes, regions),
        catalog_version: catalog.version.clone(),
        lists: lists(catalog, regions),
        recent_errors,
    }
}
