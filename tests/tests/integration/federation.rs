//! End-to-end behaviour of a federation of three regions (11 Beijing, 31 Shanghai,
//! 44 Guangdong) over real mTLS on loopback.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tongban_kit::testing::SigningChannel;

use prost::Message;
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start};
use tongban_proto::{
    contract::metadata,
    v1::{
        Application, DeliverApplicationRequest, GetCatalogRequest, catalog_client::CatalogClient,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Request, metadata::MetadataValue};

/// Metadata pairs of a test call.
type Meta<'a> = &'a [(&'static str, &'a str)];

const WAIT: Duration = Duration::from_secs(15);

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

async fn gateway_as(t: &TestFederation, prefix: &str) -> GatewayClient<SigningChannel> {
    GatewayClient::new(
        t.gateway_channel(&t.tls_files(&region(prefix)))
            .await
            .unwrap(),
    )
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

/// Files at `origin` and waits until the handling region has acknowledged the case.
async fn file_and_deliver(t: &TestFederation, origin: &str, filing: &serde_json::Value) -> String {
    let node = t.fed.node(origin).unwrap();
    let receipt = node.portal.file(filing).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "delivery", || async {
        let record = node.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(())
    })
    .await;
    case
}

async fn platform_case_count(t: &TestFederation, prefix: &str, case: &str) -> i64 {
    let db = t.dir.path().join(format!("platform-{prefix}.db"));
    let case = case.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM cases WHERE case_number = ?1",
            [case],
            |r| r.get(0),
        )
        .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_filed_in_31_for_a_44_resident_lands_once_in_44_and_is_readable_from_31() {
    let t = start(&["110000", "310000", "440000"]).await;
    let resident = &t.residents("44")[0];
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let body = &receipt.body;
    let case = body["case_number"].as_str().unwrap().to_owned();
    assert!(case.starts_with("310000-"), "{case}");
    assert!(
        body["handling_region"].as_str().unwrap().starts_with("44"),
        "{body}"
    );
    assert_eq!(body["forwarded"], true);
    // One working day in the handling region's official calendar (empty only where
    // the calendar has no schedule for the year it reaches).
    let calendar = tongban_proto::rules::calendar::working_days::Calendar::built_in().unwrap();
    let expected = calendar
        .for_region(body["handling_region"].as_str().unwrap())
        .add_working_days(tongban_proto::rules::calendar::business_now().date(), 1)
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert_eq!(body["promised_date"], expected.as_str(), "{body}");

    // It lands in 44's platform exactly once, with exactly the bytes 31 filed.
    let n44 = t.fed.node("44").unwrap();
    let landed = eventually(WAIT, "case in platform 44", || async {
        n44.platform.payload(&case).await.unwrap()
    })
    .await;
    let filed = n31.store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(landed, filed.payload, "content differs between 31 and 44");
    let app = Application::decode(landed.as_slice()).unwrap();
    assert_eq!(app.origin_region, "310000");
    assert_eq!(app.applicant.unwrap().id_number, resident.id.as_str());
    assert_eq!(platform_case_count(&t, "44", &case).await, 1);
    assert_eq!(platform_case_count(&t, "11", &case).await, 0);

    // 31 reads its status live from 44, and 44's decision is pushed back to 31.
    let status = n31.portal.status(&case).await.unwrap();
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["handling_region"].as_str().unwrap()[..2], *"44");
    eventually(WAIT, "approval pushed back to 31", || async {
        let record = n31.store.application(case.clone()).await.unwrap()?;
        (record.status.stage == tongban_proto::v1::Stage::Approved as i32).then_some(())
    })
    .await;
    let status = n31.portal.status(&case).await.unwrap();
    assert_eq!(status.body["stage"], "approved", "{}", status.body);
    assert_eq!(platform_case_count(&t, "44", &case).await, 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_idempotency_key_creates_nothing_new() {
    let t = start(&["110000", "310000", "440000"]).await;
    let resident = &t.residents("44")[1];
    let case = file_and_deliver(&t, "31", &medical_filing(resident)).await;
    let n31 = t.fed.node("31").unwrap();
    let record = n31.store.application(case.clone()).await.unwrap().unwrap();
    let application = Application::decode(record.payload.as_slice()).unwrap();

    let mut client = gateway_as(&t, "31").await;
    let key = format!("deliver:{case}");
    for _ in 0..3 {
        let answer = client
            .deliver_application(with_meta(
                DeliverApplicationRequest {
                    application: Some(application.clone()),
                },
                &[
                    (metadata::TARGET_REGION, &record.target_region),
                    (metadata::IDEMPOTENCY_KEY, &key),
                ],
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.duplicate, "a replay must be reported as duplicate");
        assert_eq!(answer.case_number, case);
        assert_eq!(Some(answer.handling_reference), record.handling_reference);
    }
    // A fresh key for the same case still finds the case already there.
    let answer = client
        .deliver_application(with_meta(
            DeliverApplicationRequest {
                application: Some(application.clone()),
            },
            &[
                (metadata::TARGET_REGION, &record.target_region),
                (metadata::IDEMPOTENCY_KEY, "another-key"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.duplicate);
    assert_eq!(platform_case_count(&t, "44", &case).await, 1);

    // 44 remembered the first key once, with 31 as its origin and the case's trace.
    let db = t.dir.path().join("node-44.db");
    let (k, c) = (key.clone(), case.clone());
    let traces: Vec<String> = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT trace_id FROM inbound
                 WHERE origin_prefix = '31' AND idempotency_key = ?1 AND case_number = ?2",
            )
            .unwrap();
        stmt.query_map([k, c], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    })
    .await
    .unwrap();
    let case_trace =
        tongban_runtime::observability::trace_context::TraceParent::for_case(&case).trace_id_hex();
    assert_eq!(
        traces,
        [case_trace],
        "one row, carrying the trace 31 opened for the case"
    );

    // The same key, or the same case number, with different content is refused, not
    // taken for a replay.
    let mut altered = application.clone();
    altered
        .form
        .insert("hospital_name".into(), "另一家医院".into());
    for key in [key.as_str(), "yet-another-key"] {
        let err = client
            .deliver_application(with_meta(
                DeliverApplicationRequest {
                    application: Some(altered.clone()),
                },
                &[
                    (metadata::TARGET_REGION, &record.target_region),
                    (metadata::IDEMPOTENCY_KEY, key),
                ],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{key}: {err:?}");
    }
    assert_eq!(platform_case_count(&t, "44", &case).await, 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_handled_where_it_was_filed_reaches_the_local_platform() {
    let t = start(&["310000", "440000"]).await;
    let resident = &t.residents("44")[5];
    let n44 = t.fed.node("44").unwrap();
    let receipt = n44.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    assert_eq!(receipt.body["forwarded"], false);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let landed = eventually(WAIT, "case in platform 44", || async {
        n44.platform.payload(&case).await.unwrap()
    })
    .await;
    let filed = n44.store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(landed, filed.payload);
    eventually(WAIT, "local approval", || async {
        let s = n44.portal.status(&case).await.ok()?;
        (s.body["stage"] == "approved").then_some(())
    })
    .await;
    assert_eq!(n44.store.pending_outbox().await.unwrap(), 0);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_for_31_cannot_originate_as_44() {
    let t = start(&["110000", "310000", "440000"]).await;
    let mut client = gateway_as(&t, "31").await;
    let resident = &t.residents("11")[0];

    // Claim in metadata: refused by the gateway.
    let err = client
        .deliver_application(with_meta(
            DeliverApplicationRequest::default(),
            &[
                (metadata::TARGET_REGION, "110000"),
                (metadata::ORIGIN_REGION, "440000"),
                (metadata::IDEMPOTENCY_KEY, "k1"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("44"), "{}", err.message());

    // Claim in the body only: refused by the handling node, which trusts the gateway's
    // verified origin, not the body.
    let application = Application {
        case_number: "440000-20261126-00000001".into(),
        one_thing_id: "medical-treatment-registration".into(),
        origin_region: "440000".into(),
        target_region: "110000".into(),
        applicant: Some(tongban_proto::v1::Applicant {
            id_number: resident.id.as_str().into(),
            name: resident.name.clone(),
            phone: String::new(),
        }),
        ..Application::default()
    };
    let err = client
        .deliver_application(with_meta(
            DeliverApplicationRequest {
                application: Some(application.clone()),
            },
            &[
                (metadata::TARGET_REGION, "110000"),
                (metadata::IDEMPOTENCY_KEY, "k2"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("origin_region"), "{}", err.message());

    // A caller may not forge the gateway's verified origin either: the gateway replaces
    // it with the certificate's region, so the node still sees 31.
    let err = client
        .deliver_application(with_meta(
            DeliverApplicationRequest {
                application: Some(application),
            },
            &[
                (metadata::TARGET_REGION, "110000"),
                (metadata::VERIFIED_ORIGIN, "44"),
                (metadata::IDEMPOTENCY_KEY, "k3"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("calling region 31"),
        "{}",
        err.message()
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_regions_get_precise_codes() {
    let t = start(&["110000", "310000", "440000"]).await;
    let mut client = gateway_as(&t, "31").await;
    let cases: [(Meta<'_>, Code, &str); 5] = [
        (&[], Code::InvalidArgument, metadata::TARGET_REGION),
        (
            &[(metadata::TARGET_REGION, "44")],
            Code::InvalidArgument,
            "6-digit",
        ),
        (
            &[(metadata::TARGET_REGION, "44030x")],
            Code::InvalidArgument,
            "6-digit",
        ),
        (
            &[(metadata::TARGET_REGION, "990000")],
            Code::NotFound,
            "unknown province",
        ),
        // Xinjiang is a real province with no node registered here.
        (
            &[(metadata::TARGET_REGION, "650102")],
            Code::NotFound,
            "650102",
        ),
    ];
    for (meta, code, needle) in cases {
        let err = client
            .deliver_application(with_meta(DeliverApplicationRequest::default(), meta))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{meta:?}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{meta:?}: {}",
            err.message()
        );
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_names_the_field_of_bad_input() {
    let t = start(&["110000", "310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let resident = &t.residents("44")[2];

    // Invalid ID number: a wrong check character.
    let mut filing = medical_filing(resident);
    let mut id = resident.id.as_str().to_owned();
    let last = id.pop().unwrap();
    id.push(if last == '0' { '1' } else { '0' });
    filing["applicant"]["id_number"] = id.clone().into();
    let r = n31.portal.file(&filing).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["fields"][0]["field"], "applicant.id_number");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("check"),
        "{}",
        r.body
    );
    assert!(
        !r.body.to_string().contains(&id),
        "the error must not echo the ID number"
    );

    // A required form field missing.
    let mut filing = medical_filing(resident);
    filing["form"].as_object_mut().unwrap().remove("start_date");
    let r = n31.portal.file(&filing).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    let fields: Vec<_> = r.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["form.start_date"], "{}", r.body);

    // Unknown one-thing, malformed JSON, unknown keys.
    let mut filing = medical_filing(resident);
    filing["one_thing_id"] = "no-such-thing".into();
    let r = n31.portal.file(&filing).await.unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["fields"][0]["field"], "one_thing_id");
    let r = n31
        .portal
        .send(
            "POST",
            "/v1/applications",
            bytes::Bytes::from_static(b"{not json"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let mut filing = medical_filing(resident);
    filing["surprise"] = 1.into();
    let r = n31.portal.file(&filing).await.unwrap();
    // Well-formed JSON of the wrong shape.
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("surprise"),
        "{}",
        r.body
    );

    // Nothing was filed or forwarded by any of these.
    assert_eq!(n31.store.pending_outbox().await.unwrap(), 0);
    let r = n31.portal.status("310000-20261126-99999999").await.unwrap();
    assert_eq!(r.status, 404);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_application_survives_its_target_being_down() {
    let mut t = start(&["110000", "310000", "440000"]).await;
    t.fed.stop_node("44").await.unwrap();

    // The gateway says UNAVAILABLE for the dead region.
    let mut client = gateway_as(&t, "31").await;
    let err = client
        .deliver_application(with_meta(
            DeliverApplicationRequest::default(),
            &[
                (metadata::TARGET_REGION, "440000"),
                (metadata::IDEMPOTENCY_KEY, "k"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // The citizen still gets a receipt; the case waits in 31's outbox.
    let resident = &t.residents("44")[3];
    let n31 = t.fed.node("31").unwrap();
    let r = n31.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let case = r.body["case_number"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(n31.store.pending_outbox().await.unwrap(), 1);
    let status = n31.portal.status(&case).await.unwrap();
    assert_eq!(status.body["stage"], "submitted", "{}", status.body);

    // When 44 is back, the case arrives, once.
    t.fed.restart_node("44").await.unwrap();
    let n44 = t.fed.node("44").unwrap();
    eventually(WAIT, "delivery after restart", || async {
        n44.platform.payload(&case).await.unwrap()
    })
    .await;
    assert_eq!(platform_case_count(&t, "44", &case).await, 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_at_the_tls_handshake() {
    let t = start(&["310000", "440000"]).await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);

    // Control: a federation member gets the catalog.
    let member = t
        .gateway_channel(&t.tls_files(&region("31")))
        .await
        .unwrap();
    let catalog = CatalogClient::new(member)
        .get_catalog(GetCatalogRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(catalog.items.len() >= 5);

    // No client certificate at all: raw TLS, so the refusal is seen at the handshake.
    let refused = handshake_without_client_cert(&t, t.fed.gateway().federation_addr).await;
    assert!(refused, "gateway accepted a client without a certificate");
    let n44 = t.fed.node("44").unwrap();
    assert!(
        handshake_without_client_cert(&t, n44.federation_addr).await,
        "node accepted a client without a certificate"
    );

    // A certificate from another CA, even one naming a real region.
    let foreign =
        tongban_kit::testing::foreign_identity(&t.dir.path().join("foreign"), &region("31"));
    let stranger = tongban_runtime::trust::tls::TlsFiles {
        ca: t.tls_files(&region("31")).ca,
        ..foreign
    };
    let result = match tongban_kit::testing::channel(&url, &stranger, &PeerIdentity::Gateway).await
    {
        Err(_) => true,
        Ok(ch) => CatalogClient::new(ch)
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_err(),
    };
    assert!(result, "gateway accepted a certificate from a foreign CA");

    // Plaintext HTTP/2 to the federation port gets nowhere.
    let plain = tonic::transport::Endpoint::from_shared(format!(
        "http://{}",
        t.fed.gateway().federation_addr
    ))
    .unwrap()
    .connect_timeout(Duration::from_secs(2))
    .timeout(Duration::from_secs(2));
    let plain_ok = match plain.connect().await {
        Err(_) => false,
        Ok(ch) => CatalogClient::new(ch)
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_ok(),
    };
    assert!(!plain_ok, "plaintext reached the federation listener");
    t.shutdown().await;
}

/// Connects with the federation CA as trust but presents no certificate; true if the
/// server refuses the connection during or right after the TLS 1.3 handshake.
async fn handshake_without_client_cert(t: &TestFederation, addr: std::net::SocketAddr) -> bool {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let files = t.tls_files(&region("31"));
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = if addr == t.fed.gateway().federation_addr {
        PeerIdentity::Gateway.dns_name()
    } else {
        region("44").dns_name()
    };
    let Ok(mut tls) = connector
        .connect(ServerName::try_from(name).unwrap(), tcp)
        .await
    else {
        return true;
    };
    // In TLS 1.3 the server judges the client's certificate after the client finished;
    // its refusal arrives as an alert on the first read.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_serve_reflection() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let t = start(&["310000", "440000"]).await;
    let gateway = t
        .gateway_channel(&t.tls_files(&region("31")))
        .await
        .unwrap();
    let node = tongban_kit::testing::channel(
        &format!("https://{}", t.fed.node("44").unwrap().federation_addr),
        &t.tls_files(&PeerIdentity::Gateway),
        &region("44"),
    )
    .await
    .unwrap();
    for (channel, expected) in [
        (
            gateway,
            [
                "tongban.federation.v1.Gateway",
                "tongban.federation.v1.Catalog",
            ],
        ),
        (
            node,
            ["tongban.federation.v1.Node", "grpc.health.v1.Health"],
        ),
    ] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected reflection answer {answer:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for name in expected {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_serve_grpc_health() {
    let t = start(&["310000"]).await;
    let channel = t
        .gateway_channel(&t.tls_files(&region("31")))
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "tongban.federation.v1.Gateway",
        "tongban.federation.v1.Catalog",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_by_the_gateway() {
    let t = start(&["310000", "440000"]).await;
    let mut client = gateway_as(&t, "31").await;
    let application = Application {
        case_number: "310000-20261126-00000009".into(),
        materials: vec![tongban_proto::v1::MaterialRef {
            material_id: "padding".into(),
            source: 2,
            reference: "x".repeat(5 * 1024 * 1024),
        }],
        ..Application::default()
    };
    let err = client
        .deliver_application(with_meta(
            DeliverApplicationRequest {
                application: Some(application),
            },
            &[
                (metadata::TARGET_REGION, "440000"),
                (metadata::IDEMPOTENCY_KEY, "big"),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("larger than"),
        "refused by the gateway: {err:?}"
    );
    // The gateway is still fine afterwards.
    let ok = CatalogClient::new(
        t.gateway_channel(&t.tls_files(&region("31")))
            .await
            .unwrap(),
    )
    .get_catalog(GetCatalogRequest::default())
    .await;
    assert!(ok.is_ok());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_filing_with_an_idempotency_key_files_one_case() {
    let t = start(&["310000", "440000"]).await;
    let resident = &t.residents("44")[6];
    let n31 = t.fed.node("31").unwrap();
    let filing = medical_filing(resident);
    let first = n31
        .portal
        .file_with_key(&filing, "counter-7-0001")
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let again = n31
        .portal
        .file_with_key(&filing, "counter-7-0001")
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["case_number"], first.body["case_number"]);

    let mut changed = filing.clone();
    changed["form"]["hospital_name"] = "另一家医院".into();
    let conflict = n31
        .portal
        .file_with_key(&changed, "counter-7-0001")
        .await
        .unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);

    let db = t.dir.path().join("node-31.db");
    let filed: i64 = tokio::task::spawn_blocking(move || {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM applications", [], |r| r.get(0))
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(filed, 1, "one case for one key");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_while_the_node_was_down_reaches_the_filing_region() {
    let mut t = start(&["310000", "440000"]).await;
    let resident = &t.residents("44")[7];
    let case = file_and_deliver(&t, "31", &medical_filing(resident)).await;
    t.fed.stop_node("44").await.unwrap();

    // 44's platform decided the case while its node was down: the change and its
    // event in the platform's feed, in one transaction, as the platform writes them.
    let db = t.dir.path().join("platform-44.db");
    let c = case.clone();
    tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut conn = rusqlite::Connection::open(db).unwrap();
        let tx = conn.transaction().unwrap();
        let params = rusqlite::params![tongban_proto::v1::Stage::Rejected as i32, now, c];
        tx.execute(
            "INSERT INTO case_events (case_number, previous_stage, stage, detail, sequence, at_ms)
             SELECT case_number, stage, ?1, 'rejected: offline decision', 9, ?2
             FROM cases WHERE case_number = ?3",
            params,
        )
        .unwrap();
        tx.execute(
            "UPDATE cases SET stage = ?1, detail = 'rejected: offline decision',
                sequence = 9, updated_ms = ?2 WHERE case_number = ?3",
            params,
        )
        .unwrap();
        tx.commit().unwrap();
    })
    .await
    .unwrap();

    t.fed.restart_node("44").await.unwrap();
    let n31 = t.fed.node("31").unwrap();
    eventually(WAIT, "the decision returned to 31", || async {
        let record = n31.store.application(case.clone()).await.unwrap()?;
        (record.status.sequence == 9).then_some(record)
    })
    .await;
    let record = n31.store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(
        record.status.stage,
        tongban_proto::v1::Stage::Rejected as i32
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_take_a_new_catalog_from_the_gateway_and_keep_a_copy() {
    // The gateway publishes a newer catalog in which one item has a new name.
    let scratch = tempfile_dir();
    let mut catalog: serde_json::Value =
        serde_json::from_str(include_str!("../../../catalog/national.json")).unwrap();
    catalog["version"] = "2099.01-test".into();
    catalog["items"][0]["name"] = "新生儿出生一件事（测试版）".into();
    let path = scratch.join("catalog.json");
    std::fs::write(&path, catalog.to_string()).unwrap();
    let t = tongban_kit::testing::start_with(&["310000"], |spec| spec.catalog = Some(path)).await;

    let n31 = t.fed.node("31").unwrap();
    let saved = eventually(WAIT, "catalog copy saved", || async {
        n31.store.setting("catalog").await.unwrap()
    })
    .await;
    let copy = tongban_proto::v1::GetCatalogResponse::decode(saved.as_slice()).unwrap();
    assert_eq!(copy.version, "2099.01-test");
    // The portal and the pre-review use the new version.
    let listed = eventually(WAIT, "portal on the new catalog", || async {
        let r = n31
            .portal
            .send("GET", "/v1/catalog", bytes::Bytes::new())
            .await
            .ok()?;
        (r.body["version"] == "2099.01-test").then_some(r)
    })
    .await;
    assert_eq!(
        listed.body["items"][0]["name"],
        "新生儿出生一件事（测试版）"
    );
    t.shutdown().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tongban-catalog-test-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 同标准办理: an applicant name that breaks the shared rule (longer than 64 characters,
/// or holding U+202E) is refused where a delivery arrives at the handling node, exactly
/// as the portal refuses the same name, naming the same field under `application.`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_portal_refuses_is_refused_where_a_delivery_arrives() {
    let t = start(&["310000", "440000"]).await;
    let resident = &t.residents("44")[3];
    let n31 = t.fed.node("31").unwrap();
    let catalog = n31.portal.get("/v1/catalog").await.unwrap();
    let version = catalog.body["version"].as_str().unwrap().to_owned();
    let filing = medical_filing(resident);
    let form: std::collections::BTreeMap<String, String> = filing["form"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let application = |serial: u32, name: &str| Application {
        case_number: format!("310000-20261202-{serial:08}"),
        one_thing_id: "medical-treatment-registration".into(),
        catalog_version: version.clone(),
        origin_region: "310000".into(),
        target_region: "440000".into(),
        applicant: Some(tongban_proto::v1::Applicant {
            id_number: resident.id.as_str().into(),
            name: name.into(),
            phone: "13800138000".into(),
        }),
        form: form.clone(),
        ..Application::default()
    };
    let mut client = gateway_as(&t, "31").await;
    let bad_names = [
        ("a name of 65 characters", "张".repeat(65)),
        ("a name holding U+202E", "张\u{202E}伟".to_owned()),
    ];
    for (serial, (what, name)) in (91..).zip(bad_names) {
        // The portal refuses it by field.
        let mut bad = filing.clone();
        bad["applicant"]["name"] = name.clone().into();
        let r = n31.portal.file(&bad).await.unwrap();
        assert_eq!(r.status, 422, "{what}: {}", r.body);
        assert_eq!(
            r.body["error"]["fields"][0]["field"], "applicant.name",
            "{what}: {}",
            r.body
        );
        let problem = r.body["error"]["fields"][0]["problem"]
            .as_str()
            .unwrap()
            .to_owned();

        // The handling node refuses the same name in a delivery, with the same problem.
        let err = client
            .deliver_application(with_meta(
                DeliverApplicationRequest {
                    application: Some(application(serial, &name)),
                },
                &[
                    (metadata::TARGET_REGION, "440000"),
                    (
                        metadata::IDEMPOTENCY_KEY,
                        &format!("same-standard-{serial}"),
                    ),
                ],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message()
                .contains(&format!("application.applicant.name: {problem}")),
            "{what}: {}",
            err.message()
        );
        assert!(
            n44_platform_has_no(&t, &format!("310000-20261202-{serial:08}")).await,
            "{what}: a refused delivery reached the platform"
        );
    }

    // The same application with the resident's own name is taken: the name alone was
    // refused.
    let answer = client
        .deliver_application(with_meta(
            DeliverApplicationRequest {
                application: Some(application(99, &resident.name)),
            },
            &[
                (metadata::TARGET_REGION, "440000"),
                (metadata::IDEMPOTENCY_KEY, "same-standard-99"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.duplicate);
    assert_eq!(answer.case_number, "310000-20261202-00000099");
    t.shutdown().await;
}

async fn n44_platform_has_no(t: &TestFederation, case: &str) -> bool {
    let n44 = t.fed.node("44").unwrap();
    n44.platform.payload(case).await.unwrap().is_none()
}
