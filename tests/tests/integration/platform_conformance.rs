//! The conformance kit (`tongban_node::platform::conformance`) in CI: against the
//! reference platform every check passes; against deliberately broken platforms (the
//! reference platform's contract routes wrapped in a layer that breaks one promise, or
//! a TLS misconfiguration), exactly the checks that should fail do, saying why.
//!
//! Each test starts its own reference platform in-process on 127.0.0.1 with real TLS,
//! from a PKI made at test time in its own temporary folder.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode, Uri, header},
    middleware::{self, Next},
    response::Response,
};
use tongban_node::platform::{
    Platform,
    conformance::{self, CheckId, Options, Outcome, Report},
    contract::status::StatusCodes,
    embedded::synthetic_residents,
    http::config::{PlatformAuth, PlatformTls},
    reference::{self, AuthSettings, ReferenceConfig, RunningPlatform, TlsSettings},
};
use tongban_proto::{
    rules::region::{RegionPrefix, RegionTable},
    v1::Application,
};
use tongban_runtime::{
    process::shutdown::Shutdown,
    trust::{identity::PeerIdentity, pki::DevCa},
};
use tower::ServiceExt;

/// The platform's region.
const REGION: &str = "44";

/// The files of one test: the platform's CA and certificate, a node's client
/// certificate, another CA, and the secrets.
struct Files {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    token: PathBuf,
    hmac_secret: PathBuf,
    /// The name the platform's certificate carries.
    server_name: String,
}

fn region_identity(prefix: &str) -> PeerIdentity {
    PeerIdentity::Region(RegionPrefix::parse(prefix).unwrap())
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let write = |name: &str, text: &str| {
        std::fs::write(path(name), text).unwrap();
        path(name)
    };
    let validity = Duration::from_secs(24 * 3600);
    let ca = DevCa::generate("Province platform CA (test)").unwrap();
    let server = ca.issue(&region_identity(REGION), validity).unwrap();
    let client = ca.issue(&region_identity("11"), validity).unwrap();
    let other = DevCa::generate("Some other CA (test)").unwrap();
    Files {
        ca: write("platform-ca.pem", ca.cert_pem()),
        other_ca: write("other-ca.pem", other.cert_pem()),
        server_cert: write("platform.pem", &server.cert_pem),
        server_key: write("platform.key", &server.key_pem),
        client_cert: write("node.pem", &client.cert_pem),
        client_key: write("node.key", &client.key_pem),
        token: write("bearer.token", "conformance-test-token\n"),
        hmac_secret: write("hmac.secret", "conformance-test-secret\n"),
        server_name: region_identity(REGION).dns_name(),
        dir,
    }
}

/// How the reference platform under test is set up.
struct Served {
    tls: bool,
    mutual: bool,
    auth: AuthSettings,
}

impl Served {
    fn bearer(files: &Files) -> Self {
        Self {
            tls: true,
            mutual: false,
            auth: AuthSettings::Bearer {
                token_file: files.token.clone(),
            },
        }
    }
}

/// A reference platform serving until the test ends.
struct Running {
    platform: RunningPlatform,
    shutdown: Shutdown,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start(files: &Files, served: Served, wrap: impl FnOnce(Router) -> Router) -> Running {
    tongban_runtime::trust::tls::install_crypto_provider();
    let config = ReferenceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        clerk_listen: "127.0.0.1:0".parse().unwrap(),
        database: files.dir.path().join("platform.sqlite"),
        region: RegionPrefix::parse(REGION).unwrap(),
        id_hash_key_file: files.dir.path().join("id-hash.key"),
        tls: served.tls.then(|| TlsSettings {
            cert: files.server_cert.clone(),
            key: files.server_key.clone(),
            client_ca: served.mutual.then(|| files.ca.clone()),
        }),
        auth: served.auth,
        clerk_token_file: None,
        status_codes: StatusCodes::reference(),
        seed_residents: 3,
        auto_approve_after: None,
    };
    let shutdown = Shutdown::new();
    let platform = reference::serve_with(config, shutdown.signal(), wrap)
        .await
        .unwrap();
    Running { platform, shutdown }
}

