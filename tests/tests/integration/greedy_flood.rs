//! A greedy flood at the shipped limits: one region sends calls to another region's
//! node as fast as it can, many at once, retrying every refusal at once (ignoring the
//! pushback), while a third region keeps delivering through the gateway.
//!
//! This 2-core machine slows under any flood, whoever serves it; so the steady region's
//! latency under the flood through the gateway is compared with its latency under the
//! same flood sent straight to the flooded node (the gateway then carries only the steady
//! calls), in interleaved rounds. The gateway must serve every steady call and keep the
//! steady region's p99 within 2x of that, i.e. the flood must cost the flooder, not the
//! others. Real gateway and node processes at their shipped limits, real mTLS.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tongban_kit::testing::SigningChannel;

use tongban_kit::testing::{TestFederation, processes, start_with};
use tongban_proto::{
    contract::metadata,
    v1::{gateway_client::GatewayClient, node_client::NodeClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::metadata::MetadataValue;

use super::overload::{Replay, delivered_case, gateway_rss, replay, steady_apart};

/// Calls the flood keeps in flight, over several connections (as a node's pool would).
const FLOOD_CALLERS: usize = 64;
const FLOOD_CONNECTIONS: usize = 4;
const ROUNDS: usize = 5;
const MEASURE: Duration = Duration::from_secs(2);

/// Where the flood goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// Straight to the flooded node, as the gateway (the baseline).
    Direct,
    /// Through the gateway, as the flooding region.
    Gateway,
}

/// One flood call, straight to the node as the gateway relays it.
async fn replay_direct(
    client: &mut NodeClient<SigningChannel>,
    r: &Replay,
) -> Result<(), tonic::Status> {
    let mut request = r.request();
    // What the gateway adds for a call from 31.
    request
        .metadata_mut()
        .insert(metadata::VERIFIED_ORIGIN, MetadataValue::from_static("31"));
    client.deliver_application(request).await.map(|_| ())
}

/// Flood clients: through the gateway as region 31, or straight to node 44 as the gateway.
enum Flooder {
    Gateway(GatewayClient<SigningChannel>),
    Direct(NodeClient<SigningChannel>),
}

async fn flooders(t: &TestFederation, path: Path) -> Vec<Flooder> {
    let mut out = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        out.push(match path {
            Path::Gateway => {
                let files =
                    t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap());
                Flooder::Gateway(GatewayClient::new(t.gateway_channel(&files).await.unwrap()))
            }
            Path::Direct => {
                let files = t.tls_files(&PeerIdentity::Gateway);
                let node = t.fed.node("44").unwrap();
                let url = format!("https://{}", node.federation_addr);
                let server = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
                // Relayed for 31 and signed by it, as the gateway relays its calls.
                let channel = tongban_kit::testing::channel(&url, &files, &server)
                    .await
                    .unwrap()
                    .signing_as(t.signer("31"));
                Flooder::Direct(NodeClient::new(channel))
            }
        });
    }
    out
}

