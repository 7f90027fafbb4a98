//! Running a project binary as an operator would, shared by the binary tests of the
//! gateway and node crates (included with `#[path]`, since those tests need their own
//! crate's `CARGO_BIN_EXE_*`).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

/// Starts `cmd` and waits until its stdout shows a line containing `ready`.
pub fn spawn_until(mut cmd: Command, ready: &str) -> (Child, Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(ready) => return (child, rx),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no {ready:?} line within 20 s");
            }
        }
    }
}

/// Sends SIGTERM and asserts a clean exit within 10 s whose last lines contain `farewell`.
pub fn sigterm_exits_cleanly(mut child: Child, lines: Receiver<String>, farewell: &str) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    // The reader thread may still be draining the pipe.
    std::thread::sleep(Duration::from_millis(100));
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains(farewell)), "{rest:?}");
}
