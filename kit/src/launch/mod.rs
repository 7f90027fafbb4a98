//! Starting a local federation: a dev CA, M gateway replicas and N nodes with embedded
//! platforms, each on its own ports, each loaded from the config files written here, so
//! what runs is what an operator would run from those files.
//!
//! [`LocalFederation::start`] goes step by step: the PKI, every member's listeners
//! ([`sockets`]), the issuer keys and hash secret ([`keys`]), the links and their fault
//! proxies ([`links`]), the config files ([`configs`]), then the members themselves
//! ([`members`]), gateways first. A PostgreSQL cluster starts first when node stores or
//! the gateways' revocation log live there. Province platforms of nodes with an HTTP platform
//! ([`platforms`]) start before the configs are written, since the nodes' configs name
//! them.

pub(crate) mod configs;
pub(crate) mod keys;
pub(crate) mod links;
pub(crate) mod members;
pub(crate) mod platforms;
pub(crate) mod sockets;

use std::collections::BTreeMap;

use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    config::pki::Pki, error::KitError, federation::LocalFederation, postgres::PostgresCluster,
    spec::FederationSpec, tcp_proxy::TcpProxy,
};

/// The name of a local federation's CA.
const CA_NAME: &str = "Tongban development federation CA";

impl LocalFederation {
    /// Generates the PKI and configs under `spec.dir` and starts every member.
    pub async fn start(spec: FederationSpec) -> Result<Self, KitError> {
        if spec.gateways == 0 {
            return Err(KitError::Other("a federation needs a gateway".into()));
        }
        let pki = Pki::create(&spec.dir.join("pki"), CA_NAME)?;
        // One certificate for every gateway replica.
        pki.issue(&PeerIdentity::Gateway, keys::VALIDITY)?;
        for operator in [crate::config::pki::OPERATOR, crate::config::pki::VIEWER] {
            pki.issue_operator(operator, keys::VALIDITY)?;
        }
        let sockets = sockets::Sockets::bind(&spec).await?;
        let keys = keys::Keys::write(&spec, &pki, &sockets.nodes)?;
        let (links, routes) = links::wire(&spec, &sockets).await?;
        let gateway_front = links::front(&spec, &sockets)?;
        let postgres = start_postgres(&spec).await?;
        let platforms = platforms::start(&spec).await?;
        let provinces = platforms
            .iter()
            .map(|(prefix, p)| (prefix.clone(), p.files.clone()))
            .collect();
        let plan = configs::Plan {
            spec: &spec,
            pki: &pki,
            sockets: &sockets,
            keys: &keys,
            routes: &routes,
            platforms: &provinces,
            postgres: postgres.as_deref(),
            gateway_front: gateway_front.as_ref().map(TcpProxy::addr),
        };
        let gateway_configs = plan.write_gateways()?;
        let node_configs = plan.write_nodes()?;

        let mut federation = Self {
            dir: spec.dir.clone(),
            ca_pem: pki.ca_pem(),
            gateways: Vec::new(),
            nodes: BTreeMap::new(),
            platforms,
            replicas: BTreeMap::new(),
            postgres,
            gateway_front,
            links,
            spec,
            node_env: BTreeMap::new(),
        };
        federation
            .launch_all(sockets, gateway_configs, node_configs)
            .await?;
        Ok(federation)
    }

    /// Starts the gateways, then the nodes, each from its config.
    async fn launch_all(
        &mut self,
        sockets: sockets::Sockets,
        gateway_configs: Vec<std::path::PathBuf>,
        node_configs: Vec<std::path::PathBuf>,
    ) -> Result<(), KitError> {
        for (index, (sockets, path)) in sockets
            .gateways
            .into_iter()
            .zip(gateway_configs)
            .enumerate()
        {
            let gateway =
                members::gateway(&self.spec.launch, &self.dir, index, &path, sockets).await?;
            self.gateways.push(gateway);
        }
        for (sockets, path) in sockets.nodes.into_iter().zip(node_configs) {
            let prefix = sockets.prefix.to_string();
            let node = self.launch_node(&path, sockets).await?;
            self.nodes.insert(prefix, node);
        }
        Ok(())
    }
}

/// The federation's PostgreSQL with its databases, when the spec needs one.
async fn start_postgres(
    spec: &FederationSpec,
) -> Result<Option<std::sync::Arc<PostgresCluster>>, KitError> {
    if !spec.needs_postgres() {
        return Ok(None);
    }
    let mut databases: Vec<String> = spec
        .postgres_stores
        .iter()
        .map(|prefix| configs::node_database(prefix))
        .collect();
    if spec.shared_revocation_log {
        databases.push(configs::REVOCATION_LOG_DATABASE.to_owned());
    }
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = PostgresCluster::start()?;
        for name in &databases {
            cluster.create_database(name)?;
        }
        Ok::<_, KitError>(cluster)
    })
    .await
    .map_err(|e| KitError::Other(format!("starting PostgreSQL: {e}")))??;
    Ok(Some(std::sync::Arc::new(cluster)))
}

impl LocalFederation {
    /// Starts the node of the config at `path` on `sockets` (at start and on a
    /// restart), handing tests its platform's database: its embedded one, or its
    /// province platform's.
    pub(crate) async fn launch_node(
        &self,
        path: &std::path::Path,
        sockets: sockets::NodeSockets,
    ) -> Result<crate::member::RunningNode, KitError> {
        let prefix = sockets.prefix.to_string();
        let database = self
            .platforms
            .get(&prefix)
            .map(|p| p.files.database.clone());
        members::node(
            &self.spec.launch,
            &self.dir,
            &self.node_env,
            path,
            sockets,
            database.as_deref(),
        )
        .await
    }
}
