//! Identity verification and license mutual recognition through real gateways and
//! nodes: the same verdicts and outcome whatever region a license comes from, the
//! precise reason of every refusal (every reason the proto has, for identity
//! assertions and licenses, each reached through a gateway), the holder check, one
//! issuer call for many concurrent misses,
//! revocation that reaches every replica and beats a lookup in flight, key rollover
//! without a lost lookup, fail-closed answers, pre-review that fills in and waits, and
//! no raw ID number or name in any log.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant, SystemTime},
};
use tongban_kit::testing::SigningChannel;

use prost::Message;
use serde_json::json;
use tokio::sync::watch;
use tongban_gateway::{Gateway, GatewayConfig, GatewayListeners, config::RecognitionSettings};
use tongban_kit::Member;
use tongban_kit::testing::{TestFederation, eventually, processes, start, start_with};
use tongban_node::platform::embedded::NewLicense;
use tongban_proto::{
    contract::metadata,
    rules::credentials::{self, SignedKind, SigningKey},
    v1::{
        self, FetchLicenseRequest, FetchLicenseResponse, License, LicenseStatus, LicenseVerdict,
        LookupLicenseRequest, LookupPurpose, PublishRevocationRequest, VerdictOutcome,
        VerdictReason, VerdictSource, VerifyIdentityRequest,
        gateway_client::GatewayClient,
        node_server::{Node, NodeServer},
    },
};
use tongban_runtime::{
    process::shutdown::Shutdown,
    serving::incoming::authenticated_incoming,
    trust::identity::PeerIdentity,
    trust::pki::{self, DevCa},
    trust::tls::ClientSettings,
};
use tonic::{Request, Response, Status};

const WAIT: Duration = Duration::from_secs(20);

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

pub(super) async fn gateway_as(t: &TestFederation, prefix: &str) -> GatewayClient<SigningChannel> {
    GatewayClient::new(
        t.gateway_channel(&t.tls_files(&region(prefix)))
            .await
            .unwrap(),
    )
}

pub(super) fn purpose(one_thing: &str) -> Option<LookupPurpose> {
    Some(LookupPurpose {
        applicant_request: Some(tongban_proto::rules::consent::request(
            "portal",
            1_780_000_000_000,
        )),
        one_thing_id: one_thing.into(),
        case_number: "310000-20261201-00000099".into(),
    })
}

/// The id of the license of `license_type` that `issuer`'s register holds for the
/// holder (with the node's own keyed hash).
pub(super) async fn license_of(
    t: &TestFederation,
    issuer: &str,
    holder: &str,
    license_type: &str,
) -> String {
    let node = t.fed.node(issuer).unwrap();
    let key = node.store.id_hash_key().await.unwrap();
    let id = tongban_proto::rules::resident_id::ResidentId::parse(
        holder,
        tongban_proto::rules::region::RegionTable::embedded(),
        tongban_proto::rules::calendar::business_now().date(),
    )
    .unwrap();
    node.platform
        .licenses_of_resident(&id, &key)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.license_type == license_type)
        .unwrap_or_else(|| panic!("{issuer} holds no {license_type} for the holder"))
        .license_id
}

