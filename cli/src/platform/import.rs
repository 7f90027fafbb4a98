//! `tongban platform import`: residents and licenses from files into the reference
//! platform's register, all or nothing, with progress on a terminal.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::bail;
use tongban_node::platform::{
    embedded::{EmbeddedPlatform, ImportError, ImportFiles, ImportFormat},
    reference::{ReferenceConfig, state::read_or_make_key},
};

/// Imports the files named into the platform of `config`.
pub async fn run(
    config: &Path,
    residents: Option<PathBuf>,
    licenses: Option<PathBuf>,
    format: Option<&str>,
) -> anyhow::Result<()> {
    if residents.is_none() && licenses.is_none() {
        bail!("name a file to import: --residents FILE and/or --licenses FILE");
    }
    let config = ReferenceConfig::load(config)?;
    let key = read_or_make_key(&config.id_hash_key_file)?;
    let platform = EmbeddedPlatform::open(&config.database, &config.region)?;
    let files = ImportFiles {
        residents,
        licenses,
        format: format.and_then(ImportFormat::parse),
    };
    let terminal = std::io::stderr().is_terminal();
    if terminal {
        eprintln!("checking every row…");
    }
    let mut shown = None;
    let result = platform
        .import(files, key.into(), move |done, total| {
            if !terminal || total == 0 {
                return;
            }
            let percent = done * 100 / total;
            if shown != Some(percent) {
                shown = Some(percent);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\rwriting: {percent:3}% ({done}/{total})");
                if done == total {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
        })
        .await;
    match result {
        Ok(summary) => {
            println!(
                "imported {} residents and {} licenses into {}",
                summary.residents,
                summary.licenses,
                config.database.display()
            );
            Ok(())
        }
        Err(ImportError::Rows { problems, total }) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            if total > problems.len() {
                eprintln!("… and {} more", total - problems.len());
            }
            bail!("nothing was imported: {total} problem(s) in the files (see above)")
        }
        Err(other) => Err(other).map_err(|e| anyhow::anyhow!("nothing was imported: {e}")),
    }
}
