//! The load generator: N concurrent unary calls in a closed loop over one HTTP/2
//! connection, each sending the same pre-encoded message, so the generator's own cost is
//! small and identical for every target.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes_codec::RawCodec;
use hdrhistogram::Histogram;
use tongban_kit::testing::RegionSigner;
use tongban_proto::contract::metadata::{IDEMPOTENCY_KEY, SIGNATURE};
use tonic::{
    Request,
    client::Grpc,
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataMap, MetadataValue},
    transport::Channel,
};

/// How to reach the node through one target.
#[derive(Clone)]
pub struct Caller {
    pub channel: Channel,
    pub path: PathAndQuery,
    pub metadata: Vec<(&'static str, String)>,
    /// When set, every call carries a W3C `traceparent` of its own, as nodes send them,
    /// and one call in this many is marked sampled (a portal that samples that share).
    pub sampled_one_in: Option<u64>,
    /// Signs each delivery as region 31's node does (`tongban-signature`): the node
    /// refuses unsigned ones. `None` for calls nothing signs (lookups).
    pub signer: Option<RegionSigner>,
}

impl Caller {
    /// `md` with the signature of `message` sent with it, if this caller signs. The
    /// signing is the generator's cost, outside what is measured (the proxy's and the
    /// node's CPU).
    fn signed(&self, mut md: MetadataMap, message: &[u8]) -> MetadataMap {
        if let Some(signer) = &self.signer {
            let method = self.path.path().rsplit('/').next().unwrap_or_default();
            let header = signer.header(method, &md.clone().into_headers(), message);
            if let Ok(value) = MetadataValue::try_from(header.as_str()) {
                md.insert(SIGNATURE, value);
            }
        }
        md
    }
}

/// The `traceparent` of call `n` of task `task`: a trace id of its own, sampled one in
/// `one_in`.
fn traceparent(task: u64, n: u64, one_in: u64) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    let flags = if n.is_multiple_of(one_in.max(1)) {
        "01"
    } else {
        "00"
    };
    let text = format!("00-{:016x}{:016x}-{:016x}-{flags}", task + 1, n + 1, n + 1);
    MetadataValue::try_from(text.as_str()).ok()
}

/// What one run measured.
pub struct RunStats {
    pub calls: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub first_error: Option<String>,
}

