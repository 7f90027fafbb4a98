//! Trust changes made safe, with a gateway and nodes as processes: a registry that would
//! cut the federation off (an empty file written in place) is refused by the file watch
//! and by `/reload` unless forced; the registry and the TLS files are reloaded each on
//! its own, so a bad registry edit does not hold back a new revocation list (nor a bad
//! TLS file a registry change); and verdicts cached under an issuer key stop counting
//! the moment that key leaves the registry (the key-compromise drill), as do negative
//! verdicts once the registry that caused them is fixed. A region removed from the
//! registry loses its open connections, not only its calls.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tongban_kit::testing::SigningChannel;

use tongban_gateway::registry::RegistryFile;
use tongban_kit::testing::{TestFederation, processes, start_with};
use tongban_node::portal_client::PortalClient;
use tongban_proto::v1::{VerdictOutcome, VerdictSource, gateway_client::GatewayClient};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::Code;

use super::recognition::{license_of, lookup};
use super::revocation::{ca, catalog, handshake_refusal, open_connection, serial};

/// Longer than two polls of the file watch (every 2 s).
const WATCH: Duration = Duration::from_secs(5);

/// A gateway and a node per region, each its own process.
async fn start(regions: &[&str]) -> TestFederation {
    start_with(regions, |spec| spec.launch = processes("warn")).await
}

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

async fn channel_as(t: &TestFederation, prefix: &str) -> SigningChannel {
    t.gateway_channel(&t.tls_files(&region(prefix)))
        .await
        .unwrap()
}

fn registry_file(t: &TestFederation) -> (std::path::PathBuf, RegistryFile) {
    let path = t.dir.path().join("registry.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, toml::from_str(&text).unwrap())
}

fn admin(t: &TestFederation) -> PortalClient {
    PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()))
}