/// The kit's options for `running`, as a node of region 11 would reach it.
fn options(files: &Files, running: &Running, auth: PlatformAuth) -> Options {
    let url = running.platform.url().replacen("http://", "https://", 1);
    let tls = PlatformTls {
        ca: files.ca.clone(),
        cert: None,
        key: None,
        server_name: Some(files.server_name.clone()),
    };
    Options {
        auth,
        ..Options::new(url, tls)
    }
}

fn bearer(files: &Files) -> PlatformAuth {
    PlatformAuth::Bearer {
        token_file: files.token.clone(),
    }
}

/// A clerk's call to the platform's clerk API; panics unless it answers 200.
async fn clerk(running: &Running, path: &str, body: serde_json::Value) {
    let url = format!("{}{path}", running.platform.clerk_url());
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "POST {url}: {text}");
}

/// A case taken over (outside the kit) and decided by a clerk through the clerk's API
/// with `actions`, so the feed holds more codes than the kit's own cases make.
async fn decided_case(running: &Running, number: &str, actions: &[&str]) {
    let application = Application {
        case_number: number.to_owned(),
        one_thing_id: "newborn".to_owned(),
        origin_region: "110000".to_owned(),
        target_region: "440000".to_owned(),
        ..Default::default()
    };
    running
        .platform
        .platform()
        .submit(&application, "applicant-hash", b"payload")
        .await
        .unwrap();
    for action in actions {
        let path = format!("/clerk/v1/cases/{number}/decision");
        clerk(
            running,
            &path,
            serde_json::json!({"action": action, "reason": ""}),
        )
        .await;
    }
}

/// A seeded resident of the platform's region, and one of their licenses revoked by a
/// clerk through the clerk's API.
async fn revoked_license(running: &Running) -> (String, String) {
    let prefix = RegionPrefix::parse(REGION).unwrap();
    let resident = synthetic_residents(RegionTable::embedded(), &prefix, 1).remove(0);
    let state = &running.platform.state;
    let licenses = state
        .platform
        .licenses_of_resident(&resident.id, &state.id_hash_key)
        .await
        .unwrap();
    let license_id = licenses[0].license_id.clone();
    let path = format!("/clerk/v1/licenses/{license_id}/revoke");
    clerk(
        running,
        &path,
        serde_json::json!({"reason": "issued in error"}),
    )
    .await;
    (resident.id.as_str().to_owned(), license_id)
}

async fn run(options: &Options) -> Report {
    conformance::run(options).await.unwrap()
}

fn numbers(ids: &[CheckId]) -> BTreeSet<u8> {
    ids.iter().map(|c| c.number()).collect()
}