fn metadata(pairs: &[(&'static str, String)]) -> MetadataMap {
    let mut md = MetadataMap::new();
    for (k, v) in pairs {
        if let Ok(v) = MetadataValue::try_from(v.as_str()) {
            md.insert(*k, v);
        }
    }
    md
}

/// Makes one call; the error text if it failed.
pub async fn once(caller: &Caller, payload: bytes::Bytes) -> Result<(), String> {
    let mut grpc = Grpc::new(caller.channel.clone());
    grpc.ready().await.map_err(|e| e.to_string())?;
    let md = caller.signed(metadata(&caller.metadata), &payload);
    let mut request = Request::new(payload);
    *request.metadata_mut() = md;
    grpc.unary::<_, bytes::Bytes, _>(request, caller.path.clone(), RawCodec)
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Makes call `n`'s message and the idempotency key it is sent under.
pub type MakeCall = dyn Fn(u64) -> (bytes::Bytes, String) + Send + Sync;

/// What each call sends: one message always, the next of a pool (each message sent
/// once, e.g. lookups of keys never looked up before), or a message made for the call
/// with an idempotency key of its own (e.g. deliveries, each a new case).
#[derive(Clone)]
pub enum Payloads {
    One(bytes::Bytes),
    Pool {
        messages: Arc<Vec<bytes::Bytes>>,
        next: Arc<AtomicUsize>,
    },
    Fresh {
        make: Arc<MakeCall>,
        next: Arc<AtomicU64>,
    },
}

impl Payloads {
    /// The next call's message, and its own idempotency key if it has one (else the
    /// caller's metadata says it).
    fn next(&self) -> (bytes::Bytes, Option<String>) {
        match self {
            Self::One(payload) => (payload.clone(), None),
            Self::Pool { messages, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // Past the end the pool wraps: callers size it for their run.
                (messages[i % messages.len().max(1)].clone(), None)
            }
            Self::Fresh { make, next } => {
                let (message, key) = make(next.fetch_add(1, Ordering::Relaxed));
                (message, Some(key))
            }
        }
    }
}

impl From<bytes::Bytes> for Payloads {
    fn from(payload: bytes::Bytes) -> Self {
        Self::One(payload)
    }
}

/// Runs `inflight` callers for `duration`.
pub async fn run(
    caller: &Caller,
    payloads: impl Into<Payloads>,
    inflight: usize,
    duration: Duration,
) -> RunStats {
    let payloads = payloads.into();
    let started = Instant::now();
    let deadline = started + duration;
    let md = metadata(&caller.metadata);
    // One message always: signed once for the run (the node takes a signature for
    // `[peers] max_age`); others are signed per call with their own key.
    let md = match &payloads {
        Payloads::One(payload) => caller.signed(md, payload),
        _ => md,
    };
    let signs_each = caller.signer.is_some() && !matches!(payloads, Payloads::One(_));
    let mut tasks = Vec::with_capacity(inflight);
    let sampled_one_in = caller.sampled_one_in;
    for task in 0..inflight {
        let task = task as u64;
        let mut grpc = Grpc::new(caller.channel.clone());
        let path = caller.path.clone();
        let payloads = payloads.clone();
        let md = md.clone();
        let caller = caller.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let (mut calls, mut errors, mut first_error) = (0u64, 0u64, None);
            while Instant::now() < deadline {
                let (message, key) = payloads.next();
                let mut md = md.clone();
                if let Some(key) = key.and_then(|k| MetadataValue::try_from(k.as_str()).ok()) {
                    md.insert(IDEMPOTENCY_KEY, key);
                }
                if signs_each {
                    md = caller.signed(md, &message);
                }
                let mut request = Request::new(message);
                *request.metadata_mut() = md;
                if let Some(one_in) = sampled_one_in
                    && let Some(value) = traceparent(task, calls + errors, one_in)
                {
                    request.metadata_mut().insert("traceparent", value);
                }
                let t0 = Instant::now();
                let result = match grpc.ready().await {
                    Ok(()) => grpc
                        .unary::<_, bytes::Bytes, _>(request, path.clone(), RawCodec)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(tonic::Status::unavailable(e.to_string())),
                };
                let us = t0.elapsed().as_micros() as u64;
                match result {
                    Ok(()) => {
                        calls += 1;
                        let _ = hist.record(us.max(1));
                    }
                    Err(status) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error =
                                Some(format!("{:?}: {}", status.code(), status.message()));
                        }
                    }
                }
            }
            (calls, errors, hist, first_error)
        }));
    }
    let mut stats = RunStats {
        calls: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: new_histogram(),
        first_error: None,
    };
    for task in tasks {
        if let Ok((calls, errors, hist, first_error)) = task.await {
            stats.calls += calls;
            stats.errors += errors;
            let _ = stats.latency_us.add(&hist);
            if stats.first_error.is_none() {
                stats.first_error = first_error;
            }
        }
    }
    stats.elapsed = started.elapsed();
    stats
}

/// 1 µs to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// A codec that sends and receives message bodies as opaque bytes.
mod bytes_codec {
    use bytes::{Buf, BufMut, Bytes};
    use tonic::{
        Status,
        codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    };

    #[derive(Clone, Copy, Default)]
    pub struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawCodec;
        type Decoder = RawCodec;

        fn encoder(&mut self) -> Self::Encoder {
            RawCodec
        }

        fn decoder(&mut self) -> Self::Decoder {
            RawCodec
        }
    }

    impl Encoder for RawCodec {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Bytes;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }
}
