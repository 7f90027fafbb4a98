//! A stand-in issuing node for region 44 behind real mutual TLS, and recognition
//! services ("replicas") whose registry routes 44 to it: lookups run their whole path
//! (route, cache, issuer call, signature check, verdict) without a federation.
//!
//! Its licenses are one holder's, signed as the real issuer signs them
//! (`node/src/issuer.rs`); it counts the calls it gets and can be slowed, so a test
//! can tell a cached answer from a fetched one and hold a lookup in flight.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use prost::Message;
use tokio::sync::watch;
use tongban_proto::{
    rules::{
        catalog::Catalog,
        credentials::{self, SignedKind, SigningKey},
        region::{RegionPrefix, RegionTable},
    },
    v1::{self, License, LicenseStatus, node_server::NodeServer},
};
use tongban_runtime::{
    process::shutdown::Shutdown,
    serving::{handshakes::DEFAULT_MAX_HANDSHAKES, incoming::authenticated_incoming},
    trust::{
        identity::PeerIdentity,
        pki::{self, DevCa},
        tls::{ClientSettings, TlsFiles},
    },
};
use tonic::{Request, Response, Status};

use crate::{
    config::RecognitionSettings,
    recognition::Recognition,
    registry::{IssuerKeyEntry, RegionEntry, Registry, RegistryFile, SharedRegistry},
};

/// A valid resident ID number of Guangdong (44), the stand-in's one holder.
pub const HOLDER: &str = "440524188001010014";
/// The license type its licenses are: one the embedded catalog accepts for
/// [`ONE_THING`].
pub const LICENSE_TYPE: &str = "household_register";
pub const ONE_THING: &str = "household-transfer";

/// The node side: what it signs and what it counts.
struct Issuer {
    key: SigningKey,
    licenses: Vec<String>,
    calls: Arc<AtomicUsize>,
    delay: watch::Receiver<Duration>,
    down: Arc<AtomicBool>,
}

impl Issuer {
    /// License `id`, signed, for a requester who named `asked` as its holder.
    fn signed(&self, id: &str, asked: &str) -> v1::SignedObject {
        let salt = credentials::new_salt();
        let license = License {
            license_id: id.to_owned(),
            license_type: LICENSE_TYPE.to_owned(),
            issuing_region: "440000".to_owned(),
            holder: credentials::subject_hash(&salt, asked),
            holder_salt: salt.to_vec(),
            valid_from: "2020-01-01".to_owned(),
            status: LicenseStatus::Valid as i32,
            issued_at: Some(credentials::timestamp(SystemTime::now())),
            ..Default::default()
        };
        self.key.sign(SignedKind::License, license.encode_to_vec())
    }

