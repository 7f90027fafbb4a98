//! The gateway's HTTP/2 server at its edges: a gateway told to stop finishes the calls
//! it is relaying before it exits and takes no new connections meanwhile; a request
//! whose body never ends is cut off at the deadline.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use h2::server::SendResponse;
use tokio::{net::TcpListener, sync::oneshot};
use tokio_rustls::TlsAcceptor;
use tongban_gateway::{Gateway, GatewayConfig, GatewayListeners};
use tongban_kit::testing::{TestFederation, channel, eventually, start};
use tongban_proto::{
    contract::metadata,
    v1::{DeliverApplicationRequest, DeliverApplicationResponse, gateway_client::GatewayClient},
};
use tongban_runtime::{
    process::shutdown::Shutdown, trust::identity::PeerIdentity, trust::tls::ClientSettings,
};

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// A stand-in node for region 44: it takes one connection and hands the test the
/// first call's answer handle, so the test decides when (or whether) it is answered.
async fn stand_in_node(t: &TestFederation) -> (SocketAddr, oneshot::Receiver<SendResponse<Bytes>>) {
    let config = t.tls_files(&region("44")).server_config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (call_tx, call) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = TlsAcceptor::from(config).accept(tcp).await.unwrap();
        let mut connection = h2::server::handshake(tls).await.unwrap();
        let (_request, respond) = connection.accept().await.unwrap().unwrap();
        call_tx.send(respond).unwrap();
        while connection.accept().await.is_some() {}
    });
    (addr, call)
}

/// Answers a held call: `grpc-status: 0`, an empty message.
fn answer_ok(mut respond: SendResponse<Bytes>) {
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
}

/// Starts a DeliverApplication for region 44 through the gateway at `url`, as node 31.
async fn deliver_to_44(
    t: &TestFederation,
    url: &str,
) -> tokio::task::JoinHandle<Result<tonic::Response<DeliverApplicationResponse>, tonic::Status>> {
    let files = t.tls_files(&region("31"));
    let mut client =
        GatewayClient::new(channel(url, &files, &PeerIdentity::Gateway).await.unwrap());
    tokio::spawn(async move {
        let mut request = tonic::Request::new(DeliverApplicationRequest::default());
        request
            .metadata_mut()
            .insert(metadata::TARGET_REGION, "440000".parse().unwrap());
        // A state-changing call: the gateway requires its idempotency key.
        request
            .metadata_mut()
            .insert(metadata::IDEMPOTENCY_KEY, "deliver-to-44".parse().unwrap());
        client.deliver_application(request).await
    })
}

/// Starts another gateway of the federation whose registry sends region 44 to `node`
/// (and registers 31, the callers' region, at its own node).
async fn extra_gateway(
    t: &TestFederation,
    node: SocketAddr,
    request_timeout: Duration,
) -> (
    String,
    Shutdown,
    tokio::task::JoinHandle<Result<(), tongban_gateway::server::GatewayStartError>>,
) {
    let registry = t.dir.path().join(format!("registry-{}.toml", node.port()));
    let shanghai = t.fed.node("31").unwrap().federation_addr;
    std::fs::write(
        &registry,
        format!(
            "[[region]]\nprefix = \"44\"\nendpoints = [\"https://{node}\"]\n\
             [[region]]\nprefix = \"31\"\nendpoints = [\"https://{shanghai}\"]\n"
        ),
    )
    .unwrap();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        tls: t.tls_files(&PeerIdentity::Gateway),
        registry,
        catalog: None,
        catalog_ledger: None,
        sharing_list: None,
        upstream: ClientSettings {
            request_timeout,
            ..ClientSettings::default()
        },
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
        recognition: Default::default(),
        telemetry: Default::default(),
        console: Default::default(),
        audit: tongban_gateway::config::AuditSettings {
            file: t
                .dir
                .path()
                .join(format!("gateway-{}-audit.log", node.port())),
            ..Default::default()
        },
        limits: Default::default(),
        revocation_log: None,
        reload: Default::default(),
        operators: None,
    };
    let gateway = Gateway::new(config.clone()).unwrap();
    let listeners = GatewayListeners::bind(&config).await.unwrap();
    let url = format!("https://{}", listeners.federation.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let serving = tokio::spawn(gateway.serve(listeners, shutdown.signal()));
    (url, shutdown, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_finishes_calls_in_flight() {
    let t = start(&["310000", "440000"]).await;
    let (node, held) = stand_in_node(&t).await;
    // A second gateway whose registry sends region 44 to the stand-in.
    let (url, shutdown, serving) = extra_gateway(&t, node, Duration::from_secs(10)).await;
    let call = deliver_to_44(&t, &url).await;
    let files = t.tls_files(&region("31"));

    // The call is at the node; now stop the gateway.
    let held = held.await.unwrap();
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

    answer_ok(held);
    let answer = call.await.unwrap();
    assert!(answer.is_ok(), "the call in flight failed: {answer:?}");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the gateway stops once its calls are done")
        .unwrap()
        .unwrap();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_never_ends_is_cut_off_at_the_deadline() {
    let t = start(&["310000", "440000"]).await;
    let node = t.fed.node("44").unwrap().federation_addr;
    let (url, shutdown, serving) = extra_gateway(&t, node, Duration::from_millis(300)).await;
    let addr: SocketAddr = url.trim_start_matches("https://").parse().unwrap();

    // A raw HTTP/2 client: headers sent, the body left open.
    let tls = t.tls_files(&region("31")).client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name =
        rustls::pki_types::ServerName::try_from(PeerIdentity::Gateway.dns_name()).unwrap();
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!(
        "{url}/tongban.federation.v1.Gateway/DeliverApplication"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header(metadata::TARGET_REGION, "440000")
    .header(metadata::IDEMPOTENCY_KEY, "stalled")
    .body(())
    .unwrap();
    let mut client = client.ready().await.unwrap();
    let (response, _open_body) = client.send_request(request, false).unwrap();

    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the gateway answers a stalled call")
        .unwrap();
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        &(tonic::Code::DeadlineExceeded as i32).to_string(),
        "{response:?}"
    );

    shutdown.trigger();
    serving.await.unwrap().unwrap();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_giving_up_cancels_the_call_at_the_node() {
    let t = start(&["310000", "440000"]).await;
    let (node, held) = stand_in_node(&t).await;
    let (url, shutdown, serving) = extra_gateway(&t, node, Duration::from_secs(10)).await;
    let call = deliver_to_44(&t, &url).await;
    let mut held = held.await.unwrap();
    // The caller gives up: its stream to the gateway is reset.
    call.abort();
    let reset = std::future::poll_fn(|cx| held.poll_reset(cx));
    let reason = tokio::time::timeout(Duration::from_secs(10), reset)
        .await
        .expect("the node's stream is reset when the caller gives up")
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);

    shutdown.trigger();
    serving.await.unwrap().unwrap();
    t.shutdown().await;
}
