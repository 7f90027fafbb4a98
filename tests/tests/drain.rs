//! A gateway told to stop finishes the calls it is relaying before it exits, and takes
//! no new connections meanwhile. The node here is a stand-in that answers only when the
//! test says so, so the call is provably in flight when shutdown starts.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{net::TcpListener, sync::oneshot};
use tokio_rustls::TlsAcceptor;
use tongban_gateway::{Gateway, GatewayConfig, GatewayListeners};
use tongban_proto::{
    metadata,
    v1::{DeliverApplicationRequest, gateway_client::GatewayClient},
};
use tongban_runtime::{identity::PeerIdentity, shutdown::Shutdown, tls::ClientSettings};
use tongban_tests::{TestFederation, channel, eventually, start};

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// A node for region 44 that reports each call it receives on `received` and answers it
/// (`grpc-status: 0`, empty message) when `release` fires.
async fn held_node(
    t: &TestFederation,
    received: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
) -> SocketAddr {
    let config = t.tls_files(&region("44")).server_config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = TlsAcceptor::from(config).accept(tcp).await.unwrap();
        let mut connection = h2::server::handshake(tls).await.unwrap();
        let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
        received.send(()).unwrap();
        tokio::spawn(async move {
            release.await.unwrap();
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut stream = respond.send_response(response, false).unwrap();
            stream
                .send_data(Bytes::from_static(&[0; 5]), false)
                .unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            stream.send_trailers(trailers).unwrap();
        });
        while connection.accept().await.is_some() {}
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_finishes_calls_in_flight() {
    let t = start(&["310000", "440000"]).await;
    let (received_tx, received) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let node = held_node(&t, received_tx, release_rx).await;

    // A second gateway whose registry sends region 44 to the held node.
    let registry = t.dir.path().join("held-registry.toml");
    std::fs::write(
        &registry,
        format!("[[region]]\nprefix = \"44\"\nendpoints = [\"https://{node}\"]\n"),
    )
    .unwrap();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        tls: t.tls_files(&PeerIdentity::Gateway),
        registry,
        catalog: None,
        upstream: ClientSettings::default(),
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
    };
    let gateway = Gateway::new(config.clone()).unwrap();
    let listeners = GatewayListeners::bind(&config).await.unwrap();
    let url = format!("https://{}", listeners.federation.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let serving = tokio::spawn(gateway.serve(listeners, shutdown.signal()));

    let files = Arc::new(t.tls_files(&region("31")));
    let mut client =
        GatewayClient::new(channel(&url, &files, &PeerIdentity::Gateway).await.unwrap());
    let call = tokio::spawn(async move {
        let mut request = tonic::Request::new(DeliverApplicationRequest::default());
        request
            .metadata_mut()
            .insert(metadata::TARGET_REGION, "440000".parse().unwrap());
        client.deliver_application(request).await
    });

    // The call is at the node; now stop the gateway.
    received.await.unwrap();
    shutdown.trigger();
    // It stops taking connections (the accept loop notices the stop on its own turn)
    // but keeps serving the call it holds.
    eventually(
        Duration::from_secs(5),
        "new connections refused",
        || async {
            channel(&url, &files, &PeerIdentity::Gateway)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(
        !serving.is_finished(),
        "the gateway exited with a call in flight"
    );

    release.send(()).unwrap();
    let answer = call.await.unwrap();
    assert!(answer.is_ok(), "the call in flight failed: {answer:?}");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the gateway stops once its calls are done")
        .unwrap()
        .unwrap();
    t.shutdown().await;
}
