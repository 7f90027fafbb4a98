//! The `tongban-node` binary as a provincial team runs it: `--check`, a config error
//! that names its field, and a graceful exit on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

#[path = "../../tests/support/process.rs"]
mod process;

use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::{
    trust::identity::PeerIdentity,
    trust::pki::{self, DevCa},
};

fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tongban-node-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate("binary test CA").unwrap();
    ca.write(&dir).unwrap();
    let id = PeerIdentity::Region(RegionPrefix::parse("44").unwrap());
    let leaf = ca.issue(&id, Duration::from_secs(600)).unwrap();
    pki::write_leaf(&dir, &id, &leaf).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        "region = \"440000\"\nstore = \"node.db\"\n\
         [listen]\nfederation = \"127.0.0.1:0\"\nportal = \"127.0.0.1:0\"\n\
         [tls]\nca = \"ca.pem\"\ncert = \"region-44.pem\"\nkey = \"region-44.key\"\n\
         [gateway]\nendpoint = \"https://127.0.0.1:9\"\n\
         [platform]\nkind = \"embedded\"\ndatabase = \"platform.db\"\nseed_residents = 3\n\
         [peers]\nregistry = \"registry.toml\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("registry.toml"),
        "[[region]]\nprefix = \"44\"\nendpoints = [\"https://127.0.0.1:9\"]\n",
    )
    .unwrap();
    dir
}

fn node(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongban-node"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    cmd
}

#[test]
fn check_validates_and_exits() {
    let dir = setup("check");
    let out = node(&dir.join("node.toml"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        text.replace("seed_residents = 3", "seed_residents = \"many\""),
    )
    .unwrap();
    let out = node(&dir.join("bad.toml")).arg("--check").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("platform"), "{err}");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = setup("sigterm");
    let (child, lines) = process::spawn_until(node(&dir.join("node.toml")), "node serving");
    process::sigterm_exits_cleanly(child, lines, "node stopped");
}
