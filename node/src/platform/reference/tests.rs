//! The reference platform in-process, over real HTTP: a certificate from a dev CA,
//! mutual TLS, HMAC-signed calls, the whole contract, the clerk's API; and a bearer
//! token over plain HTTP, and a wrapped router.

use std::{path::Path, sync::Arc, time::Duration};

use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tongban_proto::rules::region::{RegionPrefix, RegionTable};
use tongban_runtime::{
    process::shutdown::Shutdown,
    trust::{identity::PeerIdentity, pki::DevCa},
};

use super::*;
use crate::platform::{
    contract::{headers, wire::problem as kinds},
    embedded::synthetic_residents,
};

const CASE: &str = "310000-20260101-00000001";

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tongban-reference-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn base_config(dir: &Path) -> ReferenceConfig {
    let mut config = ReferenceConfig::local(dir, RegionPrefix::parse("44").unwrap());
    config.seed_residents = 3;
    config.validate(Path::new("test.toml")).unwrap();
    config
}

/// A dev CA, the platform's certificate (as `region-44`) and a node's (as `region-31`).
fn write_pki(dir: &Path) -> (DevCa, TlsSettings, (String, String)) {
    let ca = DevCa::generate("test CA").unwrap();
    let week = Duration::from_secs(7 * 24 * 3600);
    let server = ca
        .issue(
            &PeerIdentity::Region(RegionPrefix::parse("44").unwrap()),
            week,
        )
        .unwrap();
    let client = ca
        .issue(
            &PeerIdentity::Region(RegionPrefix::parse("31").unwrap()),
            week,
        )
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    let tls = TlsSettings {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: Some(dir.join("ca.pem")),
    };
    (ca, tls, (client.cert_pem, client.key_pem))
}

/// A client trusting `ca`, presenting `identity` when given, reaching `addr` by the
/// server certificate's name.
fn tls_client(
    ca: &DevCa,
    identity: Option<&(String, String)>,
    addr: std::net::SocketAddr,
) -> Client {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let name = PeerIdentity::Region(RegionPrefix::parse("44").unwrap()).dns_name();
    Client::builder()
        .use_preconfigured_tls(config)
        .resolve(&name, addr)
        .build()
        .unwrap()
}

/// Calls the contract with HMAC-signed headers (and an idempotency key).
struct Signed {
    client: Client,
    base: String,
    secret: Vec<u8>,
    nonce: std::sync::atomic::AtomicU64,
}

