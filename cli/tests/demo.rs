//! `tongban demo` as a new user runs it: a folder relative to the working directory,
//! configs that can be reused by hand, a folder it did not make left alone, and a clean
//! stop on Ctrl-C.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tongban_gateway::GatewayConfig;
use tongban_node::NodeConfig;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tongban-demo-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the demo's output says "N of N scenarios ended as expected".
fn all_scenarios_as_expected(text: &str) -> bool {
    text.lines().any(|line| {
        let Some(counts) = line.strip_suffix(" scenarios ended as expected.") else {
            return false;
        };
        let mut parts = counts.trim().split(" of ");
        matches!((parts.next(), parts.next()), (Some(a), Some(b)) if a == b && a != "0")
    })
}

/// A child process killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn demo(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongban"));
    cmd.current_dir(cwd).arg("demo");
    cmd
}

#[test]
fn once_with_a_relative_dir_writes_configs_that_can_be_rerun_by_hand() {
    let cwd = scratch("relative");
    let out = demo(&cwd)
        .args(["--once", "--dir", "work/demo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all_scenarios_as_expected(&stdout), "{stdout}");

    // The generated configs name their files relative to their folder: no absolute
    // path in them, and each loads (from any working directory) to files that exist.
    let folder = cwd.join("work/demo");
    let gateway_toml = std::fs::read_to_string(folder.join("gateway.toml")).unwrap();
    assert!(
        !gateway_toml.contains(cwd.to_str().unwrap()),
        "{gateway_toml}"
    );
    let gateway = GatewayConfig::load(&folder.join("gateway.toml")).unwrap();
    for path in [
        &gateway.registry,
        &gateway.tls.ca,
        &gateway.tls.cert,
        &gateway.tls.key,
    ] {
        assert!(path.is_absolute() && path.exists(), "{}", path.display());
    }
    for prefix in ["11", "31", "44"] {
        let path = folder.join(format!("node-{prefix}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(cwd.to_str().unwrap()), "{text}");
        let node = NodeConfig::load(&path).unwrap();
        assert_eq!(
            node.store.sqlite_path(),
            Some(folder.join(format!("node-{prefix}.db")).as_path())
        );
        assert!(node.tls.cert.exists());
    }

    // A second run reuses (wipes) its own folder.
    let again = demo(&cwd)
        .args(["--once", "--dir", "work/demo"])
        .output()
        .unwrap();
    assert!(again.status.success());
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn a_folder_the_demo_did_not_make_is_refused_and_kept() {
    let cwd = scratch("foreign");
    std::fs::write(cwd.join("notes.txt"), "mine").unwrap();
    let out = demo(&cwd).args(["--once", "--dir", "."]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to wipe"), "{err}");
    assert_eq!(
        std::fs::read_to_string(cwd.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn without_once_it_runs_until_ctrl_c_and_stops_cleanly() {
    let cwd = scratch("ctrl-c");
    let mut child = KillOnDrop(
        demo(&cwd)
            .args(["--dir", "demo"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the demo did not start running: {seen:#?}"));
        let running = line.contains("keeps running");
        seen.push(line);
        if running {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| all_scenarios_as_expected(l)),
        "{seen:#?}"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    std::thread::sleep(Duration::from_millis(100));
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("Shutting down")), "{rest:?}");
    std::fs::remove_dir_all(&cwd).unwrap();
}
