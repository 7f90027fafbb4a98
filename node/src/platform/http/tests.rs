//! The adapter against platforms served in this process over TLS on 127.0.0.1: the
//! reference platform (mutual TLS and HMAC signatures), small platforms that answer
//! `503` or `400` to see retries and the circuit, and misconfigured TLS of every kind
//! to see the sentence that names what is wrong. Certificates are made at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, put},
};
use prost::Message;
use tokio::net::TcpListener;
use tongban_proto::{
    rules::region::{RegionPrefix, RegionTable},
    v1::{Applicant, Application, HandlingMode, Stage},
};
use tongban_runtime::{
    observability::traces::Traces,
    process::shutdown::Shutdown,
    trust::{identity::PeerIdentity, pki::DevCa},
};

use super::{HttpPlatform, HttpPlatformConfig, PlatformAuth, PlatformTls, auth::nonce};
use crate::platform::{
    adapter::{Platform, PlatformError},
    contract::{headers, status::StatusCodes, wire},
    embedded::{ClerkAction, synthetic_residents},
    reference::{self, AuthSettings, ReferenceConfig, TlsSettings},
    register::{LicenseRegistry, Purpose, Subject},
};

/// A folder removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("tongban-http-{}", nonce()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The certificates of a test: the platform's CA and server certificate, the node's
/// client certificate from the same CA, and a CA nobody uses.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
    /// The DNS name the server's certificate carries.
    server_name: String,
}

fn pki(dir: &Dir) -> Pki {
    tongban_runtime::trust::tls::install_crypto_provider();
    let ca = DevCa::generate("platform CA").unwrap();
    let other = DevCa::generate("another CA").unwrap();
    let year = Duration::from_secs(365 * 86_400);
    let server = PeerIdentity::Region(RegionPrefix::parse("44").unwrap());
    let client = PeerIdentity::Region(RegionPrefix::parse("31").unwrap());
    let server_leaf = ca.issue(&server, year).unwrap();
    let client_leaf = ca.issue(&client, year).unwrap();
    Pki {
        ca: dir.write("ca.pem", ca.cert_pem()),
        server_cert: dir.write("server.pem", &server_leaf.cert_pem),
        server_key: dir.write("server.key", &server_leaf.key_pem),
        client_cert: dir.write("client.pem", &client_leaf.cert_pem),
        client_key: dir.write("client.key", &client_leaf.key_pem),
        other_ca: dir.write("other-ca.pem", other.cert_pem()),
        server_name: server.dns_name(),
    }
}

/// The node's side: trusting `pki.ca`, presenting its client certificate, checking
/// the server's name; quick retries and a circuit that opens after two failures.
fn node_config(pki: &Pki, url: String, auth: PlatformAuth) -> HttpPlatformConfig {
    HttpPlatformConfig {
        url,
        tls: PlatformTls {
            ca: pki.ca.clone(),
            cert: Some(pki.client_cert.clone()),
            key: Some(pki.client_key.clone()),
            server_name: Some(pki.server_name.clone()),
        },
        auth,
        timeout: Duration::from_secs(3),
        retries: 2,
        retry_initial: Duration::from_millis(10),
        circuit_failures: 2,
        circuit_open_for: Duration::from_millis(300),
        poll_interval: Duration::from_secs(1),
        status_codes: StatusCodes::reference(),
    }
}

fn adapter(config: &HttpPlatformConfig) -> Arc<HttpPlatform> {
    HttpPlatform::new(config, Arc::from(&b"node key"[..]), Traces::off(), None).unwrap()
}

/// A valid application of a resident of 31, handled by 44.
fn application(serial: u32) -> Application {
    let prefix = RegionPrefix::parse("31").unwrap();
    let resident = &synthetic_residents(RegionTable::embedded(), &prefix, 1)[0];
    Application {
        case_number: format!("310000-20261203-{serial:08}"),
        one_thing_id: "newborn".into(),
        catalog_version: "2026.1".into(),
        origin_region: "310000".into(),
        target_region: "440000".into(),
        mode: HandlingMode::FullyOnline as i32,
        applicant: Some(Applicant {
            id_number: resident.id.as_str().to_owned(),
            name: resident.name.clone(),
            phone: String::new(),
        }),
        filed_at: Some(prost_types::Timestamp {
            seconds: 1_796_261_400,
            nanos: 0,
        }),
        promised_date: "2026-12-20".into(),
        ..Default::default()
    }
}

