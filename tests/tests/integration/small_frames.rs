//! Messages sent in 1-byte DATA frames (`gateway/src/message.rs`): each frame arrives
//! as a slice of h2's read buffer, so a gateway keeping one per frame holds dozens of
//! times what the message is charged to its byte budget. A registered node (31's
//! certificate) sends [`CALLS`] deliveries to 44 at once over raw HTTP/2 over mTLS,
//! each on its own connection: first [`TINY`] bytes of its message one byte per DATA
//! frame (the bytes written on each connection are counted: ten per byte, a 9-byte
//! frame header and the byte), then, once every call's are in, the rest in ordinary
//! frames, more than the budget lets one region hold. Meanwhile 11 keeps delivering to
//! 31. Once the 1-byte parts are in, the gateway's RSS has grown by no more than twice
//! their bytes and a small constant; at its peak by no more than its budget and a
//! modest constant; the calls beyond the budget are refused with its own
//! RESOURCE_EXHAUSTED, the others served, and every one of 11's calls is served.
//!
//! Real gateway and node processes; figures printed, counts and bounds asserted.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tongban_kit::testing::{RegionSigner, SigningChannel};

use bytes::Bytes;
use h2::{Ping, PingPong, SendStream, client::SendRequest};
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Barrier,
};
use tongban_gateway::message::MAX_MESSAGE;
use tongban_kit::testing::{TestFederation, processes, start_with};
use tongban_proto::{
    contract::metadata,
    v1::{Application, gateway_client::GatewayClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Status};

use super::overload::{Replay, delivered_case, gateway_rss, replay};

const WAIT: Duration = Duration::from_secs(30);
/// The gateway's buffer budget: the smallest it accepts (one largest request and its
/// answer).
const BUDGET: usize = 2 * MAX_MESSAGE;
/// Deliveries sent at once, each on a connection of its own.
const CALLS: usize = 4;
/// Bytes of each message sent one per DATA frame. A debug-built gateway reads about
/// 80,000 frames a second and waits 10 s for a delivery's message, so a whole 4 MiB
/// message cannot come in 1-byte frames; 64 KiB from each call already held dozens of
/// times over (a 32-byte handle and a share of a read buffer per byte).
const TINY: usize = 64 * 1024;
/// Each message: [`TINY`] bytes in 1-byte frames, then the rest in ordinary frames,
/// which fill the budget: together the calls offer more than one region may hold.
const MESSAGE: usize = TINY + 2 * 1024 * 1024;
/// Frames sent on a connection before waiting for the gateway to have read them.
const PACE: usize = 1024;
/// What the gateway may hold beyond its budget at the peak: its own buffers for the
/// attack's connections and calls (TLS, h2 frame queues, the relay to 44) and the
/// allocator's slack.
const SLACK: f64 = 16.0 * MIB;
/// What it may hold beyond twice the 1-byte parts' bytes once they are all in.
const TINY_SLACK: f64 = 4.0 * MIB;
const MIB: f64 = 1048576.0;

/// The gateway's own refusals for its buffer budget (`gateway/src/admission.rs`
/// `Permit::charge`): used up, or the origin over its share of it.
const BUFFER_REFUSALS: [&str; 2] = [
    "the gateway's buffer budget is used up; retry later",
    "this region holds more than its share of the gateway's buffers while they are nearly full; retry later",
];

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// A delivery carrying `padding` in a field no party reads (protobuf decoders skip an
/// unknown field), so the message is as large as chosen and the node still answers it.
#[derive(Clone, PartialEq, Message)]
struct PaddedDelivery {
    #[prost(message, optional, tag = "1")]
    application: Option<Application>,
    #[prost(bytes = "vec", tag = "1000")]
    padding: Vec<u8>,
}

/// The gRPC body of a delivery replaying `r` whose framed message is `size` bytes.
fn padded_body(r: &Replay, size: usize) -> Bytes {
    let mut delivery = PaddedDelivery {
        application: Some(r.application.clone()),
        padding: Vec::new(),
    };
    // The padding's own tag and length take a few bytes: shrink it until it fits.
    let mut padding = size - 5 - delivery.encoded_len();
    loop {
        delivery.padding = vec![0xA5; padding];
        if 5 + delivery.encoded_len() <= size {
            break;
        }
        padding -= 1;
    }
    let message = delivery.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    Bytes::from(body)
}

/// A connection's transport, counting the bytes h2 writes to it (TLS plaintext).
struct Counted<T> {
    inner: T,
    written: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &written {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A raw HTTP/2 connection to the gateway as one region's node.
struct Raw {
    client: SendRequest<Bytes>,
    /// Answered by the gateway once it has read everything sent before.
    ping: PingPong,
    /// Bytes h2 wrote on the connection.
    written: Arc<AtomicU64>,
}

/// An HTTP/2 connection to the gateway presenting region `prefix`'s certificate.
async fn raw_connection(t: &TestFederation, prefix: &str) -> Raw {
    let addr: SocketAddr = t.fed.gateway().federation_addr;
    let tls = t.tls_files(&region(prefix)).client_rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name =
        rustls::pki_types::ServerName::try_from(PeerIdentity::Gateway.dns_name()).unwrap();
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let io = Counted {
        inner: io,
        written: written.clone(),
    };
    let (client, mut connection) = h2::client::handshake(io).await.unwrap();
    let ping = connection.ping_pong().unwrap();
    tokio::spawn(connection);
    Raw {
        client,
        ping,
        written,
    }
}

/// Sends `bytes` on `stream` one byte per DATA frame, counting them in `sent`; false
/// if the gateway ended the call first. Paced as an attacker would: h2 closes a
/// connection holding more than about 8,000 small frames not yet handed to the gateway
/// (h2 0.4.20's data frame budget), so each [`PACE`] frames are written out, then a
/// PING is answered (the gateway has read them all) before the next.
async fn send_byte_by_byte(
    stream: &mut SendStream<Bytes>,
    raw: &mut Raw,
    bytes: &Bytes,
    sent: &AtomicUsize,
) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let batch = PACE.min(bytes.len() - at);
        // Capacity counts the frames h2 has queued, so it queues at most a batch.
        stream.reserve_capacity(batch);
        let mut window = stream.capacity();
        if window == 0 {
            window = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(window)) => window,
                _ => return false,
            };
        }
        let before = raw.written.load(Ordering::Relaxed);
        let n = window.min(batch);
        for _ in 0..n {
            if stream.send_data(bytes.slice(at..=at), false).is_err() {
                return false;
            }
            at += 1;
            sent.store(at, Ordering::Relaxed);
        }
        // h2 sends a PING ahead of queued DATA: wait for the DATA to be written first.
        while raw.written.load(Ordering::Relaxed) < before + 10 * n as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if raw.ping.ping(Ping::opaque()).await.is_err() {
            return false;
        }
    }
    true
}

