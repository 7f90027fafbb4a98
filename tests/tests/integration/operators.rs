//! Operators authenticated: what changes a running gateway or node (reload, revoke,
//! replay, close) and the console answer only on the operator listener, to a client
//! certificate naming an operator on the roster with the role the request needs, and
//! every change is in the member's audit trail under the operator's name. Tried as an
//! attacker would first: the routes on the plaintext admin listener, no certificate, a
//! member's certificate, an operator the roster does not list, a viewer.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{path::Path, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tongban_kit::{
    config::pki::{OPERATOR, VIEWER},
    member::OperatorApi,
    testing::{TestFederation, eventually, start},
};
use tongban_node::portal_client::PortalClient;
use tongban_runtime::trust::{identity::PeerIdentity, operator::OperatorName, pki::DevCa};

use super::recognition::license_of;

const WAIT: Duration = Duration::from_secs(20);

fn pki(t: &TestFederation) -> std::path::PathBuf {
    t.dir.path().join("pki")
}

/// Operator records of a trail (written by its own thread, so waited for).
async fn operator_records(trail: &Path, wanted: usize) -> Vec<Value> {
    eventually(WAIT, "operator records in the trail", || async {
        let text = std::fs::read_to_string(trail).ok()?;
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.splitn(3, '\t').nth(2)?).ok())
            .filter(|r| r["event"] == "operator")
            .collect();
        (records.len() >= wanted).then_some(records)
    })
    .await
}

/// Issues `name`'s operator certificate from the federation's CA (as a careless CA
/// operator could), without adding the name to any roster.
fn issue_unlisted(t: &TestFederation, name: &str) {
    let dir = pki(t);
    let ca = DevCa::load(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let leaf = ca
        .issue_operator(
            &OperatorName::parse(name).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
    tongban_runtime::trust::pki::write_named_leaf(&dir, &format!("operator-{name}"), &leaf)
        .unwrap();
}

/// A TLS handshake to `addr` without a client certificate: refused by the listener.
async fn handshake_without_certificate(t: &TestFederation, addr: std::net::SocketAddr) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki(t).join("ca.pem")).unwrap();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("gateway.tongban.internal").unwrap();
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return false;
    };
    // TLS 1.3: the server's refusal of the missing certificate comes with the first read.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tls
        .write_all(b"POST /reload HTTP/1.1\r\nhost: g\r\ncontent-length: 0\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
}

/// `tongban operator <command> --member <config> ...` as the kit's operator `name`; its
/// output (the command must succeed).
pub(super) fn operator_cli(
    t: &TestFederation,
    config: &Path,
    name: &str,
    command: &[&str],
) -> String {
    let (succeeded, output) = operator_cli_outcome(t, config, name, command);
    assert!(succeeded, "tongban operator {command:?}: {output}");
    output
}

