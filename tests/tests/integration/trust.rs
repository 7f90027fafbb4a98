//! Admission by the registry, over real mTLS on loopback: a certificate from the
//! federation's own CA is not enough to take part (every method of the gateway's
//! federation listener refuses it, and nothing reaches a node), a province's
//! certificate does not act for a city that runs its own node, and the registry and
//! certificates are reloaded without a restart (admin endpoint, SIGHUP), a bad file
//! rejected whole. Strangers (another CA's certificate, none, plaintext) get the same
//! nothing from the gateway's and a node's federation listener.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tongban_kit::testing::SigningChannel;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;
use tongban_gateway::methods::{GATEWAY_SERVICE, METHODS, Method, Serve};
use tongban_gateway::registry::{RegionEntry, RegistryFile};
use tongban_kit::Member;

use super::trust_changes::reload_at;
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start};
use tongban_node::platform::{Platform, embedded::SyntheticResident};
use tongban_proto::{
    contract::metadata,
    rules::resident_id::ResidentId,
    v1::{
        Applicant, Application, CaseStatus, DeliverApplicationRequest, EvaluationLevel,
        GetCatalogRequest, ListLicensesRequest, LookupLicenseRequest, LookupPurpose,
        PublishRevocationRequest, PushStatusRequest, QueryStatusRequest, Stage,
        SubmitEvaluationRequest, VerifyIdentityRequest, catalog_client::CatalogClient,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::{
    trust::identity::PeerIdentity, trust::pki, trust::revocation::serial_of, trust::tls::TlsFiles,
};
use tonic::{Code, Request, Status, metadata::MetadataValue};

use super::revocation::presented_serial;

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

async fn channel_as(t: &TestFederation, identity: &PeerIdentity) -> SigningChannel {
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

/// Just enough of `google.protobuf.FileDescriptorSet` to list services and methods.
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, tag = "2")]
        pub package: String,
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    /// The gRPC paths (`/package.Service/Method`) of `service` in the encoded sets.
    pub fn paths(sets: &[&[u8]], service: &str) -> std::collections::BTreeSet<String> {
        use prost::Message;
        let mut out = std::collections::BTreeSet::new();
        for set in sets {
            for file in FileSet::decode(*set).unwrap().file {
                for s in file.service {
                    if format!("{}.{}", file.package, s.name) == service {
                        for m in s.method {
                            out.insert(format!("/{service}/{}", m.name));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Every method the gateway's federation listener serves, from the contract's
/// descriptors (the Gateway and Catalog services, health, both reflection versions);
/// checked equal to the gateway's method table, so a method added to either is in the
/// test's list (and the test has to be taught how to call it).
fn federation_listener_methods() -> Vec<&'static Method> {
    let sets: [&[u8]; 4] = [
        tongban_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut served = std::collections::BTreeSet::new();
    for service in [
        "tongban.federation.v1.Gateway",
        "tongban.federation.v1.Catalog",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        let paths = descriptor::paths(&sets, service);
        assert!(!paths.is_empty(), "{service} is not in the descriptors");
        served.extend(paths);
    }
    let table: std::collections::BTreeSet<String> =
        METHODS.iter().map(|m| m.path.to_owned()).collect();
    assert_eq!(served, table, "the contract and the method table differ");
    // The relayed methods land on the Node service's method of the same name.
    let node = descriptor::paths(&sets, "tongban.federation.v1.Node");
    for m in METHODS.iter() {
        if let Serve::Relay { node_path } = m.serve {
            assert!(node.contains(node_path), "{node_path} is not a Node method");
        }
    }
    assert_eq!(
        METHODS.iter().filter(|m| m.changes_state).count(),
        8,
        "DeliverApplication, PushStatus, PublishRevocation, SubmitEvaluation, RaiseDispute, \
         SettleDispute, PublishFeaturedItem and AdoptFeaturedItem change state"
    );
    METHODS.iter().collect()
}

/// The distinctive content of what the unregistered region (32) sends: complete,
/// valid requests, each of which reads or changes something at Guangdong's node (44)
/// or the gateway if it is let through.
struct Jiangsu {
    /// A case 32 "files" with 44 (handled there, for a 44 resident).
    application: Application,
    /// A case 44 filed that region 32 handles: a status push from 32 would be applied.
    pushed_case: String,
    resident: SyntheticResident,
    /// A license 44 issued to the resident.
    license: String,
    /// A license id naming region 32 as its issuer: 32 may revoke it, if admitted.
    revoked_license: String,
    /// A dispute 44 raised with region 32 about the case 32 handles: 32's settlement of
    /// it would be applied.
    dispute_id: String,
}

const JIANGSU_CASE: &str = "320000-20261203-00077777";
const JIANGSU_TRACE: &str = "32320000000000000000000000077777";
const FORGED_DETAIL: &str = "rejected by Jiangsu 77777";

impl Jiangsu {
    fn key(method: &Method) -> String {
        format!("jiangsu-77777-{}", method.name)
    }

    fn purpose() -> Option<LookupPurpose> {
        Some(LookupPurpose {
            applicant_request: Some(tongban_proto::rules::consent::request(
                "portal",
                1_780_000_000_000,
            )),
            one_thing_id: "household-transfer".into(),
            case_number: JIANGSU_CASE.into(),
        })
    }

    /// The request for `method` with its metadata: the target, a key of its own, the
    /// one-thing and the distinctive trace.
    fn request<T>(method: &Method, message: T, target: &str) -> Request<T> {
        let key = Self::key(method);
        let trace = format!("00-{JIANGSU_TRACE}-0000000000077777-01");
        let mut pairs = vec![
            (metadata::IDEMPOTENCY_KEY, key.as_str()),
            (metadata::TRACEPARENT, trace.as_str()),
            (metadata::ONE_THING, "medical-treatment-registration"),
        ];
        if !target.is_empty() {
            pairs.push((metadata::TARGET_REGION, target));
        }
        with_meta(message, &pairs)
    }

    /// Calls `method` on the gateway; for a state-changing method, whether its receiver
    /// applied something new (`Some(false)`: it had been applied before).
    async fn call(
        &self,
        channel: &SigningChannel,
        method: &Method,
    ) -> Result<Option<bool>, Status> {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut gateway = GatewayClient::new(channel.clone());
        let purpose = Self::purpose;
        match method.path {
            "/tongban.federation.v1.Gateway/DeliverApplication" => {
                let message = DeliverApplicationRequest {
                    application: Some(self.application.clone()),
                };
                let answer = gateway
                    .deliver_application(Self::request(method, message, "440000"))
                    .await?;
                Ok(Some(!answer.into_inner().duplicate))
            }
            "/tongban.federation.v1.Gateway/QueryStatus" => {
                let message = QueryStatusRequest {
                    case_number: JIANGSU_CASE.into(),
                };
                gateway
                    .query_status(Self::request(method, message, "440000"))
                    .await?;
                Ok(None)
            }
            "/tongban.federation.v1.Gateway/PushStatus" => {
                let message = PushStatusRequest {
                    case_number: self.pushed_case.clone(),
                    handling_region: "320100".into(),
                    status: Some(CaseStatus {
                        stage: Stage::Rejected as i32,
                        detail: FORGED_DETAIL.into(),
                        updated_at: None,
                        sequence: 77,
                    }),
                };
                let answer = gateway
                    .push_status(Self::request(method, message, "440000"))
                    .await?;
                Ok(Some(answer.into_inner().applied))
            }
            "/tongban.federation.v1.Gateway/SubmitEvaluation" => {
                // 32's citizen rates the case 32 delivered: once 44 has decided it
                // (its clerk approves in a moment), the rating is kept there.
                let message = SubmitEvaluationRequest {
                    case_number: JIANGSU_CASE.into(),
                    origin_region: "320000".into(),
                    level: EvaluationLevel::VeryDissatisfied as i32,
                    comment: "rated by Jiangsu 77777".into(),
                    evaluated_at: None,
                };
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                loop {
                    let request = Self::request(method, message.clone(), "440000");
                    match gateway.submit_evaluation(request).await {
                        Err(s)
                            if s.code() == Code::FailedPrecondition
                                && s.message().contains("after its decision")
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        answer => {
                            answer?;
                            return Ok(Some(true));
                        }
                    }
                }
            }
            "/tongban.federation.v1.Gateway/RaiseDispute" => {
                // 32 disputes the household register 44 issued to the resident.
                let message = tongban_proto::v1::RaiseDisputeRequest {
                    dispute_id: format!("{JIANGSU_CASE}:1"),
                    case_number: JIANGSU_CASE.into(),
                    flagging_region: "320000".into(),
                    one_thing_id: "household-transfer".into(),
                    subject: tongban_proto::v1::DisputeSubject::License as i32,
                    license_id: self.license.clone(),
                    holder_id_number: self.resident.id.as_str().into(),
                    reason: "disputed by Jiangsu 77777".into(),
                    raised_at: None,
                };
                let answer = gateway
                    .raise_dispute(Self::request(method, message, "440000"))
                    .await?;
                Ok(Some(!answer.into_inner().duplicate))
            }
            "/tongban.federation.v1.Gateway/SettleDispute" => {
                let message = tongban_proto::v1::SettleDisputeRequest {
                    dispute_id: self.dispute_id.clone(),
                    case_number: self.pushed_case.clone(),
                    issuing_region: "320000".into(),
                    outcome: tongban_proto::v1::DisputeOutcome::Confirmed as i32,
                    note: "settled by Jiangsu 77777".into(),
                    corrected_license_id: String::new(),
                    settled_at: None,
                };
                let answer = gateway
                    .settle_dispute(Self::request(method, message, "440000"))
                    .await?;
                Ok(Some(answer.into_inner().applied))
            }
            "/tongban.federation.v1.Gateway/VerifyIdentity" => {
                let message = VerifyIdentityRequest {
                    id_number: self.resident.id.as_str().to_owned(),
                    name: self.resident.name.clone(),
                    purpose: purpose(),
                };
                gateway
                    .verify_identity(Self::request(method, message, ""))
                    .await?;
                Ok(None)
            }
            "/tongban.federation.v1.Gateway/LookupLicense" => {
                let message = LookupLicenseRequest {
                    license_id: self.license.clone(),
                    license_type: String::new(),
                    purpose: purpose(),
                    material_id: "household_register".into(),
                    holder_id_number: self.resident.id.as_str().to_owned(),
                };
                gateway
                    .lookup_license(Self::request(method, message, ""))
                    .await?;
                Ok(None)
            }
            "/tongban.federation.v1.Gateway/ListLicenses" => {
                let message = ListLicensesRequest {
                    holder_id_number: self.resident.id.as_str().to_owned(),
                    issuing_region: String::new(),
                    purpose: purpose(),
                };
                gateway
                    .list_licenses(Self::request(method, message, ""))
                    .await?;
                Ok(None)
            }
            "/tongban.federation.v1.Gateway/PublishRevocation" => {
                let message = PublishRevocationRequest {
                    license_id: self.revoked_license.clone(),
                    reason: "revoked by Jiangsu 77777".into(),
                    revoked_at: None,
                };
                let answer = gateway
                    .publish_revocation(Self::request(method, message, ""))
                    .await?;
                Ok(Some(answer.into_inner().applied))
            }
            "/tongban.federation.v1.Catalog/GetCatalog" => {
                CatalogClient::new(channel.clone())
                    .get_catalog(Self::request(method, GetCatalogRequest::default(), ""))
                    .await?;
                Ok(None)
            }
            "/tongban.federation.v1.Catalog/PublishFeaturedItem" => {
                // 32 publishes a featured item of its own.
                let mut item = tongban_proto::rules::catalog::Catalog::embedded()
                    .item("sh-foreigner-work")
                    .unwrap()
                    .clone();
                item.id = "js-77777".into();
                item.publishing_region = None;
                let message = tongban_proto::v1::PublishFeaturedItemRequest {
                    item: Some(item.to_proto()),
                };
                let answer = CatalogClient::new(channel.clone())
                    .publish_featured_item(Self::request(method, message, ""))
                    .await?;
                Ok(Some(answer.into_inner().changed))
            }
            "/tongban.federation.v1.Catalog/AdoptFeaturedItem" => {
                // 32 adopts Shanghai's featured item.
                let message = tongban_proto::v1::AdoptFeaturedItemRequest {
                    item_id: "sh-foreigner-work".into(),
                };
                let answer = CatalogClient::new(channel.clone())
                    .adopt_featured_item(Self::request(method, message, ""))
                    .await?;
                Ok(Some(answer.into_inner().changed))
            }
            "/grpc.health.v1.Health/Check" => {
                let message = HealthCheckRequest {
                    service: String::new(),
                };
                HealthClient::new(channel.clone())
                    .check(Self::request(method, message, ""))
                    .await?;
                Ok(None)
            }
            "/grpc.health.v1.Health/Watch" => {
                let message = HealthCheckRequest {
                    service: String::new(),
                };
                let mut watch = HealthClient::new(channel.clone())
                    .watch(Self::request(method, message, ""))
                    .await?
                    .into_inner();
                watch.message().await?;
                Ok(None)
            }
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" => {
                use tonic_reflection::pb::v1::{
                    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                    server_reflection_request::MessageRequest,
                };
                let ask = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                };
                let mut answers = ServerReflectionClient::new(channel.clone())
                    .server_reflection_info(Self::request(method, tokio_stream::iter([ask]), ""))
                    .await?
                    .into_inner();
                answers.message().await?;
                Ok(None)
            }
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => {
                use tonic_reflection::pb::v1alpha::{
                    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                    server_reflection_request::MessageRequest,
                };
                let ask = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                };
                let mut answers = ServerReflectionClient::new(channel.clone())
                    .server_reflection_info(Self::request(method, tokio_stream::iter([ask]), ""))
                    .await?
                    .into_inner();
                answers.message().await?;
                Ok(None)
            }
            other => panic!("the test does not know how to call {other}: teach it"),
        }
    }
}

/// The id of the license of `license_type` that `issuer`'s register holds for `holder`.
async fn license_of(
    t: &TestFederation,
    issuer: &str,
    holder: &ResidentId,
    license_type: &str,
) -> String {
    let node = t.fed.node(issuer).unwrap();
    let key = node.store.id_hash_key().await.unwrap();
    node.platform
        .licenses_of_resident(holder, &key)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.license_type == license_type)
        .unwrap_or_else(|| panic!("{issuer} holds no {license_type} for the holder"))
        .license_id
}

/// One number from `query` (with `?1` bound to `param`) on a member's SQLite file.
async fn count(db: std::path::PathBuf, query: &'static str, param: &str) -> i64 {
    let param = param.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row(query, [param], |r| r.get(0)).unwrap()
    })
    .await
    .unwrap()
}

/// The JSON records of an audit trail file (each line: sequence, hash, record).
fn trail_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// Region 32 holds a certificate from the federation's CA but is not registered. Every
/// method the gateway's federation listener serves (the contract's Gateway and Catalog
/// methods, health and reflection, checked equal to the gateway's method table)
/// refuses it with PERMISSION_DENIED "not registered", each carrying a complete request
/// with distinctive content (case number, key, trace id). The gateway's trail records
/// each refusal and relays nothing of 32's; 44's trail, delivery keys, access log and
/// platform never see 32, its case or its trace, and the status of a case 32 handles
/// stays 44's own. Then 32 is registered and the same requests are served, each
/// state-changing one applying something new: so none had been applied before, and
/// the places checked are where it would have shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_absent_from_the_registry_is_refused_on_every_method() {
    let methods = federation_listener_methods();
    let t = start(&["310000", "440000"]).await;
    let n44 = t.fed.node("44").unwrap();
    let node_db = t.dir.path().join("node-44.db");
    let gateway_trail = t.dir.path().join("gateway-audit.log");
    let node_trail = t.dir.path().join("node-44-audit.log");
    // Jiangsu (32) holds a valid certificate from the federation's CA, but is not
    // registered.
    let jiangsu = region("32");
    issue_with_federation_ca(&t, &jiangsu);
    // And an issuer key, as a node signs what it sends with: registered with 32 below.
    let key_32 = tongban_runtime::trust::pki::IssuerKey::generate("32-k1").unwrap();
    key_32.write(&t.pki()).unwrap();
    let channel = channel_as(&t, &jiangsu).await;

    // What 32 goes for. A case 44 filed that a region in 32 handles (its applicant
    // lives in Nanjing): a push from 32 about it would be applied.
    let r = n44
        .portal
        .file(&medical_filing(&t.residents("32")[0]))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let pushed_case = r.body["case_number"].as_str().unwrap().to_owned();
    let before = n44
        .store
        .application(pushed_case.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.target_region, "320100");
    let resident = t.residents("44")[0].clone();
    let license = license_of(&t, "44", &resident.id, "household_register").await;
    let version = n44.portal.get("/v1/catalog").await.unwrap().body["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let filing = medical_filing(&resident);
    let application = Application {
        case_number: JIANGSU_CASE.into(),
        one_thing_id: "medical-treatment-registration".into(),
        catalog_version: version,
        origin_region: "320000".into(),
        target_region: "440000".into(),
        applicant: Some(Applicant {
            id_number: resident.id.as_str().into(),
            name: resident.name.clone(),
            phone: "13932077777".into(),
        }),
        form: filing["form"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        ..Application::default()
    };
    // A dispute 44 raised with 32 about that case (its window's doing, written here).
    let raised = n44
        .store
        .raise_dispute(
            tongban_node::store::disputes::Dispute {
                dispute_id: String::new(),
                role: tongban_node::store::disputes::RAISED.into(),
                case_number: pushed_case.clone(),
                counterpart: "320100".into(),
                one_thing_id: "medical-treatment-registration".into(),
                subject: "identity".into(),
                license_id: None,
                data: "identity".into(),
                reason: "the name differs from the register".into(),
                raised_ms: 1,
                outcome: None,
                note: None,
                corrected_license_id: None,
                settled_ms: None,
            },
            tongban_proto::v1::RaiseDisputeRequest::default(),
        )
        .await
        .unwrap();
    let jiangsu_calls = Jiangsu {
        application,
        pushed_case: pushed_case.clone(),
        resident,
        license,
        revoked_license: "320000-JS-77777".into(),
        dispute_id: raised.dispute_id.clone(),
    };

    // Every method of the federation listener refuses 32, for that reason.
    let mut not_refused = Vec::new();
    for method in &methods {
        let outcome = jiangsu_calls.call(&channel, method).await;
        let refused = outcome.as_ref().err().map(|s| (s.code(), s.message()));
        let expected = (
            Code::PermissionDenied,
            "spiffe://tongban/region/32 is not registered in the federation",
        );
        if refused != Some(expected) {
            not_refused.push(format!("{}: {outcome:?}", method.name));
        }
    }
    assert!(
        not_refused.is_empty(),
        "not refused as unregistered: {not_refused:#?}"
    );

    // A call of a registered member relayed to 44 after them: once 44's and the
    // gateway's trails hold it, they hold whatever came before it.
    let sentinel = "31310000000000000000000000099999";
    let mut query = with_meta(
        QueryStatusRequest {
            case_number: "440000-20261203-00099999".into(),
        },
        &[
            (metadata::TARGET_REGION, "440000"),
            (
                metadata::TRACEPARENT,
                &format!("00-{sentinel}-0000000000099999-01"),
            ),
        ],
    );
    query.set_timeout(Duration::from_secs(10));
    let err = GatewayClient::new(channel_as(&t, &region("31")).await)
        .query_status(query)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    for trail in [&gateway_trail, &node_trail] {
        eventually(
            Duration::from_secs(20),
            "the sentinel in the trail",
            || async {
                trail_records(trail)
                    .iter()
                    .any(|r| r["trace_id"] == sentinel)
                    .then_some(())
            },
        )
        .await;
    }

    // The gateway recorded each refusal of a Gateway method, and relayed nothing of 32.
    let records = trail_records(&gateway_trail);
    for method in methods
        .iter()
        .filter(|m| m.path.starts_with(GATEWAY_SERVICE))
    {
        let refused: Vec<_> = records
            .iter()
            .filter(|r| r["idempotency_key"] == Jiangsu::key(method).as_str())
            .collect();
        assert_eq!(refused.len(), 1, "{}: {records:#?}", method.name);
        let r = refused[0];
        assert_eq!(
            (
                &r["audit"],
                &r["caller"],
                &r["method"],
                &r["code"],
                &r["trace_id"]
            ),
            (
                &json!("refused"),
                &json!("32"),
                &json!(method.name),
                &json!(Code::PermissionDenied as i32),
                &json!(JIANGSU_TRACE)
            ),
            "{r}"
        );
    }
    let relayed_for_32: Vec<_> = records
        .iter()
        .filter(|r| r["caller"] == "32" && r["audit"] != "refused")
        .collect();
    assert!(relayed_for_32.is_empty(), "{relayed_for_32:?}");

    // Nothing reached 44: no call served for 32 or in Jiangsu's trace, no delivery
    // remembered, no lookup of the resident logged, no case in the platform, and the
    // status of the case 32 would handle is 44's own.
    let node_records = trail_records(&node_trail);
    assert!(!node_records.is_empty());
    let seen: Vec<_> = node_records
        .iter()
        .filter(|r| {
            r["origin"] == "32"
                || r["trace_id"] == JIANGSU_TRACE
                || r.to_string().contains(JIANGSU_CASE)
        })
        .collect();
    assert!(seen.is_empty(), "44's trail saw 32: {seen:?}");
    let inbound = "SELECT COUNT(*) FROM inbound WHERE origin_prefix = ?1 OR case_number = ?1";
    assert_eq!(count(node_db.clone(), inbound, "32").await, 0);
    assert_eq!(count(node_db.clone(), inbound, JIANGSU_CASE).await, 0);
    let accesses = "SELECT COUNT(*) FROM access_log WHERE requester_region LIKE ?1 || '%'
                    OR case_number = ?1";
    assert_eq!(count(node_db.clone(), accesses, "32").await, 0);
    assert_eq!(count(node_db.clone(), accesses, JIANGSU_CASE).await, 0);
    let rated = "SELECT COUNT(*) FROM evaluations_received WHERE case_number = ?1";
    assert_eq!(count(node_db.clone(), rated, JIANGSU_CASE).await, 0);
    let disputed = "SELECT COUNT(*) FROM disputes WHERE role = 'received' AND case_number = ?1";
    assert_eq!(count(node_db.clone(), disputed, JIANGSU_CASE).await, 0);
    let settled = "SELECT COUNT(*) FROM disputes WHERE dispute_id = ?1 AND outcome IS NOT NULL";
    assert_eq!(count(node_db.clone(), settled, &raised.dispute_id).await, 0);
    assert!(n44.platform.payload(JIANGSU_CASE).await.unwrap().is_none());
    assert!(n44.platform.case(JIANGSU_CASE).await.unwrap().is_none());
    let after = n44
        .store
        .application(pushed_case.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, before.status, "32's push was applied");

    // A registered region with a certificate from the same CA is served.
    let mut shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    assert!(
        shanghai
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_ok()
    );

    // Registered, 32 is served the very same requests on the same connection: the
    // registry was the refusal. Each state-changing one applies something new now, so
    // none had been applied before (a delivery's key is not a duplicate, the push and
    // the revocation are applied).
    let (path, mut registry) = registry_file(&t);
    registry.regions.push(RegionEntry {
        prefix: "32".into(),
        endpoints: vec!["https://127.0.0.1:9".into()],
        identity: None,
        issuer_keys: vec![tongban_kit::config::gateway::issuer_key_entry(
            &key_32,
            std::time::SystemTime::now(),
            Duration::from_secs(3600),
        )],
    });
    std::fs::write(&path, toml::to_string(&registry).unwrap()).unwrap();
    let (status, text) = reload(&t).await;
    assert_eq!(status, 200, "{text}");
    // 44 reads the same registry for the keys of what it is sent.
    let node_reload = n44
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(node_reload.status, 200, "{:?}", node_reload.body);
    for method in &methods {
        let applied = jiangsu_calls
            .call(&channel, method)
            .await
            .unwrap_or_else(|s| panic!("{} once registered: {s:?}", method.name));
        let expected = method.changes_state.then_some(true);
        assert_eq!(applied, expected, "{}", method.name);
    }
    // ... where the checks above looked.
    assert!(n44.platform.payload(JIANGSU_CASE).await.unwrap().is_some());
    assert_eq!(count(node_db.clone(), inbound, JIANGSU_CASE).await, 1);
    assert_eq!(count(node_db.clone(), rated, JIANGSU_CASE).await, 1);
    assert_eq!(count(node_db.clone(), disputed, JIANGSU_CASE).await, 1);
    assert_eq!(count(node_db.clone(), settled, &raised.dispute_id).await, 1);
    assert!(count(node_db.clone(), accesses, JIANGSU_CASE).await >= 3);
    let after = n44.store.application(pushed_case).await.unwrap().unwrap();
    assert_eq!(after.status.detail, FORGED_DETAIL);
    eventually(
        Duration::from_secs(20),
        "44's trail records 32's calls",
        || async {
            trail_records(&node_trail)
                .iter()
                .any(|r| r["origin"] == "32" && r["trace_id"] == JIANGSU_TRACE)
                .then_some(())
        },
    )
    .await;
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
    reload_at(t, "/reload").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_removed_from_the_registry_is_cut_off_without_a_restart() {
    let t = start(&["310000", "440000"]).await;
    let (path, original) = registry_file(&t);
    let shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    let guangdong = CatalogClient::new(channel_as(&t, &region("44")).await);
    let catalog = |mut client: CatalogClient<SigningChannel>| async move {
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

    // Shanghai removed: refused at once (its open connection is closed too). One of two regions is
    // more than `[reload] max_regions_dropped_share` allows: refused unless forced.
    let mut without = original.clone();
    without.regions.retain(|r| r.prefix != "31");
    std::fs::write(&path, toml::to_string(&without).unwrap()).unwrap();
    let (status, text) = reload_at(&t, "/reload").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("force=true"), "{text}");
    assert_eq!(catalog(shanghai.clone()).await, Ok(()));
    let (status, text) = reload_at(&t, "/reload?force=true").await;
    assert_eq!(status, 200, "{text}");
    refused_by_registry(&catalog, &shanghai).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken file is rejected whole; what was in force stays.
    std::fs::write(&path, "[[region]]\nprefix = \"4\"\n").unwrap();
    let (status, text) = reload(&t).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("registry"), "{text}");
    refused_by_registry(&catalog, &shanghai).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Registered again: served again (its channel reconnected: the removal closed the
    // connection, see trust_changes).
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

/// Calls until one is refused by the registry (PERMISSION_DENIED), none served meanwhile:
/// a call racing the close of the removed region's connection (GOAWAY, then closed once
/// its streams end) fails with that connection instead, and the client reconnects.
async fn refused_by_registry<F, Fut>(catalog: &F, client: &CatalogClient<SigningChannel>)
where
    F: Fn(CatalogClient<SigningChannel>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Code>>,
{
    let mut answers = Vec::new();
    for _ in 0..40 {
        let answer = catalog(client.clone()).await;
        answers.push(answer);
        if answer == Err(Code::PermissionDenied) {
            return;
        }
        assert!(answer.is_err(), "a removed region was served: {answers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never refused by the registry: {answers:?}");
}

/// The reload lines of a member's JSON log: (cause, message).
fn reload_lines(log: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| {
            let message = l["message"].as_str()?;
            (message.starts_with("reloaded") || message.starts_with("reload rejected")).then(|| {
                (
                    l["cause"].as_str().unwrap_or("").to_owned(),
                    message.to_owned(),
                )
            })
        })
        .collect()
}

/// Writes a new certificate and key for `identity` (new serial, new key) over its files
/// in `pki`, with the old files' modification times: the file watch sees no change, so
/// only a signal or a request puts them in force. Returns the new serial.
fn reissue_unseen(t: &TestFederation, identity: &PeerIdentity) -> Vec<u8> {
    let pki_dir = t.dir.path().join("pki");
    let staging = t.dir.path().join("pki-reissued");
    std::fs::create_dir_all(&staging).unwrap();
    let ca = pki::DevCa::load(
        &std::fs::read_to_string(pki_dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(pki_dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let leaf = ca.issue(identity, Duration::from_secs(3600)).unwrap();
    let (cert, key) = pki::write_leaf(&staging, identity, &leaf).unwrap();
    for new in [cert.clone(), key] {
        let old = pki_dir.join(new.file_name().unwrap());
        let mtime = std::fs::metadata(&old).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&new, &old).unwrap();
        assert_eq!(std::fs::metadata(&old).unwrap().modified().unwrap(), mtime);
    }
    let pem = std::fs::read(pki_dir.join(cert.file_name().unwrap())).unwrap();
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    serial_of(der.as_ref()).unwrap()
}

/// Certificates reissued for the gateway and a node (both real processes), put in
/// force by SIGHUP alone (the files keep their modification times, so the file watch
/// stays quiet): neither process exits, both present the new certificates to new
/// handshakes, and a member calling through the gateway to the node all along has no
/// call fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_never_kills() {
    let mut t = tongban_kit::testing::start_with(&["310000", "440000"], |spec| {
        spec.launch = tongban_kit::testing::processes("info");
    })
    .await;
    let shanghai = t.tls_files(&region("31"));
    let gateway_addr = t.fed.gateway().federation_addr;
    let node_addr = t.fed.node("44").unwrap().federation_addr;
    let presented = |addr, server: PeerIdentity| {
        let shanghai = shanghai.clone();
        async move { presented_serial(addr, &shanghai, &server).await }
    };
    let gateway_before = presented(gateway_addr, PeerIdentity::Gateway).await;
    let node_before = presented(node_addr, region("44")).await;

    // Shanghai calls all along: the gateway's catalog, and a status query relayed to
    // 44 (NOT_FOUND is its answer; anything else is a failure).
    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn({
        let (stop, channel) = (stop.clone(), channel_as(&t, &region("31")).await);
        async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let outcome = if n.is_multiple_of(2) {
                    let query = with_meta(
                        QueryStatusRequest {
                            case_number: "440000-20261203-00000404".into(),
                        },
                        &[(metadata::TARGET_REGION, "440305")],
                    );
                    match GatewayClient::new(channel.clone())
                        .query_status(query)
                        .await
                    {
                        Err(s) if s.code() == Code::NotFound => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                } else {
                    CatalogClient::new(channel.clone())
                        .get_catalog(GetCatalogRequest::default())
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{s:?}"))
                };
                match outcome {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let gateway_new = reissue_unseen(&t, &PeerIdentity::Gateway);
    let node_new = reissue_unseen(&t, &region("44"));
    assert_ne!(gateway_new, gateway_before);
    assert_ne!(node_new, node_before);
    for member in [Member::Gateway(0), Member::Node("44".into())] {
        let pid = t.fed.pid(&member).unwrap();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    // Each process presents its new certificate to a new handshake.
    for (what, addr, server, new) in [
        ("gateway", gateway_addr, PeerIdentity::Gateway, &gateway_new),
        ("node 44", node_addr, region("44"), &node_new),
    ] {
        eventually(
            Duration::from_secs(30),
            &format!("{what} presents its reissued certificate"),
            || {
                let server = server.clone();
                async move { (presented(addr, server).await == *new).then_some(()) }
            },
        )
        .await;
    }
    for member in [Member::Gateway(0), Member::Node("44".into())] {
        assert!(
            !t.fed
                .wait_exit(&member, Duration::from_millis(100))
                .await
                .unwrap(),
            "{member:?} exited on SIGHUP"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = steady.await.unwrap();
    println!(
        "shanghai during the SIGHUP reloads: {ok} calls served, {} failed",
        failed.len()
    );
    assert!(ok > 0);
    assert!(failed.is_empty(), "calls failed: {failed:?}");

    // Both serve, and say what they reloaded, and why: the signal, nothing else.
    let mut shanghai = CatalogClient::new(channel_as(&t, &region("31")).await);
    assert!(
        shanghai
            .get_catalog(GetCatalogRequest::default())
            .await
            .is_ok()
    );
    for log in ["gateway-0.log", "node-44.log"] {
        let path = t.dir.path().join(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("SIGHUP") && text.contains("reloaded"),
            "{log} has no reload line"
        );
        let reloads = reload_lines(&path);
        assert!(
            !reloads.is_empty()
                && reloads
                    .iter()
                    .all(|(cause, message)| cause == "SIGHUP" && message.starts_with("reloaded")),
            "{log}: {reloads:?}"
        );
    }
    t.shutdown().await;
}

/// How the TLS listener at `addr` answers a client with `config` that verifies it as
/// `server`: the handshake's error, or the first read's (in TLS 1.3 the server judges the
/// client's certificate after the client finished, and its refusal arrives as an alert),
/// or "served" when the listener speaks HTTP/2 back.
async fn handshake_answer(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server: &PeerIdentity,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connected = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(server.dns_name()).unwrap(), tcp)
        .await;
    let mut tls = match connected {
        Err(e) => return e.to_string(),
        Ok(tls) => tls,
    };
    // The HTTP/2 preface and an empty SETTINGS frame: a server that took the
    // connection answers with its own SETTINGS.
    let _ = tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(n)) if n >= 9 && buf[3] == 0x4 => "served".into(),
        Ok(Ok(n)) => format!("read {n} bytes: {:?}", &buf[..n]),
        Err(_) => "no answer within 5 s".into(),
    }
}

/// What the listener at `addr` sends back to plaintext HTTP/2 (the preface and a
/// SETTINGS frame, no TLS), read until it closes.
async fn plaintext_answer(addr: std::net::SocketAddr) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => Ok(answer),
        Ok(Err(e)) if answer.is_empty() => Err(e.to_string()),
        Ok(Err(_)) => Ok(answer),
        Err(_) => Err(format!("still open after 5 s, having sent {answer:?}")),
    }
}

/// A gRPC health check at `url` presenting `files` (verifying the server as `server`):
/// the status, or why there is none.
async fn health_status(
    url: &str,
    files: &TlsFiles,
    server: &PeerIdentity,
    service: &str,
) -> Result<i32, String> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tongban_kit::testing::channel(url, files, server)
        .await
        .map_err(|e| format!("no connection: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// The same strangers get the same nothing from the gateway's and a node's federation
/// listener: a client certificate from another CA (naming a real member) and none at
/// all are refused at the handshake, plaintext HTTP/2 gets no HTTP/2 answer; gRPC
/// health is answered over mutual TLS to the listener's callers, per service, only for
/// the services that port serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_federation_listeners_refuse_strangers_and_plaintext_and_answer_health_to_callers() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let t = start(&["310000", "440000"]).await;
    let federation_ca = t.tls_files(&region("31")).ca;
    let listeners = [
        (
            "gateway",
            t.fed.gateway().federation_addr,
            PeerIdentity::Gateway,
            // Its callers: registered nodes.
            t.tls_files(&region("31")),
            vec![
                "tongban.federation.v1.Gateway",
                "tongban.federation.v1.Catalog",
            ],
            "tongban.federation.v1.Node",
        ),
        (
            "node 44",
            t.fed.node("44").unwrap().federation_addr,
            region("44"),
            // Its caller: the gateway.
            t.tls_files(&PeerIdentity::Gateway),
            vec!["tongban.federation.v1.Node"],
            "tongban.federation.v1.Gateway",
        ),
    ];
    for (what, addr, server, caller, served, not_served) in listeners {
        let url = format!("https://{addr}");
        // Control: the listener's caller is answered, per service.
        for service in std::iter::once("").chain(served.iter().copied()) {
            assert_eq!(
                health_status(&url, &caller, &server, service).await,
                Ok(ServingStatus::Serving as i32),
                "{what}: health of {service:?}"
            );
        }
        let unknown = health_status(&url, &caller, &server, not_served).await;
        assert!(
            unknown.as_ref().is_err_and(|e| e.starts_with("NotFound")),
            "{what}: health of {not_served}: {unknown:?}"
        );
        let config = caller.client_rustls_config().unwrap();
        assert_eq!(
            handshake_answer(addr, config, &server).await,
            "served",
            "{what}"
        );

        // A certificate from another CA, naming the listener's own caller.
        let foreign = tongban_kit::testing::foreign_identity(
            &t.dir.path().join(format!("foreign-{}", addr.port())),
            &if server == PeerIdentity::Gateway {
                region("31")
            } else {
                PeerIdentity::Gateway
            },
        );
        let stranger = TlsFiles {
            ca: federation_ca.clone(),
            ..foreign
        };
        let refusal =
            handshake_answer(addr, stranger.client_rustls_config().unwrap(), &server).await;
        assert_eq!(
            refusal, "received fatal alert: UnknownCA",
            "{what}: a certificate from another CA"
        );
        let health = health_status(&url, &stranger, &server, "").await;
        assert!(
            health.is_err(),
            "{what}: health for another CA's certificate: {health:?}"
        );

        // No certificate at all.
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&federation_ca).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let mut anonymous =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_no_client_auth();
        anonymous.alpn_protocols = vec![b"h2".to_vec()];
        let refusal = handshake_answer(addr, Arc::new(anonymous), &server).await;
        assert_eq!(
            refusal, "received fatal alert: CertificateRequired",
            "{what}: no certificate"
        );

        // Plaintext HTTP/2.
        // It gets one fatal TLS alert (decode_error) and the connection closed, never
        // an HTTP/2 frame.
        let plain = plaintext_answer(addr).await;
        assert_eq!(
            plain,
            Ok(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]),
            "{what}: plaintext HTTP/2"
        );
        let plain_health = {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(2));
            match endpoint.connect().await {
                Err(e) => Err(format!("no connection: {e:?}")),
                Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status)
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            }
        };
        assert!(
            plain_health.is_err(),
            "{what}: plaintext health: {plain_health:?}"
        );
    }
    t.shutdown().await;
}
