//! Assembles the gateway: federation listener (mTLS HTTP/2, see [`crate::connection`]:
//! relay, catalog, health, reflection), the plaintext admin listener for probes,
//! `/metrics` and the operator [`crate::console`], and the follower of the shared
//! revocation log when one is configured.

use std::{net::SocketAddr, sync::Arc};

use opentelemetry::KeyValue;
use tokio::net::TcpListener;
use tongban_proto::{
    FILE_DESCRIPTOR_SET, rules::region::RegionTable, v1::catalog_server::CatalogServer,
};
use tongban_runtime::{
    audit::trail::AuditTrail,
    observability::process_metrics::ProcessCollector,
    observability::traces::{Traces, TracesError},
    process::config::ConfigError,
    process::reload::{ReloadHandle, ReloadTriggers, serve_forcible_reloads},
    process::shutdown::ShutdownSignal,
    serving::admin::{self, Readiness, ReadinessCheck},
    serving::incoming::authenticated_incoming_with_limits,
    serving::operator_listener::{self, OperatorListener},
    serving::plain_http::HttpLimits,
    serving::standard_services,
    trust::tls::{TlsError, TlsInForce},
};

/// The services the federation listener serves besides health and reflection.
const CATALOG_SERVICE: &str = "tongban.federation.v1.Catalog";
const GATEWAY_SERVICE: &str = "tongban.federation.v1.Gateway";

use crate::{
    admission::Admission,
    admission_metrics::AdmissionMetrics,
    catalog::{CatalogSource, CatalogStartError, service::CatalogService},
    config::GatewayConfig,
    connection::{self, ServerSettings, Services},
    console::Console,
    metrics::{GatewayMetrics, UpstreamHealth},
    recognition::{Recognition, revocation_log::RevocationLog},
    registry::{Registry, SharedRegistry},
    relay::Relay,
    reload::{ReloadMetrics, Reloader},
};

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Catalog(#[from] CatalogStartError),
    #[error(transparent)]
    SharingList(#[from] crate::sharing::SharingListError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("admin listener: {0}")]
    Admin(std::io::Error),
    #[error(transparent)]
    Traces(#[from] TracesError),
    #[error("recognition.hash_key {path}: {reason}")]
    HashKey { path: String, reason: String },
    #[error("audit trail {path}: {reason}")]
    Audit { path: String, reason: String },
    #[error("revocation_log.database: {0}")]
    RevocationLog(#[from] tongban_runtime::postgres::config::PostgresConfigError),
}

#[cfg(test)]
mod tests;

/// The secret for keyed hashes in cache keys and logs: the configured file, or a random
/// one for this process.
fn hash_secret(config: &GatewayConfig) -> Result<Vec<u8>, GatewayStartError> {
    match &config.recognition.hash_key {
        Some(path) => {
            let fail = |reason: String| GatewayStartError::HashKey {
                path: path.display().to_string(),
                reason,
            };
            let secret = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            if secret.len() < 32 {
                return Err(fail("must hold at least 32 bytes".into()));
            }
            Ok(secret)
        }
        None => {
            let mut secret = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).map_err(
                |_| GatewayStartError::HashKey {
                    path: String::new(),
                    reason: "the system random generator failed".into(),
                },
            )?;
            tracing::warn!(
                "recognition.hash_key not set: a random secret keys this replica's caches and log references"
            );
            Ok(secret)
        }
    }
}

/// Bound sockets, so callers (tests, the demo) can use port 0 and learn the real ports
/// before anything else starts.
pub struct GatewayListeners {
    pub federation: TcpListener,
    pub admin: Option<TcpListener>,
    pub operator: Option<TcpListener>,
}

impl GatewayListeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &GatewayConfig) -> Result<Self, GatewayStartError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| GatewayStartError::Bind { addr, source })
        };
        Ok(Self {
            federation: bind(config.listen).await?,
            admin: match config.admin_listen {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            },
            operator: match &config.operators {
                Some(operators) => Some(bind(operators.listen).await?),
                None => None,
            },
        })
    }
}

/// A configured gateway, ready to serve.
pub struct Gateway {
    config: GatewayConfig,
    registry: SharedRegistry,
    catalog: Arc<CatalogSource>,
    recognition: Arc<Recognition>,
    /// The shared revocation log, when `[revocation_log]` names one.
    revocation_log: Option<Arc<RevocationLog>>,
    metrics: Arc<prometheus_client::registry::Registry>,
    call_metrics: Option<Arc<GatewayMetrics>>,
    admission: Arc<Admission>,
    reload_metrics: ReloadMetrics,
}

