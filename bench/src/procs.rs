//! Processes under test and the OS's own accounting of them: CPU time from
//! `/proc/<pid>/stat`, memory from `/proc/<pid>/status`, connections from `/proc/net/tcp`.

use std::{
    fs,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every mainstream
/// architecture (the kernel ABI fixes it, independent of CONFIG_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// A child process of the benchmark.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `program` with `args`, output to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) of the process and all its descendants that are alive
    /// now (nginx's workers are children of its master). `None` when the process's own
    /// figure cannot be read (it exited, or `/proc` is not readable): never a 0 that a
    /// goal would take for "no CPU spent". A descendant that exits between being listed
    /// and being read adds nothing.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let mut total = cpu_ticks(self.pid())?;
        let mut stack = children(self.pid());
        while let Some(pid) = stack.pop() {
            total += cpu_ticks(pid).unwrap_or(0);
            stack.extend(children(pid));
        }
        Some(total as f64 / TICKS_PER_SEC)
    }

    /// The process and its live descendants.
    pub fn tree(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack = vec![self.pid()];
        while let Some(pid) = stack.pop() {
            out.push(pid);
            stack.extend(children(pid));
        }
        out
    }

    /// Resident memory (KiB) of the process tree now, and its peak. `None` when the
    /// process's own figures cannot be read (it exited, or `/proc` is not readable):
    /// never 0 MiB, which is under any memory goal. A descendant that exits between
    /// being listed and being read adds nothing.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let mut now = status_kib(self.pid(), "VmRSS:")?;
        let mut peak = status_kib(self.pid(), "VmHWM:")?;
        let mut stack = children(self.pid());
        while let Some(pid) = stack.pop() {
            now += status_kib(pid, "VmRSS:").unwrap_or(0);
            peak += status_kib(pid, "VmHWM:").unwrap_or(0);
            stack.extend(children(pid));
        }
        Some((now, peak))
    }

    /// Kills the process now and reaps it (`--target-down`).
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits up to 5 s before killing it.
    pub fn stop(mut self) {
        // Already reaped (killed on purpose, or exited and checked): its pid may be
        // another process's by now, so nothing is sent to it.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds (user + system) of process `pid` and its live descendants, each with the
/// time of the children it has already reaped (cutime, cstime): for a process whose
/// children come and go, as PostgreSQL's postmaster forks a backend per connection and
/// autovacuum workers on demand, so a child that ended mid-window still counts (its
/// time moves from the live sum into its parent's reaped time, none lost or counted
/// twice). `None` when `pid`'s own figures cannot be read (it exited, or `/proc` is not
/// readable): never a 0 that a ratio would take for "no CPU spent".
pub fn cpu_seconds_with_reaped(pid: u32) -> Option<f64> {
    let with_reaped = |pid: u32| {
        let f = stat_fields(pid)?;
        // After the name: utime(11) stime(12) cutime(13) cstime(14).
        f.get(11..15)?
            .iter()
            .map(|v| v.parse::<u64>().ok())
            .sum::<Option<u64>>()
    };
    let mut total = with_reaped(pid)?;
    let mut stack = children(pid);
    while let Some(child) = stack.pop() {
        total += with_reaped(child).unwrap_or(0);
        stack.extend(children(child));
    }
    Some(total as f64 / TICKS_PER_SEC)
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .collect()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Established TCP connections to `port` opened by the processes `owners` (matched by
/// socket inode, so other clients of the same port do not count).
pub fn connections_to(port: u16, owners: &[u32]) -> usize {
    let inodes: std::collections::HashSet<String> = owners
        .iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flatten()
        .filter_map(|e| {
            let link = fs::read_link(e.ok()?.path()).ok()?;
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let remote_port = cols
                        .get(2)
                        .and_then(|r| r.rsplit(':').next())
                        .and_then(|h| u16::from_str_radix(h, 16).ok());
                    remote_port == Some(port)
                        && cols.get(3) == Some(&"01")
                        && cols.get(9).is_some_and(|i| inodes.contains(*i))
                })
                .count()
        })
        .sum()
}

/// Waits until something accepts TCP connections at `addr`.
pub async fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not start listening on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port (bound and released; the window for a race is tiny here).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
