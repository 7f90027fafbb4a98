//! Outlier ejection counts only a node's own failures, never a caller's cancellation
//! (`gateway/src/ejection.rs`), shown with a real gateway and real nodes as processes:
//! a registered node (31's certificate) sends calls to 44 through the gateway and resets
//! each one itself — at once, a few milliseconds later while the node works on it, and
//! after a `grpc-timeout` of 1 ms too short for any node — in bursts far beyond the
//! ejection threshold (5 in a row). Another region's calls to 44 are served throughout
//! and after, none refused as an ejected endpoint, and the gateway's
//! `tongban_gateway_upstream_ejections_total` for 44 stays 0. That a node which really
//! stops answering is still ejected is shown in `upstream.rs`.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tongban_kit::testing::SigningChannel;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;
use tongban_kit::testing::{TestFederation, eventually, medical_filing, processes, start_with};
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::metadata,
    v1::{QueryStatusRequest, gateway_client::GatewayClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Request, metadata::MetadataValue};

const WAIT: Duration = Duration::from_secs(30);
/// Bursts of calls reset by their caller, each on a connection of its own (h2 closes a
/// connection whose peer resets too many streams before they are accepted).
const BURSTS: usize = 12;
const PER_BURST: usize = 20;
/// The gateway's ejection threshold: calls failed in a row (`upstream::EJECT_AFTER`).
const EJECT_AFTER: usize = 5;

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// Files a case at `origin` for a resident of 44 and waits for its delivery; its number.
async fn delivered_case(t: &TestFederation, origin: &str, resident: usize) -> String {
    let node = t.fed.node(origin).unwrap();
    let resident = &t.residents("44")[resident];
    let receipt = node.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "delivery", || async {
        let record = node.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(())
    })
    .await;
    case
}

/// One `QueryStatus` for `case` from `client`'s region to 44.
async fn query(
    client: &mut GatewayClient<SigningChannel>,
    case: &str,
) -> Result<(), tonic::Status> {
    let mut request = Request::new(QueryStatusRequest {
        case_number: case.to_owned(),
    });
    request.metadata_mut().insert(
        metadata::TARGET_REGION,
        MetadataValue::from_static("440000"),
    );
    client.query_status(request).await.map(|_| ())
}

/// How one region's calls to 44 went: failures (with their messages) and latencies.
#[derive(Default)]
struct Served {
    ok: usize,
    failed: Vec<String>,
    latencies: Vec<Duration>,
}

impl Served {
    async fn call(&mut self, client: &mut GatewayClient<SigningChannel>, case: &str) {
        let started = Instant::now();
        match query(client, case).await {
            Ok(()) => self.ok += 1,
            Err(status) => self
                .failed
                .push(format!("{:?}: {}", status.code(), status.message())),
        }
        self.latencies.push(started.elapsed());
    }