impl Signed {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let nonce = format!(
            "n{}",
            self.nonce
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let canonical =
            headers::canonical_request(method.as_str(), path, &timestamp, &nonce, &body, "node-31");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(headers::APP_KEY, "node-31")
            .header(headers::TIMESTAMP, timestamp)
            .header(headers::NONCE, nonce)
            .header(headers::SIGNATURE, headers::sign(&self.secret, &canonical))
            .header(headers::IDEMPOTENCY_KEY, "k-1")
            .body(body);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn takeover(applicant: &str, payload: &[u8]) -> Value {
    json!({
        "case_number": CASE,
        "one_thing_id": "newborn",
        "catalog_version": "2026.1",
        "origin_region": "310000",
        "target_region": "440000",
        "handling_mode": "single",
        "applicant": {"id_number": applicant, "name": "王芳"},
        "form": {"child_name": "王小明"},
        "materials": [],
        "filed_at": "2026-01-01T09:00:00+08:00",
        "promised_date": "2026-01-10",
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
    })
}

async fn clerk(
    client: &Client,
    base: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client
        .request(method, format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_contract_over_mutual_tls_with_signed_calls() {
    tongban_runtime::trust::tls::install_crypto_provider();
    let dir = scratch("mtls");
    let (ca, tls, node_identity) = write_pki(&dir);
    std::fs::write(dir.join("hmac.secret"), "shared-secret\n").unwrap();
    let mut config = base_config(&dir);
    config.tls = Some(tls);
    config.auth = AuthSettings::Hmac {
        app_key: "node-31".into(),
        secret_file: dir.join("hmac.secret"),
    };
    let shutdown = Shutdown::new();
    let running = serve(config, shutdown.signal()).await.unwrap();
    let name = PeerIdentity::Region(RegionPrefix::parse("44").unwrap()).dns_name();
    let node = Signed {
        client: tls_client(&ca, Some(&node_identity), running.addr),
        base: format!("https://{name}:{}", running.addr.port()),
        secret: b"shared-secret".to_vec(),
        nonce: Default::default(),
    };
    let residents = synthetic_residents(
        RegionTable::embedded(),
        &RegionPrefix::parse("44").unwrap(),
        3,
    );
    let applicant = residents[1].id.as_str().to_owned();

    cases_walk(&node, &applicant, &running).await;
    register_walk(&node, residents[0].id.as_str(), &running).await;

    // Without a client certificate there is no connection at all.
    let stranger = tls_client(&ca, None, running.addr);
    assert!(
        stranger
            .get(format!("{}/v1/health", node.base))
            .send()
            .await
            .is_err()
    );
    // A wrong signature, or none, is refused without saying which part was wrong.
    let unsigned = node
        .client
        .get(format!("{}/v1/health", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unsigned.json().await.unwrap();
    assert_eq!(body["type"], kinds::UNAUTHENTICATED);
    let wrong = Signed {
        secret: b"other".to_vec(),
        client: node.client.clone(),
        base: node.base.clone(),
        nonce: Default::default(),
    };
    assert_eq!(
        wrong.call(Method::GET, "/v1/health", None, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        node.call(Method::GET, "/v1/health", None, &[]).await.0,
        StatusCode::OK
    );

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running.stopped())
        .await
        .expect("stops on shutdown");
    std::fs::remove_dir_all(dir).unwrap();
}

async fn cases_walk(node: &Signed, applicant: &str, running: &RunningPlatform) {
    let path = format!("/v1/cases/{CASE}");
    let body = takeover(applicant, b"application v1");
    let (status, first) = node.call(Method::PUT, &path, Some(&body), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "已接件");
    assert_eq!(first["sequence"], 1);
    let (status, again) = node.call(Method::PUT, &path, Some(&body), &[]).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let (status, conflict) = node
        .call(
            Method::PUT,
            &path,
            Some(&takeover(applicant, b"application v2")),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["type"], kinds::CONFLICT);
    assert_eq!(
        running.platform().payload(CASE).await.unwrap().as_deref(),
        Some(&b"application v1"[..])
    );

    // Bad requests name the field, never the value.
    let mut bad = takeover(applicant, b"x");
    bad["applicant"]["id_number"] = json!(format!("{}0", &applicant[..17]));
    let (status, problem) = node.call(Method::PUT, &path, Some(&bad), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.starts_with("applicant.id_number"), "{detail}");
    assert!(!detail.contains(&applicant[..17]), "{detail}");
    let other = "310000-20260101-00000002";
    let (status, problem) = node
        .call(Method::PUT, &format!("/v1/cases/{other}"), Some(&body), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("case_number")
    );
    let (status, _) = node
        .call(Method::GET, &format!("/v1/cases/{other}"), None, &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The feed, and a clerk's decisions appearing in it.
    let clerk_base = running.clerk_url();
    let http = Client::new();
    let (status, waiting) = clerk(
        &http,
        &clerk_base,
        Method::GET,
        "/clerk/v1/cases",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waiting["cases"][0]["canonical"], "received");
    let decision = format!("/clerk/v1/cases/{CASE}/decision");
    let (status, refused) = clerk(
        &http,
        &clerk_base,
        Method::POST,
        &decision,
        json!({"action": "approve"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["type"], kinds::INVALID_TRANSITION);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("is received; it cannot become approved")
    );
    for action in ["accept", "approve"] {
        let (status, case) = clerk(
            &http,
            &clerk_base,
            Method::POST,
            &decision,
            json!({"action": action}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{case}");
    }
    let (status, page) = node
        .call(Method::GET, "/v1/case-events?limit=2", None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["more"], true);
    assert_eq!(page["events"][1]["previous_status"], "已接件");
    assert_eq!(page["events"][1]["status"], "已受理");
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = node
        .call(
            Method::GET,
            &format!("/v1/case-events?after={next}"),
            None,
            &[],
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!(rest["events"][0]["status"], "办结");
    assert_eq!(rest["events"][0]["sequence"], 3);
    for query in ["limit=0", "limit=1001", "after=999", "after=x"] {
        let (status, problem) = node
            .call(Method::GET, &format!("/v1/case-events?{query}"), None, &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
    }
}

async fn register_walk(node: &Signed, resident: &str, running: &RunningPlatform) {
    let purpose = [
        (headers::PURPOSE_ONE_THING, "newborn"),
        (headers::PURPOSE_CASE, CASE),
    ];
    let lookup = json!({"id_number": resident});
    let (status, problem) = node
        .call(Method::POST, "/v1/persons/lookup", Some(&lookup), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], kinds::PURPOSE_REQUIRED);
    let (status, person) = node
        .call(Method::POST, "/v1/persons/lookup", Some(&lookup), &purpose)
        .await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(person["id_number"], resident);
    let (status, held) = node
        .call(
            Method::POST,
            "/v1/licenses/by-holder",
            Some(&json!({"holder_id_number": resident})),
            &purpose,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let licenses = held["licenses"].as_array().unwrap();
    assert_eq!(licenses.len(), 4);
    let id = licenses[0]["license_id"].as_str().unwrap().to_owned();
    let (status, license) = node
        .call(Method::GET, &format!("/v1/licenses/{id}"), None, &purpose)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(license["holder_id_number"], resident);

    // A clerk revokes it: it shows revoked, and in the feed.
    let (status, _) = clerk(
        &Client::new(),
        &running.clerk_url(),
        Method::POST,
        &format!("/clerk/v1/licenses/{id}/revoke"),
        json!({"reason": "吊销"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, license) = node
        .call(Method::GET, &format!("/v1/licenses/{id}"), None, &purpose)
        .await;
    assert_eq!(license["revocation_reason"], "吊销");
    let (status, feed) = node.call(Method::GET, "/v1/revocations", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["revocations"][0]["license_id"], id.as_str());

    // Every register call's purpose was recorded, about a masked subject.
    let recorded = running.platform().purposes(10).await.unwrap();
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .all(|(_, one_thing, case, _)| one_thing == "newborn" && case == CASE)
    );
    assert!(
        recorded
            .iter()
            .all(|(_, _, _, subject)| !subject.contains(resident))
    );
}

#[tokio::test]
async fn a_bearer_token_over_plain_http_and_a_wrapped_router() {
    tongban_runtime::trust::tls::install_crypto_provider();
    let dir = scratch("bearer");
    std::fs::write(dir.join("token"), "node-token\n").unwrap();
    std::fs::write(dir.join("clerk-token"), "clerk-token\n").unwrap();
    let mut config = base_config(&dir);
    config.auth = AuthSettings::Bearer {
        token_file: dir.join("token"),
    };
    config.clerk_token_file = Some(dir.join("clerk-token"));
    let shutdown = Shutdown::new();
    // A deliberately broken platform: every answer says 201.
    let running = serve_with(config, shutdown.signal(), |router| {
        router.layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                *response.status_mut() = axum::http::StatusCode::CREATED;
                response
            },
        ))
    })
    .await
    .unwrap();
    assert!(running.url().starts_with("http://"));
    let http = Client::new();
    let health = |token: &'static str| {
        http.get(format!("{}/v1/health", running.url()))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        health("node-token").await.unwrap().status(),
        StatusCode::CREATED
    );
    // Authentication stays outside the wrapped router.
    assert_eq!(
        health("wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let no_key = http
        .get(format!("{}/v1/case-events", running.url()))
        .bearer_auth("node-token")
        .send()
        .await
        .unwrap();
    let problem: Value = no_key.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("idempotency-key"),
        "{problem}"
    );

    let clerk_cases = format!("{}/clerk/v1/cases", running.clerk_url());
    let refused = http.get(&clerk_cases).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let listed = http
        .get(&clerk_cases)
        .bearer_auth("clerk-token")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);

    shutdown.trigger();
    running.stopped().await;
    std::fs::remove_dir_all(dir).unwrap();
}
