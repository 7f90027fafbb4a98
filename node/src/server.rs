//! Assembles a node: opens its store and platform ([`crate::province_platform`]) and
//! spawns the federation listener (mTLS gRPC: Node service, health, reflection), the
//! portal, the outbox forwarder, the catalog refresher, what the platform needs (the
//! embedded demo clerk, the HTTP adapter's probe), the return of status changes to
//! filing regions ([`crate::status_return`]) and the publication of the platform's
//! revocations ([`crate::revocations`]).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use opentelemetry::KeyValue;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tongban_proto::{
    FILE_DESCRIPTOR_SET,
    rules::region::{RegionPrefix, RegionTable},
    v1::node_server::NodeServer,
};
use tongban_runtime::{
    audit::trail::AuditTrail,
    observability::process_metrics::ProcessCollector,
    observability::traces::{Traces, TracesGuard},
    process::config::ConfigError,
    process::open_files,
    process::reload::{ReloadHandle, ReloadTriggers},
    process::shutdown::ShutdownSignal,
    serving::admin::{self, Readiness},
    serving::incoming::authenticated_incoming_with_limits,
    serving::operator_listener::{self, OperatorListener},
    serving::plain_http,
    serving::standard_services,
    trust::connector::{ClientTls, FederationConnector},
    trust::identity::PeerIdentity,
    trust::tls::{TlsError, TlsInForce},
};
use tonic::{service::Routes, transport::Server};
use tonic_health::server::HealthReporter;

/// The service the node's federation listener serves besides health and reflection.
const NODE_SERVICE: &str = "tongban.federation.v1.Node";