    fn worst(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// How the caller gives its call up.
#[derive(Clone, Copy, Debug)]
enum GiveUp {
    /// Reset right after the request is sent.
    AtOnce,
    /// Reset after this long, while the node works on it.
    After(Duration),
    /// A `grpc-timeout` of 1 ms, reset once it has passed.
    ShortDeadline,
}

/// An HTTP/2 connection to the gateway presenting region `prefix`'s certificate.
async fn raw_connection(t: &TestFederation, prefix: &str) -> h2::client::SendRequest<Bytes> {
    let addr: SocketAddr = t.fed.gateway().federation_addr;
    let tls = t.tls_files(&region(prefix)).client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name =
        rustls::pki_types::ServerName::try_from(PeerIdentity::Gateway.dns_name()).unwrap();
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A `QueryStatus` for `case` sent whole on `client`, then reset by the caller as
/// `give_up` says. False if the connection would take no more streams.
async fn call_and_reset(
    client: h2::client::SendRequest<Bytes>,
    case: String,
    give_up: GiveUp,
) -> bool {
    let Ok(mut client) = client.ready().await else {
        return false;
    };
    let mut request =
        http::Request::post("https://gateway/tongban.federation.v1.Gateway/QueryStatus")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(metadata::TARGET_REGION, "440000");
    if let GiveUp::ShortDeadline = give_up {
        request = request.header("grpc-timeout", "1m");
    }
    let message = QueryStatusRequest { case_number: case }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let Ok((_response, mut stream)) = client.send_request(request.body(()).unwrap(), false) else {
        return false;
    };
    if stream.send_data(Bytes::from(frame), true).is_err() {
        return false;
    }
    match give_up {
        GiveUp::AtOnce => {}
        GiveUp::After(wait) => tokio::time::sleep(wait).await,
        GiveUp::ShortDeadline => tokio::time::sleep(Duration::from_millis(5)).await,
    }
    stream.send_reset(h2::Reason::CANCEL);
    true
}

/// The storm: [`BURSTS`] bursts of [`PER_BURST`] concurrent calls, each reset by 31;
/// how many were sent.
async fn reset_storm(t: &TestFederation, case: &str) -> usize {
    let mut sent = 0;
    for burst in 0..BURSTS {
        let client = raw_connection(t, "31").await;
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..PER_BURST {
            let give_up = match (burst % 3, i % 4) {
                (0, _) => GiveUp::AtOnce,
                (1, n) => GiveUp::After(Duration::from_millis(1 + 2 * n as u64)),
                _ => GiveUp::ShortDeadline,
            };
            calls.spawn(call_and_reset(client.clone(), case.to_owned(), give_up));
        }
        while let Some(call) = calls.join_next().await {
            sent += usize::from(call.unwrap());
        }
        // Let the gateway see the resets before the connection goes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

/// 44's endpoint series of `name` in the gateway's `/metrics`.
fn series_for_44(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains("region=\"44\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// The gateway trail's records, checkpoints left out.
fn trail_records(t: &TestFederation) -> Vec<Value> {
    std::fs::read_to_string(t.dir.path().join("gateway-audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.splitn(3, '\t').nth(2)?).ok())
        .filter(|r| r.get("checkpoint").is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_storm_does_not_eject_a_healthy_node() {
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("warn");
    })
    .await;
    let theirs = delivered_case(&t, "11", 0).await;
    let mine = delivered_case(&t, "31", 1).await;
    let mut other = GatewayClient::new(
        t.gateway_channel(&t.tls_files(&region("11")))
            .await
            .unwrap(),
    );
    let mut before = Served::default();
    for _ in 0..20 {
        before.call(&mut other, &theirs).await;
    }
    assert!(before.failed.is_empty(), "{:?}", before.failed);

    // 11 keeps calling 44 while 31 storms it with calls it resets itself.
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn({
        let (stop, theirs, mut other) = (stop.clone(), theirs.clone(), other.clone());
        async move {
            let mut served = Served::default();
            while !stop.load(Ordering::Relaxed) {
                served.call(&mut other, &theirs).await;
            }
            served
        }
    });
    let started = Instant::now();
    let sent = reset_storm(&t, &mine).await;
    let storm = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    // And right after it: at once, each of them.
    let mut after = Served::default();
    for _ in 0..50 {
        after.call(&mut other, &theirs).await;
    }

    // 31's calls in the gateway's trail (each call the gateway took up has one record,
    // written by the trail's own thread: read once their count holds still). Those reset
    // after the gateway routed them to 44 were given up while it waited for 44's answer;
    // a stream reset before the gateway took it up never became a call.
    let mut records = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: Vec<Value> = trail_records(&t)
            .into_iter()
            .filter(|r| r["method"] == "QueryStatus" && r["caller"] == "31")
            .collect();
        if !now.is_empty() && now.len() == records.len() {
            break;
        }
        records = now;
    }
    let abandoned_at_44 = records
        .iter()
        .filter(|r| r["audit"] == "abandoned" && r["target_region"] == "440000")
        .count();
    let answered = records.iter().filter(|r| r["audit"] == "relayed").count();

    let admin = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    let metrics = admin.get("/metrics").await.unwrap();
    let text = metrics.body.as_str().unwrap().to_owned();
    let ejections = series_for_44(&text, "tongban_gateway_upstream_ejections_total");
    let up = series_for_44(&text, "tongban_gateway_upstream_up");
    let log = std::fs::read_to_string(t.dir.path().join("gateway-0.log")).unwrap_or_default();
    let ejected_lines = log.matches("node endpoint ejected").count();

    println!(
        "reset storm: {sent} calls from 31 to 44 reset by 31 in {BURSTS} bursts of \
         {PER_BURST} over {storm:?}; the gateway took up {}, {abandoned_at_44} of them \
         given up while it waited on 44, {answered} answered before the reset; 11's calls to 44: \
         {} of {} served during the storm (worst {:?}), {} of {} right after (worst {:?}), \
         before it worst {:?}; ejections of 44: {ejections:?}, up: {up:?}",
        records.len(),
        during.ok,
        during.latencies.len(),
        during.worst(),
        after.ok,
        after.latencies.len(),
        after.worst(),
        before.worst(),
    );
    assert_eq!(sent, BURSTS * PER_BURST, "every storm call was sent");
    assert!(
        abandoned_at_44 > 2 * EJECT_AFTER,
        "only {abandoned_at_44} calls were reset while at the node: the storm proves nothing"
    );
    assert!(
        during.failed.is_empty() && after.failed.is_empty(),
        "11's calls to 44 failed: {} during the storm, {} after it; the first: {:?}",
        during.failed.len(),
        after.failed.len(),
        during.failed.iter().chain(&after.failed).next()
    );
    assert!(during.ok > 0, "11 made no call during the storm");
    assert_eq!(ejections, [0.0], "44 ejected by 31's own resets\n{text}");
    assert_eq!(up, [1.0], "{text}");
    assert_eq!(ejected_lines, 0, "the gateway logged an ejection");
    t.shutdown().await;
}
