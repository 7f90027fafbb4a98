//! HTTP/2 keep-alive pings, for both sides of the gateway: the connections it serves
//! and the pooled connections it opens to nodes.

use std::time::Duration;

use h2::Ping;

/// Pings the peer every `interval`; returns why the connection should close once a ping
/// goes unanswered for `timeout` (or pings cannot be sent). Never returns when the
/// connection offers no ping handle.
pub async fn keepalive(
    pings: Option<h2::PingPong>,
    interval: Duration,
    timeout: Duration,
) -> String {
    let Some(mut pings) = pings else {
        return std::future::pending::<String>().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, pings.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("keep-alive ping failed: {e}"),
            Err(_) => return format!("no keep-alive answer within {timeout:?}"),
        }
    }
}
