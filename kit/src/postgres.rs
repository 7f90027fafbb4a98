//! A throwaway PostgreSQL 15 cluster for tests, without Docker: Debian's binaries
//! (`scripts/test-tools` installs them), a fresh folder under `/var/tmp`, a free port
//! on 127.0.0.1, trust authentication for `postgres`. It can be stopped, restarted on
//! the same port and data, or killed, so fault tests can take the database away
//! mid-load. Dropping it stops the server and removes the folder.
//!
//! The calls block (they run `pg_ctl`, `psql`): from async code, call them through
//! `tokio::task::spawn_blocking` when the runtime must keep serving meanwhile.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Where Debian's `postgresql-15` puts its binaries.
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The system user the server runs as when the tests run as root (initdb and the
/// server refuse root).
const SYSTEM_USER: &str = "postgres";

/// What setting up or driving a cluster fails with.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL 15 is not usable here ({0}): run scripts/test-tools")]
    NotInstalled(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PostgresError + '_ {
    move |source| PostgresError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A running (or stopped) cluster in its own folder; stopped and removed on drop.
pub struct PostgresCluster {
    dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Running as root: initdb and pg_ctl go through `runuser -u postgres --`.
    as_system_user: bool,
}

impl PostgresCluster {
    /// Whether a cluster can be started here; [`PostgresCluster::why_unavailable`]
    /// says why not.
    pub fn available() -> bool {
        setup().is_ok()
    }

    /// Why no cluster can be started here, if so.
    pub fn why_unavailable() -> Option<String> {
        setup().err().map(|e| e.to_string())
    }

    /// Creates a fresh cluster under `/var/tmp` and starts it on a free loopback port.
    pub fn start() -> Result<Self, PostgresError> {
        let (bin, as_system_user) = setup()?;
        let dir = fresh_dir()?;
        // From here on, a failure drops `cluster`, which removes the folder.
        let mut cluster = Self {
            data: dir.join("data"),
            dir,
            bin,
            port: 0,
            as_system_user,
        };
        if as_system_user {
            let dir = cluster.dir.display().to_string();
            run(Command::new("chown").args(["-R", &format!("{SYSTEM_USER}:"), &dir]))?;
        }
        let data = cluster.data.display().to_string();
        run(cluster
            .server_command("initdb")
            .args(["-D", &data, "-U", "postgres", "--auth=trust"])
            .args(["-E", "UTF8", "--no-locale"]))?;
        // The port is free when picked but may be taken before the server binds it
        // (tests run in parallel): try a few.
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port().map_err(io_err(Path::new("127.0.0.1:0")))?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PostgresError::Other("no start attempted".into())))
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder: `data/`, the server's `log`, its unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a PostgreSQL binary (`psql`, `pg_dump`, …).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        let port = self.port.to_string();
        run(Command::new(self.bin("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--", name])
            .current_dir(&self.dir))
        .map(drop)
    }

    /// Runs `sql` in `database` and returns what psql prints unaligned, without
    /// headers (`-At`): one row a line, columns separated by `|`.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PostgresError> {
        let port = self.port.to_string();
        run(Command::new(self.bin("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-d", database, "-c", sql])
            .current_dir(&self.dir))
    }

    /// Stops the server (fast: open sessions are ended, data is kept).
    pub fn stop(&self) -> Result<(), PostgresError> {
        self.pg_ctl(&["stop", "-m", "fast"]).map(drop)
    }

    /// Starts the server again on the same port and data (after [`Self::stop`] or
    /// [`Self::kill`]; after a kill it recovers from its WAL first).
    pub fn start_again(&self) -> Result<(), PostgresError> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=on -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.pg_ctl(&["start", "-l", &log, "-o", &options])
            .map(drop)
            .map_err(|e| match e {
                // The reason a start failed is in the server's log, not pg_ctl's output.
                PostgresError::Command {
                    command,
                    status,
                    output,
                } => PostgresError::Command {
                    command,
                    status,
                    output: format!("{output}\nserver log:\n{}", self.log_tail()),
                },
                other => other,
            })
    }

    /// Kills the postmaster and its children with SIGKILL, as a crash would, and
    /// waits until they are gone (a restart refuses while one still holds the shared
    /// memory).
    pub fn kill(&self) -> Result<(), PostgresError> {
        let postmaster = self.postmaster_pid()?;
        let mut pids = children(postmaster);
        pids.push(postmaster);
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        // A child may exit between the listing and the kill: kill's status is moot.
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|pid| alive(pid)) {
            if Instant::now() > deadline {
                return Err(PostgresError::Other(format!(
                    "postmaster {postmaster} or a child still running 10 s after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The lock files are stale now, but a restart refuses while their pid answers
        // kill(pid, 0), which a zombie does until something reaps it (the killed
        // postmaster is an orphan: init reaps it late, or never).
        for lock in [
            self.data.join("postmaster.pid"),
            self.dir.join(format!(".s.PGSQL.{}.lock", self.port)),
        ] {
            match std::fs::remove_file(&lock) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&lock)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn postmaster_pid(&self) -> Result<u32, PostgresError> {
        let path = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| PostgresError::Other(format!("{}: no pid", path.display())))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, PostgresError> {
        let data = self.data.display().to_string();
        run(self
            .server_command("pg_ctl")
            .args(["-D", &data, "-w", "-t", "30"])
            .args(args))
    }

    /// A command for a binary that refuses root: run as the `postgres` user when root.
    fn server_command(&self, name: &str) -> Command {
        let mut command = if self.as_system_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(self.bin(name));
            c
        } else {
            Command::new(self.bin(name))
        };
        // The caller's working folder may be closed to the `postgres` user.
        command.current_dir(&self.dir);
        command
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            // Immediate: nothing needs to survive, and a stuck server must not hold
            // up the test.
            if self.pg_ctl(&["stop", "-m", "immediate"]).is_err() {
                let _ = self.kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binaries' folder, and whether the server must run as the `postgres` user.
fn setup() -> Result<(PathBuf, bool), PostgresError> {
    let bin = find_bin()?;
    let as_system_user = effective_uid()? == 0;
    if as_system_user {
        let known = Command::new("id")
            .arg(SYSTEM_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !known {
            return Err(PostgresError::NotInstalled(format!(
                "running as root and there is no `{SYSTEM_USER}` user to run the server as"
            )));
        }
    }
    Ok((bin, as_system_user))
}

/// `TONGBAN_PG_BIN` if set, else Debian's folder, else `pg_config --bindir`.
fn find_bin() -> Result<PathBuf, PostgresError> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "psql", "createdb"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("TONGBAN_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(PostgresError::NotInstalled(format!(
                "TONGBAN_PG_BIN={} lacks initdb, pg_ctl, psql or createdb",
                dir.display()
            )))
        };
    }
    let pg_config = || {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    [Some(PathBuf::from(DEBIAN_BIN)), pg_config()]
        .into_iter()
        .flatten()
        .find(|dir| complete(dir))
        .ok_or_else(|| PostgresError::NotInstalled(format!("no initdb in {DEBIAN_BIN}")))
}

/// The effective uid, from `/proc/self/status` (the crate forbids the unsafe a
/// `geteuid` call needs).
fn effective_uid() -> Result<u32, PostgresError> {
    let path = Path::new("/proc/self/status");
    let status = std::fs::read_to_string(path).map_err(io_err(path))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| PostgresError::Other("no Uid line in /proc/self/status".into()))
}

/// A new, empty folder `/var/tmp/tongban-pg-<pid>-<n>`.
fn fresh_dir() -> Result<PathBuf, PostgresError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/var/tmp/tongban-pg-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Left by an earlier process with the same pid: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The processes whose parent is `pid` (from `/proc`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // After the parenthesised name: state, then the parent's pid.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Whether process `pid` still runs (a zombie does not: nothing may reap it here).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Runs `command`, returning its stdout, or its output in the error when it fails.
fn run(command: &mut Command) -> Result<String, PostgresError> {
    let name = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PostgresError::Io {
            path: name.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(PostgresError::Command {
            command: name,
            status: out.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_survives_a_stop_and_a_kill() {
        assert!(
            PostgresCluster::available(),
            "{}",
            PostgresCluster::why_unavailable().unwrap_or_default()
        );
        let pg = PostgresCluster::start().unwrap();
        pg.create_database("tongban").unwrap();
        assert_eq!(pg.psql("tongban", "SELECT 1").unwrap().trim(), "1");
        assert_eq!(
            pg.url("tongban"),
            format!("postgres://postgres@127.0.0.1:{}/tongban", pg.port())
        );
        pg.psql(
            "tongban",
            "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
        )
        .unwrap();

        pg.stop().unwrap();
        assert!(
            pg.psql("tongban", "SELECT 1").is_err(),
            "stopped server answered"
        );
        pg.start_again().unwrap();
        assert_eq!(
            pg.psql("tongban", "SELECT v FROM t").unwrap().trim(),
            "kept"
        );

        // A crash loses nothing committed: the restart replays the WAL.
        pg.psql("tongban", "INSERT INTO t VALUES ('after')")
            .unwrap();
        pg.kill().unwrap();
        pg.start_again().unwrap();
        assert_eq!(
            pg.psql("tongban", "SELECT count(*) FROM t").unwrap().trim(),
            "2"
        );

        let dir = pg.dir().to_path_buf();
        drop(pg);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
