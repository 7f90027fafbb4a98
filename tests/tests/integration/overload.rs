//! Resource exhaustion by one member, each bound the gateway keeps shown by using it up:
//!
//! - calls: one region floods the gateway while another keeps filing; the flood is shed
//!   from the flooding region (RESOURCE_EXHAUSTED, `tongban-retry: transient` and a
//!   `grpc-retry-pushback-ms` in the range the gateway states on every shed answer) and
//!   every call of the other region is served. Real gateway and nodes, real mTLS, a
//!   fault proxy making the flooded target slow (so the flood's calls pile up in the
//!   gateway). Counts and latencies are printed; only the counts are asserted (latency on
//!   a shared machine is for the benchmark);
//! - bytes: calls carrying messages near the largest relayed are refused for the
//!   gateway's buffer budget (its own messages, not the call limits') once it is used
//!   up, and the gateway keeps serving;
//! - connections: one identity cannot hold more connections than allowed;
//! - handshakes: TCP connections that never start TLS hold the gateway's handshake
//!   slots; while they do, a real client's handshake is refused at once, and it
//!   completes again once they are closed or cut off by the handshake timeout.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tongban_kit::testing::SigningChannel;

use prost::Message;
use rustls::pki_types::ServerName;
use tongban_gateway::{error::OVERLOAD_PUSHBACK, message::MAX_MESSAGE};
use tongban_kit::testing::{TestFederation, eventually, medical_filing, processes, start_with};
use tongban_kit::{Link, LinkMode};
use tongban_proto::{
    contract::{
        codec::StrictCodec,
        metadata,
        retry::{self, Retry},
    },
    v1::{
        Application, DeliverApplicationRequest, DeliverApplicationResponse,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::trust::{identity::PeerIdentity, tls::TlsFiles};
use tonic::{Code, Request, Status, metadata::MetadataValue};

const WAIT: Duration = Duration::from_secs(20);

/// What replaying one delivered case needs.
#[derive(Clone)]
pub(super) struct Replay {
    pub(super) application: Application,
    pub(super) target: String,
    pub(super) key: String,
}

/// Files a case at `origin` for a resident of `home` and waits for its delivery.
pub(super) async fn delivered_case(t: &TestFederation, origin: &str, home: &str) -> Replay {
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

/// A connection to the gateway as region `prefix`'s node.
async fn connection(t: &TestFederation, prefix: &str) -> SigningChannel {
    let identity = PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap();
    t.gateway_channel(&t.tls_files(&identity)).await.unwrap()
}

async fn client(t: &TestFederation, prefix: &str) -> GatewayClient<SigningChannel> {
    GatewayClient::new(connection(t, prefix).await)
}

/// Replays the delivery: the node answers from its idempotency record.
pub(super) async fn replay(
    client: &mut GatewayClient<SigningChannel>,
    r: &Replay,
) -> Result<(), tonic::Status> {
    client.deliver_application(r.request()).await.map(|_| ())
}

impl Replay {
    /// The delivery again, with its target and key.
    pub(super) fn request(&self) -> Request<DeliverApplicationRequest> {
        let mut request = Request::new(DeliverApplicationRequest {
            application: Some(self.application.clone()),
        });
        let md = request.metadata_mut();
        md.insert(
            metadata::TARGET_REGION,
            MetadataValue::try_from(self.target.as_str()).unwrap(),
        );
        md.insert(
            metadata::IDEMPOTENCY_KEY,
            MetadataValue::try_from(self.key.as_str()).unwrap(),
        );
        request
    }
}

/// Sequential replays for `duration`: (ok, refused as overloaded, other errors, p99 µs).
async fn steady(
    client: &GatewayClient<SigningChannel>,
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
pub(super) fn steady_apart(
    url: String,
    (files, pki): (tongban_runtime::trust::tls::TlsFiles, std::path::PathBuf),
    r: Replay,
    duration: Duration,
) -> std::thread::JoinHandle<(u64, u64, u64, u64)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let channel =
                tongban_kit::testing::region_channel(&url, &files, &PeerIdentity::Gateway, &pki)
                    .await
                    .unwrap();
            let client = GatewayClient::new(channel);
            // Warm the connection before timing.
            let _ = replay(&mut client.clone(), &r).await;
            steady(&client, &r, duration).await
        })
    })
}

