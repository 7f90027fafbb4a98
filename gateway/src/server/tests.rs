//! The assembled gateway with a shared revocation log: `/readyz` waits for the log and
//! names it while it cannot be read; `/metrics` shows the follower.

use std::{path::PathBuf, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tongban_runtime::{
    process::shutdown::Shutdown,
    trust::{
        identity::PeerIdentity,
        pki::{self, DevCa},
        tls::{ClientSettings, TlsFiles},
    },
};

use super::{Gateway, GatewayListeners};
use crate::{
    config::{AuditSettings, GatewayConfig, RevocationLogSettings},
    test_support::{postgres::TestDatabase, unique_number},
};

/// A gateway config in a fresh folder (certificates, a registry), with `log`.
fn config(log: RevocationLogSettings) -> (GatewayConfig, PathBuf) {
    tongban_runtime::trust::tls::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!(
        "tongban-gateway-server-{}-{}",
        std::process::id(),
        unique_number()
    ));
    let ca = DevCa::generate("server test CA").unwrap();
    ca.write(&dir).unwrap();
    let leaf = ca
        .issue(&PeerIdentity::Gateway, Duration::from_secs(600))
        .unwrap();
    let (cert, key) = pki::write_leaf(&dir, &PeerIdentity::Gateway, &leaf).unwrap();
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
        "[[region]]\nprefix = \"44\"\nendpoints = [\"https://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: TlsFiles {
            ca: dir.join("ca.pem"),
            cert,
            key,
            crl: Some(dir.join("crl.pem")),
        },
        registry,
        catalog: None,
        catalog_ledger: None,
        sharing_list: None,
        upstream: ClientSettings::default(),
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
        recognition: Default::default(),
        telemetry: Default::default(),
        limits: Default::default(),
        console: Default::default(),
        audit: AuditSettings::at(&dir.join("audit.log").display().to_string()),
        revocation_log: Some(log),
        reload: Default::default(),
        operators: None,
    };
    (config, dir)
}

/// Serves `config`; its admin address.
async fn serve(config: GatewayConfig, shutdown: &Shutdown) -> std::net::SocketAddr {
    let gateway = Gateway::new(config.clone()).unwrap();
    let listeners = GatewayListeners::bind(&config).await.unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    tokio::spawn(gateway.serve(listeners, shutdown.signal()));
    admin
}

/// `GET path` on the admin listener: status line and body.
async fn get(admin: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn readyz_until(admin: std::net::SocketAddr, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(admin, "/readyz").await;
        if answer.contains(wanted) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never said {wanted:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_gateway_is_ready_once_its_revocation_log_is_loaded() {
    let db = TestDatabase::create().await;
    let (config, dir) = config(db.log_settings("gw-0", Duration::from_millis(200)));
    let shutdown = Shutdown::new();
    let admin = serve(config, &shutdown).await;
    let ready = readyz_until(admin, "200 OK").await;
    assert!(ready.ends_with("ready\n"), "{ready}");
    let metrics = get(admin, "/metrics").await;
    for name in [
        "tongban_gateway_revocation_log_sequence 0",
        "tongban_gateway_revocation_log_read_failures_total 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_gateway_whose_revocation_log_cannot_be_read_is_not_ready_and_says_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut log =
        RevocationLogSettings::new(format!("postgres://gateway@127.0.0.1:{closed}/tongban"));
    log.database.pool.acquire_timeout = Duration::from_millis(200);
    log.poll_interval = Duration::from_millis(100);
    let (config, dir) = config(log);
    let shutdown = Shutdown::new();
    let admin = serve(config, &shutdown).await;
    let answer = readyz_until(admin, "not loaded yet: ").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(&format!(
            "revocation_log: revocation log postgres://gateway@127.0.0.1:{closed}/tongban"
        )),
        "{answer}"
    );
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(dir);
}