    /// Counts the call and waits the delay; UNAVAILABLE while down.
    async fn answer_slowly(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.borrow();
        tokio::time::sleep(delay).await;
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("stand-in issuer: register offline"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl v1::node_server::Node for Issuer {
    async fn deliver_application(
        &self,
        _: Request<v1::DeliverApplicationRequest>,
    ) -> Result<Response<v1::DeliverApplicationResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn query_status(
        &self,
        _: Request<v1::QueryStatusRequest>,
    ) -> Result<Response<v1::QueryStatusResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn push_status(
        &self,
        _: Request<v1::PushStatusRequest>,
    ) -> Result<Response<v1::PushStatusResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn submit_evaluation(
        &self,
        _: Request<v1::SubmitEvaluationRequest>,
    ) -> Result<Response<v1::SubmitEvaluationResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn raise_dispute(
        &self,
        _: Request<v1::RaiseDisputeRequest>,
    ) -> Result<Response<v1::RaiseDisputeResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn settle_dispute(
        &self,
        _: Request<v1::SettleDisputeRequest>,
    ) -> Result<Response<v1::SettleDisputeResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn assert_identity(
        &self,
        _: Request<v1::AssertIdentityRequest>,
    ) -> Result<Response<v1::AssertIdentityResponse>, Status> {
        Err(Status::unimplemented("stand-in issuer"))
    }
    async fn fetch_license(
        &self,
        request: Request<v1::FetchLicenseRequest>,
    ) -> Result<Response<v1::FetchLicenseResponse>, Status> {
        self.answer_slowly().await?;
        let r = request.into_inner();
        let license = self
            .licenses
            .contains(&r.license_id)
            .then(|| self.signed(&r.license_id, &r.holder_id_number));
        Ok(Response::new(v1::FetchLicenseResponse { license }))
    }
    async fn record_accesses(
        &self,
        request: Request<v1::RecordAccessesRequest>,
    ) -> Result<Response<v1::RecordAccessesResponse>, Status> {
        // Stand-in: the reports are taken, as a node records them.
        let recorded = u32::try_from(request.get_ref().reports.len()).unwrap_or(u32::MAX);
        Ok(Response::new(v1::RecordAccessesResponse { recorded }))
    }
    async fn fetch_holder_licenses(
        &self,
        request: Request<v1::FetchHolderLicensesRequest>,
    ) -> Result<Response<v1::FetchHolderLicensesResponse>, Status> {
        self.answer_slowly().await?;
        let r = request.into_inner();
        let licenses = if r.holder_id_number == HOLDER {
            self.licenses
                .iter()
                .map(|id| self.signed(id, HOLDER))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(v1::FetchHolderLicensesResponse { licenses }))
    }
}

/// The running stand-in and the registry that routes region 44 to it.
pub struct StandInIssuer {
    /// Calls it answered (license and holder-list fetches).
    pub calls: Arc<AtomicUsize>,
    /// How long it takes to answer.
    pub delay: watch::Sender<Duration>,
    /// While set, it answers UNAVAILABLE.
    pub down: Arc<AtomicBool>,
    registry: SharedRegistry,
    dir: PathBuf,
    stop: Shutdown,
}

impl StandInIssuer {
    /// Starts a stand-in issuing `licenses` (ids under 440000) to [`HOLDER`].
    pub async fn start(licenses: &[&str]) -> Self {
        tongban_runtime::trust::tls::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!(
            "tongban-gateway-issuer-{}-{}",
            std::process::id(),
            crate::test_support::unique_number()
        ));
        let ca = DevCa::generate("stand-in test CA").unwrap();
        ca.write(&dir).unwrap();
        let files = |identity: &PeerIdentity| {
            let leaf = ca.issue(identity, Duration::from_secs(3600)).unwrap();
            let (cert, key) = pki::write_leaf(&dir, identity, &leaf).unwrap();
            TlsFiles {
                ca: dir.join("ca.pem"),
                cert,
                key,
                crl: Some(dir.join("crl.pem")),
            }
        };
        let node_tls = files(&PeerIdentity::Region(RegionPrefix::parse("44").unwrap()));
        let gateway_tls = files(&PeerIdentity::Gateway);

        let key = SigningKey::from_pkcs8("44-k1", &SigningKey::generate_pkcs8().unwrap()).unwrap();
        let public_key = tongban_proto::rules::digest::hex(&key.public_key());
        let calls = Arc::new(AtomicUsize::new(0));
        let (delay, delay_rx) = watch::channel(Duration::ZERO);
        let down = Arc::new(AtomicBool::new(false));
        let issuer = Issuer {
            key,
            licenses: licenses.iter().map(|id| (*id).to_owned()).collect(),
            calls: calls.clone(),
            delay: delay_rx,
            down: down.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tls_tx, tls_rx) = watch::channel(node_tls.server_config().unwrap());
        let incoming = authenticated_incoming(
            listener,
            tls_rx,
            watch::channel(Default::default()).1,
            Duration::from_secs(5),
            DEFAULT_MAX_HANDSHAKES,
        );
        let stop = Shutdown::new();
        let stopped = stop.signal();
        tokio::spawn(async move {
            let _keep = tls_tx;
            tonic::transport::Server::builder()
                .add_service(NodeServer::new(issuer))
                .serve_with_incoming_shutdown(incoming, stopped.wait())
                .await
        });

        let now = SystemTime::now();
        let file = RegistryFile {
            regions: vec![RegionEntry {
                prefix: "44".into(),
                endpoints: vec![format!("https://{addr}")],
                identity: None,
                issuer_keys: vec![IssuerKeyEntry {
                    id: "44-k1".into(),
                    ed25519_public_key: Some(public_key),
                    ed25519_public_key_file: None,
                    not_before: now - Duration::from_secs(3600),
                    not_after: now + Duration::from_secs(3600),
                }],
            }],
        };
        let registry = Registry::build(
            &file,
            &dir.join("registry.toml"),
            &gateway_tls,
            &ClientSettings::default(),
            None,
        )
        .unwrap();
        Self {
            calls,
            delay,
            down,
            registry: SharedRegistry::new(registry),
            dir,
            stop,
        }
    }

    /// A recognition service (one gateway replica) that asks this issuer.
    pub fn replica(&self, metrics: &mut prometheus_client::registry::Registry) -> Recognition {
        self.replica_with(RecognitionSettings::default(), metrics)
    }

    /// A replica with `settings`.
    pub fn replica_with(
        &self,
        settings: RecognitionSettings,
        metrics: &mut prometheus_client::registry::Registry,
    ) -> Recognition {
        Recognition::new(
            self.registry.clone(),
            RegionTable::embedded(),
            Arc::new(crate::catalog::CatalogSource::fixed(Catalog::embedded())),
            settings,
            &[7u8; 32],
            metrics,
        )
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for StandInIssuer {
    fn drop(&mut self) {
        self.stop.trigger();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
