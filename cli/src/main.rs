//! `tongban`: development PKI, the local-federation demo, the outbox backlog and dead
//! letters, the reference platform, and backups of a node's state.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::{
    observability::logs,
    process::shutdown::Shutdown,
    trust::identity::PeerIdentity,
    trust::operator::OperatorName,
    trust::pki::{self, DevCa},
    trust::tls,
};

mod backlog;
mod demo;
mod operator;
mod outbox;
mod platform;
mod store;

/// Tongban operator tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a development federation CA (or reuse one) and issue leaf certificates for
    /// the gateway and for nodes by region prefix. For development and tests only;
    /// production federations use their own CA.
    Certs {
        /// Output folder: ca.pem, ca.key, gateway.pem/.key, region-<prefix>.pem/.key.
        #[arg(long, default_value = "var/pki")]
        out: PathBuf,
        /// Region prefixes to issue node certificates for (2, 4 or 6 digits).
        #[arg(long, value_delimiter = ',', default_value = "11,31,44")]
        regions: Vec<String>,
        /// Operators to issue client certificates for (`operator-<name>.pem`, URI SAN
        /// `spiffe://tongban/operator/<name>`); list them in a process's
        /// `[operators.roster]` with a role.
        #[arg(long, value_delimiter = ',')]
        operators: Vec<String>,
        /// Also issue a gateway certificate.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        gateway: bool,
        /// Leaf validity in days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Start a local federation (dev CA, gateway, nodes on loopback), file cross-region
    /// applications through the portal API, print what happened, and keep running
    /// until Ctrl-C.
    Demo {
        /// Run the scenario once and exit: 0 if every outcome was as expected.
        #[arg(long)]
        once: bool,
        /// Working folder for certificates, configs and databases, relative to the
        /// working directory. Wiped at start if an earlier demo made it; a non-empty
        /// folder the demo did not make is refused. The configs written there name
        /// their files relative to it, so it can be run by hand afterwards.
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
        /// Node regions (6-digit GB/T 2260 codes).
        #[arg(long, value_delimiter = ',', default_value = "110000,310000,440000")]
        regions: Vec<String>,
        /// Regions (by prefix) whose node stands in front of a province platform over
        /// the HTTP contract: a reference platform run as a `tongban platform serve`
        /// process of its own, with the province's own PKI, mutual TLS and HMAC
        /// signatures. The others use embedded platforms. `--http-platforms ''` for none.
        #[arg(long, value_delimiter = ',', default_value = "44")]
        http_platforms: Vec<String>,
        /// Log level for the federation's own logs while the demo runs (the table is
        /// the demo's output; `info` shows every filing, relay and delivery).
        #[arg(long, default_value = "error")]
        log: String,
    },
    /// Show nodes' outbox backlog per target province (pending, blocked by a
    /// configuration refusal, oldest age, dead letters), read from each node's admin
    /// `/metrics`.
    Backlog {
        /// A node's admin URL (`http://127.0.0.1:9044`) or its config file; repeatable.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
    },
    /// The gateway's audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// A node's dead letters (outbox entries refused for good): list, replay or close,
    /// as an operator (`--member` the node's config file, `--cert`/`--key` the
    /// operator's certificate).
    Outbox {
        #[command(flatten)]
        target: operator::Target,
        #[command(subcommand)]
        action: Option<outbox::Action>,
    },
    /// An operator's requests to a gateway or a node: reload, revoke, the console proxy.
    Operator {
        #[command(subcommand)]
        command: operator::OperatorCommand,
    },
    /// Back up or restore a node's state.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// A province's platform: serve the reference platform, import into its register.
    Platform {
        #[command(subcommand)]
        command: platform::PlatformCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AuditAction {
    /// Checks a trail (the gateway's or a node's): its hash chain and every signed
    /// checkpoint. Exits non-zero, naming the first line, if a record was edited,
    /// deleted or moved, a checkpoint does not hold, or a given checkpoint is gone.
    Verify {
        file: PathBuf,
        /// The federation CA (PEM): checkpoint signers must hold its certificates.
        /// Without it, signatures are checked against the certificates they carry only.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// A checkpoint known from elsewhere (the writer logs each one), as
        /// `<covers>:<head>`: the trail must still hold it (shows records cut off the end).
        #[arg(long)]
        checkpoint: Option<String>,
    },
}

/// `tongban audit verify`.
fn audit_verify(file: &Path, ca: Option<&Path>, checkpoint: Option<&str>) -> anyhow::Result<()> {
    use tongban_runtime::{audit::checkpoint, audit::verify};
    let anchors = ca
        .map(checkpoint::anchors)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let expected = checkpoint
        .map(|c| {
            c.split_once(':')
                .and_then(|(n, head)| Some((n.parse::<u64>().ok()?, head)))
                .context("--checkpoint must be <covers>:<head>")
        })
        .transpose()?;
    match verify::verify(file, anchors.as_ref(), expected) {
        Ok(v) => {
            println!("{}: {} records, chain intact", file.display(), v.records);
            if v.gaps > 0 {
                // The chain holds, but the record of calls is incomplete: say so.
                println!(
                    "GAPS: {} gap markers state {} records lost ({} dropped on a full \
                     queue, {} lost to failed writes)",
                    v.gaps,
                    v.lost.total(),
                    v.lost.dropped,
                    v.lost.unwritten
                );
            }
            match &v.last_checkpoint {
                None => println!("no signed checkpoint yet"),
                Some((covers, head)) => {
                    let signers: Vec<&str> = v.signers.iter().map(String::as_str).collect();
                    println!(
                        "{} signed checkpoints hold ({}, by {}); the last covers {covers} \
                         records, head {head}",
                        v.checkpoints,
                        if anchors.is_some() {
                            "signers' certificates checked against the CA"
                        } else {
                            "signers' certificates not checked: pass --ca"
                        },
                        signers.join(", ")
                    );
                    let after = v.records.saturating_sub(covers + 1);
                    if after > 0 {
                        println!("{after} records after it are not covered by a signature yet");
                    }
                }
            }
            Ok(())
        }
        Err(verify::ChainBreak::Io(error)) => bail!("cannot read the trail: {error}"),
        Err(broken) => bail!("{}: chain broken: {broken}", file.display()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tls::install_crypto_provider();
    match args.command {
        Command::Certs {
            out,
            regions,
            operators,
            gateway,
            days,
        } => {
            let _log = logs::init("info");
            certs(&out, &regions, gateway, days)?;
            operator_certs(&out, &operators, days)
        }
        Command::Backlog { nodes } => {
            if !backlog::run(&nodes).await? {
                bail!("some nodes could not be read (see above)");
            }
            Ok(())
        }
        Command::Outbox { target, action } => outbox::run(&target, action).await,
        Command::Operator { command } => operator::run(command).await,
        Command::Platform { command } => platform::run(command).await,
        Command::Store { command } => store::run(command).await,
        Command::Audit {
            action:
                AuditAction::Verify {
                    file,
                    ca,
                    checkpoint,
                },
        } => audit_verify(&file, ca.as_deref(), checkpoint.as_deref()),

        Command::Demo {
            once,
            dir,
            regions,
            http_platforms,
            log,
        } => {
            let _log = logs::init(&log);
            let shutdown = Shutdown::new();
            shutdown.trigger_on_os_signals();
            let http_platforms: Vec<String> = http_platforms
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            let ok = demo::run(&dir, &regions, &http_platforms, once, shutdown.signal()).await?;
            if !ok {
                bail!("the demo scenario did not end as expected (see the table above)");
            }
            Ok(())
        }
    }
}

/// The secret a region's portal proves access-log inquiries with (`[access_log]
/// portal_secret`): 32 random bytes, mode 0600, kept if it exists.
fn portal_secret(out: &Path, prefix: &str) -> anyhow::Result<()> {
    let path = out.join(format!("portal-{prefix}.key"));
    if path.exists() {
        return Ok(());
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    std::fs::write(&path, secret).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    println!("portal secret for {prefix} -> {}", path.display());
    Ok(())
}

/// Issues each operator's client certificate with the CA `certs` made or reused.
fn operator_certs(out: &Path, operators: &[String], days: u64) -> anyhow::Result<()> {
    if operators.is_empty() {
        return Ok(());
    }
    let ca = DevCa::load(
        &std::fs::read_to_string(out.join("ca.pem"))?,
        &std::fs::read_to_string(out.join("ca.key"))?,
    )
    .context("loading the CA")?;
    for name in operators {
        let parsed = OperatorName::parse(name).map_err(|e| anyhow::anyhow!("--operators: {e}"))?;
        let leaf = ca.issue_operator(&parsed, Duration::from_secs(days * 24 * 3600))?;
        let (cert, _) = pki::write_named_leaf(out, &format!("operator-{name}"), &leaf)?;
        println!("issued {} -> {}", parsed.uri(), cert.display());
    }
    Ok(())
}

fn certs(out: &PathBuf, regions: &[String], gateway: bool, days: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (ca_cert, ca_key) = (out.join("ca.pem"), out.join("ca.key"));
    let ca = if ca_cert.exists() && ca_key.exists() {
        let ca = DevCa::load(
            &std::fs::read_to_string(&ca_cert)?,
            &std::fs::read_to_string(&ca_key)?,
        )
        .context("loading the existing CA")?;
        println!("reusing CA {}", ca_cert.display());
        ca
    } else {
        let ca = DevCa::generate("Tongban development federation CA")?;
        ca.write(out)?;
        println!("created CA {}", ca_cert.display());
        ca
    };
    let validity = Duration::from_secs(days * 24 * 3600);
    let mut identities = Vec::new();
    if gateway {
        identities.push(PeerIdentity::Gateway);
    }
    for r in regions {
        let prefix = RegionPrefix::parse(r).with_context(|| format!("--regions {r:?}"))?;
        identities.push(PeerIdentity::Region(prefix));
    }
    for identity in identities {
        let leaf = ca.issue(&identity, validity)?;
        let (cert, _) = pki::write_leaf(out, &identity, &leaf)?;
        println!(
            "issued {identity} -> {} (DNS {})",
            cert.display(),
            identity.dns_name()
        );
        // A node also signs what its region issues, with a key apart from its TLS key;
        // an existing one is kept (its public key is registered at the gateway).
        if let PeerIdentity::Region(prefix) = identity {
            portal_secret(out, &prefix.to_string())?;
            let key_id = format!("{prefix}-k1");
            let pub_path = out.join(format!("issuer-{key_id}.pub"));
            let key_path = out.join(format!("issuer-{key_id}.key"));
            if key_path.exists() && pub_path.exists() {
                println!("reusing issuer key {}", key_path.display());
            } else {
                let key = pki::IssuerKey::generate(&key_id)?;
                key.write(out)?;
                std::fs::write(&pub_path, format!("{}\n", key.public_key_hex()))
                    .with_context(|| format!("writing {}", pub_path.display()))?;
                println!(
                    "issuer key {key_id} -> {} (public key {})",
                    key_path.display(),
                    pub_path.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are well formed (clap checks names, conflicts and
    /// requirements only when a command is parsed, in debug builds): a clash would
    /// otherwise show first to an operator.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Args::command().debug_assert();
    }
}
