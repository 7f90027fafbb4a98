//! `tongban operator`: an operator's requests to a gateway's or node's operator listener,
//! made with the operator's certificate (`spiffe://tongban/operator/<name>`): reload,
//! revoke a license, flag, list and settle disputes of wrong data, list, publish and
//! adopt featured one-things, and a loopback proxy
//! for a browser to open the console through.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::json;
use tongban_gateway::config::GatewayConfig;
use tongban_node::NodeConfig;
use tongban_runtime::{
    process::shutdown::Shutdown,
    trust::{
        identity::PeerIdentity,
        operator_client::{self, Answer, OperatorClient, OperatorCredentials},
    },
};

/// Who the operator is, and which member they call.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The member: its config file (a gateway's or a node's), or its operator listener as
    /// `https://host:port` (then `--identity` and `--ca` too).
    #[arg(long)]
    pub member: String,
    /// The member's identity when `--member` is a URL: `gateway` or `region/<prefix>`.
    #[arg(long)]
    pub identity: Option<String>,
    /// The operator's certificate (PEM), naming `spiffe://tongban/operator/<name>`.
    #[arg(long, env = "TONGBAN_OPERATOR_CERT")]
    pub cert: PathBuf,
    /// The operator's private key (PEM).
    #[arg(long, env = "TONGBAN_OPERATOR_KEY")]
    pub key: PathBuf,
    /// The federation CA (PEM); by default the one the member's config names.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// What an operator does.
#[derive(clap::Subcommand, Debug)]
pub enum OperatorCommand {
    /// Reload the member's registry and TLS files (as SIGHUP does) and print the result.
    Reload {
        #[command(flatten)]
        target: Target,
        /// Apply even what a safety check refuses (a registry dropping too many regions).
        #[arg(long)]
        force: bool,
    },
    /// Revoke a license the node's region issued (irreversible), with a reason.
    Revoke {
        #[command(flatten)]
        target: Target,
        license_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Flag data recognized for a case filed at the node as wrong (异议处理): a license
    /// (`--license <id>`) or the applicant's identity (`--applicant-identity`), with a
    /// reason. The dispute goes to the issuing region.
    FlagDispute {
        #[command(flatten)]
        target: Target,
        case_number: String,
        #[arg(
            long,
            conflicts_with = "applicant_identity",
            required_unless_present = "applicant_identity"
        )]
        license: Option<String>,
        #[arg(long)]
        applicant_identity: bool,
        #[arg(long)]
        reason: String,
    },
    /// The node's disputes: those received as the issuer (its queue, open first), or
    /// with `--raised` those its windows raised.
    Disputes {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        raised: bool,
    },
    /// Settle a dispute the node received: `--corrected <new version's id>` (the old one
    /// is revoked) or `--confirmed`, with a note the flagging region reads.
    SettleDispute {
        #[command(flatten)]
        target: Target,
        /// The flagging region's 6-digit code.
        flagging_region: String,
        dispute_id: String,
        #[arg(
            long,
            conflicts_with = "confirmed",
            required_unless_present = "confirmed"
        )]
        corrected: Option<String>,
        #[arg(long)]
        confirmed: bool,
        #[arg(long)]
        note: String,
    },
    /// The three lists as the node sees them (总体清单、年度清单、特色清单): each
    /// one-thing, who offers it and whether the node's region does. `--refresh` fetches
    /// the gateway's catalog first.
    Catalog {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        refresh: bool,
    },
    /// Publish one of the node's region's featured one-things (一地创新), or a new
    /// version of it, through the gateway: `--item` is one item in the catalog's JSON
    /// form (as in `catalog/national.json`), `list` `regional_featured`.
    PublishItem {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        item: PathBuf,
    },
    /// Adopt another region's featured one-thing (全国复用): the node's region then
    /// accepts and handles it.
    AdoptItem {
        #[command(flatten)]
        target: Target,
        item_id: String,
    },
    /// Serve a plain HTTP proxy on loopback that forwards every request to the member's
    /// operator listener with the operator's certificate: open
    /// `http://<listen>/console` in a browser.
    Proxy {
        #[command(flatten)]
        target: Target,
        /// Where the proxy listens; keep it on loopback.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
    },
}

impl Target {
    /// The client this target names.
    pub fn client(&self) -> anyhow::Result<OperatorClient> {
        let (addr, identity, config_ca) = locate(&self.member, self.identity.as_deref())?;
        let ca = self
            .ca
            .clone()
            .or(config_ca)
            .context("--ca: the federation CA, needed when --member is a URL")?;
        let credentials = OperatorCredentials {
            ca,
            cert: self.cert.clone(),
            key: self.key.clone(),
        };
        OperatorClient::new(addr, identity, &credentials)
            .with_context(|| format!("operator credentials {}", self.cert.display()))
    }
}

