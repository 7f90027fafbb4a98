//! `tongban certs`: a dev CA and leaves whose identities the federation accepts.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use rustls::pki_types::{CertificateDer, pem::PemObject};
use tongban_runtime::trust::identity::PeerIdentity;

#[test]
fn certs_issues_identities_and_reuses_its_ca() {
    let dir = std::env::temp_dir().join(format!("tongban-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["certs", "--regions", "11,4403", "--days", "7", "--out"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created CA"));
    for (stem, uri) in [
        ("gateway", "spiffe://tongban/gateway"),
        ("region-11", "spiffe://tongban/region/11"),
        ("region-4403", "spiffe://tongban/region/4403"),
    ] {
        let der = CertificateDer::from_pem_file(dir.join(format!("{stem}.pem"))).unwrap();
        assert_eq!(PeerIdentity::from_certificate(&der).unwrap().uri(), uri);
        assert!(dir.join(format!("{stem}.key")).exists());
    }
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("reusing CA"));
    assert_eq!(
        std::fs::read(dir.join("ca.pem")).unwrap(),
        ca,
        "the CA must be kept"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["certs", "--regions", "4x", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--regions"));
}
