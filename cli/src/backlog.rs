//! `tongban backlog`: the outbox backlog of one or more nodes, per target province, read
//! from each node's admin `/metrics` (the same series Prometheus scrapes and the console
//! shows): entries pending, those blocked by a configuration refusal, the oldest one's
//! age, dead letters (refused for good; `tongban outbox` lists, replays and closes
//! them), and the pending entries whose attempts so far failed.

use std::path::Path;

use anyhow::Context;
use tongban_gateway::console::{
    reading::Reading,
    view::{Backlog, backlog},
};
use tongban_node::{NodeConfig, portal_client::PortalClient};

/// Where a node's admin listener is: `http://host:port`, or a node config file naming it.
pub(crate) fn admin_base(node: &str) -> anyhow::Result<String> {
    if node.starts_with("http://") {
        return Ok(node.trim_end_matches('/').to_owned());
    }
    let config = NodeConfig::load(Path::new(node)).with_context(|| format!("node {node}"))?;
    let admin = config
        .listen
        .admin
        .with_context(|| format!("{node} has no listen.admin: its backlog is not served"))?;
    Ok(format!("http://{admin}"))
}

async fn read(base: &str) -> anyhow::Result<Reading> {
    let answer = PortalClient::new(base)
        .get("/metrics")
        .await
        .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
    anyhow::ensure!(
        answer.status == 200,
        "{base}/metrics answered {}",
        answer.status
    );
    let text = answer
        .body
        .as_str()
        .with_context(|| format!("{base}/metrics is not text"))?;
    Ok(Reading::parse(text)?)
}

/// Prints the backlog of `nodes`; `Ok(false)` if any could not be read.
pub async fn run(nodes: &[String]) -> anyhow::Result<bool> {
    let mut rows = Vec::new();
    let mut all_read = true;
    for node in nodes {
        let base = admin_base(node)?;
        match read(&base).await {
            Ok(r) => {
                let targets = backlog(&r);
                if targets.is_empty() {
                    rows.push((base.clone(), Backlog::default()));
                }
                rows.extend(targets.into_iter().map(|t| (base.clone(), t)));
            }
            Err(error) => {
                all_read = false;
                println!("{base}  unreachable: {error:#}");
            }
        }
    }
    println!(
        "{:<28} {:<7} {:>8} {:>8} {:>12} {:>6} {:>8}",
        "node", "target", "pending", "blocked", "oldest (s)", "dead", "failing"
    );
    for (node, b) in &rows {
        let target = if b.target.is_empty() { "-" } else { &b.target };
        println!(
            "{:<28} {:<7} {:>8} {:>8} {:>12.1} {:>6} {:>8}",
            node, target, b.pending, b.blocked, b.oldest_seconds, b.failed, b.failing
        );
    }
    Ok(all_read)
}