/// The operator listener's address, the member's identity and (from a config) its CA.
fn locate(
    member: &str,
    identity: Option<&str>,
) -> anyhow::Result<(SocketAddr, PeerIdentity, Option<PathBuf>)> {
    if let Some(rest) = member.strip_prefix("https://") {
        let addr: SocketAddr = rest
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("--member {member}: expected https://<ip>:<port>"))?;
        let identity = identity
            .context("--identity: gateway or region/<prefix>, needed when --member is a URL")?;
        let identity = PeerIdentity::from_uri(&format!("spiffe://tongban/{identity}"))
            .with_context(|| format!("--identity {identity}"))?;
        return Ok((addr, identity, None));
    }
    let path = Path::new(member);
    let no_listener = || format!("{member} has no [operators] section: no operator listener");
    if let Ok(config) = NodeConfig::load(path) {
        let operators = config.operators.as_ref().with_context(no_listener)?;
        let identity = PeerIdentity::Region(config.prefix()?);
        return Ok((operators.listen, identity, Some(config.tls.ca.clone())));
    }
    match GatewayConfig::load(path) {
        Ok(config) => {
            let operators = config.operators.as_ref().with_context(no_listener)?;
            Ok((
                operators.listen,
                PeerIdentity::Gateway,
                Some(config.tls.ca.clone()),
            ))
        }
        Err(error) => bail!("--member {member}: neither a node's nor a gateway's config: {error}"),
    }
}

/// Runs an operator command.
pub async fn run(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Reload { target, force } => {
            let path = if force {
                "/reload?force=true"
            } else {
                "/reload"
            };
            let answer = target.client()?.post_json(path, &json!({})).await?;
            print_answer(&answer)
        }
        OperatorCommand::Revoke {
            target,
            license_id,
            reason,
        } => {
            let path = format!("/licenses/{license_id}/revoke");
            let answer = target
                .client()?
                .post_json(&path, &json!({ "reason": reason }))
                .await?;
            print_answer(&answer)
        }
        OperatorCommand::FlagDispute {
            target,
            case_number,
            license,
            applicant_identity: _,
            reason,
        } => {
            let body = match &license {
                Some(id) => json!({"subject": "license", "license_id": id, "reason": reason}),
                None => json!({"subject": "identity", "reason": reason}),
            };
            let path = format!("/cases/{case_number}/disputes");
            print_answer(&target.client()?.post_json(&path, &body).await?)
        }
        OperatorCommand::Disputes { target, raised } => {
            let role = if raised { "raised" } else { "received" };
            let answer = target
                .client()?
                .get(&format!("/disputes?role={role}"))
                .await?;
            print_answer(&answer)
        }
        OperatorCommand::SettleDispute {
            target,
            flagging_region,
            dispute_id,
            corrected,
            confirmed: _,
            note,
        } => {
            let body = match &corrected {
                Some(new) => {
                    json!({"outcome": "corrected", "note": note, "corrected_license_id": new})
                }
                None => json!({"outcome": "confirmed", "note": note}),
            };
            let path = format!("/disputes/{flagging_region}/{dispute_id}/settle");
            print_answer(&target.client()?.post_json(&path, &body).await?)
        }
        OperatorCommand::Catalog { target, refresh } => {
            let client = target.client()?;
            if refresh {
                print_answer(&client.post_json("/catalog/refresh", &json!({})).await?)?;
            }
            print_answer(&client.get("/catalog").await?)
        }
        OperatorCommand::PublishItem { target, item } => {
            let text = std::fs::read_to_string(&item)
                .with_context(|| format!("reading {}", item.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", item.display()))?;
            print_answer(
                &target
                    .client()?
                    .post_json("/catalog/featured", &body)
                    .await?,
            )
        }
        OperatorCommand::AdoptItem { target, item_id } => {
            // A catalog id never needs escaping; anything else would change the path.
            if !tongban_proto::rules::catalog::is_catalog_id(&item_id) {
                bail!(
                    "{item_id:?} is not a catalog item id (ASCII letters, digits, '-', '_', '.')"
                );
            }
            let path = format!("/catalog/featured/{item_id}/adopt");
            print_answer(&target.client()?.post_json(&path, &json!({})).await?)
        }
        OperatorCommand::Proxy { target, listen } => {
            let client = target.client()?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            println!(
                "operator proxy to {} on http://{addr} (console: http://{addr}/console); Ctrl-C stops it",
                client.addr()
            );
            let shutdown = Shutdown::new();
            shutdown.trigger_on_os_signals();
            operator_client::proxy(listener, client, shutdown.signal()).await?;
            Ok(())
        }
    }
}

/// Prints the answer's body; an answer other than 2xx is an error naming it.
fn print_answer(answer: &Answer) -> anyhow::Result<()> {
    let body = String::from_utf8_lossy(&answer.body);
    if !(200..300).contains(&answer.status) {
        bail!("answered {}: {}", answer.status, body.trim_end());
    }
    println!("{}", body.trim_end());
    Ok(())
}
