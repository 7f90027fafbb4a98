//! An operator's side of the operator listener ([`crate::serving::operator_listener`]):
//! requests made with the operator's certificate to a gateway or node that must prove
//! it is the member expected (its URI SAN, as federation clients check), and a loopback
//! proxy that does the same for a browser, so the console opens at
//! `http://127.0.0.1:<port>/console` without a certificate in the browser (as
//! `kubectl proxy` does for the Kubernetes API).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::Request, response::IntoResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, pki_types::ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::{
    process::shutdown::ShutdownSignal,
    serving::plain_http::{self, HttpLimits},
    trust::{
        connector::verify_server_identity,
        identity::PeerIdentity,
        tls::{TlsError, TlsFiles},
    },
};

/// The largest answer read from an operator route (the console's pages and figures).
const MAX_ANSWER: usize = 16 << 20;
/// Connect, handshake and answer, each.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why an operator request failed before an HTTP answer came.
#[derive(Debug, thiserror::Error)]
pub enum OperatorClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{addr}: {reason}")]
    Request { addr: SocketAddr, reason: String },
}

/// An operator's certificate and key, and the federation CA the server must chain to.
#[derive(Clone, Debug)]
pub struct OperatorCredentials {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An HTTP answer: status, content type and body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or as a JSON string when it is not JSON (a plain-text refusal).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
        })
    }
}

/// Makes requests to one member's operator listener as one operator.
#[derive(Clone)]
pub struct OperatorClient {
    addr: SocketAddr,
    expected: PeerIdentity,
    tls: Arc<ClientConfig>,
}

impl OperatorClient {
    /// To the operator listener at `addr` of `expected` (the gateway, or a region's node).
    pub fn new(
        addr: SocketAddr,
        expected: PeerIdentity,
        credentials: &OperatorCredentials,
    ) -> Result<Self, OperatorClientError> {
        let files = TlsFiles {
            ca: credentials.ca.clone(),
            cert: credentials.cert.clone(),
            key: credentials.key.clone(),
            crl: None,
        };
        let mut tls = ClientConfig::clone(files.client_rustls_config()?.as_ref());
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            expected,
            tls: Arc::new(tls),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `method path` with `body` (JSON unless `content_type` says otherwise).
    pub async fn request(
        &self,
        method: &http::Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Answer, OperatorClientError> {
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body, content_type))
            .await
            .map_err(|_| self.failed("no answer within 30 s".to_owned()))?
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, OperatorClientError> {
        let body = Bytes::from(body.to_string());
        self.request(&http::Method::POST, path, body, None).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Answer, OperatorClientError> {
        self.request(&http::Method::GET, path, Bytes::new(), None)
            .await
    }

    fn failed(&self, reason: String) -> OperatorClientError {
        OperatorClientError::Request {
            addr: self.addr,
            reason,
        }
    }

    async fn exchange(
        &self,
        method: &http::Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Answer, OperatorClientError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| self.failed(format!("connect: {e}")))?;
        let name = ServerName::try_from(self.expected.dns_name())
            .map_err(|e| self.failed(format!("server name: {e}")))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| self.failed(format!("TLS: {e}")))?;
        verify_server_identity(tls.get_ref().1, &self.expected).map_err(|e| self.failed(e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.failed(format!("HTTP: {e}")))?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.expected.dns_name())
            .header(
                http::header::CONTENT_TYPE,
                content_type.unwrap_or("application/json"),
            )
            .body(Full::new(body))
            .map_err(|e| self.failed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.failed(format!("HTTP: {e}")))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| self.failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

/// Serves `listener` (loopback) as a plain HTTP proxy to `client`'s operator listener
/// until `shutdown`: each request is made again there with the operator's certificate.
pub async fn proxy(
    listener: TcpListener,
    client: OperatorClient,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let router = Router::new().fallback(move |request: Request| {
        let client = client.clone();
        async move { forward(&client, request).await }
    });
    plain_http::serve(
        "operator proxy",
        listener,
        router,
        HttpLimits::admin(),
        shutdown,
    )
    .await
}

async fn forward(client: &OperatorClient, request: Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(body) => body,
        Err(error) => return (http::StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    match client
        .request(&parts.method, &path, body, content_type.as_deref())
        .await
    {
        Ok(answer) => {
            let mut response = http::Response::builder().status(answer.status);
            if let Some(content_type) = answer.content_type {
                response = response.header(http::header::CONTENT_TYPE, content_type);
            }
            response
                .body(Body::from(answer.body))
                .unwrap_or_else(|_| http::StatusCode::BAD_GATEWAY.into_response())
        }
        Err(error) => (http::StatusCode::BAD_GATEWAY, format!("{error}\n")).into_response(),
    }
}