/// The pushback a shed answer states: RESOURCE_EXHAUSTED, `tongban-retry: transient` and
/// `grpc-retry-pushback-ms` within the gateway's stated spread, [`OVERLOAD_PUSHBACK`]
/// ±50 % (`gateway/src/error.rs`); or what is wrong with the answer.
fn stated_pushback(status: &Status) -> Result<Duration, String> {
    if status.code() != Code::ResourceExhausted {
        return Err(format!("not shed: {status:?}"));
    }
    if Retry::of(status) != Retry::Transient {
        return Err(format!(
            "shed without `tongban-retry: transient`: {status:?}"
        ));
    }
    let Some(wait) = retry::pushback(status) else {
        return Err(format!(
            "shed without a `{}`: {status:?}",
            retry::PUSHBACK_KEY
        ));
    };
    let (low, high) = (OVERLOAD_PUSHBACK / 2, OVERLOAD_PUSHBACK.mul_f64(1.5));
    if wait < low || wait > high {
        return Err(format!(
            "shed with a pushback of {wait:?}, outside {low:?}..={high:?}: {status:?}"
        ));
    }
    Ok(wait)
}

/// What a flood counts: served, shed, other errors, shed answers not as the gateway
/// states them (see [`stated_pushback`]).
const SERVED: usize = 0;
const SHED: usize = 1;
const OTHER: usize = 2;
const SHED_WRONGLY: usize = 3;