async fn reference_platform(
    dir: &Dir,
    pki: &Pki,
    auth: AuthSettings,
    shutdown: &Shutdown,
) -> reference::RunningPlatform {
    let config = ReferenceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        clerk_listen: "127.0.0.1:0".parse().unwrap(),
        database: dir.0.join("platform.db"),
        region: RegionPrefix::parse("44").unwrap(),
        id_hash_key_file: dir.0.join("platform.key"),
        tls: Some(TlsSettings {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        auth,
        clerk_token_file: None,
        status_codes: StatusCodes::reference(),
        seed_residents: 3,
        auto_approve_after: None,
    };
    reference::serve(config, shutdown.signal()).await.unwrap()
}

#[tokio::test]
async fn a_whole_case_and_the_register_through_the_reference_platform() {
    let (dir, shutdown) = (Dir::new(), Shutdown::new());
    let pki = pki(&dir);
    let secret = dir.write("hmac", "s3cret-shared-with-the-platform\n");
    let settings = AuthSettings::Hmac {
        app_key: "node-44".into(),
        secret_file: secret.clone(),
    };
    let running = reference_platform(&dir, &pki, settings, &shutdown).await;
    let auth = PlatformAuth::Hmac {
        app_key: "node-44".into(),
        secret_file: secret,
    };
    let platform = adapter(&node_config(&pki, running.url(), auth));
    assert!(platform.health().is_err(), "down until first reached");
    platform.transport.probe().await.unwrap();
    assert!(platform.health().is_ok());

    // Take-over: created once; a repeat creates nothing; another payload conflicts.
    let app = application(1);
    let payload = app.encode_to_vec();
    let first = platform.submit(&app, "hash", &payload).await.unwrap();
    assert!(first.created);
    assert_eq!(first.case.status.stage, Stage::Accepted as i32);
    let again = platform.submit(&app, "hash", &payload).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.case.reference, first.case.reference);
    let err = platform.submit(&app, "hash", b"other").await.unwrap_err();
    assert!(matches!(err, PlatformError::Conflict(_)), "{err}");
    let read = platform.case(&app.case_number).await.unwrap().unwrap();
    assert_eq!(read.reference, first.case.reference);
    assert!(
        platform
            .case("310000-20261203-00000099")
            .await
            .unwrap()
            .is_none()
    );

    // The feed: the take-over, then a clerk's decision, resumed from the cursor.
    let page = platform.events_after("", 10).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].previous, None);
    let decided = running
        .platform()
        .decide(&app.case_number, ClerkAction::Accept, "");
    decided.await.unwrap();
    let next = platform.events_after(&page.next_cursor, 10).await.unwrap();
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].previous, Some(Stage::Accepted));
    assert_eq!(next.events[0].case.status.stage, Stage::InReview as i32);
    let still = platform.events_after(&next.next_cursor, 10).await.unwrap();
    assert!(still.events.is_empty() && still.next_cursor == next.next_cursor);

    // The register, each call with its purpose of use.
    let prefix = RegionPrefix::parse("44").unwrap();
    let resident = &synthetic_residents(RegionTable::embedded(), &prefix, 1)[0];
    let key = running.state.id_hash_key.clone();
    let subject = Subject {
        id_number: resident.id.as_str(),
        id_hash: "unused",
    };
    let purpose = Purpose::new("newborn", app.case_number.clone());
    let person = platform.person(subject, &purpose).await.unwrap().unwrap();
    assert_eq!(person.name, resident.name);
    let licenses = platform.licenses_of(subject, &purpose).await.unwrap();
    assert!(!licenses.is_empty());
    // Hashed with the node's key, not the platform's.
    assert_eq!(licenses[0].holder_hash, resident.id.keyed_hash(b"node key"));
    assert_ne!(licenses[0].holder_hash, resident.id.keyed_hash(&key));
    assert!(licenses[0].holder_name_masked.ends_with('*'));
    let id = licenses[0].license_id.clone();
    let one = platform.license(&id, &purpose).await.unwrap().unwrap();
    assert_eq!(one, licenses[0]);
    let unknown = platform.license("440000-XX-404", &purpose).await.unwrap();
    assert!(unknown.is_none());

    // Revocations are made at the platform and read from its feed.
    let err = platform.revoke(&id, "lost", 0).await.unwrap_err();
    assert!(matches!(err, PlatformError::Unsupported(_)), "{err}");
    let revoked = running
        .platform()
        .revoke(&id, "annulled", 1_767_225_600_000);
    revoked.await.unwrap().unwrap();
    let feed = platform.revocations_after("", 10).await.unwrap().unwrap();
    assert_eq!(feed.revocations.len(), 1);
    assert_eq!(feed.revocations[0].license_id, id);
    assert_eq!(feed.revocations[0].revoked_ms, 1_767_225_600_000);
    let after = platform
        .revocations_after(&feed.next_cursor, 10)
        .await
        .unwrap();
    assert!(after.unwrap().revocations.is_empty());
    assert_eq!(platform.circuit_opens(), 0);
    shutdown.trigger();
}

