//! `tongban backlog`: the outbox backlog of one or more nodes, per target province, read
//! from each node's admin `/metrics` (the same series Prometheus scrapes and the console
//! shows): entries pending, the oldest one's age, entries refused for good.

use std::path::Path;

use anyhow::Context;
use tongban_gateway::console::reading::Reading;
use tongban_node::{NodeConfig, portal_client::PortalClient};

/// Where a node's admin listener is: `http://host:port`, or a node config file naming it.
fn admin_base(node: &str) -> anyhow::Result<String> {
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

/// One row of the table.
struct Row {
    node: String,
    target: String,
    pending: f64,
    oldest_seconds: f64,
    failed: f64,
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
                let target =
                    |l: &std::collections::BTreeMap<String, String>| l.get("target").cloned();
                let pending = r.group("tongban_node_outbox_pending", target);
                let oldest = r.group("tongban_node_outbox_oldest_pending_seconds", target);
                let failed = r.group("tongban_node_outbox_failed", target);
                let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| {
                    m.get(k).copied().unwrap_or(0.0)
                };
                let mut targets: Vec<&String> = pending.keys().chain(failed.keys()).collect();
                targets.sort();
                targets.dedup();
                if targets.is_empty() {
                    rows.push(Row {
                        node: base.clone(),
                        target: "-".into(),
                        pending: 0.0,
                        oldest_seconds: 0.0,
                        failed: 0.0,
                    });
                }
                for t in targets {
                    rows.push(Row {
                        node: base.clone(),
                        target: t.clone(),
                        pending: get(&pending, t),
                        oldest_seconds: get(&oldest, t),
                        failed: get(&failed, t),
                    });
                }
            }
            Err(error) => {
                all_read = false;
                println!("{base}  unreachable: {error:#}");
            }
        }
    }
    println!(
        "{:<28} {:<7} {:>8} {:>12} {:>8}",
        "node", "target", "pending", "oldest (s)", "failed"
    );
    for r in &rows {
        println!(
            "{:<28} {:<7} {:>8} {:>12.1} {:>8}",
            r.node, r.target, r.pending, r.oldest_seconds, r.failed
        );
    }
    Ok(all_read)
}
