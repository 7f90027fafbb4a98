//! Controlling a running federation member by member: graceful stops, kills (a real
//! SIGKILL for a process), restarts on the old ports from the same config, waiting for
//! a crash, and the extra environment of node processes (crash points).

use std::time::{Duration, Instant};

use crate::{
    error::KitError,
    federation::LocalFederation,
    launch::{
        members,
        sockets::{GatewaySockets, NodeSockets, rebind},
    },
    member::Run,
    spec::Member,
};

impl LocalFederation {
    /// The process id of a member run as a process (to send it signals), if it runs.
    pub fn pid(&mut self, member: &Member) -> Option<u32> {
        match self.run_of(member).ok()? {
            Run::Process(child) => Some(child.id()),
            _ => None,
        }
    }

    /// Stops a member gracefully (SIGTERM for a process), keeping its files and ports.
    pub async fn stop(&mut self, member: &Member) -> Result<(), KitError> {
        self.run_of(member)?.stop().await;
        Ok(())
    }

    /// Kills a member at once: SIGKILL for a process, its tasks dropped mid-way
    /// in-process.
    pub async fn kill(&mut self, member: &Member) -> Result<(), KitError> {
        self.run_of(member)?.kill().await;
        Ok(())
    }

    /// Sets extra environment for the node process of `prefix` from its next start
    /// (e.g. `TONGBAN_CRASH_AT`, see `tongban_node::crash_point`); empty clears it.
    /// Members run in-process ignore it.
    pub fn set_node_env(&mut self, prefix: &str, env: Vec<(String, String)>) {
        self.node_env.insert(prefix.to_owned(), env);
    }

    /// Waits up to `limit` for a member process to exit by itself (a crash); returns
    /// whether it did, leaving it stopped (restartable) if so.
    pub async fn wait_exit(&mut self, member: &Member, limit: Duration) -> Result<bool, KitError> {
        let deadline = Instant::now() + limit;
        let run = self.run_of(member)?;
        loop {
            if run.has_exited() {
                run.kill().await;
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a stopped or killed member again from its config file, on its old ports.
    pub async fn restart(&mut self, member: &Member) -> Result<(), KitError> {
        if !matches!(self.run_of(member)?, Run::Stopped) {
            return Err(KitError::Other(format!("{member:?} is still running")));
        }
        match member {
            Member::Gateway(i) => self.relaunch_gateway(*i).await,
            Member::Node(prefix) => self.relaunch_node(prefix, 0).await,
            Member::Replica(prefix, index) => self.relaunch_node(prefix, *index).await,
        }
    }

    async fn relaunch_gateway(&mut self, index: usize) -> Result<(), KitError> {
        let old = self
            .gateways
            .get(index)
            .ok_or_else(|| KitError::Other(format!("no gateway {index}")))?;
        let sockets = GatewaySockets {
            federation: rebind(old.federation_addr).await?,
            admin: rebind(old.admin_addr.unwrap_or(old.federation_addr)).await?,
            operator: rebind(old.operator_addr).await?,
        };
        let path = old.config_path.clone();
        let gateway = members::gateway(&self.spec.launch, &self.dir, index, &path, sockets).await?;
        self.gateways[index] = gateway;
        Ok(())
    }

    /// Stops a node gracefully (fault tests), keeping its files.
    pub async fn stop_node(&mut self, prefix: &str) -> Result<(), KitError> {
        self.stop(&Member::Node(prefix.to_owned())).await
    }

    /// Restarts a stopped node on its old ports from its config file.
    pub async fn restart_node(&mut self, prefix: &str) -> Result<(), KitError> {
        self.restart(&Member::Node(prefix.to_owned())).await
    }

    /// Starts replica `index` of the node of `prefix` (0: the node itself) again from
    /// its config file, on its old ports.
    async fn relaunch_node(&mut self, prefix: &str, index: usize) -> Result<(), KitError> {
        let old = self.replica(prefix, index)?;
        let sockets = NodeSockets {
            region: old.region,
            prefix: old.prefix,
            federation: rebind(old.federation_addr).await?,
            portal: rebind(old.portal_addr).await?,
            admin: rebind(old.admin_addr).await?,
            operator: rebind(old.operator_addr).await?,
        };
        let path = old.config_path.clone();
        let node = self.launch_node(&path, sockets).await?;
        match index.checked_sub(1) {
            None => {
                self.nodes.insert(prefix.to_owned(), node);
            }
            Some(i) => {
                let slot = self
                    .replicas
                    .get_mut(prefix)
                    .and_then(|r| r.get_mut(i))
                    .ok_or_else(|| {
                        KitError::Other(format!("no replica {index} of node {prefix}"))
                    })?;
                *slot = node;
            }
        }
        Ok(())
    }
}