#[tokio::test]
async fn a_wrong_secret_is_the_platform_s_word_not_retried_and_named() {
    let (dir, shutdown) = (Dir::new(), Shutdown::new());
    let pki = pki(&dir);
    let settings = AuthSettings::Bearer {
        token_file: dir.write("token", "right"),
    };
    let running = reference_platform(&dir, &pki, settings, &shutdown).await;
    let auth = PlatformAuth::Bearer {
        token_file: dir.write("wrong-token", "wrong"),
    };
    let platform = adapter(&node_config(&pki, running.url(), auth));
    let err = platform.events_after("", 10).await.unwrap_err();
    assert!(
        matches!(&err, PlatformError::Contract(m) if m.contains("401")),
        "{err}"
    );
    // Reachable but refusing: not retried, the circuit stays closed, and the probe
    // (which authenticates too) tells readiness why.
    assert_eq!(platform.circuit_opens(), 0);
    let down = platform.transport.probe().await.unwrap_err();
    assert!(down.contains("401"), "{down}");
    let health = platform.health().unwrap_err();
    assert!(
        health.contains(&running.url()) && health.contains("401"),
        "{health}"
    );
    shutdown.trigger();
}

/// What the small platforms below saw of each request.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<HeaderMap>>,
    busy: AtomicU32,
    up: AtomicBool,
}

fn view(case_number: &str) -> wire::CaseView {
    wire::CaseView {
        case_number: case_number.to_owned(),
        reference: "44P0000000001".into(),
        one_thing_id: "newborn".into(),
        origin_region: "310000".into(),
        status: "已接件".into(),
        detail: String::new(),
        sequence: 1,
        updated_at: "2026-12-03T09:30:00+08:00".into(),
    }
}

/// A platform that answers `503` (`Retry-After: 0`) to the first `busy` take-overs
/// and to every feed read until `up`; `400` to every case read.
fn flaky_platform(seen: Arc<Seen>) -> Router {
    let takeover = {
        let seen = seen.clone();
        move |headers: HeaderMap, axum::extract::Path(n): axum::extract::Path<String>| {
            let seen = seen.clone();
            async move {
                seen.requests.lock().unwrap().push(headers);
                if seen.busy.load(Ordering::SeqCst) > 0 {
                    seen.busy.fetch_sub(1, Ordering::SeqCst);
                    return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")])
                        .into_response();
                }
                (StatusCode::CREATED, Json(view(&n))).into_response()
            }
        }
    };
    let events = {
        let seen = seen.clone();
        move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.requests.lock().unwrap().push(headers);
                if !seen.up.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let page = wire::CaseEventPage {
                    events: Vec::new(),
                    next_cursor: String::new(),
                    more: false,
                };
                Json(page).into_response()
            }
        }
    };
    let read = {
        let seen = seen.clone();
        move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.requests.lock().unwrap().push(headers);
                let problem = wire::Problem {
                    kind: wire::problem::BAD_REQUEST.into(),
                    title: "Bad request".into(),
                    status: 400,
                    detail: "case_number (path): must be <6-digit region>-<YYYYMMDD>-<8 digits>"
                        .into(),
                };
                (StatusCode::BAD_REQUEST, Json(problem)).into_response()
            }
        }
    };
    Router::new()
        .route("/v1/cases/{n}", put(takeover).get(read))
        .route("/v1/case-events", get(events))
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
}

