//! Test kit: a whole federation on loopback in one call — N regions, a fresh PKI, M
//! gateway replicas, in this process or as real child processes, with handles to stop,
//! SIGKILL and restart any member and a fault proxy on any link ([`start_with`] and
//! [`FederationSpec`]) — and gRPC clients that present any identity (or none, or a
//! foreign CA's) to it.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use tempfile::TempDir;
pub use tongban_cli::{
    fault::{FaultProxy, LinkMode},
    local::{FederationSpec, Launch, Link, LocalFederation, Member},
};
use tongban_node::platform::embedded::{SyntheticResident, synthetic_residents};
use tongban_proto::region::{RegionPrefix, RegionTable};
use tongban_runtime::{
    connector::{self, FederationConnector},
    identity::PeerIdentity,
    tls::{self, ClientSettings, TlsFiles},
};
use tonic::transport::Channel;

/// A running federation and the folder it lives in (removed on drop).
pub struct TestFederation {
    pub fed: LocalFederation,
    pub dir: TempDir,
}

/// Members as real child processes: the project's own `tongban-gateway` and
/// `tongban-node`, which `cargo test --workspace` builds beside the test binaries.
/// `log` is their `RUST_LOG`; their output goes to `<member>.log` in the federation's
/// folder.
///
/// `TONGBAN_TEST_BIN_DIR` points at other binaries, e.g. `<target>/release` to see a fault
/// test's latencies with optimized members (the suite's figures are debug builds).
pub fn processes(log: &str) -> Launch {
    // The test binary runs from target/<profile>/deps; the binaries are one folder up.
    let exe = std::env::current_exe().expect("test binary path");
    let bin_dir = match std::env::var_os("TONGBAN_TEST_BIN_DIR") {
        Some(dir) => dir.into(),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("target folder")
            .to_owned(),
    };
    Launch::Processes {
        bin_dir,
        log: log.to_owned(),
    }
}

/// The operator CLI `tongban`, which `cargo test --workspace` builds beside the test
/// binaries (they run from target/<profile>/deps).
pub fn cli_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("tongban")
}

/// Starts a gateway and one node per region code with real mTLS on 127.0.0.1.
pub async fn start(regions: &[&str]) -> TestFederation {
    start_with(regions, |_| {}).await
}

/// Like [`start`], after `adjust` has changed the spec (its folder is already set).
pub async fn start_with(
    regions: &[&str],
    adjust: impl FnOnce(&mut FederationSpec),
) -> TestFederation {
    tls::install_crypto_provider();
    // The guard lives as long as the test binary, so log lines are never cut off.
    static LOG: std::sync::OnceLock<tongban_runtime::telemetry::LogGuard> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| tongban_runtime::telemetry::init("warn"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = FederationSpec::new(dir.path(), regions).expect("spec");
    adjust(&mut spec);
    let fed = LocalFederation::start(spec)
        .await
        .expect("federation starts");
    TestFederation { fed, dir }
}

impl TestFederation {
    /// Certificate files of an identity issued by the federation's CA.
    pub fn tls_files(&self, identity: &PeerIdentity) -> TlsFiles {
        let pki = self.dir.path().join("pki");
        let stem = tongban_runtime::pki::file_stem(identity);
        TlsFiles {
            ca: pki.join("ca.pem"),
            cert: pki.join(format!("{stem}.pem")),
            key: pki.join(format!("{stem}.key")),
            crl: None,
        }
    }

    /// A channel to the gateway presenting `files`' certificate.
    pub async fn gateway_channel(
        &self,
        files: &TlsFiles,
    ) -> Result<Channel, tonic::transport::Error> {
        channel(
            &format!("https://{}", self.fed.gateway().federation_addr),
            files,
            &PeerIdentity::Gateway,
        )
        .await
    }

    /// Synthetic residents of a region, as seeded into its platform.
    pub fn residents(&self, prefix: &str) -> Vec<SyntheticResident> {
        let prefix = RegionPrefix::parse(prefix).expect("prefix");
        synthetic_residents(
            RegionTable::embedded(),
            &prefix,
            self.fed.spec().seed_residents,
        )
    }

    pub async fn shutdown(self) {
        self.fed.shutdown().await;
    }
}

/// A connected channel to `url` presenting `files`, verifying the server as `server`.
pub async fn channel(
    url: &str,
    files: &TlsFiles,
    server: &PeerIdentity,
) -> Result<Channel, tonic::transport::Error> {
    let connector =
        FederationConnector::from_files(files, server.clone()).expect("client TLS config");
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(3),
        ..ClientSettings::default()
    };
    connector::endpoint(url, &settings)
        .expect("endpoint")
        .connect_with_connector(connector)
        .await
}

/// A federation listener on loopback presenting `files`' certificate (through the
/// same accept loop as gateways and nodes) that serves gRPC health only: a stand-in
/// server for what clients check at the handshake.
pub async fn health_server(files: &TlsFiles) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (keep, config) =
        tokio::sync::watch::channel(files.server_config().expect("server TLS config"));
    let incoming = tongban_runtime::incoming::authenticated_incoming(
        listener,
        config,
        tokio::sync::watch::channel(Default::default()).1,
        Duration::from_secs(5),
        tongban_runtime::incoming::DEFAULT_MAX_HANDSHAKES,
    );
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        let _keep = keep;
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
    });
    addr
}

/// A listener on loopback that speaks TLS 1.2 only, presenting `files`' certificate
/// and asking none: the peer every federation client must refuse.
pub async fn tls12_server(files: &TlsFiles) -> std::net::SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&std::fs::read(&files.cert).expect("cert"))
            .collect::<Result<_, _>>()
            .expect("cert PEM");
    let key =
        PrivateKeyDer::from_pem_slice(&std::fs::read(&files.key).expect("key")).expect("key PEM");
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS 1.2 config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

/// Writes a certificate and key from a different CA (a stranger to the federation).
pub fn foreign_identity(dir: &Path, identity: &PeerIdentity) -> TlsFiles {
    let ca = tongban_runtime::pki::DevCa::generate("Some other CA").expect("foreign CA");
    let leaf = ca
        .issue(identity, Duration::from_secs(3600))
        .expect("foreign leaf");
    std::fs::create_dir_all(dir).expect("dir");
    let (cert, key) = tongban_runtime::pki::write_leaf(dir, identity, &leaf).expect("write");
    ca.write(dir).expect("write CA");
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
        crl: None,
    }
}

/// The path of a system tool the suite needs (Prometheus, promtool, Chromium, the
/// reflection client's Python): found on `PATH` or in the system folders, else the test
/// fails saying how to install it. `scripts/test` installs them all first
/// (`scripts/test-tools`).
pub fn system_tool(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/test-tools (scripts/test runs it)")
        })
}

/// A valid medical-treatment registration filing for `resident`.
pub fn medical_filing(resident: &SyntheticResident) -> Value {
    json!({
        "one_thing_id": "medical-treatment-registration",
        "applicant": {"id_number": resident.id.as_str(), "name": resident.name, "phone": "13800138000"},
        "form": {
            "treatment_region": "310115", "hospital_name": "复旦大学附属中山医院",
            "start_date": "2026-12-01", "reason": "异地长期居住", "contact_phone": "13800138000"
        }
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
