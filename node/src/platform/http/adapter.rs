//! [`HttpPlatform`]: the node's adapter to a province's own platform over the contract,
//! as both [`Platform`](crate::platform::adapter::Platform) (`super::cases`) and
//! [`LicenseRegistry`](crate::platform::register::LicenseRegistry) (`super::register`).
//! It holds the transport (`super::transport`), the province's status-code table, the
//! node's key for hashing ID numbers, and runs the probe that keeps its health current.

use std::{sync::Arc, time::Duration};

use tongban_runtime::{observability::traces::Traces, process::shutdown::ShutdownSignal};

use super::{
    config::HttpPlatformConfig,
    transport::{SetupError, Transport},
};
use crate::{metrics::NodeMetrics, platform::contract::status::StatusCodes};

/// A province's platform over HTTP.
pub struct HttpPlatform {
    pub(super) transport: Transport,
    pub(super) status_codes: StatusCodes,
    /// The node's key for keyed hashes of ID numbers (licenses name their holder so).
    pub(super) id_hash_key: Arc<[u8]>,
    poll_interval: Duration,
}

impl HttpPlatform {
    /// The adapter `config` describes (its TLS files and secret read now, nothing
    /// called yet); `id_hash_key` is the node's key for hashing ID numbers.
    pub fn new(
        config: &HttpPlatformConfig,
        id_hash_key: Arc<[u8]>,
        traces: Traces,
        metrics: Option<Arc<NodeMetrics>>,
    ) -> Result<Arc<Self>, SetupError> {
        let transport = Transport::new(config, traces, metrics)?;
        let unreachable = config.status_codes.unreachable();
        if !unreachable.is_empty() {
            let states: Vec<_> = unreachable.iter().map(|s| s.as_str()).collect();
            tracing::warn!(
                platform = transport.url(),
                states = %states.join(", "),
                "[platform.status_codes] maps no code onto these states: a case the platform \
                 moves there stops the node's feed until a code is added"
            );
        }
        Ok(Arc::new(Self {
            transport,
            status_codes: config.status_codes.clone(),
            id_hash_key,
            poll_interval: config.poll_interval,
        }))
    }

    /// The platform's base URL.
    pub fn url(&self) -> &str {
        self.transport.url()
    }

    /// How often the feeds are read and the platform probed.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Whether the platform is up, as last learned (see `super::health`).
    pub fn status(&self) -> Result<(), String> {
        self.transport.health.status(&self.transport.circuit)
    }

    /// Times the circuit in front of the platform opened since start.
    pub fn circuit_opens(&self) -> u64 {
        self.transport.circuit.opens()
    }

    /// Probes `GET /v1/health` every poll interval until shutdown, so readiness knows
    /// the platform is down even while the node has nothing to send it.
    pub async fn run_probe(self: Arc<Self>, shutdown: ShutdownSignal) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(self.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = interval.tick() => {}
            }
            // The outcome is kept in the health state, and logged when it changes.
            tokio::select! {
                _ = &mut stop => return,
                _ = self.transport.probe() => {}
            }
        }
    }
}
