//! Assembles a node: opens its databases and spawns the federation listener (mTLS
//! gRPC: Node service, health, reflection), the portal, the outbox forwarder, the
//! catalog refresher, the platform's clerk and the return of status changes to filing
//! regions ([`crate::status_return`]).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};
use tongban_proto::{
    FILE_DESCRIPTOR_SET,
    region::{RegionPrefix, RegionTable},
    v1::node_server::NodeServer,
};
use tongban_runtime::{
    config::ConfigError,
    incoming::authenticated_incoming,
    shutdown::ShutdownSignal,
    tls::{self, TlsError},
};
use tonic::transport::Server;

use crate::{
    catalog::CatalogCopy,
    config::{NodeConfig, PlatformConfig},
    context::NodeContext,
    federation::FederationService,
    forwarder::Forwarder,
    gateway_client::GatewayClient,
    intake::Intake,
    platform::{Platform, embedded::EmbeddedPlatform},
    portal::{self, PortalState},
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
    #[error("{0}")]
    Other(String),
}

/// Bound sockets (port 0 allowed; read the real ports before starting).
pub struct NodeListeners {
    pub federation: TcpListener,
    pub portal: TcpListener,
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
        })
    }
}

/// A configured node.
pub struct Node {
    config: NodeConfig,
    prefix: RegionPrefix,
    store: Store,
    platform: Arc<EmbeddedPlatform>,
    review_step: Duration,
    client: GatewayClient,
    catalog: Arc<CatalogCopy>,
    id_hash_key: Arc<[u8]>,
}

impl Node {
    /// Opens the store and platform and prepares the gateway channel. Must run inside a
    /// Tokio runtime.
    pub async fn new(config: NodeConfig) -> Result<Self, NodeStartError> {
        let prefix = config.prefix()?;
        config.tls.server_config()?;
        // Each database keeps its schema version in its file header, so two schemas
        // cannot share a file: the second would take itself for set up. Refused before
        // either is opened.
        match &config.platform {
            PlatformConfig::Embedded { database, .. } if *database == config.store => {
                return Err(NodeStartError::Other(format!(
                    "the platform database and the store are the same file ({}); \
                     give each its own",
                    database.display()
                )));
            }
            PlatformConfig::Embedded { .. } => {}
        }
        let store = Store::open(&config.store)?;
        let id_hash_key: Arc<[u8]> = store.id_hash_key().await?.into();
        let regions = RegionTable::embedded();
        let (platform, review_step) = match &config.platform {
            PlatformConfig::Embedded {
                database,
                seed_residents,
                review_step,
            } => {
                let platform = EmbeddedPlatform::open(database, &prefix)?;
                if *seed_residents > 0 {
                    let n = platform
                        .seed(regions, &prefix, *seed_residents, id_hash_key.clone())
                        .await?;
                    if n > 0 {
                        tracing::info!(residents = n, "seeded synthetic residents");
                    }
                }
                (platform, *review_step)
            }
        };
        let tls_config = config.tls.client_config(&config.gateway_server_name())?;
        // Lazy: the node starts while the gateway is still away.
        let channel = tls::endpoint(&config.gateway.endpoint, tls_config, &config.gateway.client)?
            .timeout(config.gateway.client.request_timeout)
            .connect_lazy();
        let client = GatewayClient::new(channel, &config.region)
            .map_err(|failed| NodeStartError::Other(failed.to_string()))?;
        let catalog = Arc::new(CatalogCopy::load(&store).await);
        Ok(Self {
            config,
            prefix,
            store,
            platform,
            review_step,
            client,
            catalog,
            id_hash_key,
        })
    }

    /// The node's store (tests read it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The embedded platform (tests read it).
    pub fn platform(&self) -> Arc<EmbeddedPlatform> {
        self.platform.clone()
    }

    /// Serves until `shutdown` fires; in-flight calls drain, background work stops.
    pub async fn serve(
        self,
        listeners: NodeListeners,
        shutdown: ShutdownSignal,
    ) -> Result<(), NodeStartError> {
        let regions = RegionTable::embedded();
        let platform: Arc<dyn Platform> = self.platform.clone();
        let wake = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(true));

        let ctx = Arc::new(NodeContext {
            region: self.config.region,
            prefix: self.prefix,
            regions,
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            platform: platform.clone(),
            id_hash_key: self.id_hash_key.clone(),
        });

        let mut tasks = tokio::task::JoinSet::new();
        // Subscribe before the clerk starts, so no change it makes is missed.
        let returner = StatusReturn {
            store: self.store.clone(),
            region: self.config.region,
            prefix: self.prefix,
            wake: wake.clone(),
        };
        tasks.spawn(
            returner
                .clone()
                .run_live(platform.status_changes(), shutdown.clone()),
        );
        tasks.spawn(returner.run_sweep(platform.clone(), shutdown.clone()));
        tasks.spawn(
            Forwarder {
                ctx: ctx.clone(),
                store: self.store.clone(),
                client: self.client.clone(),
                settings: self.config.outbox.clone(),
                wake: wake.clone(),
            }
            .run(shutdown.clone()),
        );
        tasks.spawn(
            self.platform
                .clone()
                .run_clerk(self.review_step, shutdown.clone()),
        );
        tasks.spawn(self.catalog.clone().run_refresher(
            self.client.clone(),
            self.store.clone(),
            Duration::from_secs(300),
            shutdown.clone(),
        ));

        let portal_state = Arc::new(PortalState {
            intake: Intake {
                ctx: ctx.clone(),
                outbox_written: wake.clone(),
            },
            store: self.store.clone(),
            client: self.client.clone(),
            prefix: self.prefix,
            ready: ready.clone(),
        });
        let portal_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = axum::serve(listeners.portal, portal::router(portal_state))
                .with_graceful_shutdown(portal_shutdown.wait())
                .await
            {
                tracing::error!(%error, "portal server failed");
            }
        });

        let federation = FederationService { ctx };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<NodeServer<FederationService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeStartError::Other(format!("reflection: {e}")))?;
        let (_tls_tx, tls_rx) = watch::channel(self.config.tls.server_config()?);
        let incoming =
            authenticated_incoming(listeners.federation, tls_rx, self.config.handshake_timeout);
        tracing::info!(region = %self.config.region, "node serving");
        let drained = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.wait().await;
                ready.store(false, std::sync::atomic::Ordering::Relaxed);
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        };
        let served = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(NodeServer::new(federation))
            .serve_with_incoming_shutdown(incoming, drained)
            .await;
        while tasks.join_next().await.is_some() {}
        tracing::info!(region = %self.config.region, "node stopped");
        served.map_err(NodeStartError::from)
    }
}