/// Serves `router` over TLS (the server certificate of `pki`, mutual when
/// `client_ca`), or plain HTTP when `tls` is false; returns its address.
async fn serve(
    pki: &Pki,
    router: Router,
    tls: bool,
    client_ca: Option<PathBuf>,
    shutdown: &Shutdown,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tls.then(|| {
        reference::server_tls(&TlsSettings {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca,
        })
        .unwrap()
    });
    tokio::spawn(reference::serve_router(
        listener,
        config,
        router,
        shutdown.signal(),
    ));
    addr
}

#[tokio::test]
async fn busy_answers_are_retried_with_one_key_and_fresh_signatures() {
    let (dir, shutdown) = (Dir::new(), Shutdown::new());
    let pki = pki(&dir);
    let seen = Arc::new(Seen::default());
    seen.busy.store(2, Ordering::SeqCst);
    let addr = serve(&pki, flaky_platform(seen.clone()), true, None, &shutdown).await;
    let auth = PlatformAuth::Hmac {
        app_key: "node-44".into(),
        secret_file: dir.write("hmac", "secret"),
    };
    let platform = adapter(&node_config(&pki, format!("https://{addr}"), auth));
    let app = application(7);
    let submitted = platform.submit(&app, "hash", b"payload").await.unwrap();
    assert!(submitted.created);
    let requests = std::mem::take(&mut *seen.requests.lock().unwrap());
    assert_eq!(requests.len(), 3, "two 503s, then the answer");
    let values = |name: &str| -> Vec<String> {
        requests
            .iter()
            .map(|h| h.get(name).unwrap().to_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        values(headers::IDEMPOTENCY_KEY)
            .iter()
            .all(|k| *k == app.case_number)
    );
    assert!(
        values(headers::CASE_NUMBER)
            .iter()
            .all(|k| *k == app.case_number)
    );
    let traces = values(headers::TRACEPARENT);
    assert!(traces.iter().all(|t| *t == traces[0]));
    let nonces = values(headers::NONCE);
    assert!(
        nonces[0] != nonces[1] && nonces[1] != nonces[2],
        "signed anew per attempt"
    );

    // A 400 is the platform's word: one attempt, its detail named.
    let err = platform.case(&app.case_number).await.unwrap_err();
    let PlatformError::Contract(message) = &err else {
        panic!("{err}");
    };
    assert!(
        message.contains("400") && message.contains("case_number (path)"),
        "{message}"
    );
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
    shutdown.trigger();
}

#[tokio::test]
async fn the_circuit_opens_fails_fast_and_closes_on_a_good_probe() {
    let (dir, shutdown) = (Dir::new(), Shutdown::new());
    let pki = pki(&dir);
    let seen = Arc::new(Seen::default());
    let addr = serve(&pki, flaky_platform(seen.clone()), true, None, &shutdown).await;
    let url = format!("https://{addr}");
    let platform = adapter(&node_config(&pki, url.clone(), PlatformAuth::None));
    for _ in 0..2 {
        let err = platform.events_after("", 10).await.unwrap_err();
        assert!(
            matches!(&err, PlatformError::Unavailable(m) if m.contains("503")),
            "{err}"
        );
    }
    assert_eq!(
        seen.requests.lock().unwrap().len(),
        6,
        "three attempts each"
    );
    assert_eq!(platform.circuit_opens(), 1);
    let err = platform.events_after("", 10).await.unwrap_err().to_string();
    assert!(
        err.contains("platform circuit open") && err.contains("503"),
        "{err}"
    );
    assert_eq!(seen.requests.lock().unwrap().len(), 6, "failed fast");
    let health = platform.health().unwrap_err();
    assert!(
        health.contains(&url) && health.contains("circuit open"),
        "{health}"
    );

    // Back up: after the open time, one probe call goes through and closes it.
    seen.up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    platform.events_after("", 10).await.unwrap();
    assert!(platform.health().is_ok());
    assert_eq!(platform.circuit_opens(), 1);
    shutdown.trigger();
}

/// The sentence the adapter's probe gives for a platform `url` with `tls`.
async fn probe_sentence(pki: &Pki, url: String, tls: PlatformTls) -> String {
    let mut config = node_config(pki, url, PlatformAuth::None);
    config.tls = tls;
    config.retries = 0;
    let platform = adapter(&config);
    let err = platform.transport.probe().await.unwrap_err();
    let health = platform.health().unwrap_err();
    assert!(health.ends_with(&err), "{health} / {err}");
    err
}

fn trusting(pki: &Pki, ca: &Path, client: bool) -> PlatformTls {
    PlatformTls {
        ca: ca.to_owned(),
        cert: client.then(|| pki.client_cert.clone()),
        key: client.then(|| pki.client_key.clone()),
        server_name: Some(pki.server_name.clone()),
    }
}

#[tokio::test]
async fn tls_failures_are_explained_naming_the_side_at_fault() {
    let (dir, shutdown) = (Dir::new(), Shutdown::new());
    let pki = pki(&dir);
    let health = || Router::new().route("/v1/health", get(|| async { "ok" }));
    let mutual = serve(&pki, health(), true, Some(pki.ca.clone()), &shutdown).await;
    let url = format!("https://{mutual}");

    let wrong_ca = probe_sentence(&pki, url.clone(), trusting(&pki, &pki.other_ca, true)).await;
    assert!(
        wrong_ca.contains("not signed by the CA the node trusts"),
        "{wrong_ca}"
    );
    assert!(wrong_ca.contains("other-ca.pem"), "{wrong_ca}");

    let no_client = probe_sentence(&pki, url.clone(), trusting(&pki, &pki.ca, false)).await;
    assert!(
        no_client.contains("client certificate") && no_client.contains("cert and key"),
        "{no_client}"
    );

    let mut wrong_name = trusting(&pki, &pki.ca, true);
    wrong_name.server_name = None;
    let wrong_name = probe_sentence(&pki, url.clone(), wrong_name).await;
    assert!(wrong_name.contains("server_name"), "{wrong_name}");

    // A client certificate from a CA the platform does not trust.
    let stranger = DevCa::generate("stranger").unwrap();
    let leaf = stranger
        .issue(
            &PeerIdentity::Region(RegionPrefix::parse("31").unwrap()),
            Duration::from_secs(86_400),
        )
        .unwrap();
    let mut foreign = trusting(&pki, &pki.ca, true);
    foreign.cert = Some(dir.write("stranger.pem", &leaf.cert_pem));
    foreign.key = Some(dir.write("stranger.key", &leaf.key_pem));
    let foreign = probe_sentence(&pki, url.clone(), foreign).await;
    assert!(
        foreign.contains("refused the node's client certificate"),
        "{foreign}"
    );
    assert!(foreign.contains("stranger.pem"), "{foreign}");

    let plain = serve(&pki, health(), false, None, &shutdown).await;
    let plain = probe_sentence(
        &pki,
        format!("https://{plain}"),
        trusting(&pki, &pki.ca, true),
    );
    let plain = plain.await;
    assert!(plain.contains("did not answer TLS"), "{plain}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let nobody = probe_sentence(
        &pki,
        format!("https://{nobody}"),
        trusting(&pki, &pki.ca, true),
    )
    .await;
    assert!(nobody.contains("nothing listens"), "{nobody}");

    // Mutual TLS set up right: up.
    let ok = adapter(&node_config(&pki, url, PlatformAuth::None));
    ok.transport.probe().await.unwrap();
    shutdown.trigger();
}
