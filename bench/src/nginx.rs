//! nginx as a peer: a plain mTLS gRPC router in front of the same node, run under its
//! own prefix. Installed from Debian's packages when missing.

use std::{fs, path::Path, process::Command};

/// Path of the nginx binary, installing Debian's package if needed.
pub fn ensure_installed() -> anyhow::Result<String> {
    crate::apt::ensure_installed(
        "nginx",
        &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"],
    )
}

/// `nginx -v` output.
pub fn version(bin: &str) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

/// Files nginx needs.
pub struct NginxSetup<'a> {
    pub prefix: &'a Path,
    pub workers: u32,
    pub listen_port: u16,
    pub upstream_port: u16,
    pub upstream_name: &'a str,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Writes `nginx.conf` under the prefix: TLS 1.3, client certificates verified against
/// the federation CA on the way in, the gateway's certificate presented and the node's
/// verified on the way out, upstream connections kept alive, `keepalive_requests`
/// raised so long runs do not fail calls when connections are recycled.
pub fn write_config(s: &NginxSetup<'_>) -> anyhow::Result<std::path::PathBuf> {
    fs::create_dir_all(s.prefix.join("logs"))?;
    let conf = format!(
        r#"worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    upstream node {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port} ssl http2;
        ssl_protocols TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{
            grpc_pass grpcs://node;
            grpc_ssl_protocols TLSv1.3;
            grpc_ssl_certificate {cert};
            grpc_ssl_certificate_key {key};
            grpc_ssl_trusted_certificate {ca};
            grpc_ssl_verify on;
            grpc_ssl_name {upstream_name};
            grpc_ssl_server_name on;
            grpc_ssl_session_reuse on;
        }}
    }}
}}
"#,
        workers = s.workers,
        prefix = s.prefix.display(),
        upstream_port = s.upstream_port,
        listen_port = s.listen_port,
        cert = s.cert.display(),
        key = s.key.display(),
        ca = s.ca.display(),
        upstream_name = s.upstream_name,
    );
    let path = s.prefix.join("nginx.conf");
    fs::write(&path, conf)?;
    Ok(path)
}
