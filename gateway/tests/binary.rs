//! The `tongban-gateway` binary as an operator runs it: `--check`, a config error that
//! names its field, and a graceful exit on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

#[path = "../../tests/support/process.rs"]
mod process;

use tongban_runtime::{
    trust::identity::PeerIdentity,
    trust::pki::{self, DevCa},
};

fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tongban-gw-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate("binary test CA").unwrap();
    ca.write(&dir).unwrap();
    let leaf = ca
        .issue(&PeerIdentity::Gateway, Duration::from_secs(600))
        .unwrap();
    pki::write_leaf(&dir, &PeerIdentity::Gateway, &leaf).unwrap();
    std::fs::write(
        dir.join("registry.toml"),
        "[[region]]\nprefix = \"44\"\nendpoints = [\"https://127.0.0.1:9\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nregistry = \"registry.toml\"\n\
         [tls]\nca = \"ca.pem\"\ncert = \"gateway.pem\"\nkey = \"gateway.key\"\n",
    )
    .unwrap();
    dir
}

fn gateway(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongban-gateway"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    cmd
}

#[test]
fn check_validates_and_exits() {
    let dir = setup("check");
    let out = gateway(&dir.join("gateway.toml"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes)"));

    std::fs::write(
        dir.join("bad.toml"),
        "listen = \"127.0.0.1:0\"\nregistry = \"registry.toml\"\nworkers = 4\n\
         [tls]\nca = \"ca.pem\"\ncert = \"gateway.pem\"\nkey = \"gateway.key\"\n",
    )
    .unwrap();
    let out = gateway(&dir.join("bad.toml"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn a_relative_config_path_works_from_another_working_directory() {
    let dir = setup("relative");
    // The config names its files relative to its own folder; the command line names the
    // config relative to the working directory (here: the folder above it).
    let parent = dir.parent().unwrap();
    let name = dir.file_name().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tongban-gateway"))
        .current_dir(parent)
        .arg("--config")
        .arg(Path::new(name).join("gateway.toml"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes)"));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = setup("sigterm");
    let (child, lines) =
        process::spawn_until(gateway(&dir.join("gateway.toml")), "gateway serving");
    process::sigterm_exits_cleanly(child, lines, "gateway stopped");
}

#[test]
fn a_multi_threaded_gateway_also_shuts_down_gracefully() {
    let dir = setup("threads");
    let config = std::fs::read_to_string(dir.join("gateway.toml")).unwrap();
    std::fs::write(
        dir.join("threads.toml"),
        config.replace("registry = ", "worker_threads = 2\nregistry = "),
    )
    .unwrap();
    let (child, lines) =
        process::spawn_until(gateway(&dir.join("threads.toml")), "gateway serving");
    process::sigterm_exits_cleanly(child, lines, "gateway stopped");
}
