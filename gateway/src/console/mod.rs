//! The operator console on the gateway's admin port: `/console` is one HTML page (no
//! build step, no assets from elsewhere) that polls `/console/data`, a JSON view of
//! the federation now — every region's endpoint health, traffic, error ratio and
//! latency with a 60 s history, the origin × target matrix, how applicants of each home
//! province fare, the recognition caches, the nodes' outbox backlogs and the last
//! failed calls.
//!
//! The console reads what Prometheus reads: a sampler takes a [`reading::Reading`] of
//! the gateway's own registry (and of each configured node's `/metrics`) every
//! `console.sample_every`, keeps 60 s of them, and [`view`] turns the newest and an
//! older one into rates and quantiles. So the console and the dashboards never
//! disagree about what a number means, and recording a call costs nothing extra.

mod caches;
mod fairness;
mod figures;
mod lists;
mod nodes;
pub mod reading;
pub mod sample;
mod satisfaction;
mod supply;
mod traffic;
pub mod view;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{Router, response::IntoResponse, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use prometheus_client::registry::Registry;
use tongban_proto::rules::region::RegionTable;
use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::{catalog::CatalogSource, config::ConsoleSettings, metrics::GatewayMetrics};
use reading::Reading;
use sample::Sample;

/// How much history the console keeps.
const HISTORY: Duration = Duration::from_secs(60);
/// Longest a node's `/metrics` may take before the console shows it as unreachable.
const NODE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest node scrape read.
const NODE_SCRAPE_LIMIT: usize = 4 << 20;

const PAGE: &str = include_str!("console.html");

/// The console's state: settings, what it reads, and the recent samples.
pub struct Console {
    settings: ConsoleSettings,
    registry: Arc<Registry>,
    calls: Option<Arc<GatewayMetrics>>,
    regions: &'static RegionTable,
    catalog: Arc<CatalogSource>,
    /// Shared so a view takes the samples without copying their readings.
    history: Mutex<VecDeque<Arc<Sample>>>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Console {
    pub fn new(
        settings: ConsoleSettings,
        registry: Arc<Registry>,
        calls: Option<Arc<GatewayMetrics>>,
        regions: &'static RegionTable,
        catalog: Arc<CatalogSource>,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(NODE_TIMEOUT));
        Arc::new(Self {
            settings,
            registry,
            calls,
            regions,
            catalog,
            history: Mutex::new(VecDeque::new()),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The routes to merge into the admin router.
    pub fn routes(self: &Arc<Self>) -> Router {
        let console = self.clone();
        Router::new()
            .route(
                "/console",
                get(|| async {
                    (
                        [
                            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (http::header::CACHE_CONTROL, "no-store"),
                        ],
                        PAGE,
                    )
                }),
            )
            .route(
                "/console/data",
                get(move || {
                    let console = console.clone();
                    async move {
                        (
                            [(http::header::CACHE_CONTROL, "no-store")],
                            axum::Json(console.view()),
                        )
                            .into_response()
                    }
                }),
            )
    }

    /// The view over the samples taken so far.
    pub fn view(&self) -> view::ConsoleView {
        let history: Vec<Arc<Sample>> = self.lock().iter().cloned().collect();
        let errors = self
            .calls
            .as_ref()
            .map(|c| c.recent_errors())
            .unwrap_or_default();
        view::build(
            &history,
            errors,
            self.regions,
            &self.catalog.current(),
            self.calls.is_some(),
            unix_ms(SystemTime::now()),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Sample>>> {
        // Samples are whole values pushed under the lock: a poisoned lock holds no
        // half-written state.
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Samples every `sample_every` until `shutdown`.
    pub async fn sample_until(self: Arc<Self>, shutdown: ShutdownSignal) {
        let mut ticks = tokio::time::interval(self.settings.sample_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticks.tick() => self.sample().await,
            }
        }
    }

    async fn sample(&self) {
        let gateway = match Reading::of(&self.registry) {
            Ok(reading) => reading,
            Err(error) => {
                tracing::warn!(%error, "console: reading the gateway's metrics failed");
                return;
            }
        };
        let nodes = futures_util::future::join_all(
            self.settings
                .node_metrics
                .iter()
                .map(|(region, url)| async move { (region.clone(), self.read_node(url).await) }),
        )
        .await
        .into_iter()
        .collect();
        let sample = Sample {
            at: Instant::now(),
            unix_ms: unix_ms(SystemTime::now()),
            gateway,
            nodes,
        };
        let mut history = self.lock();
        history.push_back(Arc::new(sample));
        while let (Some(first), Some(last)) = (history.front(), history.back())
            && last.at.duration_since(first.at) > HISTORY
        {
            history.pop_front();
        }
    }

    async fn read_node(&self, url: &str) -> Result<Reading, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let fetch = async {
            let answer = self
                .http
                .get(uri)
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            if !answer.status().is_success() {
                return Err(format!("answered {}", answer.status()));
            }
            let body = Limited::new(answer.into_body(), NODE_SCRAPE_LIMIT)
                .collect()
                .await
                .map_err(|e| format!("reading: {e}"))?
                .to_bytes();
            let text = std::str::from_utf8(&body).map_err(|_| "not UTF-8 text".to_owned())?;
            Reading::parse(text).map_err(|e| e.to_string())
        };
        match tokio::time::timeout(NODE_TIMEOUT, fetch).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {NODE_TIMEOUT:?}")),
        }
    }
}