/// The gRPC status of an answer: in its headers (trailers only) or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> Status {
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return Status::unknown(format!("no answer: {e}")),
    };
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(e) => return Status::unknown(format!("answer cut: {e}")),
        }
    }
    match body.trailers().await {
        Ok(Some(trailers)) => Status::from_header_map(&trailers)
            .unwrap_or_else(|| Status::unknown("trailers without a grpc-status")),
        Ok(None) => Status::unknown("no trailers"),
        Err(e) => Status::unknown(format!("trailers cut: {e}")),
    }
}

/// How one call of the attack went.
struct Sent {
    status: Status,
    /// Bytes of the message sent one per DATA frame.
    tiny: usize,
    /// Bytes h2 had written on the call's connection when they were all sent.
    written: u64,
    took: Duration,
}

/// The attack's two steps, each begun by every call at once: `tiny_sent` waits until
/// every call's 1-byte frames are in, `go` then lets the rest of the messages go.
#[derive(Clone)]
struct Steps {
    tiny_sent: Arc<Barrier>,
    go: Arc<Barrier>,
}

/// A delivery replaying `r` whose message's first [`TINY`] bytes are sent one per DATA
/// frame and, once every call's are, the rest in ordinary frames.
async fn tiny_frames_call(mut raw: Raw, r: Replay, steps: Steps, signer: RegionSigner) -> Sent {
    let started = Instant::now();
    let body = padded_body(&r, MESSAGE);
    let mut client = raw.client.clone().ready().await.unwrap();
    let mut request =
        http::Request::post("https://gateway/tongban.federation.v1.Gateway/DeliverApplication")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(metadata::TARGET_REGION, r.target.as_str())
            .header(metadata::IDEMPOTENCY_KEY, r.key.as_str())
            .body(())
            .unwrap();
    // Signed by 31 as its node signs: the node takes it once it is relayed whole.
    let signature = signer.header("DeliverApplication", request.headers(), &body[5..]);
    request
        .headers_mut()
        .insert(metadata::SIGNATURE, signature.parse().unwrap());
    let (response, mut stream) = client.send_request(request, false).unwrap();
    let status = grpc_status(response);
    tokio::pin!(status);
    let (sent, tiny) = (AtomicUsize::new(0), body.slice(..TINY));
    let answered = tokio::select! {
        all = send_byte_by_byte(&mut stream, &mut raw, &tiny, &sent) => {
            // Not all sent: the gateway ended the call, and its answer tells why.
            if all { None } else { Some((&mut status).await) }
        }
        status = &mut status => Some(status),
    };
    let written = raw.written.load(Ordering::Relaxed);
    steps.tiny_sent.wait().await;
    steps.go.wait().await;
    let status = match answered {
        Some(status) => status,
        None => {
            // Queued whole: h2 sends it in frames as large as the gateway's windows allow.
            let _ = stream.send_data(body.slice(TINY..), true);
            status.await
        }
    };
    Sent {
        status,
        tiny: sent.load(Ordering::Relaxed),
        written,
        took: started.elapsed(),
    }
}

