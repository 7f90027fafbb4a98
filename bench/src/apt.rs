//! Peers come from Debian's packages: found where the package puts them, or installed
//! with `apt-get` when missing, so a fresh machine runs the whole comparison.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, bail};

/// The first of `paths` that exists, installing Debian's `package` if none does.
pub fn ensure_installed(package: &str, paths: &[&str]) -> anyhow::Result<String> {
    if let Some(path) = find(paths) {
        return Ok(path);
    }
    eprintln!("{package} not found: installing Debian's {package} package ...");
    // Keep the package's post-install from starting a system service (nginx on port 80,
    // haproxy under its packaged config) beside the processes under test.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let had_policy = policy.exists();
    if !had_policy {
        fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        set_executable(policy)?;
    }
    let update = Command::new("apt-get").args(["update", "-qq"]).status();
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !had_policy {
        let _ = fs::remove_file(policy);
    }
    update.context("apt-get update")?;
    if !install
        .with_context(|| format!("apt-get install {package}"))?
        .success()
    {
        bail!("apt-get install {package} failed");
    }
    find(paths).with_context(|| format!("{package} still not found after installing it"))
}

fn find(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}
