//! HAProxy as a second peer: an mTLS gRPC router in `mode http` in front of the same
//! node, HTTP/2 on both sides, one process in the foreground. Installed from Debian's
//! packages when missing.

use std::{fs, path::Path, process::Command};

use anyhow::Context;

/// Path of the haproxy binary, installing Debian's package if needed.
pub fn ensure_installed() -> anyhow::Result<String> {
    crate::apt::ensure_installed(
        "haproxy",
        &[
            "/usr/sbin/haproxy",
            "/usr/local/sbin/haproxy",
            "/usr/bin/haproxy",
        ],
    )
}

/// First line of `haproxy -v` (the rest is the project's banner).
pub fn version(bin: &str) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Arguments that keep HAProxy in the foreground as a single process (no daemon, no
/// master), so the pid the benchmark starts is the one serving and its CPU is read from
/// `/proc` like nginx's process tree.
pub fn args(config: &Path) -> anyhow::Result<Vec<String>> {
    let config = config.to_str().context("utf-8 path")?;
    Ok(vec!["-db".into(), "-f".into(), config.into()])
}

/// Files HAProxy needs.
pub struct HaproxySetup<'a> {
    pub dir: &'a Path,
    pub threads: u32,
    pub listen_port: u16,
    pub upstream_port: u16,
    pub upstream_name: &'a str,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Writes `haproxy.cfg` and the gateway's certificate and key as one PEM (HAProxy's `crt`
/// takes both from one file) into `dir`: TLS 1.3, client certificates verified against
/// the federation CA on the way in, the gateway's certificate presented and the node's
/// verified by name on the way out, HTTP/2 to the node with connections reused across
/// client connections, timeouts long enough that no connection is cut between rounds,
/// and no logging (nginx runs with `access_log off` too). HAProxy checks the node's
/// certificate against the SNI name when one is sent and against `verifyhost` when not;
/// both name the node, so either way a wrong certificate fails the call (503).
pub fn write_config(s: &HaproxySetup<'_>) -> anyhow::Result<std::path::PathBuf> {
    fs::create_dir_all(s.dir)?;
    let bundle = s.dir.join("gateway-cert-key.pem");
    let mut pem = fs::read_to_string(s.cert)?;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(&fs::read_to_string(s.key)?);
    write_secret(&bundle, &pem)?;
    let conf = format!(
        r#"global
    nbthread {threads}
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode http
    no log
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-request 1h
    timeout http-keep-alive 1h

frontend federation
    bind 127.0.0.1:{listen_port} ssl crt {bundle} ca-file {ca} verify required alpn h2
    default_backend node

backend node
    http-reuse always
    server node 127.0.0.1:{upstream_port} ssl crt {bundle} ca-file {ca} verify required verifyhost {name} sni str({name}) alpn h2 proto h2
"#,
        threads = s.threads,
        listen_port = s.listen_port,
        upstream_port = s.upstream_port,
        bundle = bundle.display(),
        ca = s.ca.display(),
        name = s.upstream_name,
    );
    let path = s.dir.join("haproxy.cfg");
    fs::write(&path, conf)?;
    Ok(path)
}

/// The bundle holds the gateway's private key: readable by the owner only, like
/// `pki::write_leaf`'s `.key` files.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
