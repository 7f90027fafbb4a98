//! The gateway's connection pool to nodes, driven directly against real nodes: endpoint
//! failover, reconnection after a node restarts, and outlier ejection of an endpoint
//! that stops answering (its calls' deadlines run out) but never of one whose calls are
//! given up before their deadline (a caller's own cancellation; through a real gateway
//! in `reset_storm.rs`).

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tongban_gateway::{
    ejection::{Deadline, MIN_COUNTED_DEADLINE},
    upstream::{NodePool, UpstreamError},
};
use tongban_kit::LinkMode;
use tongban_kit::testing::{TestFederation, eventually, start};
use tongban_runtime::{trust::identity::PeerIdentity, trust::tls::ClientSettings};

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

fn pool(t: &TestFederation, urls: &[String]) -> NodePool {
    let tls = t
        .tls_files(&PeerIdentity::Gateway)
        .client_rustls_config()
        .unwrap();
    let node = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    NodePool::new(urls, tls, &node, &ClientSettings::default()).unwrap()
}

/// One `grpc.health.v1.Health/Check` through the pool; the call's `grpc-status`.
async fn health_check(pool: &NodePool) -> Result<String, UpstreamError> {
    health_check_under(pool, Duration::from_secs(10)).await
}

/// A health check under a deadline of `within` from now.
async fn health_check_under(pool: &NodePool, within: Duration) -> Result<String, UpstreamError> {
    let deadline = Deadline {
        from: Instant::now(),
        within,
    };
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
        .into_parts();
    // An empty HealthCheckRequest: uncompressed flag, zero length.
    let body = Bytes::from_static(&[0, 0, 0, 0, 0]);
    let (response, report) = pool
        .call(parts.headers, HEALTH_CHECK, body.into(), deadline)
        .await?;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    report.answered();
    Ok(trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default())
}

