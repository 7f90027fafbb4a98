//! A federation per test: N regions, a fresh PKI, M gateway replicas, in this process
//! or as real child processes ([`start_with`] and [`FederationSpec`]), in a temporary
//! folder that goes with it.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tongban_node::platform::embedded::{SyntheticResident, synthetic_residents};
use tongban_proto::rules::region::{RegionPrefix, RegionTable};
use tongban_runtime::trust::{identity::PeerIdentity, tls::TlsFiles};

use crate::{
    config::pki::tls_files,
    federation::LocalFederation,
    spec::{FederationSpec, Launch},
    testing::{
        peers::region_channel,
        signing::{RegionSigner, SigningChannel},
    },
};

/// A running federation and the folder it lives in (removed on drop).
pub struct TestFederation {
    pub fed: LocalFederation,
    pub dir: TempDir,
}

/// The folder the test binary's sibling binaries are in: the test binary runs from
/// target/<profile>/deps, the binaries are one folder up.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_owned()
}

/// Members as real child processes: the project's own `tongban-gateway` and
/// `tongban-node`, which `cargo test --workspace` builds beside the test binaries.
/// `log` is their `RUST_LOG`; their output goes to `<member>.log` in the federation's
/// folder.
///
/// `TONGBAN_TEST_BIN_DIR` points at other binaries, e.g. `<target>/release` to see a fault
/// test's latencies with optimized members (the suite's figures are debug builds).
pub fn processes(log: &str) -> Launch {
    let bin_dir = match std::env::var_os("TONGBAN_TEST_BIN_DIR") {
        Some(dir) => dir.into(),
        None => target_dir(),
    };
    Launch::Processes {
        bin_dir,
        log: log.to_owned(),
    }
}

/// The operator CLI `tongban`, which `cargo test --workspace` builds beside the test
/// binaries.
pub fn cli_binary() -> PathBuf {
    target_dir().join("tongban")
}

/// Starts a gateway and one node per region code with real mTLS on 127.0.0.1.
pub async fn start(regions: &[&str]) -> TestFederation {
    start_with(regions, |_| {}).await
}

/// Like [`start`], after `adjust` has changed the spec (its folder is already set).
pub async fn start_with(
    regions: &[&str],
    adjust: impl FnOnce(&mut FederationSpec),
) -> TestFederation {
    tongban_runtime::trust::tls::install_crypto_provider();
    // One subscriber per process, shared by every test in it; the guard lives as long
    // as the test binary, so log lines are never cut off.
    static LOG: std::sync::OnceLock<tongban_runtime::observability::logs::LogGuard> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| tongban_runtime::observability::logs::init("warn"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = FederationSpec::new(dir.path(), regions).expect("spec");
    adjust(&mut spec);
    let fed = LocalFederation::start(spec)
        .await
        .expect("federation starts");
    TestFederation { fed, dir }
}

impl TestFederation {
    /// Certificate files of an identity issued by the federation's CA.
    pub fn tls_files(&self, identity: &PeerIdentity) -> TlsFiles {
        tls_files(&self.dir.path().join("pki"), identity)
    }

    /// A channel to the gateway presenting `files`' certificate; what it sends for a
    /// region (deliveries, status pushes, revocations) is signed with that region's
    /// issuer key, as its node signs it.
    pub async fn gateway_channel(
        &self,
        files: &TlsFiles,
    ) -> Result<SigningChannel, tonic::transport::Error> {
        region_channel(
            &format!("https://{}", self.fed.gateway().federation_addr),
            files,
            &PeerIdentity::Gateway,
            &self.pki(),
        )
        .await
    }

    /// Region `prefix`'s signer, as its node signs (its first issuer key).
    pub fn signer(&self, prefix: &str) -> RegionSigner {
        let prefix = RegionPrefix::parse(prefix).expect("prefix");
        RegionSigner::of(&self.pki(), prefix).expect("the region has an issuer key")
    }

    /// The federation's PKI folder.
    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Synthetic residents of a region, as seeded into its platform.
    pub fn residents(&self, prefix: &str) -> Vec<SyntheticResident> {
        let prefix = RegionPrefix::parse(prefix).expect("prefix");
        synthetic_residents(
            RegionTable::embedded(),
            &prefix,
            self.fed.spec().seed_residents,
        )
    }

    pub async fn shutdown(self) {
        self.fed.shutdown().await;
    }
}