/// `POST` `path` on the gateway's operator listener: status and text.
pub(super) async fn reload_at(t: &TestFederation, path: &str) -> (u16, String) {
    let r = t
        .fed
        .gateway()
        .operator
        .send("POST", path, bytes::Bytes::new())
        .await
        .unwrap();
    let text = match &r.body {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (r.status, text)
}

/// `tongban_gateway_reload_refusals_total{part, reason}` from the gateway's `/metrics`.
async fn refusals(t: &TestFederation, part: &str, reason: &str) -> u64 {
    let text = admin(t).get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap_or_default().to_owned();
    let line =
        format!("tongban_gateway_reload_refusals_total{{part=\"{part}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The catalog call's answer once it is not cut short by a closing connection: the
/// gateway drains the connections of a region a reload removed (GOAWAY), and a call
/// sent as that happens ends `Cancelled` or `Unavailable` before any refusal; the
/// channel then connects again, and the gateway answers.
async fn settled(channel: &SigningChannel) -> Result<(), Code> {
    for _ in 0..50 {
        match catalog(channel).await {
            Err(Code::Cancelled | Code::Unavailable) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            answer => return answer,
        }
    }
    catalog(channel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_registry_is_refused_unless_forced_and_the_federation_keeps_serving() {
    let t = start(&["310000", "440000"]).await;
    let (path, original) = registry_file(&t);
    let shanghai = channel_as(&t, "31").await;
    assert_eq!(catalog(&shanghai).await, Ok(()));

    // Rewritten in place, empty (a configuration tool that truncated it): the file
    // watch sees it and must not apply it.
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(WATCH).await;
    assert_eq!(
        catalog(&shanghai).await,
        Ok(()),
        "the file watch applied an empty registry: every member cut off"
    );
    assert!(refusals(&t, "registry", "drops_regions").await >= 1);

    // Asked by an operator: refused too, saying why and how to force it.
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("no region") && text.contains("force=true"),
        "{text}"
    );
    assert!(text.contains("revocation lists applied"), "{text}");
    assert_eq!(catalog(&shanghai).await, Ok(()));

    // Forced, it applies: nobody is a member any more.
    let (status, text) = reload_at(&t, "/reload?force=true").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(settled(&shanghai).await, Err(Code::PermissionDenied));

    // Written back (from empty, nothing is dropped): served again.
    std::fs::write(&path, toml::to_string(&original).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(settled(&shanghai).await, Ok(()));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_registry_edit_does_not_hold_back_a_new_revocation_list_nor_the_reverse() {
    let t = start(&["310000", "440000", "110000"]).await;
    let gateway = t.fed.gateway().federation_addr;
    let (path, original) = registry_file(&t);
    let shanghai = t.tls_files(&region("31"));
    let guangdong = channel_as(&t, "44").await;
    assert_eq!(catalog(&channel_as(&t, "31").await).await, Ok(()));

    // A registry with a syntax error and a new list revoking Shanghai, together.
    std::fs::write(&path, "[[region]\nprefix = \"44\"\n").unwrap();
    let pki = t.dir.path().join("pki");
    ca(&t)
        .write_revocations(&pki, &[serial(&shanghai)])
        .unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("registry refused"), "{text}");
    let refusal = handshake_refusal(gateway, &shanghai, &PeerIdentity::Gateway).await;
    assert!(
        refusal.contains("CertificateRevoked"),
        "the new revocation list was held back by the bad registry: {refusal}; reload said {text}"
    );
    assert!(text.contains("1 revoked serials"), "{text}");
    // The registry in force is the old one: Guangdong is still a member.
    assert_eq!(catalog(&guangdong).await, Ok(()));

    // The reverse: a broken revocation list beside a good registry change (Beijing
    // removed, forced past the drop check): the registry applies, the list in force
    // stays.
    let mut without = original.clone();
    without.regions.retain(|r| r.prefix != "11");
    std::fs::write(&path, toml::to_string(&without).unwrap()).unwrap();
    std::fs::write(
        pki.join("crl.pem"),
        "-----BEGIN X509 CRL-----\nnot base64\n",
    )
    .unwrap();
    let (status, text) = reload_at(&t, "/reload?force=true").await;
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("registry applied") && text.contains("revocation lists refused"),
        "{text}"
    );
    let beijing = channel_as(&t, "11").await;
    assert_eq!(catalog(&beijing).await, Err(Code::PermissionDenied));
    assert_eq!(catalog(&guangdong).await, Ok(()));
    let refusal = handshake_refusal(gateway, &shanghai, &PeerIdentity::Gateway).await;
    assert!(refusal.contains("CertificateRevoked"), "{refusal}");
    assert!(refusals(&t, "tls", "invalid").await >= 1);
    assert!(refusals(&t, "registry", "invalid").await >= 1);
    t.shutdown().await;
}

/// A license lookup as Shanghai's portal makes it for a Guangdong resident.
async fn look_up(
    gateway: &mut GatewayClient<SigningChannel>,
    license: &str,
    holder: &str,
) -> tongban_proto::v1::LicenseVerdict {
    lookup(
        gateway,
        license,
        "household_register",
        "household-transfer",
        holder,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_compromise_drill_drops_cached_verdicts_at_once() {
    let t = start(&["310000", "440000"]).await;
    let (path, original) = registry_file(&t);
    let resident = t.residents("44")[3].clone();
    let holder = resident.id.as_str();
    let register = license_of(&t, "44", holder, "household_register").await;
    let mut gateway = GatewayClient::new(channel_as(&t, "31").await);
    let first = look_up(&mut gateway, &register, holder).await;
    assert_eq!(
        first.outcome,
        VerdictOutcome::Recognized as i32,
        "{first:?}"
    );
    let cached = look_up(&mut gateway, &register, holder).await;
    assert_eq!(cached.source, VerdictSource::Cache as i32, "{cached:?}");

    // Guangdong's key is compromised: the operator removes it from the registry.
    let mut without = original.clone();
    for entry in &mut without.regions {
        if entry.prefix == "44" {
            assert!(!entry.issuer_keys.is_empty());
            entry.issuer_keys.clear();
        }
    }
    std::fs::write(&path, toml::to_string(&without).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 200, "{text}");
    // At once, not at the cache's TTL: the next lookup is not answered from the cache.
    let after = look_up(&mut gateway, &register, holder).await;
    assert_ne!(
        (after.outcome, after.source),
        (
            VerdictOutcome::Recognized as i32,
            VerdictSource::Cache as i32
        ),
        "recognized from the cache after its key left the registry"
    );
    assert_ne!(
        after.outcome,
        VerdictOutcome::Recognized as i32,
        "{after:?}"
    );

    // The key registered again: the refusal it caused does not outlive that reload.
    std::fs::write(&path, toml::to_string(&original).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 200, "{text}");
    let again = look_up(&mut gateway, &register, holder).await;
    assert_eq!(
        again.outcome,
        VerdictOutcome::Recognized as i32,
        "a negative verdict outlived the reload that fixed it: {again:?}"
    );
    assert_eq!(again.source, VerdictSource::Issuer as i32, "{again:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_region_has_its_open_connections_closed() {
    let t = start(&["310000", "440000"]).await;
    let gateway = t.fed.gateway().federation_addr;
    let (path, original) = registry_file(&t);
    let shanghai = t.tls_files(&region("31"));
    let raw = open_connection(gateway, &shanghai, &PeerIdentity::Gateway).await;
    let guangdong =
        open_connection(gateway, &t.tls_files(&region("44")), &PeerIdentity::Gateway).await;
    // A reload that keeps Shanghai leaves its connection alone.
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 200, "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !raw.is_finished(),
        "a member's connection closed by a reload"
    );

    // Shanghai removed (one of two regions: forced past the drop check).
    let mut without = original.clone();
    without.regions.retain(|r| r.prefix != "31");
    std::fs::write(&path, toml::to_string(&without).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload?force=true").await;
    assert_eq!(status, 200, "{text}");
    let closed = tokio::time::timeout(Duration::from_secs(2), raw).await;
    assert!(
        closed.is_ok(),
        "the removed region's connection is still open 2 s after the reload"
    );
    assert!(!guangdong.is_finished(), "a member's connection was closed");
    t.shutdown().await;
}

/// `VerifyIdentity` of one of 44's residents, asked by 31: (outcome, key id of the
/// assertion when the issuer was asked).
async fn identity_of_44(t: &TestFederation, index: usize) -> (i32, String) {
    let person = t.residents("44")[index].clone();
    let mut client = GatewayClient::new(channel_as(t, "31").await);
    let verdict = client
        .verify_identity(tongban_proto::v1::VerifyIdentityRequest {
            id_number: person.id.as_str().to_owned(),
            name: person.name.clone(),
            purpose: super::recognition::purpose("household-transfer"),
        })
        .await
        .unwrap()
        .into_inner();
    let key = verdict.assertion.map(|a| a.key_id).unwrap_or_default();
    (verdict.outcome, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reloads_its_issuer_keys_and_a_bad_key_file_leaves_them_in_force() {
    let t = start(&["310000", "440000"]).await;
    let recognized = VerdictOutcome::Recognized as i32;
    assert_eq!(
        identity_of_44(&t, 0).await,
        (recognized, "44-k1".to_owned())
    );

    // The key compromise drill at the issuer's end: a new key, registered at the gateway
    // in place of the old, and put in the node's config; a reload, not a restart.
    let pki = t.dir.path().join("pki");
    let key = tongban_runtime::trust::pki::IssuerKey::generate("44-k9").unwrap();
    let key_file = key.write(&pki).unwrap();
    let (registry_path, mut registry) = registry_file(&t);
    let entry = registry
        .regions
        .iter_mut()
        .find(|r| r.prefix == "44")
        .unwrap();
    let now = std::time::SystemTime::now();
    entry.issuer_keys = vec![tongban_kit::config::gateway::issuer_key_entry(
        &key,
        now,
        Duration::from_secs(3600),
    )];
    std::fs::write(&registry_path, toml::to_string(&registry).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 200, "{text}");
    // The node still signs with the old key: refused by the gateway now.
    assert_ne!(identity_of_44(&t, 1).await.0, recognized);

    let n44 = t.fed.node("44").unwrap();
    let mut config = tongban_node::NodeConfig::load(&n44.config_path).unwrap();
    config.issuer.keys = vec![tongban_node::config::SigningKeyConfig {
        id: "44-k9".into(),
        file: key_file.clone(),
        not_before: None,
    }];
    tongban_kit::config::node::write(&n44.config_path, &config, "the test").unwrap();
    let reloaded = n44
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert!(
        reloaded.body.to_string().contains("issuer keys [44-k9]"),
        "{}",
        reloaded.body
    );
    assert_eq!(
        identity_of_44(&t, 2).await,
        (recognized, "44-k9".to_owned())
    );

    // A key file that cannot be read: refused by name, the keys in force stay.
    config.issuer.keys[0].file = pki.join("no-such-key.pem");
    tongban_kit::config::node::write(&n44.config_path, &config, "the test").unwrap();
    let refused = n44
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    let text = refused.body.to_string();
    assert!(
        text.contains("issuer keys") && text.contains("applied: certificates"),
        "{text}"
    );
    assert_eq!(
        identity_of_44(&t, 3).await,
        (recognized, "44-k9".to_owned())
    );
    t.shutdown().await;
}