pub(super) async fn lookup(
    client: &mut GatewayClient<SigningChannel>,
    license_id: &str,
    material: &str,
    one_thing: &str,
    holder: &str,
) -> LicenseVerdict {
    client
        .lookup_license(LookupLicenseRequest {
            license_id: license_id.into(),
            license_type: String::new(),
            purpose: purpose(one_thing),
            material_id: material.into(),
            holder_id_number: holder.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub(super) fn household_transfer(
    resident: &tongban_node::platform::embedded::SyntheticResident,
    mc: &str,
) -> serde_json::Value {
    json!({
        "one_thing_id": "household-transfer",
        "mode": "proxy_acceptance",
        "applicant": {"id_number": resident.id.as_str(), "name": resident.name},
        "form": {
            "move_to_region": "110105", "move_to_address": "北京市朝阳区建国路1号",
            "reason": "夫妻投靠", "contact_phone": "13800138000"
        },
        "materials": [{"material_id": "marriage_certificate", "source": "license", "reference": mc}]
    })
}

async fn approved(t: &TestFederation, origin: &str, case: &str) {
    let node = t.fed.node(origin).unwrap();
    eventually(WAIT, &format!("{case} approved"), || async {
        let s = node.portal.status(case).await.ok()?;
        (s.body["stage"] == "approved").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_regions_same_application_same_verdicts_whatever_region_issued_the_license() {
    let t = start(&["110000", "310000", "320000", "330000", "440000", "510000"]).await;
    let applicant = t.residents("44")[0].clone();
    // Every other region's register issued this Guangdong resident a marriage
    // certificate; give them one from Guangdong too, so each region takes its turn.
    let n44 = t.fed.node("44").unwrap();
    let key = n44.store.id_hash_key().await.unwrap();
    n44.platform
        .issue_license(
            NewLicense {
                holder: applicant.id.clone(),
                holder_name: applicant.name.clone(),
                license_type: "marriage_certificate".into(),
                issuing_region: "440000".into(),
                fields: BTreeMap::new(),
                valid_from: "2020-05-20".into(),
                valid_until: None,
            },
            key.into(),
        )
        .await
        .unwrap();

    let n31 = t.fed.node("31").unwrap();
    let mut outcomes = Vec::new();
    for issuer in ["11", "31", "32", "33", "44", "51"] {
        let mc = license_of(&t, issuer, applicant.id.as_str(), "marriage_certificate").await;
        let started = Instant::now();
        let r = n31
            .portal
            .file(&household_transfer(&applicant, &mc))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status, 201, "{issuer}: {}", r.body);
        let receipt = &r.body;
        let recognized = receipt["materials_recognized"].as_array().unwrap();
        let mc_note = recognized
            .iter()
            .find(|m| m["id"] == "marriage_certificate")
            .unwrap_or_else(|| panic!("{issuer}: marriage certificate not recognized: {receipt}"));
        assert!(
            mc_note["issuing_region"]
                .as_str()
                .unwrap()
                .starts_with(issuer),
            "{issuer}: {mc_note}"
        );
        let mut ids: Vec<String> = recognized
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        let case = receipt["case_number"].as_str().unwrap().to_owned();
        approved(&t, "31", &case).await;
        println!("license from {issuer}: filed in {took:?}, recognized {ids:?}");
        outcomes.push((
            ids,
            receipt["materials_missing"].clone(),
            receipt["materials_not_recognized"].clone(),
            receipt["identity"]["outcome"].clone(),
            receipt["verification"].clone(),
            receipt["prefilled_fields"].clone(),
            receipt["handling_region"].clone(),
        ));
    }
    // Without discrimination: every region's license gets the same verdicts and outcome.
    for o in &outcomes[1..] {
        assert_eq!(o, &outcomes[0]);
    }
    assert_eq!(outcomes[0].4, "complete");
    assert_eq!(outcomes[0].5, json!(["move_from_region"]));
    t.shutdown().await;
}

/// A stand-in issuer for region 32 that answers license lookups and identity
/// assertions with what each test case asks for: the case is the second part of the
/// license id (`320000-TAMPER-1`) or the name asked about (`TAMPER`). It signs as the
/// real node's issuer does (`node/src/issuer.rs`: Ed25519 over the exact body with its
/// kind's domain tag, the person as a salted subject hash), then forges what the case
/// names: a tampered signature, a key not registered, a key outside its window, another
/// kind's domain, another issuing region, another person, a revoked, expired, not yet
/// valid or malformed object, or no object at all; or it does not answer. It counts its
/// license calls and can be slowed.
struct StandIn {
    good: SigningKey,
    stranger: SigningKey,
    retired: SigningKey,
    /// The one person its licenses were issued to: like the real issuer, a license
    /// names its holder (as a salted hash) only to a requester who names them.
    holder: String,
    calls: Arc<AtomicUsize>,
    delay: watch::Receiver<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);

/// Bytes that are no protobuf message (field 1 with wire type 7), signed as they are.
const GARBAGE: [u8; 2] = [0x0f, 0x00];

impl StandIn {
    /// A good license `id` as the issuer would sign it for a requester naming
    /// `asked_holder`.
    fn license(&self, id: &str, asked_holder: &str) -> License {
        let (holder, holder_salt) = if asked_holder == self.holder {
            let salt = credentials::new_salt();
            (
                credentials::subject_hash(&salt, asked_holder),
                salt.to_vec(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        License {
            license_id: id.into(),
            license_type: "marriage_certificate".into(),
            issuing_region: "320000".into(),
            holder,
            holder_salt,
            valid_from: "2020-01-01".into(),
            status: LicenseStatus::Valid as i32,
            issued_at: Some(credentials::timestamp(SystemTime::now())),
            ..Default::default()
        }
    }

    /// A good assertion that `id_number` is a resident of 32 by the name asked.
    fn assertion(&self, id_number: &str) -> v1::IdentityAssertion {
        let salt = credentials::new_salt();
        let now = SystemTime::now();
        v1::IdentityAssertion {
            subject: credentials::subject_hash(&salt, id_number),
            subject_salt: salt.to_vec(),
            name_matches: true,
            subject_known: true,
            level: v1::AssuranceLevel::Substantial as i32,
            issuing_region: "320000".into(),
            issued_at: Some(credentials::timestamp(now)),
            expires_at: Some(credentials::timestamp(now + HOUR)),
        }
    }

    /// Signs `body` as a `kind` object with the good key, unless the case forges the
    /// signature, the key or the kind.
    fn sign(&self, case: &str, kind: SignedKind, body: Vec<u8>) -> v1::SignedObject {
        match case {
            "TAMPER" => {
                let mut signed = self.good.sign(kind, body);
                let mut signature = signed.signature.to_vec();
                signature[10] ^= 0x01;
                signed.signature = signature.into();
                signed
            }
            "WRONGKEY" => self.stranger.sign(kind, body),
            "OLDKEY" => self.retired.sign(kind, body),
            // The good key's signature, but over the other kind's domain tag.
            "OTHERKIND" => self.good.sign(
                match kind {
                    SignedKind::License => SignedKind::IdentityAssertion,
                    SignedKind::IdentityAssertion => SignedKind::License,
                },
                body,
            ),
            "GARBAGE" => self.good.sign(kind, GARBAGE.to_vec()),
            _ => self.good.sign(kind, body),
        }
    }
}

#[tonic::async_trait]
impl Node for StandIn {
    async fn deliver_application(
        &self,
        _: Request<v1::DeliverApplicationRequest>,
    ) -> Result<Response<v1::DeliverApplicationResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn query_status(
        &self,
        _: Request<v1::QueryStatusRequest>,
    ) -> Result<Response<v1::QueryStatusResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn push_status(
        &self,
        _: Request<v1::PushStatusRequest>,
    ) -> Result<Response<v1::PushStatusResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn submit_evaluation(
        &self,
        _: Request<v1::SubmitEvaluationRequest>,
    ) -> Result<Response<v1::SubmitEvaluationResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn raise_dispute(
        &self,
        _: Request<v1::RaiseDisputeRequest>,
    ) -> Result<Response<v1::RaiseDisputeResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn settle_dispute(
        &self,
        _: Request<v1::SettleDisputeRequest>,
    ) -> Result<Response<v1::SettleDisputeResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn assert_identity(
        &self,
        request: Request<v1::AssertIdentityRequest>,
    ) -> Result<Response<v1::AssertIdentityResponse>, Status> {
        let r = request.into_inner();
        let case = r.name.as_str();
        let now = SystemTime::now();
        let mut a = self.assertion(&r.id_number);
        match case {
            "DOWN" => return Err(Status::unavailable("stand-in: register offline")),
            "REFUSED" => return Err(Status::permission_denied("stand-in: not for that region")),
            "NOASSERTION" => {
                return Ok(Response::new(v1::AssertIdentityResponse {
                    assertion: None,
                }));
            }
            // Issued before the good key's window opened (it was valid then for no one).
            "BACKDATED" => a.issued_at = Some(credentials::timestamp(now - 2 * HOUR)),
            "NOISSUE" => a.issued_at = None,
            "ELSEWHERE" => a.issuing_region = "310000".into(),
            "SOMEONEELSE" => a.subject = credentials::subject_hash(&a.subject_salt, &self.holder),
            "STALE" => a.expires_at = Some(credentials::timestamp(now - Duration::from_secs(1))),
            "UNKNOWN" => {
                a.subject_known = false;
                a.name_matches = false;
                a.level = v1::AssuranceLevel::Unspecified as i32;
            }
            "WRONGNAME" => a.name_matches = false,
            _ => {}
        }
        let assertion = self.sign(case, SignedKind::IdentityAssertion, a.encode_to_vec());
        Ok(Response::new(v1::AssertIdentityResponse {
            assertion: Some(assertion),
        }))
    }
    async fn record_accesses(
        &self,
        request: Request<v1::RecordAccessesRequest>,
    ) -> Result<Response<v1::RecordAccessesResponse>, Status> {
        tongban_kit::testing::peers::reports_taken(&request)
    }
    async fn fetch_holder_licenses(
        &self,
        _: Request<v1::FetchHolderLicensesRequest>,
    ) -> Result<Response<v1::FetchHolderLicensesResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn fetch_license(
        &self,
        request: Request<FetchLicenseRequest>,
    ) -> Result<Response<FetchLicenseResponse>, Status> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = *self.delay.borrow();
        tokio::time::sleep(delay).await;
        let r = request.into_inner();
        let case = r.license_id.split('-').nth(1).unwrap_or("");
        let now = SystemTime::now();
        let mut l = self.license(&r.license_id, &r.holder_id_number);
        match case {
            "NONE" => return Ok(Response::new(FetchLicenseResponse { license: None })),
            "DOWN" => return Err(Status::unavailable("stand-in: register offline")),
            "REFUSED" => return Err(Status::invalid_argument("stand-in: not a lookup it takes")),
            "BACKDATED" => l.issued_at = Some(credentials::timestamp(now - 2 * HOUR)),
            "NOISSUE" => l.issued_at = None,
            "ELSEWHERE" => l.issuing_region = "310000".into(),
            // Another license of the region than the one asked.
            "SWAPPED" => l.license_id = "320000-OK-1".into(),
            // Names its holder whoever asks.
            "LIAR" => {
                let salt = credentials::new_salt();
                l.holder = credentials::subject_hash(&salt, &self.holder);
                l.holder_salt = salt.to_vec();
            }
            "REVOKED" => {
                l.status = LicenseStatus::Revoked as i32;
                l.revoked_at = Some(credentials::timestamp(now));
            }
            "EXPIRED" => {
                l.valid_from = "2001-01-01".into();
                l.valid_until = "2011-01-01".into();
            }
            "FUTURE" => l.valid_from = "2999-01-01".into(),
            "BADDATE" => l.valid_until = "someday".into(),
            "REGISTER" => l.license_type = "household_register".into(),
            _ => {}
        }
        let license = self.sign(case, SignedKind::License, l.encode_to_vec());
        Ok(Response::new(FetchLicenseResponse {
            license: Some(license),
        }))
    }
}

fn key(id: &str) -> SigningKey {
    SigningKey::from_pkcs8(id, &SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Starts the stand-in issuer for region 32 (certificate from the federation's CA)
/// and a gateway whose registry has it, with its keys; its licenses are `holder`'s.
/// Returns the gateway's URL, the stand-in's call counter and its delay control.
async fn stand_in_federation(
    t: &TestFederation,
    holder: &str,
) -> (String, Arc<AtomicUsize>, watch::Sender<Duration>, Shutdown) {
    let pki_dir = t.dir.path().join("pki");
    let ca = DevCa::load(
        &std::fs::read_to_string(pki_dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(pki_dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let id32 = region("32");
    let leaf = ca.issue(&id32, Duration::from_secs(3600)).unwrap();
    pki::write_leaf(&pki_dir, &id32, &leaf).unwrap();
    let tls32 = t.tls_files(&id32);

    let (good, stranger, retired) = (key("32-good"), key("32-stranger"), key("32-retired"));
    // What 32's node signs its revocations with (clients as 32 find it in the PKI).
    let signing_32 = pki::IssuerKey::generate("32-k1").unwrap();
    signing_32.write(&pki_dir).unwrap();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let registry = format!(
        "[[region]]\nprefix = \"32\"\nendpoints = [\"https://{{addr}}\"]\n\
         [[region.issuer_keys]]\nid = \"32-good\"\ned25519_public_key = \"{}\"\nnot_before = \"{}\"\nnot_after = \"{}\"\n\
         [[region.issuer_keys]]\nid = \"32-retired\"\ned25519_public_key = \"{}\"\nnot_before = \"{}\"\nnot_after = \"{}\"\n\
         [[region.issuer_keys]]\nid = \"32-k1\"\ned25519_public_key = \"{}\"\nnot_before = \"{}\"\nnot_after = \"{}\"\n",
        tongban_proto::rules::digest::hex(&good.public_key()),
        rfc3339(now - hour),
        rfc3339(now + hour),
        tongban_proto::rules::digest::hex(&retired.public_key()),
        rfc3339(now - 3 * hour),
        rfc3339(now - 2 * hour),
        signing_32.public_key_hex(),
        rfc3339(now - hour),
        rfc3339(now + hour),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let (delay_tx, delay) = watch::channel(Duration::ZERO);
    let stand_in = StandIn {
        good,
        stranger,
        retired,
        holder: holder.to_owned(),
        calls: calls.clone(),
        delay,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, tls_rx) = watch::channel(tls32.server_config().unwrap());
    let incoming = authenticated_incoming(
        listener,
        tls_rx,
        watch::channel(Default::default()).1,
        Duration::from_secs(5),
        tongban_runtime::serving::incoming::DEFAULT_MAX_HANDSHAKES,
    );
    tokio::spawn(async move {
        let _keep = _tx;
        tonic::transport::Server::builder()
            .add_service(NodeServer::new(stand_in))
            .serve_with_incoming(incoming)
            .await
    });

    let registry_path = t.dir.path().join("registry-stand-in.toml");
    // The callers' region (31) is a member too: the registry admits.
    let shanghai = t.fed.node("31").unwrap().federation_addr;
    std::fs::write(
        &registry_path,
        format!(
            "{}[[region]]\nprefix = \"31\"\nendpoints = [\"https://{shanghai}\"]\n",
            registry.replace("{addr}", &addr.to_string())
        ),
    )
    .unwrap();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        tls: t.tls_files(&PeerIdentity::Gateway),
        registry: registry_path,
        catalog: None,
        catalog_ledger: None,
        sharing_list: None,
        upstream: ClientSettings::default(),
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
        recognition: RecognitionSettings::default(),
        telemetry: Default::default(),
        console: Default::default(),
        audit: tongban_gateway::config::AuditSettings {
            file: t.dir.path().join("gateway-stand-in-audit.log"),
            ..Default::default()
        },
        limits: Default::default(),
        revocation_log: None,
        reload: Default::default(),
        operators: None,
    };
    let gateway = Gateway::new(config.clone()).unwrap();
    let listeners = GatewayListeners::bind(&config).await.unwrap();
    let url = format!("https://{}", listeners.federation.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(gateway.serve(listeners, shutdown.signal()));
    (url, calls, delay_tx, shutdown)
}

pub(super) async fn client_at(
    t: &TestFederation,
    url: &str,
    prefix: &str,
) -> GatewayClient<SigningChannel> {
    let files = t.tls_files(&region(prefix));
    GatewayClient::new(
        tongban_kit::testing::region_channel(url, &files, &PeerIdentity::Gateway, &t.pki())
            .await
            .unwrap(),
    )
}

/// Which kind of signed object a verdict was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Judged {
    Identity,
    License,
}

/// Every value of `VerdictReason` in the proto, read from the generated enum: a
/// reason added later is in this set, so a test that has to reach each reason fails
/// until the new one is reached too.
fn every_reason() -> std::collections::BTreeSet<VerdictReason> {
    (0..1024)
        .filter_map(|n| VerdictReason::try_from(n).ok())
        .collect()
}

/// The reasons a verdict about `judged` can give for an issuer's answer: every reason
/// but those that cannot apply to it.
fn reasons_for(judged: Judged) -> std::collections::BTreeSet<VerdictReason> {
    let not_for_this = match judged {
        // An assertion has no type, no start date and no revocation: it expires.
        Judged::Identity => vec![
            VerdictReason::Unspecified,
            VerdictReason::TypeNotRecognized,
            VerdictReason::TypeMismatch,
            VerdictReason::NotYetValid,
            VerdictReason::Revoked,
        ],
        // A license is not asked about a name.
        Judged::License => vec![VerdictReason::Unspecified, VerdictReason::NameMismatch],
    };
    every_reason()
        .into_iter()
        .filter(|r| !not_for_this.contains(r))
        .collect()
}

/// The resident ID number of the first 17 digits `first17`, with its check character.
fn id_number(first17: &str) -> String {
    let digits: [u8; 17] = first17.as_bytes().try_into().unwrap();
    format!(
        "{first17}{}",
        tongban_proto::rules::resident_id::check_character(&digits)
    )
}

/// A Jiangsu (32) resident ID number: the stand-in issuer's own resident.
fn jiangsu_resident() -> String {
    id_number("32010219800808951")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_precise_reason() {
    let t = start(&["310000", "440000"]).await;
    let holder = t.residents("44")[2].id.as_str().to_owned();
    let (url, _, _, stop) = stand_in_federation(&t, &holder).await;
    // Region 31's node certificate, asking the gateway, which asks the stand-in issuer.
    let mut at_stand_in = client_at(&t, &url, "31").await;
    let mut seen = std::collections::BTreeSet::new();
    use VerdictOutcome as O;
    use VerdictReason as R;

    // Identity assertions, by the name asked about (the stand-in's case).
    let resident_32 = jiangsu_resident();
    let identity_cases = [
        ("OK", O::Recognized, R::Verified),
        ("TAMPER", O::NotRecognized, R::SignatureInvalid),
        // A license signature is no assertion signature: the domain tags differ.
        ("OTHERKIND", O::NotRecognized, R::SignatureInvalid),
        ("WRONGKEY", O::NotRecognized, R::UnknownKey),
        ("OLDKEY", O::NotRecognized, R::KeyOutsideWindow),
        ("BACKDATED", O::NotRecognized, R::KeyOutsideWindow),
        ("ELSEWHERE", O::NotRecognized, R::IssuerMismatch),
        ("SOMEONEELSE", O::NotRecognized, R::HolderMismatch),
        ("STALE", O::Expired, R::Expired),
        ("UNKNOWN", O::NotFound, R::NotFound),
        ("WRONGNAME", O::NotRecognized, R::NameMismatch),
        ("NOASSERTION", O::NotRecognized, R::Malformed),
        ("GARBAGE", O::NotRecognized, R::Malformed),
        ("NOISSUE", O::NotRecognized, R::Malformed),
        ("DOWN", O::CannotVerifyNow, R::IssuerUnavailable),
        // A refusal for good is an answer: not "cannot verify now" (it once was, and the
        // case waited for an answer that would never change).
        ("REFUSED", O::NotRecognized, R::IssuerRefused),
    ];
    // A resident of a region no node is registered for.
    let unregistered = at_stand_in
        .verify_identity(VerifyIdentityRequest {
            id_number: id_number("65010219800808951"),
            name: "OK".into(),
            purpose: purpose("household-transfer"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (unregistered.outcome, unregistered.reason),
        (O::CannotVerifyNow as i32, R::NotRegistered as i32),
        "{unregistered:?}"
    );
    seen.insert((Judged::Identity, R::NotRegistered));
    for (case, outcome, reason) in identity_cases {
        let v = at_stand_in
            .verify_identity(VerifyIdentityRequest {
                id_number: resident_32.clone(),
                name: case.into(),
                purpose: purpose("household-transfer"),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                O::try_from(v.outcome).unwrap(),
                R::try_from(v.reason).unwrap()
            ),
            (outcome, reason),
            "identity {case}: {v:?}"
        );
        if outcome == O::Recognized {
            assert_eq!(v.source, VerdictSource::Issuer as i32, "{v:?}");
            assert!(v.assertion.is_some(), "{v:?}");
        }
        assert!(
            !v.detail.contains(&resident_32),
            "identity {case}: the detail quotes the ID number: {v:?}"
        );
        seen.insert((Judged::Identity, reason));
    }

    // Licenses, by their id (the stand-in's case), all the holder's.
    let license_cases = [
        ("320000-OK-1", "", O::Recognized, R::Verified),
        ("320000-TAMPER-1", "", O::NotRecognized, R::SignatureInvalid),
        // An assertion signature is no license signature: the domain tags differ.
        (
            "320000-OTHERKIND-1",
            "",
            O::NotRecognized,
            R::SignatureInvalid,
        ),
        ("320000-WRONGKEY-1", "", O::NotRecognized, R::UnknownKey),
        ("320000-OLDKEY-1", "", O::NotRecognized, R::KeyOutsideWindow),
        (
            "320000-BACKDATED-1",
            "",
            O::NotRecognized,
            R::KeyOutsideWindow,
        ),
        (
            "320000-ELSEWHERE-1",
            "",
            O::NotRecognized,
            R::IssuerMismatch,
        ),
        ("320000-SWAPPED-1", "", O::NotRecognized, R::IssuerMismatch),
        ("320000-REVOKED-1", "", O::Revoked, R::Revoked),
        ("320000-EXPIRED-1", "", O::Expired, R::Expired),
        ("320000-FUTURE-1", "", O::NotRecognized, R::NotYetValid),
        // A household register does not stand in for a marriage certificate...
        (
            "320000-REGISTER-1",
            "",
            O::NotRecognized,
            R::TypeNotRecognized,
        ),
        // ... and is not the marriage certificate that was asked for.
        (
            "320000-REGISTER-2",
            "marriage_certificate",
            O::NotRecognized,
            R::TypeMismatch,
        ),
        ("320000-NONE-1", "", O::NotFound, R::NotFound),
        ("320000-BADDATE-1", "", O::NotRecognized, R::Malformed),
        ("320000-GARBAGE-1", "", O::NotRecognized, R::Malformed),
        ("320000-NOISSUE-1", "", O::NotRecognized, R::Malformed),
        (
            "320000-DOWN-1",
            "",
            O::CannotVerifyNow,
            R::IssuerUnavailable,
        ),
        ("320000-REFUSED-1", "", O::NotRecognized, R::IssuerRefused),
        // No node for the region: told apart from one that does not answer.
        ("650000-X-1", "", O::CannotVerifyNow, R::NotRegistered),
    ];
    for (id, license_type, outcome, reason) in license_cases {
        let v = at_stand_in
            .lookup_license(LookupLicenseRequest {
                license_id: id.into(),
                license_type: license_type.into(),
                purpose: purpose("household-transfer"),
                material_id: "marriage_certificate".into(),
                holder_id_number: holder.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                O::try_from(v.outcome).unwrap(),
                R::try_from(v.reason).unwrap()
            ),
            (outcome, reason),
            "{id}: {v:?}"
        );
        if outcome == O::Recognized {
            assert_eq!(v.source, VerdictSource::Issuer as i32, "{v:?}");
            assert!(v.license.is_some(), "{v:?}");
            assert_eq!(v.satisfies_materials, ["marriage_certificate"], "{v:?}");
        } else {
            assert!(v.satisfies_materials.is_empty(), "{id}: {v:?}");
        }
        seen.insert((Judged::License, reason));
    }

    // The holder of a license is the applicant, and nobody else: looked up for another
    // person, the same good license is refused as someone else's, whether the issuer
    // names no holder to a stranger (as the real issuer does) or names its holder.
    let other = t.residents("44")[3].id.as_str().to_owned();
    for id in ["320000-OK-2", "320000-LIAR-1"] {
        let v = lookup(
            &mut at_stand_in,
            id,
            "marriage_certificate",
            "household-transfer",
            &other,
        )
        .await;
        assert_eq!(
            (v.outcome, v.reason),
            (O::NotRecognized as i32, R::HolderMismatch as i32),
            "{id} for another person: {v:?}"
        );
        assert!(v.satisfies_materials.is_empty(), "{v:?}");
        seen.insert((Judged::License, R::HolderMismatch));
        // Its holder gets it recognized (the refusal was not cached for them).
        let v = lookup(
            &mut at_stand_in,
            id,
            "marriage_certificate",
            "household-transfer",
            &holder,
        )
        .await;
        assert_eq!(
            v.outcome,
            O::Recognized as i32,
            "{id} for its holder: {v:?}"
        );
    }
    // A lookup naming nobody is refused: a license is read only for its holder (it was
    // once answered on the license alone, for anyone who knew its id).
    let anyone = at_stand_in
        .lookup_license(LookupLicenseRequest {
            license_id: "320000-OK-3".into(),
            license_type: String::new(),
            purpose: purpose("household-transfer"),
            material_id: "marriage_certificate".into(),
            holder_id_number: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(anyone.code(), tonic::Code::InvalidArgument, "{anyone:?}");

    // Every reason an issuer's answer can get was reached, for each kind of object.
    for judged in [Judged::Identity, Judged::License] {
        let reached: std::collections::BTreeSet<_> = seen
            .iter()
            .filter(|(j, _)| *j == judged)
            .map(|(_, r)| *r)
            .collect();
        let expected = reasons_for(judged);
        let missing: Vec<_> = expected
            .difference(&reached)
            .map(|r| r.as_str_name())
            .collect();
        assert!(
            missing.is_empty(),
            "{judged:?}: no case reaches {missing:?}"
        );
        assert_eq!(reached, expected, "{judged:?}");
    }
    let all: std::collections::BTreeSet<_> = seen.iter().map(|(_, r)| *r).collect();
    let mut every = every_reason();
    every.remove(&R::Unspecified);
    assert_eq!(all, every, "every reason but UNSPECIFIED is reached");

    // Real issuer: expired, type outside the catalog, revoked (also once cached), and a
    // license looked up for someone else than its holder.
    let mut gateway = gateway_as(&t, "31").await;
    let resident = t.residents("44")[4].clone();
    let n44 = t.fed.node("44").unwrap();
    let key = n44.store.id_hash_key().await.unwrap();
    let expired = n44
        .platform
        .issue_license(
            NewLicense {
                holder: resident.id.clone(),
                holder_name: resident.name.clone(),
                license_type: "marriage_certificate".into(),
                issuing_region: "440000".into(),
                fields: BTreeMap::new(),
                valid_from: "2001-01-01".into(),
                valid_until: Some("2011-01-01".into()),
            },
            key.into(),
        )
        .await
        .unwrap();
    let h = resident.id.as_str();
    let v = lookup(
        &mut gateway,
        &expired.license_id,
        "marriage_certificate",
        "household-transfer",
        h,
    )
    .await;
    assert_eq!(
        (v.outcome, v.reason),
        (
            VerdictOutcome::Expired as i32,
            VerdictReason::Expired as i32
        ),
        "{v:?}"
    );
    let id_card = license_of(&t, "44", h, "resident_id_card").await;
    // The real issuer names no holder to a requester who names another person, and the
    // gateway refuses the license as someone else's; for its holder it is recognized.
    let v = lookup(
        &mut gateway,
        &id_card,
        "id_card",
        "household-transfer",
        &other,
    )
    .await;
    assert_eq!(
        (v.outcome, v.reason),
        (O::NotRecognized as i32, R::HolderMismatch as i32),
        "{v:?}"
    );
    assert!(!v.detail.contains(other.as_str()), "{v:?}");
    let v = lookup(&mut gateway, &id_card, "id_card", "household-transfer", h).await;
    assert_eq!(
        (v.outcome, v.reason),
        (O::Recognized as i32, R::Verified as i32),
        "{v:?}"
    );
    let v = lookup(
        &mut gateway,
        &id_card,
        "marriage_certificate",
        "household-transfer",
        h,
    )
    .await;
    assert_eq!(v.reason, VerdictReason::TypeNotRecognized as i32, "{v:?}");
    let typed = gateway
        .lookup_license(LookupLicenseRequest {
            license_id: id_card.clone(),
            license_type: "driver_license".into(),
            purpose: purpose("household-transfer"),
            material_id: "marriage_certificate".into(),
            holder_id_number: h.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        typed.reason,
        VerdictReason::TypeNotRecognized as i32,
        "{typed:?}"
    );

    // Cached just before its revocation: from then on, revoked.
    let register = license_of(&t, "44", h, "household_register").await;
    let first = lookup(
        &mut gateway,
        &register,
        "household_register",
        "household-transfer",
        h,
    )
    .await;
    assert_eq!(
        first.outcome,
        VerdictOutcome::Recognized as i32,
        "{first:?}"
    );
    let cached = lookup(
        &mut gateway,
        &register,
        "household_register",
        "household-transfer",
        h,
    )
    .await;
    assert_eq!(cached.source, VerdictSource::Cache as i32);
    let r = n44
        .operator
        .post_json(
            &format!("/licenses/{register}/revoke"),
            &json!({"reason": "moved away"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(WAIT, "the gateway answers revoked", || {
        let mut gateway = gateway.clone();
        let (register, h) = (register.clone(), h.to_owned());
        async move {
            let v = lookup(
                &mut gateway,
                &register,
                "household_register",
                "household-transfer",
                &h,
            )
            .await;
            (v.outcome == VerdictOutcome::Revoked as i32).then_some(())
        }
    })
    .await;
    stop.trigger();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_reach_the_issuer_once() {
    let t = start(&["310000", "440000"]).await;
    let resident = t.residents("44")[5].clone();
    let h = resident.id.as_str().to_owned();
    let register = license_of(&t, "44", &h, "household_register").await;
    let n44 = t.fed.node("44").unwrap();
    let key = n44.store.id_hash_key().await.unwrap();
    let holder_hash = resident.id.keyed_hash(&key);
    // What 44 answered itself: the gateway's reports of its cache hits arrive in batches
    // every half second, and would be counted at random.
    let before = n44.store.answered_count(holder_hash.clone()).await.unwrap();
    let gateway = gateway_as(&t, "31").await;

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (mut gateway, register, h) = (gateway.clone(), register.clone(), h.clone());
        tasks.push(tokio::spawn(async move {
            lookup(
                &mut gateway,
                &register,
                "household_register",
                "household-transfer",
                &h,
            )
            .await
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap().outcome,
            VerdictOutcome::Recognized as i32
        );
    }
    let license_calls = n44.store.answered_count(holder_hash.clone()).await.unwrap() - before;
    assert_eq!(
        license_calls, 1,
        "200 concurrent lookups, issuer asked {license_calls} times"
    );

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (mut gateway, id, name) = (gateway.clone(), h.clone(), resident.name.clone());
        tasks.push(tokio::spawn(async move {
            gateway
                .verify_identity(VerifyIdentityRequest {
                    id_number: id,
                    name,
                    purpose: purpose("household-transfer"),
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap().outcome,
            VerdictOutcome::Recognized as i32
        );
    }
    let identity_calls = n44.store.answered_count(holder_hash).await.unwrap() - before - 1;
    assert_eq!(identity_calls, 1);

    // The counters on the admin port saw it: one load each, the rest hits or waiters.
    let admin = tongban_node::portal_client::PortalClient::new(format!(
        "http://{}",
        t.fed.gateway().admin_addr.unwrap()
    ));
    let metrics = admin.get("/metrics").await.unwrap();
    let text = metrics.body.as_str().unwrap().to_owned();
    for needle in [
        "tongban_recognition_cache_events_total{cache=\"license\",event=\"load\"} 1",
        "tongban_recognition_cache_events_total{cache=\"identity\",event=\"load\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_replica_and_only_issuers_revoke() {
    let t = start_with(&["310000", "440000"], |spec| spec.gateways = 2).await;
    let resident = t.residents("44")[6].clone();
    let h = resident.id.as_str().to_owned();
    let register = license_of(&t, "44", &h, "household_register").await;
    let urls: Vec<String> = t
        .fed
        .gateways
        .iter()
        .map(|g| format!("https://{}", g.federation_addr))
        .collect();
    let mut replicas = Vec::new();
    for url in &urls {
        let mut c = client_at(&t, url, "31").await;
        let v = lookup(
            &mut c,
            &register,
            "household_register",
            "household-transfer",
            &h,
        )
        .await;
        assert_eq!(v.outcome, VerdictOutcome::Recognized as i32);
        replicas.push(c);
    }
    // Region 31 may not revoke what 44 issued.
    let mut as_31 = replicas[0].clone();
    let mut request = Request::new(PublishRevocationRequest {
        license_id: register.clone(),
        reason: "not mine".into(),
        revoked_at: None,
    });
    request
        .metadata_mut()
        .insert(metadata::IDEMPOTENCY_KEY, "revoke-1".parse().unwrap());
    let err = as_31.publish_revocation(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // 44 revokes: every replica answers revoked.
    let n44 = t.fed.node("44").unwrap();
    let r = n44
        .operator
        .post_json(
            &format!("/licenses/{register}/revoke"),
            &json!({"reason": "moved"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Acknowledged by one replica; queued for both, so each hears it even without a
    // shared log.
    assert_eq!(r.body["state"], "published", "{}", r.body);
    assert_eq!(r.body["gateway_endpoints"].as_array().unwrap().len(), 2);
    for (i, replica) in replicas.iter().enumerate() {
        eventually(WAIT, &format!("replica {i} answers revoked"), || {
            let (mut c, register, h) = (replica.clone(), register.clone(), h.clone());
            async move {
                let v = lookup(
                    &mut c,
                    &register,
                    "household_register",
                    "household-transfer",
                    &h,
                )
                .await;
                (v.outcome == VerdictOutcome::Revoked as i32).then_some(())
            }
        })
        .await;
    }
    // Another region's node cannot revoke it through the admin endpoint of its own.
    let n31 = t.fed.node("31").unwrap();
    let r = n31
        .operator
        .post_json(
            &format!("/licenses/{register}/revoke"),
            &json!({"reason": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_in_flight_when_the_revocation_arrives_answers_revoked() {
    let t = start(&["310000", "440000"]).await;
    let holder = t.residents("44")[2].id.as_str().to_owned();
    let (url, calls, delay, stop) = stand_in_federation(&t, &holder).await;
    delay.send_replace(Duration::from_millis(800));
    let client = client_at(&t, &url, "31").await;
    let in_flight = {
        let (mut c, holder) = (client.clone(), holder.clone());
        tokio::spawn(async move {
            lookup(
                &mut c,
                "320000-OK-9",
                "marriage_certificate",
                "household-transfer",
                &holder,
            )
            .await
        })
    };
    // Once the issuer has the lookup, 32 revokes the license at the gateway.
    eventually(WAIT, "the lookup reaches the issuer", || async {
        (calls.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let mut as_32 = client_at(&t, &url, "32").await;
    let mut request = Request::new(PublishRevocationRequest {
        license_id: "320000-OK-9".into(),
        reason: "annulled".into(),
        revoked_at: None,
    });
    request
        .metadata_mut()
        .insert(metadata::IDEMPOTENCY_KEY, "revoke-9".parse().unwrap());
    assert!(
        as_32
            .publish_revocation(request)
            .await
            .unwrap()
            .into_inner()
            .applied
    );
    // The issuer's (older) answer arrives after the revocation: it must not count.
    let v = in_flight.await.unwrap();
    assert_eq!(v.outcome, VerdictOutcome::Revoked as i32, "{v:?}");
    delay.send_replace(Duration::ZERO);
    let mut c = client.clone();
    let again = lookup(
        &mut c,
        "320000-OK-9",
        "marriage_certificate",
        "household-transfer",
        &holder,
    )
    .await;
    assert_eq!(again.outcome, VerdictOutcome::Revoked as i32);
    stop.trigger();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rollover_with_overlap_loses_no_lookup() {
    let t = start_with(&["310000", "440000"], |spec| {
        spec.rollover_after = Some(Duration::from_secs(3));
    })
    .await;
    let resident = t.residents("44")[8].clone();
    let n44 = t.fed.node("44").unwrap();
    let key = n44.store.id_hash_key().await.unwrap();
    let ids = n44
        .platform
        .issue_many(
            "marriage_certificate",
            "440000",
            &resident.id,
            60,
            key.into(),
        )
        .await
        .unwrap();
    let mut gateway = gateway_as(&t, "31").await;
    let mut keys_seen = std::collections::BTreeSet::new();
    // Distinct licenses (never cached), across the switch from k1 to k2.
    for id in &ids {
        let v = lookup(
            &mut gateway,
            id,
            "marriage_certificate",
            "household-transfer",
            resident.id.as_str(),
        )
        .await;
        assert_eq!(v.outcome, VerdictOutcome::Recognized as i32, "{id}: {v:?}");
        keys_seen.insert(v.license.unwrap().key_id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        keys_seen.into_iter().collect::<Vec<_>>(),
        ["44-k1", "44-k2"],
        "the lookups spanned the rollover"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_gets_cannot_verify_unless_a_grace_allows_the_type() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.recognition.max_ttl = Duration::from_millis(500);
        spec.recognition.grace =
            BTreeMap::from([("household_register".to_owned(), Duration::from_secs(3600))]);
    })
    .await;
    let resident = t.residents("44")[9].clone();
    let h = resident.id.as_str().to_owned();
    let register = license_of(&t, "44", &h, "household_register").await;
    let id_card = license_of(&t, "44", &h, "resident_id_card").await;
    let mut gateway = gateway_as(&t, "31").await;
    for (id, material) in [(&register, "household_register"), (&id_card, "id_card")] {
        let v = lookup(&mut gateway, id, material, "household-transfer", &h).await;
        assert_eq!(v.outcome, VerdictOutcome::Recognized as i32);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    t.fed.stop(&Member::Node("44".into())).await.unwrap();

    let v = lookup(
        &mut gateway,
        &register,
        "household_register",
        "household-transfer",
        &h,
    )
    .await;
    assert_eq!(
        (v.outcome, v.source),
        (
            VerdictOutcome::Recognized as i32,
            VerdictSource::Grace as i32
        ),
        "{v:?}"
    );
    let v = lookup(&mut gateway, &id_card, "id_card", "household-transfer", &h).await;
    assert_eq!(
        (v.outcome, v.reason),
        (
            VerdictOutcome::CannotVerifyNow as i32,
            VerdictReason::IssuerUnavailable as i32
        ),
        "{v:?}"
    );

    // A filing that cannot be verified now is receipted and waits in pre-review...
    let other = t.residents("44")[10].clone();
    let n31 = t.fed.node("31").unwrap();
    let r = n31
        .portal
        .file(&tongban_kit::testing::medical_filing(&other))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["verification"], "pending", "{}", r.body);
    let case = r.body["case_number"].as_str().unwrap().to_owned();
    // ... and goes on once its home region answers again.
    t.fed.restart(&Member::Node("44".into())).await.unwrap();
    approved(&t, "31", &case).await;
    let status = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .status(&case)
        .await
        .unwrap();
    assert_eq!(
        status.body["receipt"]["verification"], "complete",
        "{}",
        status.body
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_review_fills_in_records_access_and_lets_the_person_read_it() {
    let t = start(&["110000", "310000", "440000"]).await;
    let applicant = t.residents("44")[1].clone();
    let mc = license_of(&t, "11", applicant.id.as_str(), "marriage_certificate").await;
    let n31 = t.fed.node("31").unwrap();
    let r = n31
        .portal
        .file(&household_transfer(&applicant, &mc))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let receipt = &r.body;
    let case = receipt["case_number"].as_str().unwrap().to_owned();
    assert_eq!(receipt["prefilled_fields"], json!(["move_from_region"]));
    assert_eq!(receipt["identity"]["outcome"], "recognized");
    let recognized: Vec<(String, String)> = receipt["materials_recognized"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["issuing_region"].as_str().unwrap()[..2].to_owned(),
            )
        })
        .collect();
    assert!(
        recognized.contains(&("marriage_certificate".into(), "11".into())),
        "{recognized:?}"
    );
    assert!(
        recognized.contains(&("household_register".into(), "44".into())),
        "{recognized:?}"
    );
    assert!(
        recognized.contains(&("id_card".into(), "44".into())),
        "{recognized:?}"
    );
    assert_eq!(receipt["materials_missing"], json!([]), "{receipt}");

    // The handling region (11) got the former address as filled in, and marked so.
    approved(&t, "31", &case).await;
    let payload = t
        .fed
        .node("11")
        .unwrap()
        .platform
        .payload(&case)
        .await
        .unwrap()
        .unwrap();
    let app = v1::Application::decode(payload.as_slice()).unwrap();
    assert_eq!(app.prefilled_fields, ["move_from_region"]);
    assert_eq!(
        app.form["move_from_region"],
        applicant.id.home_region().as_str()
    );

    // Each issuer recorded the lookups of the person's data, which the person reads.
    for (issuer, kinds) in [
        ("44", vec!["identity", "licenses"]),
        ("11", vec!["license"]),
    ] {
        let node = t.fed.node(issuer).unwrap();
        let log = node
            .access_log(applicant.id.as_str(), &applicant.name)
            .await
            .unwrap();
        assert_eq!(log.status, 200, "{}", log.body);
        let entries = log.body["entries"].as_array().unwrap();
        for kind in kinds {
            let e = entries
                .iter()
                .find(|e| e["kind"] == kind)
                .unwrap_or_else(|| panic!("{issuer}: no {kind} entry in {entries:?}"));
            assert_eq!(e["requester_region"], "31");
            assert_eq!(e["one_thing_id"], "household-transfer");
            assert_eq!(e["case_number"], case.as_str());
            // Filed at a counter on 11's behalf (代收代办): the applicant asked there.
            assert_eq!(e["applicant_request"]["channel"], "window", "{e}");
        }
        assert!(!log.body.to_string().contains(applicant.id.as_str()));
        // Someone else (a wrong name) reads nothing: an empty log, as for nobody.
        let denied = node
            .access_log(applicant.id.as_str(), "某某")
            .await
            .unwrap();
        assert_eq!(denied.status, 200);
        assert_eq!(denied.body["entries"], json!([]));
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_id_number_appears_in_any_log_line() {
    let mut t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("debug");
    })
    .await;
    let mut used = Vec::new();
    let n31 = t.fed.node("31").unwrap();
    // The first three Guangdong residents hold a marriage certificate from Beijing.
    for i in 0..3 {
        let resident = t.residents("44")[i].clone();
        let mc = license_of(&t, "11", resident.id.as_str(), "marriage_certificate").await;
        let r = n31
            .portal
            .file(&household_transfer(&resident, &mc))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        approved(&t, "31", r.body["case_number"].as_str().unwrap()).await;
        used.push(resident.id.as_str().to_owned());
    }
    // Two more Guangdong residents, with names distinctive enough to appear in no log
    // line by accident (rare given names, compound surnames), registered with their
    // licenses at home (44) and a marriage certificate from Beijing (11).
    let mut names = Vec::new();
    let table = tongban_proto::rules::region::RegionTable::embedded();
    let today = tongban_proto::rules::calendar::business_now().date();
    let seeded: Vec<String> = t
        .residents("44")
        .iter()
        .map(|r| r.id.as_str().to_owned())
        .collect();
    for (first17, name) in [
        ("44030519770707987", "司马琰珏"),
        ("44030519880808986", "上官翊翀"),
    ] {
        let id =
            tongban_proto::rules::resident_id::ResidentId::parse(&id_number(first17), table, today)
                .unwrap();
        assert!(!seeded.contains(&id.as_str().to_owned()), "{first17}");
        let resident = tongban_node::platform::embedded::SyntheticResident {
            id: id.clone(),
            name: name.to_owned(),
        };
        let issue = |issuer: &str, license_type: &str, fields: &[(&str, &str)]| NewLicense {
            holder: id.clone(),
            holder_name: name.to_owned(),
            license_type: license_type.into(),
            issuing_region: format!("{issuer}0000"),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            valid_from: "2020-05-20".into(),
            valid_until: None,
        };
        let home = id.home_region().as_str().to_owned();
        for (issuer, license) in [
            ("44", issue("44", "resident_id_card", &[])),
            (
                "44",
                issue("44", "household_register", &[("registered_region", &home)]),
            ),
            (
                "11",
                issue(
                    "11",
                    "marriage_certificate",
                    &[("registration_region", "110000")],
                ),
            ),
        ] {
            let node = t.fed.node(issuer).unwrap();
            let key = node.store.id_hash_key().await.unwrap();
            node.platform
                .issue_license(license, key.into())
                .await
                .unwrap();
        }
        let mc = license_of(&t, "11", id.as_str(), "marriage_certificate").await;
        let r = n31
            .portal
            .file(&household_transfer(&resident, &mc))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        // The name went all the way: the home region confirmed it.
        assert_eq!(r.body["identity"]["outcome"], "recognized", "{}", r.body);
        approved(&t, "31", r.body["case_number"].as_str().unwrap()).await;
        used.push(id.as_str().to_owned());
        names.push(name.to_owned());
    }
    // A wrong (and as distinctive) name, refused by the home region through the gateway.
    let wrong = "慕容琇璟";
    let mut gateway = gateway_as(&t, "31").await;
    let v = gateway
        .verify_identity(VerifyIdentityRequest {
            id_number: used[3].clone(),
            name: wrong.into(),
            purpose: purpose("household-transfer"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.reason, VerdictReason::NameMismatch as i32, "{v:?}");
    names.push(wrong.to_owned());
    t.fed.stop(&Member::Gateway(0)).await.unwrap();
    let mut lines = 0;
    for entry in std::fs::read_dir(t.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        lines += text.lines().count();
        for id in &used {
            assert!(
                !text.contains(id.as_str()),
                "{} holds an ID number",
                path.display()
            );
        }
        // Nor a name, whole or its given name (the surname alone is what masked names
        // show).
        for name in &names {
            let given: String = name.chars().skip(2).collect();
            for needle in [name.as_str(), given.as_str()] {
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    panic!("{} holds a name ({needle}): {line}", path.display());
                }
            }
        }
        // Nor any other 18-character number that reads as an ID number.
        for token in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if token.len() == 18
                && tongban_proto::rules::resident_id::ResidentId::parse(
                    token,
                    tongban_proto::rules::region::RegionTable::embedded(),
                    tongban_proto::rules::calendar::business_now().date(),
                )
                .is_ok()
            {
                panic!("{} holds an ID number", path.display());
            }
        }
    }
    assert!(lines > 50, "the members logged at debug ({lines} lines)");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_without_the_applicants_request_is_refused_and_nothing_is_asked() {
    let t = start(&["310000", "440000"]).await;
    let person = t.residents("44")[3].clone();
    let mut client = gateway_as(&t, "31").await;
    let without = |request: Option<tongban_proto::v1::ApplicantRequest>| {
        Some(LookupPurpose {
            applicant_request: request,
            ..purpose("household-transfer").unwrap()
        })
    };
    let odd = tongban_proto::rules::consent::request("email", 1_780_000_000_000);
    for (request, expected) in [
        (None, "required: the applicant's explicit request"),
        (Some(odd), "channel must be one of portal, window, notice"),
    ] {
        let identity = client
            .verify_identity(VerifyIdentityRequest {
                id_number: person.id.as_str().into(),
                name: person.name.clone(),
                purpose: without(request.clone()),
            })
            .await
            .unwrap_err();
        let list = client
            .list_licenses(tongban_proto::v1::ListLicensesRequest {
                holder_id_number: person.id.as_str().into(),
                purpose: without(request.clone()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        let license = client
            .lookup_license(LookupLicenseRequest {
                license_id: "440000-HR-0000001".into(),
                license_type: String::new(),
                purpose: without(request),
                material_id: "household_register".into(),
                holder_id_number: person.id.as_str().into(),
            })
            .await
            .unwrap_err();
        for refused in [identity, list, license] {
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
            let message = refused.message();
            assert!(
                message.contains("`purpose.applicant_request`"),
                "{refused:?}"
            );
            assert!(message.contains(expected), "{refused:?}");
        }
    }
    // Nothing was asked of 44: the person's log is empty.
    let node = t.fed.node("44").unwrap();
    let log = node
        .access_log(person.id.as_str(), &person.name)
        .await
        .unwrap();
    assert_eq!(log.body["entries"], json!([]), "{}", log.body);
    t.shutdown().await;
}
