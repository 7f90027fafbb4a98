//! One region floods the gateway while another keeps filing: the flood is shed from the
//! flooding region (RESOURCE_EXHAUSTED, retry later) and every call of the other region
//! is served. Real gateway and nodes, real mTLS, a fault proxy making the flooded
//! target slow (so the flood's calls pile up in the gateway). Counts and latencies are
//! printed; only the counts are asserted (latency on a shared machine is for the
//! benchmark).

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prost::Message;
use tongban_proto::{
    metadata,
    v1::{Application, DeliverApplicationRequest, gateway_client::GatewayClient},
};
use tongban_runtime::identity::PeerIdentity;
use tongban_tests::{
    Link, LinkMode, TestFederation, eventually, medical_filing, processes, start_with,
};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

const WAIT: Duration = Duration::from_secs(20);

/// What replaying one delivered case needs.
#[derive(Clone)]
struct Replay {
    application: Application,
    target: String,
    key: String,
}

/// Files a case at `origin` for a resident of `home` and waits for its delivery.
async fn delivered_case(t: &TestFederation, origin: &str, home: &str) -> Replay {
    let node = t.fed.node(origin).unwrap();
    let resident = &t.residents(home)[0];
    let receipt = node.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let record = eventually(WAIT, "delivery", || async {
        let record = node.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(record)
    })
    .await;
    Replay {
        application: Application::decode(record.payload.as_slice()).unwrap(),
        target: record.target_region,
        key: format!("deliver:{case}"),
    }
}

async fn client(t: &TestFederation, prefix: &str) -> GatewayClient<Channel> {
    let identity = PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap();
    GatewayClient::new(t.gateway_channel(&t.tls_files(&identity)).await.unwrap())
}

