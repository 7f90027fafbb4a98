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
use tongban_kit::testing::{TestFederation, eventually, medical_filing, processes, start_with};
use tongban_kit::{Link, LinkMode};
use tongban_proto::{
    contract::metadata,
    v1::{Application, DeliverApplicationRequest, gateway_client::GatewayClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
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
async fn replay(client: &mut GatewayClient<Channel>, r: &Replay) -> Result<(), tonic::Status> {
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
    client.deliver_application(request).await.map(|_| ())
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
            Err(s) if s.code() == Code::ResourceExhausted => shed += 1,
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

/// [`steady`] on a thread and runtime of its own, with its own connection: its
/// latencies are the gateway's, not those of a test runtime busy with the flood.
fn steady_apart(
    url: String,
    files: tongban_runtime::trust::tls::TlsFiles,
    r: Replay,
    duration: Duration,
) -> std::thread::JoinHandle<(u64, u64, u64, u64)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let channel = tongban_kit::testing::channel(&url, &files, &PeerIdentity::Gateway)
                .await
                .unwrap();
            let client = GatewayClient::new(channel);
            // Warm the connection before timing.
            let _ = replay(&mut client.clone(), &r).await;
            steady(&client, &r, duration).await
        })
    })
}

/// A flood of `callers` calls at once from one region until `stop`: (ok, shed, other).
/// A refused caller waits `after_refusal`, or the pushback the gateway states.
fn flood(
    client: &GatewayClient<Channel>,
    r: &Replay,
    callers: usize,
    after_refusal: Option<Duration>,
    stop: &Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, [Arc<AtomicU64>; 3]) {
    let counts = [(); 3].map(|_| Arc::new(AtomicU64::new(0)));
    let tasks = (0..callers)
        .map(|_| {
            let (mut c, r, stop, counts) =
                (client.clone(), r.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match replay(&mut c, &r).await {
                        Ok(_) => counts[0].fetch_add(1, Ordering::Relaxed),
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            let wait = after_refusal
                                .or_else(|| tongban_proto::contract::retry::pushback(&status))
                                .unwrap_or(Duration::from_millis(5));
                            tokio::time::sleep(wait).await;
                            counts[1].fetch_add(1, Ordering::Relaxed)
                        }
                        Err(status) => {
                            eprintln!("flood call ended {:?}", status.code());
                            counts[2].fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    (tasks, counts)
}

/// The gateway's resident memory, from its `/metrics`.
async fn gateway_rss(t: &TestFederation) -> f64 {
    let admin = tongban_node::portal_client::PortalClient::new(format!(
        "http://{}",
        t.fed.gateway().admin_addr.unwrap()
    ));
    let text = admin.get("/metrics").await.unwrap().body;
    text.as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
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
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let beijing_files = t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/11").unwrap());
    let measure = |duration| {
        steady_apart(
            url.clone(),
            beijing_files.clone(),
            steady_case.clone(),
            duration,
        )
    };

    let (ok, shed, other, p99_before) = measure(Duration::from_secs(2)).join().unwrap();
    assert_eq!((shed, other), (0, 0));
    assert!(ok > 0);
    let rss_before = gateway_rss(&t).await;

    // Guangdong turns slow (200 ms each way): the flood's calls stay in the gateway.
    t.fed
        .link(&Link::GatewayToNode {
            gateway: 0,
            node: "44".into(),
        })
        .unwrap()
        .set(LinkMode::Delay(Duration::from_millis(200)));

    // 200 calls at once from one region, ten times its fair share of the gateway's 40
    // (two regions active: 20 each). First as the contract asks, each shed caller
    // waiting the pushback the gateway states; then ignoring it (5 ms).
    for (name, after_refusal) in [
        ("honouring the pushback", None),
        ("ignoring it", Some(Duration::from_millis(5))),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let (tasks, counts) = flood(&shanghai, &flood_case, 200, after_refusal, &stop);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = measure(Duration::from_secs(3));
        let mut rss_peak: f64 = 0.0;
        while !during.is_finished() {
            rss_peak = rss_peak.max(gateway_rss(&t).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok, shed, other, p99_during) = during.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let flood = counts.map(|c| c.load(Ordering::Relaxed));
        println!(
            "flood {name}: beijing (steady) {ok} ok, {shed} shed, {other} other errors, p99 {p99_before} µs before, {p99_during} µs during ({:.1}x); \
             shanghai (200 at once, limit 40) {} ok, {} shed, {} other errors; gateway RSS {:.1} MiB before, {:.1} MiB peak",
            p99_during as f64 / p99_before.max(1) as f64,
            flood[0],
            flood[1],
            flood[2],
            rss_before / 1048576.0,
            rss_peak / 1048576.0,
        );
        // Beijing is never refused; Shanghai is shed, not cut off.
        assert_eq!(
            (shed, other),
            (0, 0),
            "the steady region was refused ({name})"
        );
        assert!(ok > 0);
        assert!(flood[1] > 0, "the flood was never shed ({name})");
        assert!(flood[0] > 0, "the flooding region was starved ({name})");
        assert_eq!(
            flood[2], 0,
            "the flood saw errors other than shedding ({name})"
        );
        // Far under the buffer budget (128 MiB) the limits allow.
        assert!(rss_peak < 128.0 * 1048576.0, "gateway RSS {rss_peak}");
    }

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