impl Gateway {
    /// Loads the registry, catalog and certificates; validates everything before any
    /// port is served. Must run inside a Tokio runtime (channels are created here).
    pub fn new(config: GatewayConfig) -> Result<Self, GatewayStartError> {
        let registry = Registry::load(&config.registry, &config.tls, &config.upstream)?;
        let base = CatalogSource::base(config.catalog.as_deref())?;
        // Fail on bad certificates now rather than at the first handshake.
        config.tls.server_config()?;
        let registry = SharedRegistry::new(registry);
        let secret = hash_secret(&config)?;
        let mut metrics = prometheus_client::registry::Registry::default();
        crate::sharing::SharingList::load(config.sharing_list.as_deref(), &base)?
            .register(&mut metrics);
        let revocation_log = match &config.revocation_log {
            Some(settings) => Some(Arc::new(RevocationLog::open(settings, &mut metrics)?)),
            None => None,
        };
        let catalog = Arc::new(catalog_source(&config, base, revocation_log.as_deref())?);
        catalog.register(&mut metrics);
        let mut recognition = Recognition::new(
            registry.clone(),
            RegionTable::embedded(),
            catalog.clone(),
            config.recognition.clone(),
            &secret,
            &mut metrics,
        );
        if let Some(log) = &revocation_log {
            recognition = recognition.with_revocation_log(log.clone());
        }
        let recognition = Arc::new(recognition);
        metrics.register_collector(Box::new(UpstreamHealth(registry.clone())));
        metrics.register_collector(Box::new(ProcessCollector::new(vec![(
            "federation".into(),
            config.tls.cert.clone(),
        )])));
        let call_metrics = config
            .telemetry
            .metrics_enabled()
            .then(|| Arc::new(GatewayMetrics::new(&mut metrics)));
        let admission = Admission::new(config.limits.clone());
        metrics.register_collector(Box::new(AdmissionMetrics(admission.clone())));
        let reload_metrics = ReloadMetrics::new(&mut metrics);
        Ok(Self {
            config,
            registry,
            catalog,
            recognition,
            revocation_log,
            metrics: Arc::new(metrics),
            call_metrics,
            admission,
            reload_metrics,
        })
    }

    /// The recognition service (tests read its caches).
    pub fn recognition(&self) -> Arc<Recognition> {
        self.recognition.clone()
    }

    /// Number of registered region prefixes.
    pub fn route_count(&self) -> usize {
        self.registry.current().len()
    }

