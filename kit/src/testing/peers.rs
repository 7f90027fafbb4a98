//! Clients that present any identity to a federation (or a foreign CA's), and stand-in
//! servers for what clients check at the handshake.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tongban_runtime::{
    serving::incoming::{DEFAULT_MAX_HANDSHAKES, authenticated_incoming},
    trust::{
        connector::{self, FederationConnector},
        identity::PeerIdentity,
        pki::{DevCa, write_leaf},
        tls::{ClientSettings, TlsFiles},
    },
};

use crate::testing::signing::{RegionSigner, SigningChannel};

/// A connected channel to `url` presenting `files`, verifying the server as `server`;
/// it signs nothing until given a signer ([`SigningChannel::signing_as`]).
pub async fn channel(
    url: &str,
    files: &TlsFiles,
    server: &PeerIdentity,
) -> Result<SigningChannel, tonic::transport::Error> {
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
        .map(|channel| SigningChannel::new(channel, None))
}

/// A channel to `url` presenting `files`' certificate, verifying the server as
/// `server`; what it sends for a region is signed with that region's first issuer key
/// in the PKI folder `pki`, when there is one.
pub async fn region_channel(
    url: &str,
    files: &TlsFiles,
    server: &PeerIdentity,
    pki: &Path,
) -> Result<SigningChannel, tonic::transport::Error> {
    let channel = channel(url, files, server).await?;
    Ok(match certificate_identity(files) {
        Some(PeerIdentity::Region(prefix)) => match RegionSigner::of(pki, prefix) {
            Some(signer) => channel.signing_as(signer),
            None => channel,
        },
        _ => channel,
    })
}

/// The identity `files`' certificate names, if it reads.
fn certificate_identity(files: &TlsFiles) -> Option<PeerIdentity> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::pem_file_iter(&files.cert)
        .ok()?
        .next()?
        .ok()?;
    PeerIdentity::from_certificate(&der).ok()
}

/// A federation listener on loopback presenting `files`' certificate (through the
/// same accept loop as gateways and nodes) that serves gRPC health only: a stand-in
/// server for what clients check at the handshake.
pub async fn health_server(files: &TlsFiles) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (keep, config) =
        tokio::sync::watch::channel(files.server_config().expect("server TLS config"));
    let incoming = authenticated_incoming(
        listener,
        config,
        tokio::sync::watch::channel(Default::default()).1,
        Duration::from_secs(5),
        DEFAULT_MAX_HANDSHAKES,
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
pub async fn tls12_server(files: &TlsFiles) -> SocketAddr {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
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
    let ca = DevCa::generate("Some other CA").expect("foreign CA");
    let leaf = ca
        .issue(identity, Duration::from_secs(3600))
        .expect("foreign leaf");
    std::fs::create_dir_all(dir).expect("dir");
    let (cert, key) = write_leaf(dir, identity, &leaf).expect("write");
    ca.write(dir).expect("write CA");
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
        crl: None,
    }
}

/// A stand-in issuer's answer to the gateway's access reports: every report taken, as a
/// node records them.
pub fn reports_taken(
    request: &tonic::Request<tongban_proto::v1::RecordAccessesRequest>,
) -> Result<tonic::Response<tongban_proto::v1::RecordAccessesResponse>, tonic::Status> {
    let recorded = u32::try_from(request.get_ref().reports.len()).unwrap_or(u32::MAX);
    Ok(tonic::Response::new(
        tongban_proto::v1::RecordAccessesResponse { recorded },
    ))
}
