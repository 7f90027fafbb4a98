//! The three lists through real processes (一地创新、全国复用): Shanghai (31) publishes a
//! featured one-thing through the gateway with the operator CLI; Guangdong (44) sees it
//! but neither accepts it nor has it handled there until it adopts it, also with the
//! CLI; then a Shanghai resident's filing at Guangdong's portal is accepted and routed
//! to Shanghai, which judges it by the version carrying the adoption (fetched when the
//! delivery names it). The gateway's catalog, the nodes' copies and the console show
//! who offers what, and the ledger keeps it across a gateway restart. Replicas that
//! share a database share the ledger: changes through either are served by both.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use serde_json::Value;
use tongban_kit::{
    Member,
    testing::{
        TestFederation, eventually, featured_medical_item, medical_filing, processes, start_with,
    },
};
use tongban_node::platform::embedded::SyntheticResident;
use tongban_proto::{
    rules::{catalog::Catalog, region::RegionPrefix},
    v1::{
        AdoptFeaturedItemRequest, GetCatalogRequest, GetCatalogResponse,
        PublishFeaturedItemRequest, catalog_client::CatalogClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;

const ITEM: &str = "sh-yangtze-medical-settlement";
const WAIT: Duration = Duration::from_secs(30);

/// Shanghai's featured item, as published.
fn featured_item(publisher: Option<&str>) -> Value {
    featured_medical_item(ITEM, publisher)
}

/// `tongban operator <command…>` against `node`: whether it succeeded, and its output
/// (stdout, else stderr).
fn cli(t: &TestFederation, node: &str, command: &[&str]) -> (bool, String) {
    let config = &t.fed.node(node).unwrap().config_path;
    super::operators::operator_cli_outcome(t, config, tongban_kit::config::pki::OPERATOR, command)
}

/// The last line of a CLI's output, as JSON.
fn json_of(output: &str) -> Value {
    serde_json::from_str(output.trim_end().lines().last().unwrap()).unwrap()
}

fn filing(resident: &SyntheticResident) -> Value {
    let mut filing = medical_filing(resident);
    filing["one_thing_id"] = ITEM.into();
    filing
}

async fn refused(t: &TestFederation, node: &str, filing: &Value, says: &str) {
    let answer = t.fed.node(node).unwrap().portal.file(filing).await.unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.to_string().contains(says), "{}", answer.body);
}

/// The console's row of the item, once it shows it.
async fn console_row(t: &TestFederation) -> Value {
    let data = t.fed.gateway().operator.get("/console/data").await.unwrap();
    let lists = data.body["lists"].as_array().unwrap().clone();
    lists.into_iter().find(|row| row["id"] == ITEM).unwrap()
}

/// Gateway replica `g`'s `/metrics`.
async fn gateway_metrics(t: &TestFederation, g: usize) -> String {
    let admin = t.fed.gateways[g].admin_addr.unwrap();
    let admin = tongban_node::portal_client::PortalClient::new(format!("http://{admin}"));
    let text = admin.get("/metrics").await.unwrap().body;
    text.as_str().unwrap().to_owned()
}

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn write(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_featured_item_is_published_adopted_and_routed_between_the_regions_that_offer_it() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.launch = processes("warn");
    })
    .await;
    let shanghai = t.residents("31")[0].clone();
    let guangdong = t.residents("44")[0].clone();
    let n44 = t.fed.node("44").unwrap();
    let base = Catalog::embedded().version;

    // Unknown before it is published.
    refused(&t, "31", &filing(&shanghai), "not a one-thing of catalog").await;

    // Bad publications and adoptions are refused, naming what is wrong; nothing is
    // recorded.
    let operator = &t.fed.node("31").unwrap().operator;
    for (path, body, status, says) in [
        ("/catalog/featured", &b"{"[..], 422, "body"),
        (
            "/catalog/featured",
            br#"{"id": "x", "colour": "red"}"#,
            422,
            "unknown field",
        ),
        (
            "/catalog/featured/no-such-item/adopt",
            b"",
            404,
            "no one-thing",
        ),
        (
            "/catalog/featured/newborn-birth/adopt",
            b"",
            422,
            "not a featured item",
        ),
    ] {
        let answer = operator
            .send("POST", path, bytes::Bytes::from_static(body))
            .await
            .unwrap();
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(
            answer.body.to_string().contains(says),
            "{path}: {}",
            answer.body
        );
    }

    // Guangdong cannot publish it in Shanghai's name; Shanghai publishes it, once.
    let as_31 = write(t.dir.path(), "as-31.json", &featured_item(Some("310000")));
    let (ok, out) = cli(&t, "44", &["publish-item", "--item", &as_31]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("answered 422") && out.contains("is 310000, but the caller is region 440000"),
        "{out}"
    );
    let item = write(t.dir.path(), "item.json", &featured_item(None));
    let (ok, out) = cli(&t, "31", &["publish-item", "--item", &item]);
    assert!(ok, "{out}");
    let published = json_of(&out);
    assert_eq!(published["version"], format!("{base}-L1"));
    assert_eq!(published["changed"], true);
    assert_eq!(
        published["node_version"], published["version"],
        "31 fetched it"
    );
    let (_, again) = cli(&t, "31", &["publish-item", "--item", &item]);
    assert_eq!(json_of(&again)["changed"], false);

    // Guangdong sees it, but does not offer it.
    let (ok, out) = cli(&t, "44", &["catalog", "--refresh"]);
    assert!(ok, "{out}");
    let seen = json_of(&out);
    assert_eq!(seen["version"], format!("{base}-L1"));
    let listed = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == ITEM)
        .unwrap()
        .clone();
    assert_eq!(listed["offered_here"], false);
    assert_eq!(listed["offered_by"], serde_json::json!(["310000"]));

    // Before adoption: not filed at 44, not handled by 44 (a Guangdong resident's case
    // at Shanghai's window would be); a Shanghai resident at home is.
    refused(
        &t,
        "44",
        &filing(&shanghai),
        "region 440000 (filed at) has not adopted it",
    )
    .await;
    let requirements = format!("/v1/one-things/{ITEM}/requirements");
    let notice = n44.portal.get(&requirements).await.unwrap();
    assert_eq!(notice.status, 422, "{}", notice.body);
    assert_eq!(
        notice.body["error"]["code"], "not_offered",
        "{}",
        notice.body
    );
    refused(
        &t,
        "31",
        &filing(&guangdong),
        "(handled by) has not adopted it",
    )
    .await;
    let at_home = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .file(&filing(&shanghai))
        .await
        .unwrap();
    assert_eq!(at_home.status, 201, "{}", at_home.body);
    // Adopting a national item is refused; adopting Shanghai's is recorded.
    let (ok, out) = cli(&t, "44", &["adopt-item", "newborn-birth"]);
    assert!(!ok && out.contains("not a featured item"), "{out}");
    let (ok, out) = cli(&t, "44", &["adopt-item", ITEM]);
    assert!(ok, "{out}");
    let adopted = json_of(&out);
    assert_eq!(adopted["version"], format!("{base}-L2"));
    assert_eq!(adopted["node_version"], adopted["version"], "44 fetched it");

    let notice = n44.portal.get(&requirements).await.unwrap();
    assert_eq!(notice.status, 200, "{}", notice.body);

    // After adoption: filed at 44 and routed to 31, which learns the new version from
    // the delivery that names it.
    let receipt = n44.portal.file(&filing(&shanghai)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    assert!(
        receipt.body["handling_region"]
            .as_str()
            .unwrap()
            .starts_with("31"),
        "{}",
        receipt.body
    );
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "delivery to 31", || async {
        let record = n44.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(())
    })
    .await;
    // Guangdong now handles its own residents' cases of it too.
    let to_44 = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .file(&filing(&guangdong))
        .await
        .unwrap();
    assert_eq!(to_44.status, 201, "{}", to_44.body);

    // Who offers it, on the console.
    let row = console_row(&t).await;
    assert_eq!(row["list"], "regional_featured");
    let offered: Vec<(&str, &str)> = row["offered_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["region"].as_str().unwrap(), o["role"].as_str().unwrap()))
        .collect();
    assert_eq!(offered, [("310000", "published"), ("440000", "adopted")]);

    // Counted at the gateway: where its catalog is in the ledger, and each change asked
    // for by outcome (the bad ones above refused, the repeat unchanged).
    let text = gateway_metrics(&t, 0).await;
    let changes = "tongban_gateway_catalog_changes_total";
    for (series, value) in [
        ("tongban_gateway_catalog_ledger_position ".to_owned(), 2.0),
        (
            format!("{changes}{{change=\"publish\",outcome=\"recorded\"}}"),
            1.0,
        ),
        (
            format!("{changes}{{change=\"publish\",outcome=\"unchanged\"}}"),
            1.0,
        ),
        (
            format!("{changes}{{change=\"publish\",outcome=\"refused\"}}"),
            1.0,
        ),
        (
            format!("{changes}{{change=\"adopt\",outcome=\"recorded\"}}"),
            1.0,
        ),
        (
            format!("{changes}{{change=\"adopt\",outcome=\"refused\"}}"),
            3.0,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(value), "{series}");
    }

    // The ledger outlives the gateway.
    t.fed.stop(&Member::Gateway(0)).await.unwrap();
    t.fed.restart(&Member::Gateway(0)).await.unwrap();
    let (ok, out) = cli(&t, "44", &["catalog", "--refresh"]);
    assert!(ok, "{out}");
    assert_eq!(json_of(&out)["version"], format!("{base}-L2"));
    assert_eq!(
        console_row(&t).await["offered_by"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    t.shutdown().await;
}

/// Region `prefix`'s catalog client at gateway replica `g`'s own address.
async fn catalog_at(
    t: &TestFederation,
    g: usize,
    prefix: &str,
) -> CatalogClient<tongban_kit::testing::SigningChannel> {
    let url = format!("https://{}", t.fed.gateways[g].federation_addr);
    let files = t.tls_files(&PeerIdentity::Region(RegionPrefix::parse(prefix).unwrap()));
    CatalogClient::new(
        tongban_kit::testing::region_channel(&url, &files, &PeerIdentity::Gateway, &t.pki())
            .await
            .unwrap(),
    )
}

fn publication(id: &str) -> PublishFeaturedItemRequest {
    let mut item = Catalog::embedded()
        .item("sh-foreigner-work")
        .unwrap()
        .clone();
    item.id = id.into();
    item.publishing_region = None;
    PublishFeaturedItemRequest {
        item: Some(item.to_proto()),
    }
}

async fn served(
    client: &CatalogClient<tongban_kit::testing::SigningChannel>,
    known: &str,
) -> GetCatalogResponse {
    client
        .clone()
        .get_catalog(GetCatalogRequest {
            known_version: known.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_database_serve_one_catalog() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.gateways = 2;
        spec.shared_revocation_log = true;
    })
    .await;
    let base = Catalog::embedded().version;
    let (at_0, at_1) = (catalog_at(&t, 0, "31").await, catalog_at(&t, 1, "44").await);

    // Two publications at once, one through each replica: both recorded, one after the
    // other, whichever came first.
    let (mut via_0, mut via_1) = (at_0.clone(), at_1.clone());
    let (first, second) = tokio::join!(
        via_0.publish_featured_item(publication("sh-replica-a")),
        via_1.publish_featured_item(publication("gd-replica-b")),
    );
    let mut versions = [first.unwrap().into_inner(), second.unwrap().into_inner()].map(|answer| {
        assert!(answer.changed);
        answer.version
    });
    versions.sort();
    assert_eq!(versions, [format!("{base}-L1"), format!("{base}-L2")]);

    // Each replica serves both once it has read the ledger.
    for client in [&at_0, &at_1] {
        eventually(WAIT, "both publications served", || async {
            let catalog = served(client, "").await;
            (catalog.version == format!("{base}-L2")).then_some(())
        })
        .await;
    }
    // An adoption through replica 1; replica 0, asked by a node that already has the
    // version carrying it, reads the ledger at once rather than send it back.
    let adopted = at_1
        .clone()
        .adopt_featured_item(AdoptFeaturedItemRequest {
            item_id: "sh-replica-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(adopted.version, format!("{base}-L3"));
    let answer = served(&at_0, &adopted.version).await;
    assert_eq!(answer.version, adopted.version);
    assert!(answer.not_modified, "replica 0 caught up at the fetch");
    let full = served(&at_0, "").await;
    let item = full.items.iter().find(|i| i.id == "sh-replica-a").unwrap();
    assert_eq!(item.publishing_region, "310000");
    assert_eq!(item.adoptions.len(), 1);
    assert_eq!(item.adoptions[0].region, "440000");

    // Both replicas say where they are in the ledger.
    for g in 0..2 {
        let text = gateway_metrics(&t, g).await;
        assert_eq!(
            sample(&text, "tongban_gateway_catalog_ledger_position "),
            Some(3.0),
            "replica {g}"
        );
    }

    // A replica started again reads the whole ledger before it serves.
    t.fed.stop(&Member::Gateway(1)).await.unwrap();
    t.fed.restart(&Member::Gateway(1)).await.unwrap();
    let at_1 = catalog_at(&t, 1, "44").await;
    assert_eq!(served(&at_1, "").await.version, adopted.version);
    t.shutdown().await;
}
