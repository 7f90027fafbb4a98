//! A second look at a call that failed without saying why. When a platform refuses the
//! node's certificate (or its lack of one) under TLS 1.3, the refusal is an alert that
//! arrives after the client considers the handshake done; the HTTP client may find the
//! fresh connection closed before it sends anything and report only "connection was
//! not ready", the alert lost. Here the handshake is made alone over the same rustls
//! configuration and a request written and read by hand, so the alert surfaces as the
//! rustls error that `http::tls::explain` names.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::Url;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::platform::http::{config::PlatformTls, tls};

/// Where to connect: the base URL (its host the name checked in the certificate) and,
/// when that name is not the URL's host, the addresses to connect to instead.
pub struct Target<'a> {
    pub base: &'a Url,
    pub connect_to: Option<&'a [SocketAddr]>,
    /// The URL as the user gave it, for the explanation.
    pub shown_url: &'a str,
}

async fn connect(target: &Target<'_>, host: &str, port: u16) -> std::io::Result<TcpStream> {
    match target.connect_to {
        Some(addrs) => TcpStream::connect(addrs).await,
        None => TcpStream::connect((host, port)).await,
    }
}

/// The sentence that explains why a handshake and one request with `tls` fail, or
/// `None` when they succeed or fail in a way TLS does not explain.
pub async fn explain_failure(
    target: &Target<'_>,
    tls: &PlatformTls,
    timeout: Duration,
) -> Option<String> {
    let config = Arc::new(tls::client_config(tls).ok()?);
    let host = target
        .base
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = target.base.port_or_known_default()?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let path = format!("{}/v1/health", target.base.path().trim_end_matches('/'));
    let attempt = async {
        let stream = connect(target, &host, port).await?;
        let mut stream = TlsConnector::from(config).connect(name, stream).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Err(error)) => tls::explain(&error, tls, target.shown_url),
        _ => None,
    }
}