/// 11's deliveries to 31, one after another until `stop`: served, failures, the slowest.
fn steady(
    client: GatewayClient<SigningChannel>,
    case: Replay,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>, Duration)> {
    tokio::spawn(async move {
        let (mut served, mut failed, mut worst) = (0, Vec::new(), Duration::ZERO);
        let mut client = client;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            match replay(&mut client, &case).await {
                Ok(()) => served += 1,
                Err(status) => failed.push(format!("{:?}: {}", status.code(), status.message())),
            }
            worst = worst.max(t0.elapsed());
        }
        (served, failed, worst)
    })
}

/// What the attack did to the gateway: each call, and its RSS before, once every
/// 1-byte part was in, and at its peak (sampled every 50 ms).
struct Attack {
    calls: Vec<Sent>,
    took: Duration,
    rss_before: f64,
    rss_tiny: f64,
    rss_peak: f64,
    samples: usize,
}

/// The calls at once, one per connection.
async fn attack(t: &TestFederation, connections: Vec<Raw>, case: &Replay) -> Attack {
    let steps = Steps {
        tiny_sent: Arc::new(Barrier::new(CALLS + 1)),
        go: Arc::new(Barrier::new(CALLS + 1)),
    };
    let rss_before = gateway_rss(t).await;
    let started = Instant::now();
    let calls: Vec<_> = connections
        .into_iter()
        .map(|raw| {
            let call = tiny_frames_call(raw, case.clone(), steps.clone(), t.signer("31"));
            tokio::spawn(call)
        })
        .collect();
    // A call that failed to start would leave the others waiting: bounded.
    let step = |barrier: Arc<Barrier>| async move {
        tokio::time::timeout(WAIT, barrier.wait())
            .await
            .expect("every call reaches each step")
    };
    step(steps.tiny_sent.clone()).await;
    let mut rss_tiny = 0.0;
    for _ in 0..3 {
        rss_tiny = f64::max(rss_tiny, gateway_rss(t).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step(steps.go.clone()).await;
    let (mut rss_peak, mut samples) = (rss_tiny, 1);
    while !calls.iter().all(|c| c.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rss_peak = rss_peak.max(gateway_rss(t).await);
        samples += 1;
    }
    let took = started.elapsed();
    let mut sent = Vec::new();
    for call in calls {
        sent.push(call.await.unwrap());
    }
    Attack {
        calls: sent,
        took,
        rss_before,
        rss_tiny,
        rss_peak,
        samples,
    }
}

/// Whether a call was refused with the gateway's own answer for its byte budget.
fn refused_for_bytes(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted && BUFFER_REFUSALS.contains(&status.message())
}

impl Attack {
    fn report(&self, steady: &(usize, Vec<String>, Duration)) {
        let served = self.calls.iter().filter(|s| s.status.code() == Code::Ok);
        let refused = self.calls.iter().filter(|s| refused_for_bytes(&s.status));
        let tiny: usize = self.calls.iter().map(|s| s.tiny).sum();
        let written: u64 = self.calls.iter().map(|s| s.written).sum();
        println!(
            "{CALLS} deliveries of {MESSAGE} bytes from 31 to 44, the first {TINY} in 1-byte DATA frames \
             ({tiny} frames, {:.1} bytes written each), buffer budget {BUDGET}: {} served, {} refused for \
             the byte budget, over {:?}; gateway RSS {:.1} MiB before, +{:.1} MiB once the 1-byte parts were \
             in, +{:.1} MiB at the peak of {} samples; 11's deliveries to 31: {} served, {} failed, slowest {:?}",
            written as f64 / tiny.max(1) as f64,
            served.count(),
            refused.count(),
            self.took,
            self.rss_before / MIB,
            (self.rss_tiny - self.rss_before) / MIB,
            (self.rss_peak - self.rss_before) / MIB,
            self.samples,
            steady.0,
            steady.1.len(),
            steady.2,
        );
        for s in &self.calls {
            let (code, message) = (s.status.code(), s.status.message());
            println!("  {code:?} {message:?}, {:?}", s.took);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_data_frames_are_charged_what_they_hold() {
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.limits.buffer_budget_bytes = BUDGET;
        spec.launch = processes("error");
    })
    .await;
    let limits = t.fed.spec().limits.clone();
    // Only the byte budget can refuse the calls here.
    assert!(limits.max_in_flight / 4 * 3 > CALLS + 2 && limits.max_in_flight_per_target > CALLS);
    let attack_case = delivered_case(&t, "31", "44").await;
    let steady_case = delivered_case(&t, "11", "31").await;
    let mut connections = Vec::new();
    for _ in 0..CALLS {
        connections.push(raw_connection(&t, "31").await);
    }
    let beijing = GatewayClient::new(
        t.gateway_channel(&t.tls_files(&region("11")))
            .await
            .unwrap(),
    );
    replay(&mut beijing.clone(), &steady_case).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let during = steady(beijing.clone(), steady_case.clone(), stop.clone());
    let a = attack(&t, connections, &attack_case).await;
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    a.report(&during);

    for s in &a.calls {
        // Every byte went in a DATA frame of its own: a 9-byte header and the byte.
        assert_eq!(
            s.tiny, TINY,
            "a call was answered before its 1-byte frames were in"
        );
        assert!(
            s.written >= 10 * TINY as u64,
            "{} bytes written: frames were not 1 byte",
            s.written
        );
    }
    let tiny_growth = a.rss_tiny - a.rss_before;
    assert!(
        tiny_growth <= (2 * CALLS * TINY) as f64 + TINY_SLACK,
        "the gateway's RSS grew by {:.1} MiB for {CALLS} × {TINY} bytes in 1-byte frames",
        tiny_growth / MIB
    );
    let growth = a.rss_peak - a.rss_before;
    assert!(
        growth <= BUDGET as f64 + SLACK,
        "the gateway's RSS grew by {:.1} MiB for a {:.1} MiB budget",
        growth / MIB,
        BUDGET as f64 / MIB
    );
    let other: Vec<_> = a
        .calls
        .iter()
        .filter(|s| s.status.code() != Code::Ok && !refused_for_bytes(&s.status))
        .map(|s| format!("{:?}", s.status))
        .collect();
    assert!(
        other.is_empty(),
        "calls failed other than for the byte budget: {other:#?}"
    );
    assert!(
        a.calls.iter().any(|s| refused_for_bytes(&s.status)),
        "none refused for the budget"
    );
    assert!(
        a.calls.iter().any(|s| s.status.code() == Code::Ok),
        "no call was served"
    );
    assert!(
        during.1.is_empty() && during.0 > 0,
        "11's deliveries: {during:?}"
    );

    // The gateway keeps serving both regions.
    let mut shanghai = GatewayClient::new(
        t.gateway_channel(&t.tls_files(&region("31")))
            .await
            .unwrap(),
    );
    replay(&mut shanghai, &attack_case).await.unwrap();
    replay(&mut beijing.clone(), &steady_case).await.unwrap();
    t.shutdown().await;
}
