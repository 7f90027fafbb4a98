//! The `tongban-gateway` binary as an operator runs it: `--check`, a config error that
//! names its field, and a graceful exit on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tongban_runtime::{
    identity::PeerIdentity,
    pki::{self, DevCa},
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
fn sigterm_shuts_down_gracefully() {
    let dir = setup("sigterm");
    let mut child = gateway(&dir.join("gateway.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap();
        if line.contains("gateway serving") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("gateway stopped")),
        "{rest:?}"
    );
}