/// Starts the flood; its (served, refused) counts.
fn start_flood(
    clients: &[Flooder],
    r: &Replay,
    stop: &Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<[AtomicU64; 2]>) {
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let tasks = (0..FLOOD_CALLERS)
        .map(|i| {
            let mut client = match &clients[i % clients.len()] {
                Flooder::Gateway(c) => Flooder::Gateway(c.clone()),
                Flooder::Direct(c) => Flooder::Direct(c.clone()),
            };
            let (r, stop, counts) = (r.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = match &mut client {
                        Flooder::Gateway(c) => replay(c, &r).await,
                        Flooder::Direct(c) => replay_direct(c, &r).await,
                    };
                    // Greedy: a refusal is retried at once, whatever it says.
                    let i = usize::from(result.is_err());
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (tasks, counts)
}

/// `{name}_total` by origin, from the gateway's `/metrics`.
async fn by_origin(t: &TestFederation, name: &str) -> Vec<(String, u64)> {
    let admin = tongban_node::portal_client::PortalClient::new(format!(
        "http://{}",
        t.fed.gateway().admin_addr.unwrap()
    ));
    let text = admin.get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap().to_owned();
    let prefix = format!("{name}_total{{origin=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|l| {
            let (origin, rest) = l.split_once('"')?;
            Some((
                origin.to_owned(),
                rest.trim_start_matches('}').trim().parse().ok()?,
            ))
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_flood_at_the_shipped_limits_costs_the_flooder_not_the_others() {
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        // The gateway in its own process with its shipped limits.
        spec.launch = processes("error");
    })
    .await;
    let flood_case = delivered_case(&t, "31", "44").await;
    let steady_case = delivered_case(&t, "11", "31").await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let beijing = t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/11").unwrap());
    let (alone_ok, alone_shed, alone_other, alone_p99) = steady_apart(
        url.clone(),
        (beijing.clone(), t.pki()),
        steady_case.clone(),
        MEASURE,
    )
    .join()
    .unwrap();
    assert_eq!((alone_shed, alone_other), (0, 0));
    println!("beijing alone: {alone_ok} calls, p99 {alone_p99} µs");
    let rss_before = gateway_rss(&t).await;

    let mut p99 = [Vec::new(), Vec::new()];
    let mut rss_peak = rss_before;
    for round in 0..ROUNDS {
        for path in [Path::Direct, Path::Gateway] {
            let clients = flooders(&t, path).await;
            let stop = Arc::new(AtomicBool::new(false));
            let (tasks, counts) = start_flood(&clients, &flood_case, &stop);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let during = steady_apart(
                url.clone(),
                (beijing.clone(), t.pki()),
                steady_case.clone(),
                MEASURE,
            );
            while !during.is_finished() {
                tokio::time::sleep(Duration::from_millis(250)).await;
                rss_peak = rss_peak.max(gateway_rss(&t).await);
            }
            let (ok, shed, other, p) = during.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                task.await.unwrap();
            }
            let (served, refused) = (
                counts[0].load(Ordering::Relaxed),
                counts[1].load(Ordering::Relaxed),
            );
            println!(
                "round {round} flood {path:?}: beijing {ok} ok, {shed} shed, {other} other, p99 {p} µs; \
                 flood {served} served, {refused} refused"
            );
            // The flooder is slowed, not cut off.
            assert!(
                served > 0,
                "the flood was starved ({path:?}, round {round})"
            );
            // Every steady call is served, whatever the flood does.
            assert_eq!(
                (shed, other),
                (0, 0),
                "beijing refused ({path:?}, round {round})"
            );
            assert!(ok > 0);
            p99[usize::from(path == Path::Gateway)].push(p);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let direct = median(p99[0].clone());
    let through = median(p99[1].clone());
    println!(
        "beijing p99 (median of {ROUNDS}): alone {alone_p99} µs, flood straight to the node {direct} µs {:?}, \
         flood through the gateway {through} µs {:?} ({:.2}x); gateway RSS {:.1} MiB before, {:.1} MiB peak",
        p99[0],
        p99[1],
        through as f64 / direct.max(1) as f64,
        rss_before / 1048576.0,
        rss_peak / 1048576.0
    );
    let held = by_origin(&t, "tongban_gateway_connections_held").await;
    let refused = by_origin(&t, "tongban_gateway_streams_refused").await;
    println!("gateway connections held by origin: {held:?}; streams refused: {refused:?}");
    // The control engaged, on the flooding region, far more often than on the steady
    // one (which max-min fairness may hold at its share).
    let of = |counts: &[(String, u64)], origin: &str| {
        counts
            .iter()
            .find(|(o, _)| o == origin)
            .map_or(0, |(_, n)| *n)
    };
    let (flood_held, steady_held) = (
        of(&held, "31") + of(&refused, "31"),
        of(&held, "11") + of(&refused, "11"),
    );
    assert!(flood_held > 0, "the flood was never held back");
    assert!(flood_held > 20 * steady_held, "{held:?} {refused:?}");
    assert!(
        through <= direct * 2,
        "the flood through the gateway raised beijing's p99 to {through} µs, more than 2x the {direct} µs of the same flood sent straight to the node"
    );
    t.shutdown().await;
}
