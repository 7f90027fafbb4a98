//! The gateway's connection pool to nodes, driven directly against real nodes: endpoint
//! failover, and reconnection after a node restarts.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use tongban_gateway::upstream::{NodePool, UpstreamError};
use tongban_runtime::{identity::PeerIdentity, tls::ClientSettings};
use tongban_tests::{TestFederation, eventually, start};

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

fn pool(t: &TestFederation, urls: &[String]) -> NodePool {
    let tls = t
        .tls_files(&PeerIdentity::Gateway)
        .client_rustls_config()
        .unwrap();
    let node = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    NodePool::new(urls, tls, &node.dns_name(), &ClientSettings::default()).unwrap()
}

/// One `grpc.health.v1.Health/Check` through the pool; the call's `grpc-status`.
async fn health_check(pool: &NodePool) -> Result<String, UpstreamError> {
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
        .into_parts();
    // An empty HealthCheckRequest: uncompressed flag, zero length.
    let body = Bytes::from_static(&[0, 0, 0, 0, 0]);
    let response = pool.call(parts.headers, HEALTH_CHECK, body.into()).await?;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
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
