//! The trust lifecycle over real mTLS on loopback: TLS 1.3 only in every direction
//! (against peers that speak 1.2 only), the gateway's identity checked by URI SAN from
//! the node's side, certificates reissued and reloaded under load with no call failed,
//! and a revoked certificate refused at the handshake after one reload, its open
//! connections closed.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tongban_kit::testing::SigningChannel;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tongban_kit::testing::{TestFederation, start};
use tongban_proto::{
    contract::metadata,
    v1::{
        GetCatalogRequest, QueryStatusRequest, catalog_client::CatalogClient,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::{
    trust::connector::{self, FederationConnector},
    trust::identity::PeerIdentity,
    trust::pki::{self, DevCa},
    trust::revocation::serial_of,
    trust::tls::{ClientSettings, TlsFiles},
};
use tonic::Code;

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

pub(super) fn ca(t: &TestFederation) -> DevCa {
    let dir = t.dir.path().join("pki");
    DevCa::load(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    )
    .unwrap()
}

/// The serial of the certificate `files` present.
pub(super) fn serial(files: &TlsFiles) -> Vec<u8> {
    let pem = std::fs::read(&files.cert).unwrap();
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    serial_of(der.as_ref()).unwrap()
}

/// `files` as a member's client reads them, with the federation's revocation list.
fn with_crl(t: &TestFederation, files: TlsFiles) -> TlsFiles {
    TlsFiles {
        crl: Some(t.dir.path().join("pki/crl.pem")),
        ..files
    }
}

pub(super) async fn post_reload(operator: &tongban_kit::member::OperatorApi) -> (u16, String) {
    let r = operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    (r.status, r.body.to_string())
}

pub(super) async fn catalog(channel: &SigningChannel) -> Result<(), Code> {
    CatalogClient::new(channel.clone())
        .get_catalog(GetCatalogRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

/// A raw HTTP/2 connection to `addr` presenting `files`, driven by its own task: the
/// task ends when the server closes the connection.
pub(super) async fn open_connection(
    addr: std::net::SocketAddr,
    files: &TlsFiles,
    server: &PeerIdentity,
) -> tokio::task::JoinHandle<()> {
    let config = files.client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(server.dns_name()).unwrap(), tcp)
        .await
        .unwrap();
    let (_send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _keep = _send;
        let _ = connection.await;
    })
}

/// A status query from `origin` relayed to `target` for a case it does not have:
/// NOT_FOUND is its answer, so only a transport or trust failure is an error.
async fn relayed_query(
    channel: &SigningChannel,
    (origin, target): (&str, &str),
) -> Result<(), Code> {
    let mut request = tonic::Request::new(QueryStatusRequest {
        case_number: "440000-20261201-00000001".into(),
    });
    for (key, value) in [
        (metadata::TARGET_REGION, target),
        (metadata::ORIGIN_REGION, origin),
        (metadata::ONE_THING, "medical-treatment-registration"),
    ] {
        request.metadata_mut().insert(key, value.parse().unwrap());
    }
    match GatewayClient::new(channel.clone())
        .query_status(request)
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(s.code()),
    }
}

/// How the server at `addr` answers a handshake presenting `files`: in TLS 1.3 the
/// client's side completes first, and the server's refusal of the client certificate
/// arrives as an alert on the first read.
pub(super) async fn handshake_refusal(
    addr: std::net::SocketAddr,
    files: &TlsFiles,
    server: &PeerIdentity,
) -> String {
    use tokio::io::AsyncReadExt;
    let config = files.client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connected = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(server.dns_name()).unwrap(), tcp)
        .await;
    let mut tls = match connected {
        Err(e) => return e.to_string(),
        Ok(tls) => tls,
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut byte)).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(n)) => format!("read {n} bytes: not refused"),
        Err(_) => "no answer within 5 s: not refused".into(),
    }
}