/// Replays the delivery: the node answers from its idempotency record.
async fn replay(client: &mut GatewayClient<Channel>, r: &Replay) -> Result<(), Code> {
    let mut request = Request::new(DeliverApplicationRequest {
        application: Some(r.application.clone()),
    });
    let md = request.metadata_mut();
    md.insert(
        metadata::TARGET_REGION,
        MetadataValue::try_from(r.target.as_str()).unwrap(),
    );
    md.insert(
        metadata::IDEMPOTENCY_KEY,
        MetadataValue::try_from(r.key.as_str()).unwrap(),
    );
    client
        .deliver_application(request)
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

/// Sequential replays for `duration`: (ok, refused as overloaded, other errors, p99 µs).
async fn steady(
    client: &GatewayClient<Channel>,
    r: &Replay,
    duration: Duration,
) -> (u64, u64, u64, u64) {
    let (mut ok, mut shed, mut other) = (0, 0, 0);
    let mut latencies = Vec::new();
    let until = Instant::now() + duration;
    let mut client = client.clone();
    while Instant::now() < until {
        let t0 = Instant::now();
        match replay(&mut client, r).await {
            Ok(()) => ok += 1,
            Err(Code::ResourceExhausted) => shed += 1,
            Err(_) => other += 1,
        }
        latencies.push(t0.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or(0);
    (ok, shed, other, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_region_is_shed_and_the_others_keep_being_served() {
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.fault_proxies = true;
        spec.limits.max_in_flight = 40;
        // The gateway in its own process, as deployed: the flooding client's own work
        // does not run on the gateway's thread.
        spec.launch = processes("error");
    })
    .await;
    // Shanghai will flood Guangdong; Beijing keeps delivering to Shanghai.
    let flood_case = delivered_case(&t, "31", "44").await;
    let steady_case = delivered_case(&t, "11", "31").await;
    let shanghai = client(&t, "31").await;
    let beijing = client(&t, "11").await;

    let (ok, shed, other, p99_before) =
        steady(&beijing, &steady_case, Duration::from_secs(1)).await;
    assert_eq!((shed, other), (0, 0));
    assert!(ok > 0);

    // Guangdong turns slow (200 ms each way): the flood's calls stay in the gateway.
    t.fed
        .link(&Link::GatewayToNode {
            gateway: 0,
            node: "44".into(),
        })
        .unwrap()
        .set(LinkMode::Delay(Duration::from_millis(200)));
    let stop = Arc::new(AtomicBool::new(false));
    let flood_ok = Arc::new(AtomicU64::new(0));
    let flood_shed = Arc::new(AtomicU64::new(0));
    let flood_other = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    // 200 calls at once from one region: five times the gateway's 40.
    for _ in 0..200 {
        let (mut c, r, stop) = (shanghai.clone(), flood_case.clone(), stop.clone());
        let (ok, shed, other) = (flood_ok.clone(), flood_shed.clone(), flood_other.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match replay(&mut c, &r).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(Code::ResourceExhausted) => {
                        // Even a flood backs off a little, or the test machine melts.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        shed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(code) => {
                        eprintln!("flood call ended {code:?}");
                        other.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = steady(&beijing, &steady_case, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let (ok, shed, other, p99_during) = during;
    let flood = (
        flood_ok.load(Ordering::Relaxed),
        flood_shed.load(Ordering::Relaxed),
        flood_other.load(Ordering::Relaxed),
    );
    println!(
        "beijing (steady): {ok} ok, {shed} shed, {other} other errors; p99 {p99_before} µs before, {p99_during} µs during the flood"
    );
    println!(
        "shanghai (flood of 200 at once, limit 40): {} ok, {} shed, {} other errors",
        flood.0, flood.1, flood.2
    );
    // Beijing is never refused; Shanghai is shed, not cut off.
    assert_eq!((shed, other), (0, 0), "the steady region was refused");
    assert!(ok > 0);
    assert!(flood.1 > 0, "the flood was never shed");
    assert!(flood.0 > 0, "the flooding region was starved");
    assert_eq!(flood.2, 0, "the flood saw errors other than shedding");

    // The shedding is on the record: RESOURCE_EXHAUSTED for origin 31 only.
    let admin = tongban_node::portal_client::PortalClient::new(format!(
        "http://{}",
        t.fed.gateway().admin_addr.unwrap()
    ));
    let text = admin.get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap();
    let shed_by = |origin: &str| {
        text.lines().any(|l| {
            l.starts_with("tongban_gateway_calls_total{")
                && l.contains("code=\"RESOURCE_EXHAUSTED\"")
                && l.contains(&format!("origin=\"{origin}\""))
        })
    };
    assert!(shed_by("31"));
    assert!(!shed_by("11"));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_hold_more_connections_than_allowed() {
    let t = start_with(&["110000", "310000"], |spec| {
        // Node 11's own client to the gateway holds one of the three.
        spec.limits.max_connections_per_identity = 3;
    })
    .await;
    let case = delivered_case(&t, "11", "31").await;
    let mut first = client(&t, "11").await;
    let mut second = client(&t, "11").await;
    replay(&mut first, &case).await.unwrap();
    replay(&mut second, &case).await.unwrap();
    // A fourth connection of region 11 is closed by the gateway: its call fails.
    let third = async {
        let mut c = client(&t, "11").await;
        replay(&mut c, &case).await
    };
    let third = tokio::time::timeout(Duration::from_secs(10), third).await;
    assert!(
        matches!(third, Ok(Err(_)) | Err(_)),
        "a fourth connection was served: {third:?}"
    );
    // Another identity is not affected, and a freed slot is usable again.
    let mut shanghai = client(&t, "31").await;
    let to_beijing = delivered_case(&t, "31", "11").await;
    replay(&mut shanghai, &to_beijing).await.unwrap();
    drop(second);
    let again = eventually(WAIT, "a connection after one closed", || async {
        let mut c = client(&t, "11").await;
        replay(&mut c, &case).await.ok()
    })
    .await;
    assert_eq!(again, ());
    t.shutdown().await;
}