use crate::{
    access_inquiry::Inquiries,
    audit::NodeAudit,
    calendar::NodeCalendar,
    catalog_copy::CatalogCopy,
    config::{ListenerLimits, NodeConfig},
    context::NodeContext,
    federation::FederationService,
    filing::{Intake, recognize::Recognizer},
    forwarder::Forwarder,
    gateway_client::GatewayClient,
    gateway_client::MessageSigner,
    gateway_replicas,
    issuer::{Issuer, IssuerKeys, SharedIssuerKeys},
    metrics::NodeMetrics,
    operator::{self, OperatorState},
    peers::{PeerKeys, SharedPeerKeys},
    platform::embedded::EmbeddedPlatform,
    portal::{self, PortalState},
    province_platform::{OpenPlatform, PlatformOpenError},
    receipt_token::ReceiptTokens,
    reloaded::{Reloaded, reload_on_request},
    revocations::RevocationFeed,
    signed_calls::SignedCalls,
    status_return::StatusReturn,
    store::{Store, StoreError},
};

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Issuer(#[from] crate::issuer::IssuerError),
    #[error(transparent)]
    Traces(#[from] tongban_runtime::observability::traces::TracesError),
    #[error(transparent)]
    Platform(#[from] PlatformOpenError),
    #[error("{0}")]
    Other(String),
}

/// Bound sockets (port 0 allowed; read the real ports before starting).
pub struct NodeListeners {
    pub federation: TcpListener,
    pub portal: TcpListener,
    pub admin: Option<TcpListener>,
    pub operator: Option<TcpListener>,
}

impl NodeListeners {
    pub async fn bind(config: &NodeConfig) -> Result<Self, NodeStartError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeStartError::Bind { addr, source })
        };
        Ok(Self {
            federation: bind(config.listen.federation).await?,
            portal: bind(config.listen.portal).await?,
            admin: match config.listen.admin {
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

/// Opens the store the config names: a SQLite file, or PostgreSQL shared with the
/// node's other replicas.
pub async fn open_store(config: &crate::config::StoreConfig) -> Result<Store, NodeStartError> {
    Ok(match config {
        crate::config::StoreConfig::Sqlite(path) => Store::open(path)?,
        crate::config::StoreConfig::Postgres(pg) => {
            let replica = pg.replica_name();
            tracing::info!(database = %pg.database().display_url(), %replica, "store on PostgreSQL");
            Store::open_postgres(&pg.database(), &replica, pg.lease).await?
        }
    })
}

/// A configured node.
pub struct Node {
    config: NodeConfig,
    prefix: RegionPrefix,
    store: Store,
    platform: OpenPlatform,
    client: GatewayClient,
    catalog: Arc<CatalogCopy>,
    id_hash_key: Arc<[u8]>,
    issuer_keys: SharedIssuerKeys,
    /// The other regions' keys, from this node's copy of the registry.
    peers: SharedPeerKeys,
    calendar: NodeCalendar,
    traces: Traces,
    traces_guard: TracesGuard,
    metrics: Option<Arc<NodeMetrics>>,
    registry: Arc<prometheus_client::registry::Registry>,
    /// Our TLS in force, replaced by reloads.
    tls: Arc<TlsInForce>,
}

impl Node {
    /// Opens the store and platform and prepares the gateway channel. Must run inside a
    /// Tokio runtime.
    pub async fn new(config: NodeConfig) -> Result<Self, NodeStartError> {
        let prefix = config.prefix()?;
        config.tls.server_config()?;
        if let crate::config::PlatformConfig::Embedded { database, .. } = &config.platform
            && config.store.sqlite_path() == Some(database.as_path())
        {
            // Each database keeps its schema version in its file header, so two schemas
            // cannot share a file: the second would take itself for set up. Refused
            // before either is opened.
            return Err(NodeStartError::Other(format!(
                "the platform database and the store are the same file ({}); give each its own",
                database.display()
            )));
        }
        let store = open_store(&config.store).await?;
        let id_hash_key: Arc<[u8]> = store.id_hash_key().await?.into();
        // The client side of our TLS, reloaded with the server side (see `Reloaded`).
        let tls = Arc::new(TlsInForce::new(config.tls.read_all()?));
        let connector = FederationConnector::new(
            ClientTls {
                config: tls.client.subscribe(),
                revoked: tls.revoked.subscribe(),
            },
            PeerIdentity::Gateway,
            &config.gateway_server_name(),
        )?;
        let (channel, replicas) = gateway_replicas::connect(
            &config.gateway.endpoints,
            &connector,
            &config.gateway.client,
        )?;
        let (traces, traces_guard) = Traces::start(
            &config.telemetry,
            &format!("tongban-node-{}", config.region),
            vec![
                KeyValue::new("tongban.role", "node"),
                KeyValue::new("tongban.region", config.region.to_string()),
            ],
        )?;
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new(vec![(
            "federation".into(),
            config.tls.cert.clone(),
        )])));
        let metrics = config
            .telemetry
            .metrics_enabled()
            .then(|| Arc::new(NodeMetrics::new(&mut registry)));
        let calendar = NodeCalendar::new(
            config
                .calendar
                .load()
                .map_err(|e| NodeStartError::Other(format!("the official calendar: {e}")))?,
        );
        if config.telemetry.metrics_enabled() {
            registry.register_collector(Box::new(calendar.collector()));
        }
        let platform =
            OpenPlatform::open(&config, &prefix, &id_hash_key, &traces, metrics.clone()).await?;
        let issuer_keys = IssuerKeys::load(&config.issuer)?;
        if issuer_keys.is_empty() {
            tracing::warn!(
                "no issuer signing key configured: this region answers no lookups and \
                 sends nothing (what it sends is signed)"
            );
        }
        let issuer_keys = SharedIssuerKeys::new(issuer_keys);
        let peers = SharedPeerKeys::new(PeerKeys::load(&config.peers.registry)?);
        let client = GatewayClient::new(
            channel,
            replicas,
            &config.region,
            MessageSigner {
                region: prefix,
                keys: issuer_keys.clone(),
            },
            traces.clone(),
            metrics.clone(),
        )
        .map_err(|failed| NodeStartError::Other(failed.to_string()))?;
        let catalog = Arc::new(CatalogCopy::load(&store).await);
        Ok(Self {
            issuer_keys,
            peers,
            calendar,
            config,
            prefix,
            store,
            platform,
            client,
            catalog,
            id_hash_key,
            traces,
            traces_guard,
            metrics,
            registry: Arc::new(registry),
            tls,
        })
    }

    /// The node's store (tests read it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The embedded platform, when it is the one in use (tests, demos and the test kit
    /// read it).
    pub fn embedded_platform(&self) -> Option<Arc<EmbeddedPlatform>> {
        self.platform.embedded.clone()
    }

    /// Serves until `shutdown` fires; in-flight calls drain, background work stops.
    pub async fn serve(
        self,
        listeners: NodeListeners,
        shutdown: ShutdownSignal,
    ) -> Result<(), NodeStartError> {
        let wake = Arc::new(Notify::new());
        let ready = Readiness::new(true);
        let ctx = self.context()?;
        let audit = ctx.audit.clone();
        let mut tasks = JoinSet::new();
        let intake = self.spawn_background(&mut tasks, &ctx, &wake, &shutdown);
        let limits = listener_limits(&self.config);
        self.spawn_portal(
            &mut tasks,
            listeners.portal,
            intake,
            &ready,
            &limits,
            &shutdown,
        )?;
        // From here on SIGHUP (or a changed certificate or revocation file, or
        // `POST /reload` on the operator listener) reloads them instead of terminating
        // the node.
        let (triggers, reload, reloaded) = self.reloads();
        tasks.spawn(reload_on_request(triggers, reloaded, shutdown.clone()));
        if let Some(listener) = listeners.admin {
            let router = self.admin_router(&ready);
            let shutdown = shutdown.clone();
            let limits = limits.admin();
            tasks.spawn(async move {
                if let Err(error) = admin::serve_within(listener, router, limits, shutdown).await {
                    tracing::error!(%error, "admin listener failed");
                }
            });
        }
        if let Some(listener) = listeners.operator {
            let operator = Arc::new(OperatorState {
                ctx: ctx.clone(),
                client: self.client.clone(),
                outbox_written: wake.clone(),
            });
            let router = admin::reload(reload)
                .merge(operator::router(operator.clone()))
                .merge(crate::operator_disputes::routes(operator.clone()))
                .merge(crate::operator_catalog::routes(operator));
            let operators = OperatorListener {
                listener,
                roster: Arc::new(
                    self.config
                        .operators
                        .as_ref()
                        .map(|o| o.roster.clone())
                        .unwrap_or_default(),
                ),
                tls: self.tls.server.subscribe(),
                audit: ctx.audit.trail(),
                limits: limits.admin(),
            };
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = operator_listener::serve(operators, router, shutdown).await {
                    tracing::error!(%error, "operator listener failed");
                }
            });
        }
        let issuer = Arc::new(Issuer {
            ctx: ctx.clone(),
            keys: self.issuer_keys.clone(),
        });
        let federation = FederationService { ctx, issuer };
        let services =
            standard_services::health_and_reflection(&[NODE_SERVICE], &[FILE_DESCRIPTOR_SET])
                .await
                .map_err(|e| NodeStartError::Other(e.to_string()))?;
        let served = serve_federation(
            &self.config,
            &self.tls,
            listeners.federation,
            (federation, self.peers.clone()),
            services,
            ready,
            &shutdown,
        )
        .await;
        while tasks.join_next().await.is_some() {}
        // Last: every record of the drained calls and tasks, then the signed checkpoint.
        audit.close().await;
        self.traces_guard.shutdown().await;
        tracing::info!(region = %self.config.region, "node stopped");
        served
    }

    /// What the handlers share, with the node's audit trail opened.
    fn context(&self) -> Result<Arc<NodeContext>, NodeStartError> {
        let trail = AuditTrail::open(&self.config.audit, &self.config.tls)
            .map_err(|e| NodeStartError::Other(format!("audit trail: {e}")))?;
        Ok(Arc::new(NodeContext {
            audit: NodeAudit::new(trail),
            region: self.config.region,
            prefix: self.prefix,
            regions: RegionTable::embedded(),
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            platform: self.platform.cases.clone(),
            registry: self.platform.register.clone(),
            id_hash_key: self.id_hash_key.clone(),
            traces: self.traces.clone(),
            metrics: self.metrics.clone(),
            calendar: self.calendar.clone(),
            evaluations: self.config.evaluations.clone(),
            peers: self.peers.clone(),
        }))
    }

    /// What a reload replaces, and what sets one off (the files watched, SIGHUP, the
    /// operator listener's handle).
    fn reloads(&self) -> (ReloadTriggers, ReloadHandle, Reloaded) {
        let mut watched = self.config.tls.watched();
        watched.extend(self.config.source.clone());
        watched.extend(self.config.issuer.keys.iter().map(|k| k.file.clone()));
        watched.push(self.config.peers.registry.clone());
        // A folder's time changes when a file is added to it or removed.
        watched.extend(self.config.calendar.folder.clone());
        let (triggers, reload) = ReloadTriggers::install(watched);
        let reloaded = Reloaded {
            tls: self.config.tls.clone(),
            tls_in_force: self.tls.clone(),
            config: self.config.source.clone(),
            keys: self.issuer_keys.clone(),
            peers_registry: self.config.peers.registry.clone(),
            peers: self.peers.clone(),
            calendar_config: self.config.calendar.clone(),
            calendar: self.calendar.in_force.clone(),
        };
        (triggers, reload, reloaded)
    }

    /// Spawns the background work: the return of status changes (following the
    /// platform's feed), the publication of the platform's revocations, the outbox
    /// forwarder, what the platform needs and the catalog refresher. Returns the intake,
    /// which the forwarder resumes waiting pre-reviews with.
    fn spawn_background(
        &self,
        tasks: &mut JoinSet<()>,
        ctx: &Arc<NodeContext>,
        wake: &Arc<Notify>,
        shutdown: &ShutdownSignal,
    ) -> Arc<Intake> {
        let poll = self.platform.poll_interval();
        let returner = StatusReturn {
            store: self.store.clone(),
            region: self.config.region,
            prefix: self.prefix,
            wake: wake.clone(),
            metrics: self.metrics.clone(),
        };
        tasks.spawn(returner.run_feed(self.platform.cases.clone(), poll, shutdown.clone()));
        let revocations = RevocationFeed {
            registry: self.platform.register.clone(),
            store: self.store.clone(),
            client: self.client.clone(),
            prefix: self.prefix,
            outbox_written: wake.clone(),
            metrics: self.metrics.clone(),
            poll,
        };
        tasks.spawn(revocations.run(shutdown.clone()));
        self.platform.spawn(tasks, shutdown);
        let intake = Arc::new(Intake {
            ctx: ctx.clone(),
            outbox_written: wake.clone(),
            recognizer: Recognizer {
                client: self.client.clone(),
                timeout: self.config.recognition.lookup_timeout,
            },
        });
        // A store shared by replicas wakes this forwarder when another replica queues.
        if let Some(wake_ups) = self.store.wake_ups(wake.clone(), shutdown.clone()) {
            tasks.spawn(wake_ups);
        }
        tasks.spawn(
            Forwarder {
                ctx: ctx.clone(),
                store: self.store.clone(),
                client: self.client.clone(),
                settings: self.config.outbox.clone(),
                wake: wake.clone(),
                intake: intake.clone(),
                verification_deadline: self.config.recognition.verification_deadline,
            }
            .run(shutdown.clone()),
        );
        tasks.spawn(self.catalog.clone().run_refresher(
            self.client.clone(),
            self.store.clone(),
            Duration::from_secs(300),
            shutdown.clone(),
        ));
        intake
    }

    /// Spawns the portal (HTTP+JSON) on `listener`, within `limits`.
    fn spawn_portal(
        &self,
        tasks: &mut JoinSet<()>,
        listener: TcpListener,
        intake: Arc<Intake>,
        ready: &Readiness,
        limits: &ListenerLimits,
        shutdown: &ShutdownSignal,
    ) -> Result<(), NodeStartError> {
        let inquiries = Inquiries::new(self.config.access_log.as_ref())
            .map_err(|e| NodeStartError::Other(format!("access_log: {e}")))?;
        let state = Arc::new(PortalState {
            receipts: ReceiptTokens::new(&intake.ctx.id_hash_key),
            intake,
            store: self.store.clone(),
            client: self.client.clone(),
            prefix: self.prefix,
            ready: ready.clone(),
            inquiries,
        });
        let shutdown = shutdown.clone();
        let limits = limits.portal();
        tasks.spawn(async move {
            let router = portal::router(state);
            if let Err(error) =
                plain_http::serve("portal", listener, router, limits, shutdown).await
            {
                tracing::error!(%error, "portal server failed");
            }
        });
        Ok(())
    }

    /// The admin listener's routes: probes (store and platform checked) and `/metrics`.
    fn admin_router(&self, ready: &Readiness) -> axum::Router {
        let store = self.store.clone();
        let platform = self.platform.cases.clone();
        let checks: Vec<(&'static str, admin::ReadinessCheck)> = vec![
            ("store", Arc::new(move || store.health())),
            ("platform", Arc::new(move || platform.health())),
        ];
        admin::probes_checked(ready.clone(), checks).merge(crate::metrics::route(
            self.registry.clone(),
            self.metrics.clone(),
            self.store.clone(),
            self.platform.cases.clone(),
            self.calendar.clone(),
        ))
    }
}