/// Like [`operator_cli`], for a command that may fail: whether it succeeded, and its
/// stdout (or its stderr when it failed).
pub(super) fn operator_cli_outcome(
    t: &TestFederation,
    config: &Path,
    name: &str,
    command: &[&str],
) -> (bool, String) {
    let mut args: Vec<String> = vec!["operator".into(), command[0].into()];
    args.extend(super::outbox::operator_args(t, config, name));
    args.extend(command[1..].iter().map(|a| (*a).to_owned()));
    let out = std::process::Command::new(tongban_kit::testing::cli_binary())
        .args(&args)
        .output()
        .unwrap();
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

async fn is_revoked(node: &tongban_kit::RunningNode, license: &str) -> bool {
    let license = node
        .platform
        .license_with_holder(license)
        .await
        .unwrap()
        .unwrap();
    license.revoked_at.is_some()
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_listed_operator_may_reload_the_gateway_and_read_its_console() {
    let t = start(&["310000", "440000"]).await;
    let gateway = t.fed.gateway();
    // The old way in: the plaintext admin listener has no operator route any more.
    let admin = PortalClient::new(format!("http://{}", gateway.admin_addr.unwrap()));
    for (method, path) in [
        ("POST", "/reload"),
        ("GET", "/console"),
        ("GET", "/console/data"),
    ] {
        let answer = admin.send(method, path, bytes::Bytes::new()).await.unwrap();
        assert_eq!(answer.status, 404, "{method} {path}: {:?}", answer.body);
    }
    assert_eq!(admin.get("/metrics").await.unwrap().status, 200);
    // No certificate: no connection.
    assert!(!handshake_without_certificate(&t, gateway.operator_addr).await);

    // A member's certificate is not an operator's; nor is an unlisted operator's.
    let dir = pki(&t);
    let as_member = tongban_runtime::trust::operator_client::OperatorClient::new(
        gateway.operator_addr,
        PeerIdentity::Gateway,
        &tongban_runtime::trust::operator_client::OperatorCredentials {
            ca: dir.join("ca.pem"),
            cert: dir.join("region-31.pem"),
            key: dir.join("region-31.key"),
        },
    )
    .unwrap();
    let answer = as_member.post_json("/reload", &json!({})).await.unwrap();
    assert_eq!(answer.status, 403);
    assert!(String::from_utf8_lossy(&answer.body).contains("not an operator certificate"));
    issue_unlisted(&t, "mallory");
    let mallory = gateway
        .operator
        .as_operator(PeerIdentity::Gateway, &dir, "mallory")
        .unwrap();
    let answer = mallory
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    assert!(
        answer
            .body
            .to_string()
            .contains("not on this process's roster")
    );

    // A viewer reads the console but may not reload.
    let viewer = gateway
        .operator
        .as_operator(PeerIdentity::Gateway, &dir, VIEWER)
        .unwrap();
    assert_eq!(viewer.get("/console/data").await.unwrap().status, 200);
    let answer = viewer
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 403);
    assert!(answer.body.to_string().contains("needs the operator role"));

    // The operator reloads; the trail names who did what, and who was refused.
    let answer = gateway
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let records = operator_records(&t.dir.path().join("gateway-audit.log"), 4).await;
    let done: Vec<&Value> = records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(done.len(), 1, "{records:?}");
    assert_eq!(done[0]["operator"], OPERATOR);
    assert_eq!(done[0]["role"], "operator");
    assert_eq!(done[0]["path"], "/reload");
    let refused: Vec<&Value> = records.iter().filter(|r| r["status"] == 403).collect();
    assert_eq!(refused.len(), 3, "{records:?}");
    assert!(refused.iter().any(|r| r["operator"] == VIEWER));
    assert!(
        refused
            .iter()
            .any(|r| r["refused"].as_str().unwrap_or("").contains("mallory"))
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_revokes_and_closes_only_for_its_operator_and_records_who() {
    let t = start(&["310000", "440000"]).await;
    let n44 = t.fed.node("44").unwrap();
    let holder = t.residents("44")[0].id.as_str().to_owned();
    let license = license_of(&t, "44", &holder, "household_register").await;
    let path = format!("/licenses/{license}/revoke");
    let reason = json!({"reason": "annulled"});

    // The plaintext admin listener no longer revokes (it once did, for anyone).
    let admin = n44.admin.post_json(&path, &reason).await.unwrap();
    assert_eq!(admin.status, 404, "{:?}", admin.body);
    assert_eq!(n44.admin.get("/outbox").await.unwrap().status, 404);
    for (method, route) in [("POST", "/reload"), ("POST", "/outbox/1/close")] {
        let answer = n44
            .admin
            .send(method, route, bytes::Bytes::new())
            .await
            .unwrap();
        assert_eq!(answer.status, 404, "{method} {route}");
    }

    // Another region's certificate, a viewer: refused, and the license stays valid.
    let dir = pki(&t);
    let region_44 = PeerIdentity::Region(n44.prefix);
    let viewer: OperatorApi = n44
        .operator
        .as_operator(region_44.clone(), &dir, VIEWER)
        .unwrap();
    assert_eq!(viewer.get("/outbox").await.unwrap().status, 200);
    let refused = viewer.post_json(&path, &reason).await.unwrap();
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let closed = viewer
        .post_json("/outbox/1/close", &json!({"reason": "x"}))
        .await
        .unwrap();
    assert_eq!(closed.status, 403);
    assert!(!is_revoked(n44, &license).await);

    // The operator revokes, with the CLI.
    let out = operator_cli(
        &t,
        &n44.config_path,
        OPERATOR,
        &["revoke", &license, "--reason", "annulled"],
    );
    assert!(out.contains("published"), "{out}");
    assert!(is_revoked(n44, &license).await);
    let records = operator_records(&t.dir.path().join("node-44-audit.log"), 3).await;
    let by_operator: Vec<&Value> = records
        .iter()
        .filter(|r| r["operator"] == OPERATOR)
        .collect();
    assert_eq!(by_operator.len(), 1, "{records:?}");
    assert_eq!(by_operator[0]["path"], path);
    assert_eq!(by_operator[0]["status"], 200);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["operator"] == VIEWER && r["status"] == 403)
            .count(),
        2,
        "{records:?}"
    );
    t.shutdown().await;
}