/// Calls the gateway on `channel` until told to stop, alternating a call it answers
/// itself and one it relays (`route`: origin and target codes); returns (served,
/// failed).
fn steady_calls(
    channel: SigningChannel,
    route: (&'static str, &'static str),
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<Code>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let outcome = if n.is_multiple_of(2) {
                relayed_query(&channel, route).await
            } else {
                catalog(&channel).await
            };
            match outcome {
                Ok(()) => ok += 1,
                Err(code) => failed.push(code),
            }
        }
        (ok, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_at_the_handshake_and_its_connections_closed() {
    let t = start(&["310000", "440000", "110000"]).await;
    let gateway = t.fed.gateway().federation_addr;
    let shanghai = t.tls_files(&region("31"));
    let guangdong = t
        .gateway_channel(&t.tls_files(&region("44")))
        .await
        .unwrap();
    let open = t.gateway_channel(&shanghai).await.unwrap();
    assert_eq!(catalog(&open).await, Ok(()));
    let raw = open_connection(gateway, &shanghai, &PeerIdentity::Gateway).await;

    // Guangdong calls Beijing all along: revoking Shanghai (as client and as node,
    // one certificate) costs them nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = steady_calls(guangdong.clone(), ("440305", "110105"), stop.clone());

    ca(&t)
        .write_revocations(&t.dir.path().join("pki"), &[serial(&shanghai)])
        .unwrap();
    let revoked_at = Instant::now();
    let (status, text) = post_reload(&t.fed.gateway().operator).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("1 revoked serials"), "{text}");

    // The connection opened before is closed, at once, not at its next keep-alive.
    tokio::time::timeout(Duration::from_secs(5), raw)
        .await
        .expect("the revoked peer's open connection was not closed")
        .unwrap();
    let closed_after = revoked_at.elapsed();
    // The channel's calls fail, and so does every new handshake.
    assert!(catalog(&open).await.is_err());
    let refusal = handshake_refusal(gateway, &shanghai, &PeerIdentity::Gateway).await;
    assert!(refusal.contains("CertificateRevoked"), "{refusal}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = steady.await.unwrap();
    println!(
        "revoked peer's connection closed {closed_after:?} after the reload; \
         guangdong meanwhile: {ok} calls served, {} failed",
        failed.len()
    );
    assert!(ok > 0);
    assert!(failed.is_empty(), "a member's calls failed: {failed:?}");

    // The node's listener reads the same list on its own reload.
    let node = t.fed.node("44").unwrap();
    let (status, text) = post_reload(&node.operator).await;
    assert_eq!(status, 200, "{text}");
    let refusal = handshake_refusal(node.federation_addr, &shanghai, &region("44")).await;
    assert!(refusal.contains("CertificateRevoked"), "{refusal}");
    t.shutdown().await;
}

/// A client that reads the revocation list (as nodes do, for the gateway) refuses a
/// server whose certificate it names: the node's connector, against the real gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_revoked_server() {
    let t = start(&["310000"]).await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let member = with_crl(&t, t.tls_files(&region("31")));
    let settings = ClientSettings::default();
    let connect = || async {
        let connector = FederationConnector::from_files(&member, PeerIdentity::Gateway).unwrap();
        connector::endpoint(&url, &settings)
            .unwrap()
            .connect_with_connector(connector)
            .await
            .map(|channel| SigningChannel::new(channel, None))
    };
    assert_eq!(catalog(&connect().await.unwrap()).await, Ok(()));
    let gateway = t.tls_files(&PeerIdentity::Gateway);
    ca(&t)
        .write_revocations(&t.dir.path().join("pki"), &[serial(&gateway)])
        .unwrap();
    let err = connect().await.unwrap_err();
    let chain = format!("{:?}", err);
    assert!(chain.contains("Revoked"), "{chain}");
    t.shutdown().await;
}

/// Every federation listener and client speaks TLS 1.3 only: a peer offering TLS 1.2
/// alone gets no connection, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_speak_only_tls_1_2_get_no_connection() {
    let t = start(&["310000", "440000"]).await;
    let member = t.tls_files(&region("31"));

    // A 1.2-only client with a good certificate, to the gateway and to a node.
    let tls12_client = {
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(&member.ca).unwrap();
            for ca in CertificateDer::pem_slice_iter(&pem) {
                roots.add(ca.unwrap()).unwrap();
            }
            roots
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&std::fs::read(&member.cert).unwrap())
                .map(|c| c.unwrap())
                .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&std::fs::read(&member.key).unwrap())
                .unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    };
    let node = t.fed.node("44").unwrap().federation_addr;
    for (addr, server) in [
        (t.fed.gateway().federation_addr, PeerIdentity::Gateway),
        (node, region("44")),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let outcome = tokio_rustls::TlsConnector::from(tls12_client.clone())
            .connect(ServerName::try_from(server.dns_name()).unwrap(), tcp)
            .await;
        let err = outcome.map(|_| ()).unwrap_err();
        println!("TLS 1.2 client to {server}: {err}");
        assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    }

    // A 1.2-only server with the gateway's certificate, for the node's connector.
    let fake_gateway =
        tongban_kit::testing::tls12_server(&t.tls_files(&PeerIdentity::Gateway)).await;
    let connector = FederationConnector::from_files(&member, PeerIdentity::Gateway).unwrap();
    let err = connector::endpoint(
        &format!("https://{fake_gateway}"),
        &ClientSettings::default(),
    )
    .unwrap()
    .connect_with_connector(connector)
    .await
    .unwrap_err();
    let chain = format!("{err:?}");
    println!("node connector to a TLS 1.2 gateway: {chain}");
    assert!(chain.contains("ProtocolVersion"), "{chain}");
    t.shutdown().await;
}

