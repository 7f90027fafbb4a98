//! `tongban platform`: the reference platform (the embedded platform served over the
//! published platform contract) and what a provincial team does with it: serve it,
//! import residents and licenses into its register, and check a platform (its own or
//! the reference one) against the contract with the conformance kit.

use std::path::PathBuf;

use clap::Subcommand;

mod conformance;
mod import;
mod serve;

/// What `tongban platform` does.
#[derive(Subcommand, Debug)]
pub enum PlatformCommand {
    /// Serve the reference platform: the contract (HTTPS when [tls] is configured,
    /// with the configured authentication) and the clerk's API, until Ctrl-C or
    /// SIGTERM. Prints the bound addresses.
    Serve {
        /// The platform's config file (TOML; see `tongban_node::platform::reference::config`).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and the files it names, then exit without serving.
        #[arg(long)]
        check: bool,
        /// Log level (`RUST_LOG` overrides).
        #[arg(long, default_value = "info")]
        log: String,
    },
    /// Import residents and licenses into the platform's register from CSV (a header
    /// row) or JSON (an array of objects) files. All or nothing: every row is checked
    /// first, and one bad row imports nothing; each bad row is named by line and field.
    Import {
        /// The platform's config file (its database, region and hash key are used).
        #[arg(long)]
        config: PathBuf,
        /// Residents: id_number, name, assurance_level (low|substantial|high, optional).
        #[arg(long)]
        residents: Option<PathBuf>,
        /// Licenses: license_type, holder_id_number, holder_name, issuing_region,
        /// valid_from, valid_until (optional), fields (a JSON object), license_id
        /// (optional; made when absent).
        #[arg(long)]
        licenses: Option<PathBuf>,
        /// The files' format, when their names (.csv, .json) do not say.
        #[arg(long, value_parser = ["csv", "json"])]
        format: Option<String>,
    },
    /// Run the conformance kit against a platform (yours, or the reference one), with
    /// no federation running: numbered checks of the contract, each passed or failed
    /// with what was sent and what came back. Exits 0 when every check passed, 1 when
    /// one failed, 2 when the kit's own options or files are wrong.
    Conformance(Box<conformance::ConformanceArgs>),
}

/// Runs a `tongban platform` command.
pub async fn run(command: PlatformCommand) -> anyhow::Result<()> {
    match command {
        PlatformCommand::Serve { config, check, log } => serve::run(&config, check, &log).await,
        PlatformCommand::Import {
            config,
            residents,
            licenses,
            format,
        } => import::run(&config, residents, licenses, format.as_deref()).await,
        PlatformCommand::Conformance(args) => conformance::run(*args).await,
    }
}