/// A flood of `callers` calls at once from one region until `stop`, counted by the
/// indexes above. A shed caller waits `after_refusal`, or (`None`) the pushback the
/// gateway states, which every shed answer must carry.
fn flood(
    client: &GatewayClient<SigningChannel>,
    r: &Replay,
    callers: usize,
    after_refusal: Option<Duration>,
    stop: &Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, [Arc<AtomicU64>; 4]) {
    let counts = [(); 4].map(|_| Arc::new(AtomicU64::new(0)));
    let tasks = (0..callers)
        .map(|_| {
            let (mut c, r, stop, counts) =
                (client.clone(), r.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match replay(&mut c, &r).await {
                        Ok(_) => counts[SERVED].fetch_add(1, Ordering::Relaxed),
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            let stated = stated_pushback(&status);
                            if let Err(problem) = &stated {
                                // The first few are shown; all are counted.
                                if counts[SHED_WRONGLY].fetch_add(1, Ordering::Relaxed) < 3 {
                                    eprintln!("flood call {problem}");
                                }
                            }
                            // A missing pushback is counted above (and fails the test);
                            // the caller still backs off, so the flood goes on.
                            let wait = after_refusal
                                .or(stated.ok())
                                .unwrap_or(Duration::from_millis(5));
                            tokio::time::sleep(wait).await;
                            counts[SHED].fetch_add(1, Ordering::Relaxed)
                        }
                        Err(status) => {
                            eprintln!("flood call ended {:?}", status.code());
                            counts[OTHER].fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    (tasks, counts)
}

/// The gateway's resident memory, from its `/metrics`: present and positive, or the
/// test fails (a missing metric must not read as "no memory used").
pub(super) async fn gateway_rss(t: &TestFederation) -> f64 {
    let admin = tongban_node::portal_client::PortalClient::new(format!(
        "http://{}",
        t.fed.gateway().admin_addr.unwrap()
    ));
    let scrape = admin.get("/metrics").await.unwrap();
    assert_eq!(
        scrape.status, 200,
        "the gateway's /metrics: {}",
        scrape.body
    );
    let text = scrape.body.as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some("process_resident_memory_bytes"))
        .unwrap_or_else(|| {
            panic!("the gateway's /metrics has no process_resident_memory_bytes:\n{text}")
        });
    let rss: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable RSS sample: {line}"));
    assert!(rss > 0.0, "the gateway reports no resident memory: {line}");
    rss
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
            (beijing_files.clone(), t.pki()),
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
        // At least one sample, each present and positive (see `gateway_rss`).
        let mut rss_peak = gateway_rss(&t).await;
        let mut rss_samples = 1;
        while !during.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            rss_peak = rss_peak.max(gateway_rss(&t).await);
            rss_samples += 1;
        }
        let (ok, shed, other, p99_during) = during.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let flood = counts.map(|c| c.load(Ordering::Relaxed));
        println!(
            "flood {name}: beijing (steady) {ok} ok, {shed} shed, {other} other errors, p99 {p99_before} µs before, {p99_during} µs during ({:.1}x); \
             shanghai (200 at once, limit 40) {} ok, {} shed ({} not as stated), {} other errors; gateway RSS {:.1} MiB before, {:.1} MiB peak of {rss_samples} samples",
            p99_during as f64 / p99_before.max(1) as f64,
            flood[SERVED],
            flood[SHED],
            flood[SHED_WRONGLY],
            flood[OTHER],
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
        assert!(flood[SHED] > 0, "the flood was never shed ({name})");
        assert!(
            flood[SERVED] > 0,
            "the flooding region was starved ({name})"
        );
        assert_eq!(
            flood[OTHER], 0,
            "the flood saw errors other than shedding ({name})"
        );
        // Every shed answer says when to come back, within the stated spread: the
        // flood "honouring the pushback" waited what the gateway said, never a guess.
        assert_eq!(
            flood[SHED_WRONGLY],
            0,
            "of {} shed calls, {} had no pushback in {:?}..={:?} or were not transient ({name})",
            flood[SHED],
            flood[SHED_WRONGLY],
            OVERLOAD_PUSHBACK / 2,
            OVERLOAD_PUSHBACK.mul_f64(1.5)
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
    // A fourth connection of region 11 is closed by the gateway on arrival: it fails to
    // connect, or its call fails, and promptly. A call still waiting after 10 s is not
    // a refusal (a gateway that left the connection hanging would pass as refusing it).
    // Closed, the call fails in the transport (no gRPC answer at all): an answer from the
    // gateway or a node, even an error, would mean the connection was served.
    let fourth = async {
        let files = t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/11").unwrap());
        match t.gateway_channel(&files).await {
            Err(refused) => Ok(format!("connect: {refused}")),
            Ok(channel) => match replay(&mut GatewayClient::new(channel), &case).await {
                Ok(()) => Err("served".to_owned()),
                Err(status) => {
                    let in_transport = std::error::Error::source(&status)
                        .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
                    if in_transport {
                        Ok(format!("call: {status:?}"))
                    } else {
                        Err(format!("answered {status:?}"))
                    }
                }
            },
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), fourth).await {
        Ok(Ok(refused)) => println!("the fourth connection was refused ({refused})"),
        Ok(Err(served)) => panic!("a fourth connection of region 11 was served: {served}"),
        Err(_) => panic!(
            "a fourth connection of region 11 was neither served nor refused within 10 s: \
             left hanging, not closed on arrival"
        ),
    }
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

/// A delivery carrying `padding` in a field no party reads (protobuf decoders skip an
/// unknown field): the node answers the replayed case from its idempotency record as
/// for the plain request, but the message the gateway buffers is as large as chosen.
#[derive(Clone, PartialEq, Message)]
struct PaddedDelivery {
    #[prost(message, optional, tag = "1")]
    application: Option<Application>,
    #[prost(bytes = "vec", tag = "1000")]
    padding: Vec<u8>,
}

/// Replays the delivery `r` with `padding` bytes more in its message.
async fn padded_replay(channel: SigningChannel, r: &Replay, padding: usize) -> Result<(), Status> {
    let mut request = Request::new(PaddedDelivery {
        application: Some(r.application.clone()),
        padding: vec![0xA5; padding],
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
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    grpc.unary::<_, DeliverApplicationResponse, _>(
        request,
        http::uri::PathAndQuery::from_static("/tongban.federation.v1.Gateway/DeliverApplication"),
        StrictCodec::<PaddedDelivery, DeliverApplicationResponse>::default(),
    )
    .await
    .map(|_| ())
}

/// The gateway's own refusals for its buffer budget (`gateway/src/admission.rs`
/// `Permit::charge`): used up, or the origin over its share of it.
const BUFFER_REFUSALS: [&str; 2] = [
    "the gateway's buffer budget is used up; retry later",
    "this region holds more than its share of the gateway's buffers while they are nearly full; retry later",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_refused_for_the_byte_budget_and_the_gateway_keeps_serving() {
    // The smallest budget the gateway accepts: one largest request and its answer.
    let budget = 2 * MAX_MESSAGE;
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.limits.buffer_budget_bytes = budget;
    })
    .await;
    // The call limits stay the defaults, far above the 10 calls at once here: only the
    // byte budget can refuse.
    let limits = t.fed.spec().limits.clone();
    assert!(limits.max_in_flight / 4 * 3 > 10 && limits.max_in_flight_per_target > 10);
    let large_case = delivered_case(&t, "31", "44").await;
    let steady_case = delivered_case(&t, "11", "31").await;
    // Messages of 3.5 MiB, near the 4 MiB the federation relays: one fits the 8 MiB
    // budget, two do not (and one region alone stops at three quarters of it).
    let padding = MAX_MESSAGE - MAX_MESSAGE / 8;
    let shanghai: Vec<SigningChannel> = {
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(connection(&t, "31").await);
        }
        channels
    };
    // A lone large call fits: the budget refuses only what is buffered at once.
    padded_replay(shanghai[0].clone(), &large_case, padding)
        .await
        .unwrap();

    // Bursts of 8 large calls at once over 4 connections (28 MiB offered to an 8 MiB
    // budget), until the budget has refused some; with each burst, Beijing's small
    // calls, which must all be served.
    let (mut served, mut refused, mut wrong) = (0, 0, Vec::new());
    let beijing = client(&t, "11").await;
    let mut beijing_answers = Vec::new();
    for burst in 1..=20 {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let (channel, case) = (shanghai[i % shanghai.len()].clone(), large_case.clone());
                tokio::spawn(async move { padded_replay(channel, &case, padding).await })
            })
            .collect();
        let small: Vec<_> = (0..2)
            .map(|_| {
                let (mut beijing, case) = (beijing.clone(), steady_case.clone());
                tokio::spawn(async move { replay(&mut beijing, &case).await })
            })
            .collect();
        for call in calls {
            match call.await.unwrap() {
                Ok(()) => served += 1,
                Err(status) => {
                    let for_bytes = BUFFER_REFUSALS.contains(&status.message());
                    match stated_pushback(&status) {
                        Ok(_) if for_bytes => refused += 1,
                        Ok(_) => wrong.push(format!("shed, not for the byte budget: {status:?}")),
                        Err(problem) => wrong.push(problem),
                    }
                }
            }
        }
        for call in small {
            beijing_answers.push(call.await.unwrap());
        }
        println!(
            "after burst {burst}: {served} large calls served, {refused} refused for the byte budget, {} otherwise failed",
            wrong.len()
        );
        if refused > 0 || !wrong.is_empty() {
            break;
        }
    }

    // Every failure was the byte budget's precise refusal, as a shed call is answered
    // (RESOURCE_EXHAUSTED, transient, a pushback in range), never a call limit's.
    assert!(
        wrong.is_empty(),
        "large calls failed other than for the byte budget (call limits {} and {}): {wrong:#?}",
        limits.max_in_flight,
        limits.max_in_flight_per_target
    );
    assert!(
        refused > 0,
        "20 bursts of 8 calls of {padding} bytes at once were never refused for the gateway's {budget}-byte buffer budget"
    );
    // Another region's small calls were served throughout: the budget is shared fairly.
    let beijing_failed: Vec<_> = beijing_answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .collect();
    assert!(
        beijing_failed.is_empty(),
        "of {} calls from region 11 during the bursts, these failed: {beijing_failed:#?}",
        beijing_answers.len()
    );

    // The gateway keeps serving, large messages too: every refused call gave its bytes
    // back (a lone 3.5 MiB call is refused once more than 2.5 MiB of the budget leaked).
    for _ in 0..3 {
        padded_replay(shanghai[1].clone(), &large_case, padding)
            .await
            .unwrap_or_else(|s| {
                panic!("after the bursts, a lone large call was not served (budget not given back?): {s:?}")
            });
    }
    replay(&mut beijing.clone(), &steady_case).await.unwrap();
    t.shutdown().await;
}

/// A TCP connection to `addr` that never starts TLS: to the gateway, a handshake in
/// progress. Non-blocking, so [`closed_by_server`] can look without waiting.
async fn silent_connection(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_std()
        .unwrap();
    tcp.set_nonblocking(true).unwrap();
    tcp
}

/// Whether the server has closed `tcp` (end of stream or reset); `false` while it is
/// open and silent, as a server waiting for a ClientHello is.
fn closed_by_server(mut tcp: &std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the gateway sent bytes before any ClientHello"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// How a TLS handshake with the gateway at `addr` presenting `files` ends.
#[derive(Debug)]
enum Handshake {
    Completed,
    /// The connection was refused or closed before the handshake completed.
    Refused(String),
    /// Neither within 10 s: not a refusal.
    Hung,
}

async fn tls_handshake(addr: std::net::SocketAddr, files: &TlsFiles) -> Handshake {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("TCP: {e}"))?;
        let server_name = ServerName::try_from(PeerIdentity::Gateway.dns_name()).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(files.client_rustls_config().unwrap())
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        use tokio::io::AsyncWriteExt;
        let _ = tls.shutdown().await;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(())) => Handshake::Completed,
        Ok(Err(refused)) => Handshake::Refused(refused),
        Err(_) => Handshake::Hung,
    }
}

/// Opens `cap` silent connections, then tries a real handshake: returns the silent
/// connections once the handshake was refused while every one of them was still held
/// open (a round where the gateway's handshake timeout had already cut one off proves
/// nothing, and is tried again). Fails on a handshake completed or left hanging while
/// the slots were held.
async fn hold_every_slot(
    addr: std::net::SocketAddr,
    cap: usize,
    files: &TlsFiles,
) -> Vec<std::net::TcpStream> {
    for round in 1..=5 {
        let mut silent = Vec::new();
        for _ in 0..cap {
            silent.push(silent_connection(addr).await);
        }
        let probe = tls_handshake(addr, files).await;
        let held = silent.iter().all(|tcp| !closed_by_server(tcp));
        match probe {
            Handshake::Completed if held => panic!(
                "a real client completed a handshake while {cap} silent connections held \
                 every handshake slot"
            ),
            Handshake::Hung => panic!(
                "a real client's handshake was neither completed nor refused within 10 s \
                 while the slots were held: left waiting, not refused at once"
            ),
            Handshake::Refused(why) if held => {
                println!("round {round}: with {cap} slots held, a handshake was refused ({why})");
                return silent;
            }
            other => println!(
                "round {round}: a silent connection was cut off before the probe ended ({other:?}); again"
            ),
        }
    }
    panic!("in 5 rounds the silent connections never outlived a probe handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_fill_the_handshake_slots_only_until_closed_or_timed_out() {
    const CAP: usize = 3;
    let t = start_with(&["310000", "440000"], |spec| {
        spec.limits.max_concurrent_handshakes = CAP;
    })
    .await;
    let addr = t.fed.gateway().federation_addr;
    let files = t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap());
    let case = delivered_case(&t, "31", "44").await;
    // With the slots free, a real client connects and is served.
    assert!(matches!(
        tls_handshake(addr, &files).await,
        Handshake::Completed
    ));
    replay(&mut client(&t, "31").await, &case).await.unwrap();

    // Held by silent connections: a real client is refused at once; the silent ones
    // closed, it connects and is served again.
    let silent = hold_every_slot(addr, CAP, &files).await;
    drop(silent);
    eventually(
        WAIT,
        "a handshake after the silent connections closed",
        || async {
            matches!(tls_handshake(addr, &files).await, Handshake::Completed).then_some(())
        },
    )
    .await;
    replay(&mut client(&t, "31").await, &case).await.unwrap();

    // Held again and never closed: the gateway cuts them off at its ClientHello timeout
    // (2 s by default), and a real client is served again.
    let silent = hold_every_slot(addr, CAP, &files).await;
    eventually(WAIT, "the gateway closing silent connections", || async {
        silent.iter().all(closed_by_server).then_some(())
    })
    .await;
    eventually(
        WAIT,
        "a handshake after the silent connections timed out",
        || async {
            matches!(tls_handshake(addr, &files).await, Handshake::Completed).then_some(())
        },
    )
    .await;
    replay(&mut client(&t, "31").await, &case).await.unwrap();
    t.shutdown().await;
}