    /// Serves until `shutdown` fires, then drains in-flight calls.
    pub async fn serve(
        self,
        listeners: GatewayListeners,
        shutdown: ShutdownSignal,
    ) -> Result<(), GatewayStartError> {
        let (traces, traces_guard) = Traces::start(
            &self.config.telemetry,
            "tongban-gateway",
            vec![KeyValue::new("tongban.role", "gateway")],
        )?;
        let tls = Arc::new(TlsInForce::new(self.config.tls.read_all()?));
        // From here on SIGHUP reloads instead of terminating.
        let mut watched = vec![self.config.registry.clone()];
        watched.extend(self.config.tls.watched());
        let (triggers, reload) = ReloadTriggers::install(watched);
        let reloader = Reloader {
            registry: self.registry.clone(),
            config: self.config.clone(),
            tls: tls.clone(),
            recognition: self.recognition.clone(),
            metrics: self.reload_metrics.clone(),
        };
        tokio::spawn(reload_on_request(triggers, reloader, shutdown.clone()));
        let incoming = authenticated_incoming_with_limits(
            listeners.federation,
            tls.server.subscribe(),
            tls.revoked.subscribe(),
            self.config.handshake_limits(),
        );

        let trail = AuditTrail::open(&self.config.audit, &self.config.tls).map_err(|reason| {
            GatewayStartError::Audit {
                path: self.config.audit.file.display().to_string(),
                reason,
            }
        })?;
        let (served, catalog) = ([CATALOG_SERVICE, GATEWAY_SERVICE], self.catalog.clone());
        let (health, standard) =
            standard_services::health_and_reflection(&served, &[FILE_DESCRIPTOR_SET])
                .await
                .map_err(|e| GatewayStartError::Reflection(e.to_string()))?;

        let ready = Readiness::new(true);
        let checks = self.follow_revocations(&shutdown);
        let admin = listeners.admin.map(|listener| {
            let router = admin::probes_checked(ready.clone(), checks)
                .merge(admin::metrics(self.metrics.clone()));
            tokio::spawn(admin::serve(listener, router, shutdown.clone()))
        });
        let operator = listeners.operator.map(|listener| {
            self.serve_operators(listener, reload.clone(), &tls, trail.clone(), &shutdown)
        });
        tracing::info!(
            routes = self.registry.current().len(),
            catalog = %self.catalog.current().version,
            "gateway serving"
        );
        let services = Arc::new(Services {
            relay: Relay::new(
                self.registry.clone(),
                RegionTable::embedded(),
                self.config.upstream.request_timeout,
                self.recognition.clone(),
                traces,
                self.call_metrics.clone(),
                self.admission.clone(),
            )
            .with_trail(trail.clone(), self.config.audit.log_events),
            grpc: standard.add_service(CatalogServer::new(CatalogService::new(catalog))),
        });
        // Readiness turns false, and health to NOT_SERVING, as soon as draining starts.
        let on_shutdown = standard_services::not_serving_on_shutdown(
            health,
            served.map(str::to_owned).to_vec(),
            ready,
            shutdown.clone(),
        );
        let settings = self.serving_settings(&shutdown);
        let reports = tokio::spawn(
            self.recognition
                .clone()
                .deliver_access_reports(shutdown.clone()),
        );
        connection::serve(incoming, services, settings, shutdown).await;
        let _ = on_shutdown.await;
        // What the last calls left for the access logs (a last pass, bounded).
        let _ = reports.await;
        self.recognition.last_access_reports().await;
        // After the calls have drained: their records, then the signed checkpoint.
        trail.close().await;
        traces_guard.shutdown().await;
        for listener in [admin, operator].into_iter().flatten() {
            if let Ok(Err(error)) = listener.await {
                return Err(GatewayStartError::Admin(error));
            }
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

impl Gateway {
    /// The federation listener's settings; starts measuring how busy the gateway is,
    /// which admission reads on every new stream (the task ends at shutdown).
    /// The operator listener: `/reload` and the console, for operators on the roster.
    fn serve_operators(
        &self,
        listener: TcpListener,
        reload: ReloadHandle,
        tls: &TlsInForce,
        trail: AuditTrail,
        shutdown: &ShutdownSignal,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let console = Console::new(
            self.config.console.clone(),
            self.metrics.clone(),
            self.call_metrics.clone(),
            RegionTable::embedded(),
            self.catalog.clone(),
        );
        tokio::spawn(console.clone().sample_until(shutdown.clone()));
        let router = admin::reload(reload).merge(console.routes());
        let roster = self
            .config
            .operators
            .as_ref()
            .map(|o| o.roster.clone())
            .unwrap_or_default();
        let operators = OperatorListener {
            listener,
            roster: Arc::new(roster),
            tls: tls.server.subscribe(),
            audit: Some(trail),
            limits: HttpLimits::admin(),
        };
        tokio::spawn(operator_listener::serve(
            operators,
            router,
            shutdown.clone(),
        ))
    }

    fn serving_settings(&self, shutdown: &ShutdownSignal) -> ServerSettings {
        let saturation = self.admission.saturation().clone();
        let limits = &self.config.limits;
        tokio::spawn(saturation.watch(
            limits.busy_threshold,
            limits.min_share_per_second,
            shutdown.clone(),
        ));
        ServerSettings {
            max_connections_per_identity: self.config.limits.max_connections_per_identity,
            ..ServerSettings::default()
        }
    }

    /// Follows the shared revocation log until `shutdown`, if there is one; the
    /// readiness checks that adds. A replica that cannot learn revocations must not
    /// answer as one that can: it is not ready until the log is loaded, nor while the
    /// log goes unread.
    fn follow_revocations(&self, shutdown: &ShutdownSignal) -> Vec<(&'static str, ReadinessCheck)> {
        let Some(log) = &self.revocation_log else {
            return Vec::new();
        };
        // The task ends at shutdown.
        log.spawn_follower(self.recognition.clone(), shutdown.clone());
        // The catalog ledger lives in the same database, read as often.
        tokio::spawn(
            self.catalog
                .clone()
                .follow(log.poll_interval(), shutdown.clone()),
        );
        vec![
            ("revocation_log", log.readiness()),
            ("catalog_ledger", self.catalog.readiness()),
        ]
    }
}

/// The catalog served: `base` with the ledger — the replicas' shared one when they
/// share a revocation log, else the file `catalog_ledger` names, else none.
fn catalog_source(
    config: &GatewayConfig,
    base: tongban_proto::rules::catalog::Catalog,
    log: Option<&RevocationLog>,
) -> Result<CatalogSource, CatalogStartError> {
    match (log, &config.catalog_ledger) {
        (Some(_), Some(_)) => Err(CatalogStartError::FileBesideSharedLog),
        (Some(log), None) => CatalogSource::with_shared(base, log.pool(), log.replica().to_owned()),
        (None, Some(path)) => CatalogSource::with_ledger(base, path),
        (None, None) => Ok(CatalogSource::fixed(base)),
    }
}

/// Acts on reload requests until shutdown: the registry and the TLS files (certificates,
/// revocation lists) are read again and each part that is valid is put in force for
/// new calls and handshakes (connections of peers now revoked are closed); calls in
/// flight keep what they started with. See [`crate::reload`].
async fn reload_on_request(triggers: ReloadTriggers, reloader: Reloader, shutdown: ShutdownSignal) {
    serve_forcible_reloads(triggers, shutdown, |force| reloader.reload(force)).await;
}
