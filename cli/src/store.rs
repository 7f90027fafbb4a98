//! `tongban store backup|restore`: a node's state copied with its database's own tools
//! (see `tongban_node::backup`), the keyed-hash secret and the embedded register with it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tongban_node::{
    backup::{self, PgTools},
    config::NodeConfig,
};

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Back up a node's state (it may keep running) into a new folder: the store
    /// (SQLite's online backup, or pg_dump), the embedded platform's register if the
    /// node runs one, and a manifest with the keyed-hash secret's fingerprint.
    Backup {
        /// The node's config file (its [store] and [platform] say what to copy).
        #[arg(long)]
        node_config: PathBuf,
        /// The folder to write; must be new or empty.
        #[arg(long)]
        out: PathBuf,
        /// The folder holding pg_dump (default: PATH, then /usr/lib/postgresql/*/bin).
        #[arg(long)]
        pg_bin: Option<PathBuf>,
    },
    /// Restore a backup into the databases a node's config names, which must be new (an
    /// absent SQLite file, an empty PostgreSQL database); the node must be stopped.
    Restore {
        #[arg(long)]
        node_config: PathBuf,
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// The folder holding pg_restore.
        #[arg(long)]
        pg_bin: Option<PathBuf>,
    },
}

pub async fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Backup {
            node_config,
            out,
            pg_bin,
        } => {
            let config = NodeConfig::load(&node_config)?;
            let tools = PgTools { bin_dir: pg_bin };
            let manifest = backup::backup(&config, &out, &tools)
                .await
                .with_context(|| format!("backing up into {}", out.display()))?;
            println!(
                "backed up region {}'s {} store into {} (keyed-hash secret {})",
                manifest.region,
                manifest.store_kind,
                out.display(),
                manifest.id_hash_key_fingerprint
            );
        }
        StoreCommand::Restore {
            node_config,
            from,
            pg_bin,
        } => {
            let config = NodeConfig::load(&node_config)?;
            let tools = PgTools { bin_dir: pg_bin };
            let manifest = backup::restore(&config, &from, &tools)
                .await
                .with_context(|| format!("restoring from {}", from.display()))?;
            println!(
                "restored region {}'s {} store from {} (keyed-hash secret {} checked)",
                manifest.region,
                manifest.store_kind,
                from.display(),
                manifest.id_hash_key_fingerprint
            );
        }
    }
    Ok(())
}