fn unused_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("https://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_skip_an_unreachable_endpoint() {
    let t = start(&["440000"]).await;
    let live = format!("https://{}", t.fed.node("44").unwrap().federation_addr);
    let pool = pool(&t, &[unused_endpoint(), live]);
    // Rotation starts at either endpoint; every call must land on the live one.
    for _ in 0..6 {
        assert_eq!(health_check(&pool).await.unwrap(), "0");
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_reconnected() {
    let mut t = start(&["440000"]).await;
    let live = format!("https://{}", t.fed.node("44").unwrap().federation_addr);
    let pool = pool(&t, &[live]);
    assert_eq!(health_check(&pool).await.unwrap(), "0");

    t.fed.stop_node("44").await.unwrap();
    let err = eventually(Duration::from_secs(10), "calls fail", || async {
        health_check(&pool).await.err()
    })
    .await;
    assert!(
        matches!(
            err,
            UpstreamError::Connect { .. } | UpstreamError::BackingOff { .. }
        ),
        "{err}"
    );
    // The error says why the node cannot be reached.
    assert!(err.to_string().contains("refused"), "{err}");

    t.fed.restart_node("44").await.unwrap();
    eventually(Duration::from_secs(10), "reconnected", || async {
        health_check(&pool).await.ok()
    })
    .await;
    t.shutdown().await;
}

/// A health check under a deadline of `limit`, given up when it runs out.
async fn health_check_within(pool: &NodePool, limit: Duration) -> Option<String> {
    tokio::time::timeout(limit, health_check_under(pool, limit))
        .await
        .ok()
        .and_then(Result::ok)
}

/// A health check under a deadline of `within`, given up (as a caller resets its call)
/// after `after`.
async fn health_check_given_up(pool: &NodePool, within: Duration, after: Duration) -> bool {
    tokio::time::timeout(after, health_check_under(pool, within))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_answering_is_ejected_then_probed_back() {
    let t = start(&["440000"]).await;
    let node = t.fed.node("44").unwrap().federation_addr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = tongban_kit::FaultProxy::start(listener, node).unwrap();
    let pool = pool(
        &t,
        &[
            format!("https://{}", proxy.addr()),
            format!("https://{node}"),
        ],
    );
    // The shortest deadline whose running out counts against a node.
    let limit = MIN_COUNTED_DEADLINE;
    for _ in 0..4 {
        assert_eq!(
            health_check_within(&pool, limit).await.as_deref(),
            Some("0")
        );
    }

    // The proxied endpoint's connection stays open but nothing passes: calls on it go
    // unanswered. Given up by their caller long before their deadline, they say nothing
    // of the endpoint: not ejected however many.
    proxy.set(LinkMode::Blackhole);
    let mut given_up = 0;
    for _ in 0..40 {
        if !health_check_given_up(&pool, Duration::from_secs(10), Duration::from_millis(20)).await {
            given_up += 1;
        }
    }
    assert!(
        given_up >= 15,
        "only {given_up} of 40 calls hit the silent endpoint"
    );
    let health = pool.health();
    assert_eq!(
        health[0].backing_off, None,
        "ejected by {given_up} cancellations"
    );
    assert_eq!(health[0].ejections, 0);

    // Unanswered until their deadline runs out: after 5 in a row it is ejected.
    let mut unanswered = 0;
    for _ in 0..40 {
        if health_check_within(&pool, limit).await.is_none() {
            unanswered += 1;
        }
        if pool.health()[0].backing_off.is_some() {
            break;
        }
    }
    let health = pool.health();
    let reason = health[0].backing_off.clone().expect("ejected");
    assert!(reason.contains("ejected"), "{reason}");
    assert!(!health[0].up(), "an ejected endpoint counts as down");
    assert_eq!(unanswered, 5, "ejected after five unanswered calls");
    assert_eq!(health[0].ejections, 1);
    // Ejected, it is skipped: every call lands on the healthy endpoint at once.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(
            health_check_within(&pool, limit).await.as_deref(),
            Some("0")
        );
    }
    assert!(started.elapsed() < limit * 5, "{:?}", started.elapsed());

    // Healed, it is probed after its back-off and restored by one answered call.
    proxy.set(LinkMode::Pass);
    eventually(Duration::from_secs(10), "the endpoint restored", || async {
        health_check_within(&pool, limit).await?;
        let health = pool.health();
        (health[0].connected && health[0].backing_off.is_none()).then_some(())
    })
    .await;
    println!(
        "{given_up} calls given up before their deadline: not ejected; ejected after \
         {unanswered} calls ran out their deadline; restored: {:?}",
        pool.health()[0]
    );
    t.shutdown().await;
}

/// The gateway checks a node's URI SAN against the registry, not only the DNS name TLS
/// checks: a certificate with 44's DNS name but naming region 31 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_naming_another_region_is_refused() {
    let t = start(&["440000"]).await;
    let dir = t.dir.path().join("pki");
    let ca = tongban_runtime::trust::pki::DevCa::load(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let guangdong = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    let shanghai = PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap();
    let leaf = ca
        .issue_named(&guangdong, &shanghai, Duration::from_secs(3600))
        .unwrap();
    let impostor = tempfile::tempdir().unwrap();
    let (cert, key) =
        tongban_runtime::trust::pki::write_leaf(impostor.path(), &shanghai, &leaf).unwrap();
    let files = tongban_runtime::trust::tls::TlsFiles {
        ca: dir.join("ca.pem"),
        cert,
        key,
        crl: None,
    };
    let addr = tongban_kit::testing::health_server(&files).await;
    let pool = pool(&t, &[format!("https://{addr}")]);
    let err = health_check(&pool).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("presented spiffe://tongban/region/31"),
        "{err}"
    );
    t.shutdown().await;
}

/// The gateway's client to nodes speaks TLS 1.3 only: a node offering 1.2 alone is
/// refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaking_only_tls_1_2_is_refused() {
    let t = start(&["440000"]).await;
    let guangdong = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    let fake = tongban_kit::testing::tls12_server(&t.tls_files(&guangdong)).await;
    let pool = pool(&t, &[format!("https://{fake}")]);
    let err = health_check(&pool).await.unwrap_err();
    println!("gateway to a TLS 1.2 node: {err}");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    t.shutdown().await;
}