/// The portal's and admin listener's limits as configured, the process's open-files
/// limit raised to what their caps need where it may be, and the portal's cap lowered
/// to what that limit leaves (so a flood of the portal cannot take the files the admin
/// listener's probes need).
fn listener_limits(config: &NodeConfig) -> ListenerLimits {
    let wanted = &config.listener_limits;
    let open_files = open_files::raise_to(wanted.open_files_wanted());
    let fitted = wanted.fitted_to(open_files);
    if let Some(open_files) = open_files
        && fitted.portal_connections < wanted.portal_connections
    {
        tracing::warn!(
            open_files,
            configured = wanted.portal_connections,
            in_force = fitted.portal_connections,
            "listener_limits.portal_connections lowered to what the open-files limit \
             leaves; raise the limit (ulimit -n, LimitNOFILE) to restore it"
        );
    }
    fitted
}

/// Serves the federation listener (mTLS gRPC: the Node service, health, reflection)
/// until `shutdown` fires and its calls have drained.
async fn serve_federation(
    config: &NodeConfig,
    tls: &TlsInForce,
    listener: TcpListener,
    (federation, peers): (FederationService, SharedPeerKeys),
    (health, standard): (HealthReporter, Routes),
    ready: Readiness,
    shutdown: &ShutdownSignal,
) -> Result<(), NodeStartError> {
    let incoming = authenticated_incoming_with_limits(
        listener,
        tls.server.subscribe(),
        tls.revoked.subscribe(),
        config.listener_limits.federation(config.handshake_timeout),
    );
    tracing::info!(region = %config.region, "node serving");
    // Readiness turns false, and health to NOT_SERVING, as soon as draining starts.
    let not_serving = standard_services::not_serving_on_shutdown(
        health,
        vec![NODE_SERVICE.to_owned()],
        ready,
        shutdown.clone(),
    );
    let drained = shutdown.clone().wait();
    let node = SignedCalls::new(NodeServer::new(federation), peers, config.peers.max_age);
    let served = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .add_routes(standard.add_service(node))
        .serve_with_incoming_shutdown(incoming, drained)
        .await;
    let _ = not_serving.await;
    served.map_err(NodeStartError::from)
}
