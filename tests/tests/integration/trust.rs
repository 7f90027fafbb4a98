//! Admission by the registry, over real mTLS on loopback: a certificate from the
//! federation's own CA is not enough to take part, a province's certificate does not
//! act for a city that runs its own node, and the registry and certificates are
//! reloaded without a restart (admin endpoint, SIGHUP), a bad file rejected whole.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tongban_gateway::registry::RegistryFile;
use tongban_kit::Member;
use tongban_kit::testing::{TestFederation, start};
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::metadata,
    v1::{
        DeliverApplicationRequest, GetCatalogRequest, VerifyIdentityRequest,
        catalog_client::CatalogClient, gateway_client::GatewayClient,
    },
};
use tongban_runtime::{trust::identity::PeerIdentity, trust::pki};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// Issues, with the federation's own CA, a certificate for `identity` into its folder.
fn issue_with_federation_ca(t: &TestFederation, identity: &PeerIdentity) {
    let dir = t.dir.path().join("pki");
    let ca = pki::DevCa::load(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let leaf = ca.issue(identity, Duration::from_secs(3600)).unwrap();
    pki::write_leaf(&dir, identity, &leaf).unwrap();
}

async fn channel_as(t: &TestFederation, identity: &PeerIdentity) -> Channel {
    t.gateway_channel(&t.tls_files(identity)).await.unwrap()
}

fn with_meta<T>(message: T, pairs: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in pairs {
        request
            .metadata_mut()
            .insert(*k, MetadataValue::try_from(*v).unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_absent_from_the_registry_is_refused_on_every_method() {
    let t = start(&["310000", "440000"]).await;
    // Jiangsu (32) holds a valid certificate from the federation's CA, but is not
    // registered.
    let jiangsu = region("32");
    issue_with_federation_ca(&t, &jiangsu);
    let channel = channel_as(&t, &jiangsu).await;
    let mut gateway = GatewayClient::new(channel.clone());
    let resident = &t.residents("44")[0];

    let deliver = gateway
        .deliver_application(with_meta(
            DeliverApplicationRequest::default(),
            &[
                (metadata::TARGET_REGION, "440000"),
                (metadata::IDEMPOTENCY_KEY, "deliver:320000-1"),
            ],
        ))
        .await
        .unwrap_err();
    let verify = gateway
        .verify_identity(with_meta(
            VerifyIdentityRequest {
                id_number: resident.id.as_str().to_owned(),
                name: resident.name.clone(),
                purpose: None,
            },
            &[],
        ))
        .await
        .unwrap_err();
    let catalog = CatalogClient::new(channel)
        .get_catalog(GetCatalogRequest::default())
        .await
        .unwrap_err();
    for (method, status) in [
        ("DeliverApplication", deliver),
        ("VerifyIdentity", verify),
        ("GetCatalog", catalog),
    ] {
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{method}: {status:?}"
        );
        assert!(
            status.message().contains("not registered"),
            "{method}: {}",
            status.message()
        );
    }
    // Nothing reached Guangdong's platform.
    let n44 = t.fed.node("44").unwrap();
    assert!(n44.platform.payload("320000-1").await.unwrap().is_none());

    // A registered region with a certificate from the same CA is served.
    let mut shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    assert!(
        shanghai
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_ok()
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_cannot_act_for_a_city_that_runs_its_own_node() {
    // Shenzhen (440300) runs its own node beside Guangdong's.
    let t = start(&["310000", "440000", "440300"]).await;
    let mut guangdong = GatewayClient::new(channel_as(&t, &region("44")).await);
    let claim = |origin: &'static str| {
        with_meta(
            DeliverApplicationRequest::default(),
            &[
                (metadata::TARGET_REGION, "310000"),
                (metadata::ORIGIN_REGION, origin),
                (metadata::IDEMPOTENCY_KEY, "deliver:claim"),
            ],
        )
    };
    let err = guangdong
        .deliver_application(claim("440305"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("its own node"), "{}", err.message());
    // For a city without a node of its own (Guangzhou), the province's certificate
    // passes the gateway (the empty delivery is then the node's to refuse).
    let err = guangdong
        .deliver_application(claim("440100"))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::PermissionDenied, "{err:?}");
    t.shutdown().await;
}

/// The registry file of the (first) gateway, parsed.
fn registry_file(t: &TestFederation) -> (std::path::PathBuf, RegistryFile) {
    let path = t.dir.path().join("registry.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, toml::from_str(&text).unwrap())
}

async fn reload(t: &TestFederation) -> (u16, String) {
    let admin = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    let r = admin
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    let text = match &r.body {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (r.status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_removed_from_the_registry_is_cut_off_without_a_restart() {
    let t = start(&["310000", "440000"]).await;
    let (path, original) = registry_file(&t);
    let shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    let guangdong = CatalogClient::new(channel_as(&t, &region("44")).await);
    let catalog = |mut client: CatalogClient<Channel>| async move {
        client
            .get_catalog(GetCatalogRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| s.code())
    };
    assert_eq!(catalog(shanghai.clone()).await, Ok(()));

    // Guangdong calls all along: no call of a member fails while the registry changes.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn({
        let (stop, client) = (stop.clone(), guangdong.clone());
        async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match catalog(client.clone()).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }
    });

    // Shanghai removed: refused on its open connection, at once.
    let mut without = original.clone();
    without.regions.retain(|r| r.prefix != "31");
    std::fs::write(&path, toml::to_string(&without).unwrap()).unwrap();
    let (status, text) = reload(&t).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(catalog(shanghai.clone()).await, Err(Code::PermissionDenied));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken file is rejected whole; what was in force stays.
    std::fs::write(&path, "[[region]]\nprefix = \"4\"\n").unwrap();
    let (status, text) = reload(&t).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("registry"), "{text}");
    assert_eq!(catalog(shanghai.clone()).await, Err(Code::PermissionDenied));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Registered again: served again, on the same connection.
    std::fs::write(&path, toml::to_string(&original).unwrap()).unwrap();
    let (status, text) = reload(&t).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(catalog(shanghai.clone()).await, Ok(()));

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = steady.await.unwrap();
    println!("guangdong during three reloads: {ok} calls served, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "a member's call failed during a reload");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_never_kills() {
    let mut t = tongban_kit::testing::start_with(&["310000", "440000"], |spec| {
        spec.launch = tongban_kit::testing::processes("info");
    })
    .await;
    for member in [Member::Gateway(0), Member::Node("44".into())] {
        let pid = t.fed.pid(&member).unwrap();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for member in [Member::Gateway(0), Member::Node("44".into())] {
        assert!(
            !t.fed
                .wait_exit(&member, Duration::from_millis(100))
                .await
                .unwrap(),
            "{member:?} exited on SIGHUP"
        );
    }
    // Both serve, and say what they reloaded.
    let mut shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    assert!(
        shanghai
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_ok()
    );
    for log in ["gateway-0.log", "node-44.log"] {
        let text = std::fs::read_to_string(t.dir.path().join(log)).unwrap();
        assert!(
            text.contains("SIGHUP") && text.contains("reloaded"),
            "{log} has no reload line"
        );
    }
    t.shutdown().await;
}