/// The node checks the gateway's URI SAN, not only its DNS name: a certificate with the
/// gateway's DNS name that names a region is refused by the node's connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_certificate_naming_a_region_is_refused_by_nodes() {
    let t = start(&["310000"]).await;
    let impostor_dir = t.dir.path().join("impostor");
    std::fs::create_dir_all(&impostor_dir).unwrap();
    let leaf = ca(&t)
        .issue_named(
            &PeerIdentity::Gateway,
            &region("31"),
            Duration::from_secs(600),
        )
        .unwrap();
    let (cert, key) = pki::write_leaf(&impostor_dir, &region("31"), &leaf).unwrap();
    let impostor = TlsFiles {
        cert,
        key,
        ..t.tls_files(&region("31"))
    };
    let addr = tongban_kit::testing::health_server(&impostor).await;
    let member = t.tls_files(&region("31"));
    let connector = FederationConnector::from_files(&member, PeerIdentity::Gateway).unwrap();
    let err = connector::endpoint(&format!("https://{addr}"), &ClientSettings::default())
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap_err();
    let chain = format!("{err:?}");
    assert!(
        chain.contains("presented spiffe://tongban/region/31"),
        "{chain}"
    );
    t.shutdown().await;
}

/// The serial of the certificate the server at `addr` presents to a fresh TLS 1.3
/// handshake from a client presenting `files`, verified as `server`.
pub(super) async fn presented_serial(
    addr: std::net::SocketAddr,
    files: &TlsFiles,
    server: &PeerIdentity,
) -> Vec<u8> {
    let config = files.client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(server.dns_name()).unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    serial_of(presented.as_ref()).unwrap()
}

/// Certificates reissued (new keys) for the gateway and a node, put in force by a
/// reload while members call: no call fails, and new handshakes with either get the
/// new certificate, the one now in its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reissued_and_reloaded_under_load_fail_no_call() {
    let t = start(&["310000", "440000"]).await;
    let shanghai = t.tls_files(&region("31"));
    let gateway_files = t.tls_files(&PeerIdentity::Gateway);
    let node_files = t.tls_files(&region("44"));
    let gateway_addr = t.fed.gateway().federation_addr;
    let node = t.fed.node("44").unwrap();
    // What each presents now is what its files hold.
    let before = serial(&gateway_files);
    let node_before = serial(&node_files);
    assert_eq!(
        presented_serial(gateway_addr, &shanghai, &PeerIdentity::Gateway).await,
        before
    );
    assert_eq!(
        presented_serial(node.federation_addr, &shanghai, &region("44")).await,
        node_before
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let channel = t.gateway_channel(&shanghai).await.unwrap();
        callers.push(steady_calls(channel, ("310115", "440305"), stop.clone()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pki_dir = t.dir.path().join("pki");
    let ca = ca(&t);
    for identity in [PeerIdentity::Gateway, region("44")] {
        let leaf = ca.issue(&identity, Duration::from_secs(3600)).unwrap();
        pki::write_leaf(&pki_dir, &identity, &leaf).unwrap();
    }
    let (reissued, node_reissued) = (serial(&gateway_files), serial(&node_files));
    assert_ne!(before, reissued);
    assert_ne!(node_before, node_reissued);
    let (status, text) = post_reload(&t.fed.gateway().operator).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = post_reload(&node.operator).await;
    assert_eq!(status, 200, "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new handshake with either gets the reissued certificate.
    let after = presented_serial(gateway_addr, &shanghai, &PeerIdentity::Gateway).await;
    assert_ne!(
        before, after,
        "the gateway still presents its old certificate"
    );
    assert_eq!(after, reissued, "the gateway presents another certificate");
    let node_after = presented_serial(node.federation_addr, &shanghai, &region("44")).await;
    assert_ne!(
        node_before, node_after,
        "node 44 still presents its old certificate"
    );
    assert_eq!(
        node_after, node_reissued,
        "node 44 presents another certificate"
    );

    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for caller in callers {
        let (o, f) = caller.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    println!(
        "during two certificate reloads: {ok} calls served, {} failed",
        failed.len()
    );
    assert!(ok > 0);
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    t.shutdown().await;
}
