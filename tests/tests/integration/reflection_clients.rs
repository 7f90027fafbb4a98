//! Reflection as other people's tools speak it: Python's grpcio-reflection client (v1alpha
//! only, as older grpcurl) lists exactly the services each port serves, gateway and
//! node, over mutual TLS, and resolves each one's descriptor.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use tongban_kit::testing::{TestFederation, start};
use tongban_runtime::trust::identity::PeerIdentity;

/// The virtualenv scripts/test-tools makes (or `TONGBAN_TOOLS_DIR`).
fn python() -> std::path::PathBuf {
    let tools =
        std::env::var("TONGBAN_TOOLS_DIR").unwrap_or_else(|_| "/var/tmp/tongban-tools".into());
    let python = Path::new(&tools).join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test-tools (scripts/test runs it)",
        python.display()
    );
    python
}

fn list(
    t: &TestFederation,
    addr: std::net::SocketAddr,
    me: &PeerIdentity,
    server: &PeerIdentity,
) -> Vec<String> {
    let files = t.tls_files(me);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reflection/list_services.py");
    let out = Command::new(python())
        .arg(script)
        .arg(addr.to_string())
        .arg(&files.ca)
        .arg(&files.cert)
        .arg(&files.key)
        .arg(server.dns_name())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut services: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_reflection_lists_the_services_of_every_port() {
    let t = start(&["310000", "440000"]).await;
    let node = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    let gateway = list(
        &t,
        t.fed.gateway().federation_addr,
        &node,
        &PeerIdentity::Gateway,
    );
    assert_eq!(
        gateway,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "tongban.federation.v1.Catalog",
            "tongban.federation.v1.Gateway",
        ]
    );
    for prefix in ["31", "44"] {
        let addr = t.fed.node(prefix).unwrap().federation_addr;
        let id = PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap();
        let services = list(&t, addr, &PeerIdentity::Gateway, &id);
        assert_eq!(
            services,
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                "tongban.federation.v1.Node",
            ],
            "node {prefix}"
        );
    }
    t.shutdown().await;
}
