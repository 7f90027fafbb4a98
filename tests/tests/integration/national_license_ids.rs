//! License ids in the national format (GB/T 36904) through a real gateway: the two
//! public samples are routed to the issuers their credit codes name, Hunan (43) and
//! Jilin (22), whose nodes answer for them (their registers hold no such license, so
//! "not found", answered by that issuer); a sample with a wrong check character is refused at
//! the gateway naming the segment, before any region is asked; the legacy short form
//! is routed as before.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use tongban_kit::testing::start;
use tongban_proto::v1::{LookupLicenseRequest, VerdictOutcome, VerdictSource};
use tonic::Code;

use super::recognition::{client_at, purpose};

const HUNAN: &str = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U";
const JILIN: &str = "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F";

fn asking(license_id: &str, holder: &str) -> LookupLicenseRequest {
    LookupLicenseRequest {
        license_id: license_id.into(),
        license_type: String::new(),
        purpose: purpose("household-transfer"),
        material_id: "household_register".into(),
        holder_id_number: holder.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_ids_are_routed_to_the_issuer_their_credit_code_names() {
    let t = start(&["310000", "430000", "220000"]).await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let mut gateway = client_at(&t, &url, "31").await;
    let holder = t.residents("43")[0].id.as_str().to_owned();

    for (id, issuer) in [(HUNAN, "430000"), (JILIN, "220000")] {
        let verdict = gateway.lookup_license(asking(id, &holder)).await.unwrap();
        let verdict = verdict.into_inner();
        assert_eq!(verdict.issuing_region, issuer, "{verdict:?}");
        assert_eq!(
            verdict.outcome,
            VerdictOutcome::NotFound as i32,
            "{verdict:?}"
        ); // Answered by that issuer's node, not made up at the gateway.
        assert_eq!(verdict.source, VerdictSource::Issuer as i32, "{verdict:?}");
        assert!(
            verdict.detail.contains(&format!("region {}", &issuer[..2])),
            "{verdict:?}"
        );
    }
    let refused = gateway
        .lookup_license(asking(&HUNAN.replace(".U", ".A"), &holder))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("segment `check`"),
        "{}",
        refused.message()
    );

    let legacy = gateway
        .lookup_license(asking("430102-HR-0000001", &holder))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(legacy.issuing_region, "430102", "{legacy:?}");
    assert!(legacy.detail.contains("region 43"), "{legacy:?}");
    t.shutdown().await;
}