/// `report` failed exactly `expected`, and each reason says what `says` lists.
fn assert_fails_exactly(report: &Report, expected: &[CheckId], says: &[(CheckId, &str)]) {
    let text = report.render_text();
    assert_eq!(
        numbers(&report.failed_checks()),
        numbers(expected),
        "failed checks\n{text}"
    );
    for (id, phrase) in says {
        let reason = &report.check(*id).unwrap().reason;
        assert!(
            reason.contains(phrase),
            "check {id:?} should say {phrase:?}\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_platform_passes_every_check() {
    let files = files();
    let served = Served {
        tls: true,
        mutual: true,
        auth: AuthSettings::Hmac {
            app_key: "node-11".to_owned(),
            secret_file: files.hmac_secret.clone(),
        },
    };
    let running = start(&files, served, |router| router).await;
    decided_case(&running, "110000-20260101-00000001", &["accept", "approve"]).await;
    let (person, license_id) = revoked_license(&running).await;
    let mut options = options(
        &files,
        &running,
        PlatformAuth::Hmac {
            app_key: "node-11".to_owned(),
            secret_file: files.hmac_secret.clone(),
        },
    );
    options.tls.cert = Some(files.client_cert.clone());
    options.tls.key = Some(files.client_key.clone());
    options.expect_revoked = Some(license_id.clone());
    options.known_person = Some(person.clone());
    let report = run(&options).await;
    let text = report.render_text();
    assert_eq!(report.checks.len(), 14, "{text}");
    assert!(
        report.checks.iter().all(|c| c.outcome == Outcome::Pass),
        "every check must pass, none skipped\n{text}"
    );
    assert!(
        text.ends_with("14 checks: 14 passed, 0 failed, 0 skipped\n"),
        "{text}"
    );
    // The codes the clerk's decisions made are among those checked.
    let codes = &report.check(CheckId::StatusCodes).unwrap().reason;
    assert!(
        codes.contains("已受理 → accepted") && codes.contains("办结 → approved"),
        "{codes}"
    );
    assert!(
        report
            .check(CheckId::Revocations)
            .unwrap()
            .reason
            .contains(&license_id)
    );
    let auth = &report.check(CheckId::Authentication).unwrap().reason;
    assert!(auth.contains("without the client certificate"), "{auth}");
    // What was sent is shown; secrets and personal data are not.
    let json = report.to_json();
    assert!(
        !json.contains("conformance-test-secret"),
        "the HMAC secret leaked"
    );
    assert!(!json.contains(&person), "a known person's ID number leaked");
    assert!(!text.contains(&person), "a known person's ID number leaked");
    assert!(text.contains("x-tongban-signature: <redacted>"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["checks"][3]["key"], "take-over");
    assert_eq!(
        value["checks"][3]["exchanges"][0]["operation"],
        "case_events"
    );
}

/// Answers a repeated take-over (`200`) as if the case were new: `201`, a new reference.
async fn answer_repeats_as_new(request: Request, next: Next) -> Response {
    let take_over = request.method() == Method::PUT;
    let response = next.run(request).await;
    if !take_over || response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut view: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    view["reference"] = format!("{}-again", view["reference"].as_str().unwrap()).into();
    parts.status = StatusCode::CREATED;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&view).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_is_not_idempotent_fails_the_repeat_check() {
    let files = files();
    let running = start(&files, Served::bearer(&files), |router| {
        router.layer(middleware::from_fn(answer_repeats_as_new))
    })
    .await;
    let report = run(&options(&files, &running, bearer(&files))).await;
    assert_fails_exactly(
        &report,
        &[CheckId::RepeatTakeOver],
        &[
            (CheckId::RepeatTakeOver, "answered 201 Created again"),
            (CheckId::RepeatTakeOver, "was a second case made?"),
        ],
    );
}

/// A feed that skips one event: every event of the second case taken over through it
/// is dropped from the pages (a page it emptied is followed by the next, as a feed that
/// never had the event would be).
#[derive(Clone)]
struct Skipper {
    inner: Router,
    created: Arc<Mutex<Vec<String>>>,
}

/// `uri` with its `after` set to `cursor`.
fn with_after(uri: &Uri, cursor: &str) -> Uri {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("after="))
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("after={cursor}"));
    format!("{}?{query}", uri.path()).parse().unwrap()
}

async fn skip_the_second_case(
    State(skipper): State<Skipper>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if request.method() == Method::PUT {
        let response = next.run(request).await;
        if response.status() == StatusCode::CREATED {
            let number = path.rsplit('/').next().unwrap().to_owned();
            skipper.created.lock().unwrap().push(number);
        }
        return response;
    }
    let victim = skipper.created.lock().unwrap().get(1).cloned();
    let (Some(victim), "/v1/case-events") = (victim, path.as_str()) else {
        return next.run(request).await;
    };
    let (uri, headers) = (request.uri().clone(), request.headers().clone());
    let mut response = next.run(request).await;
    loop {
        if response.status() != StatusCode::OK {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        let mut page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let events = page["events"].as_array_mut().unwrap();
        let held = events.len();
        events.retain(|e| e["case_number"] != victim.as_str());
        if events.is_empty() && held > 0 && page["more"] == true {
            let cursor = page["next_cursor"].as_str().unwrap();
            let mut again = Request::new(Body::empty());
            *again.uri_mut() = with_after(&uri, cursor);
            *again.headers_mut() = headers.clone();
            response = skipper.inner.clone().oneshot(again).await.unwrap();
            continue;
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(serde_json::to_vec(&page).unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_skips_an_event_fails_the_order_check() {
    let files = files();
    let running = start(&files, Served::bearer(&files), |router| {
        let skipper = Skipper {
            inner: router.clone(),
            created: Arc::default(),
        };
        router.layer(middleware::from_fn_with_state(
            skipper,
            skip_the_second_case,
        ))
    })
    .await;
    let report = run(&options(&files, &running, bearer(&files))).await;
    assert_fails_exactly(
        &report,
        &[CheckId::FeedOrder],
        &[(CheckId::FeedOrder, "the feed skipped it")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_status_code_fails_the_mapping_check_naming_it() {
    let files = files();
    let running = start(&files, Served::bearer(&files), |router| router).await;
    decided_case(&running, "110000-20260101-00000002", &["accept"]).await;
    let mut options = options(&files, &running, bearer(&files));
    // The province's table as a careless node would have it: 已受理 left out.
    let codes = StatusCodes::reference()
        .iter()
        .filter(|(code, _)| *code != "已受理")
        .map(|(code, status)| (code.to_owned(), status))
        .collect();
    options.status_codes = StatusCodes::new(codes);
    let report = run(&options).await;
    assert_fails_exactly(
        &report,
        &[CheckId::StatusCodes],
        &[
            (CheckId::StatusCodes, "\"已受理\""),
            (
                CheckId::StatusCodes,
                "the status-code table does not map 1 of the 2",
            ),
        ],
    );
}

/// Check 1 failed saying `phrase`, and every later check was skipped.
fn assert_tls_fails_alone(report: &Report, phrase: &str) {
    assert_fails_exactly(report, &[CheckId::Tls], &[(CheckId::Tls, phrase)]);
    let skipped = numbers(&report.with_outcome(Outcome::Skip));
    assert_eq!(skipped, (2..=14).collect(), "{}", report.render_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_the_tls_check_naming_the_ca_file() {
    let files = files();
    let running = start(&files, Served::bearer(&files), |router| router).await;
    let mut options = options(&files, &running, bearer(&files));
    options.tls.ca = files.other_ca.clone();
    let report = run(&options).await;
    assert_tls_fails_alone(&report, "not signed by the CA the node trusts");
    assert_tls_fails_alone(&report, &files.other_ca.display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tls_misconfigurations_are_named() {
    let files = files();
    // The certificate names the platform's DNS name, not 127.0.0.1.
    let running = start(&files, Served::bearer(&files), |router| router).await;
    let mut options = options(&files, &running, bearer(&files));
    options.tls.server_name = None;
    let report = run(&options).await;
    assert_tls_fails_alone(&report, "does not name the host");
    drop(running);

    // The platform wants a client certificate; the node has none.
    let files = self::files();
    let mutual = Served {
        mutual: true,
        ..Served::bearer(&files)
    };
    let running = start(&files, mutual, |router| router).await;
    let report = run(&options_for(&files, &running)).await;
    assert_tls_fails_alone(&report, "requires a client certificate");
    drop(running);

    // The platform speaks plain HTTP on the port.
    let files = self::files();
    let plain = Served {
        tls: false,
        ..Served::bearer(&files)
    };
    let running = start(&files, plain, |router| router).await;
    let report = run(&options_for(&files, &running)).await;
    assert_tls_fails_alone(&report, "did not answer TLS");
}

fn options_for(files: &Files, running: &Running) -> Options {
    options(files, running, bearer(files))
}

/// Delays reading a case beyond the kit's timeout, and health past half of it.
async fn slow_reads(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if request.method() == Method::GET && path.starts_with("/v1/cases/") {
        tokio::time::sleep(Duration::from_millis(2500)).await;
    } else if path == "/v1/health" {
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    next.run(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_platform_fails_the_timing_check_naming_the_operation() {
    let files = files();
    let running = start(&files, Served::bearer(&files), |router| {
        router.layer(middleware::from_fn(slow_reads))
    })
    .await;
    let mut options = options(&files, &running, bearer(&files));
    options.timeout = Duration::from_millis(1500);
    let report = run(&options).await;
    // Reading a case got no answer (check 7 cannot read it back), and the timing check
    // names the operation and its time; health was slow but in time.
    assert_fails_exactly(
        &report,
        &[CheckId::ReadCase, CheckId::Timing],
        &[
            (CheckId::ReadCase, "no answer within 1500 ms"),
            (CheckId::Timing, "read_case GET /v1/cases/"),
            (CheckId::Timing, "got no answer within"),
            (
                CheckId::Timing,
                "slow (over half the timeout, 750 ms): health",
            ),
        ],
    );
}
