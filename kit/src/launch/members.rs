//! Starting one member from its config file on its bound listeners: as tasks of this
//! process, or as a child process of the project's binary (the listeners released for
//! it) waited for until its readiness probe answers.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use tongban_gateway::{
    config::GatewayConfig,
    server::{Gateway, GatewayListeners},
};
use tongban_node::{
    config::{NodeConfig, PlatformConfig},
    platform::embedded::EmbeddedPlatform,
    portal_client::PortalClient,
    server::{Node, NodeListeners},
    store::Store,
};
use tongban_runtime::{process::shutdown::Shutdown, trust::identity::PeerIdentity};

use crate::{
    config::pki::OPERATOR,
    error::KitError,
    launch::sockets::{GatewaySockets, NodeSockets, local_addr},
    member::{OperatorApi, Run, RunningGateway, RunningNode},
    process::{spawn, wait_ready},
    spec::Launch,
};

/// Starts gateway replica `index` from `config_path`; a process logs to
/// `dir/gateway-<index>.log`.
pub(crate) async fn gateway(
    launch: &Launch,
    dir: &Path,
    index: usize,
    config_path: &Path,
    sockets: GatewaySockets,
) -> Result<RunningGateway, KitError> {
    let federation_addr = local_addr(&sockets.federation)?;
    let admin_addr = local_addr(&sockets.admin)?;
    let operator_addr = local_addr(&sockets.operator)?;
    let operator = OperatorApi::new(
        operator_addr,
        PeerIdentity::Gateway,
        &pki_dir(dir),
        OPERATOR,
    )?;
    let run = match launch {
        Launch::InProcess => {
            let gateway = Gateway::new(GatewayConfig::load(config_path)?)?;
            let shutdown = Shutdown::new();
            let signal = shutdown.signal();
            let listeners = GatewayListeners {
                federation: sockets.federation,
                admin: Some(sockets.admin),
                operator: Some(sockets.operator),
            };
            Run::Task {
                shutdown,
                handle: tokio::spawn(async move {
                    gateway
                        .serve(listeners, signal)
                        .await
                        .map_err(|e| e.to_string())
                }),
            }
        }
        Launch::Processes { bin_dir, log } => {
            drop(sockets);
            let child = spawn(
                &bin_dir.join("tongban-gateway"),
                config_path,
                log,
                &[],
                &dir.join(format!("gateway-{index}.log")),
            )?;
            wait_ready(&format!("http://{admin_addr}")).await?;
            Run::Process(child)
        }
    };
    Ok(RunningGateway {
        index,
        federation_addr,
        admin_addr: Some(admin_addr),
        operator_addr,
        operator,
        config_path: config_path.to_owned(),
        run,
    })
}

/// Starts a node from `config_path`; a process gets the extra environment `env` holds
/// for its prefix and logs to `dir/node-<prefix>.log`.
pub(crate) async fn node(
    launch: &Launch,
    dir: &Path,
    env: &BTreeMap<String, Vec<(String, String)>>,
    config_path: &Path,
    sockets: NodeSockets,
    platform_database: Option<&Path>,
) -> Result<RunningNode, KitError> {
    let config = NodeConfig::load(config_path)?;
    // The test's handle on the platform: the node's embedded one, or the database of
    // the province platform it stands in front of.
    let platform_database = match (&config.platform, platform_database) {
        (PlatformConfig::Embedded { database, .. }, _) => database.clone(),
        (_, Some(database)) => database.to_owned(),
        (_, None) => return Err(KitError::Other(NO_PLATFORM.into())),
    };
    let federation_addr = local_addr(&sockets.federation)?;
    let portal_addr = local_addr(&sockets.portal)?;
    let admin_addr = local_addr(&sockets.admin)?;
    let operator_addr = local_addr(&sockets.operator)?;
    let identity = PeerIdentity::Region(config.prefix()?);
    let operator = OperatorApi::new(operator_addr, identity, &pki_dir(dir), OPERATOR)?;
    let (run, store, platform) = match launch {
        Launch::InProcess => node_task(config.clone(), sockets, &platform_database).await?,
        Launch::Processes { bin_dir, log } => {
            drop(sockets);
            let prefix = config.region.significant_prefix().to_owned();
            let env = env.get(&prefix).map_or(&[][..], Vec::as_slice);
            let child = spawn(
                &bin_dir.join("tongban-node"),
                config_path,
                log,
                env,
                &dir.join(format!("node-{prefix}.log")),
            )?;
            wait_ready(&format!("http://{portal_addr}")).await?;
            // The test's own handles on the process's databases.
            let store = tongban_node::server::open_store(&config.store).await?;
            let platform = EmbeddedPlatform::open(&platform_database, &config.prefix()?)?;
            (Run::Process(child), store, platform)
        }
    };
    Ok(RunningNode {
        region: config.region,
        prefix: config.prefix()?,
        federation_addr,
        portal_addr,
        portal: PortalClient::new(format!("http://{portal_addr}")),
        admin_addr,
        admin: PortalClient::new(format!("http://{admin_addr}")),
        operator_addr,
        operator,
        config_path: config_path.to_owned(),
        store,
        platform,
        run,
    })
}

/// The federation's PKI folder (the kit writes it beside the configs).
fn pki_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("pki")
}

/// The kit hands tests a handle on every node's platform database.
const NO_PLATFORM: &str = "a node on an HTTP platform the kit did not start";

/// A node served by tasks of this process.
async fn node_task(
    config: NodeConfig,
    sockets: NodeSockets,
    platform_database: &Path,
) -> Result<(Run, Store, Arc<EmbeddedPlatform>), KitError> {
    let prefix = config.prefix()?;
    let node = Node::new(config).await?;
    let store = node.store().clone();
    let platform = match node.embedded_platform() {
        Some(platform) => platform,
        None => EmbeddedPlatform::open(platform_database, &prefix)?,
    };
    let shutdown = Shutdown::new();
    let signal = shutdown.signal();
    let listeners = NodeListeners {
        federation: sockets.federation,
        portal: sockets.portal,
        admin: Some(sockets.admin),
        operator: Some(sockets.operator),
    };
    let run = Run::Task {
        shutdown,
        handle: tokio::spawn(async move {
            node.serve(listeners, signal)
                .await
                .map_err(|e| e.to_string())
        }),
    };
    Ok((run, store, platform))
}
