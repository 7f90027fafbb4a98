//! Revocations against cached answers, through the lookups' whole path: a stand-in
//! issuer over mutual TLS (`crate::test_support::issuer`) and, for the shared log, a
//! real PostgreSQL (`crate::test_support::postgres`).

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use prometheus_client::registry::Registry;
use tongban_proto::{
    rules::region::RegionPrefix,
    v1::{
        LicenseVerdict, ListLicensesRequest, ListLicensesResponse, LookupLicenseRequest,
        LookupPurpose, PublishRevocationRequest, PublishRevocationResponse, VerdictOutcome,
        VerdictSource,
    },
};
use tongban_runtime::{
    process::shutdown::Shutdown, serving::incoming::PeerInfo, trust::identity::PeerIdentity,
};

use super::{footprint::Charges, lookup::Ctx, revocation_log::RevocationLog, *};
use crate::{
    audit::CallAudit,
    call::{Body, Call},
    config::RecognitionSettings,
    error::GatewayError,
    message::Message,
    test_support::{
        issuer::{HOLDER, LICENSE_TYPE, ONE_THING, StandInIssuer},
        postgres::TestDatabase,
    },
};

const H1: &str = "440000-H1";
const H2: &str = "440000-H2";

fn ctx(caller: &str) -> Ctx<'static> {
    Ctx {
        caller: RegionPrefix::parse(caller).unwrap(),
        traceparent: None,
        deadline: Duration::from_secs(5),
        charges: Charges::none(),
    }
}

/// The audit of a call that is not recorded anywhere.
fn audit() -> CallAudit {
    let (parts, ()) = http::Request::new(()).into_parts();
    let peer = Arc::new(PeerInfo {
        remote_addr: ([127, 0, 0, 1], 1).into(),
        identity: PeerIdentity::Gateway,
    });
    CallAudit::start(
        &Call::from_request(parts, Body::Whole(Message::default()), peer),
        None,
        false,
    )
}

fn purpose() -> Option<LookupPurpose> {
    Some(LookupPurpose {
        applicant_request: Some(tongban_proto::rules::consent::request(
            "portal",
            1_780_000_000_000,
        )),
        one_thing_id: ONE_THING.into(),
        case_number: String::new(),
    })
}

/// The holder's list at their home region (44), asked by region 31.
async fn list(replica: &Recognition) -> ListLicensesResponse {
    let request = ListLicensesRequest {
        holder_id_number: HOLDER.into(),
        issuing_region: String::new(),
        purpose: purpose(),
    };
    replica
        .list_licenses(request, &ctx("31"), &mut audit())
        .await
        .unwrap()
}

/// One license of the holder, asked by region 31.
async fn lookup(replica: &Recognition, license_id: &str) -> LicenseVerdict {
    let request = LookupLicenseRequest {
        license_id: license_id.into(),
        license_type: String::new(),
        purpose: purpose(),
        material_id: LICENSE_TYPE.into(),
        holder_id_number: HOLDER.into(),
    };
    replica
        .lookup_license(request, &ctx("31"), &mut audit())
        .await
        .unwrap()
}

/// Region 44 revokes `license_id` at `replica`.
async fn revoke(
    replica: &Recognition,
    license_id: &str,
) -> Result<PublishRevocationResponse, GatewayError> {
    let request = PublishRevocationRequest {
        license_id: license_id.into(),
        reason: "annulled".into(),
        revoked_at: None,
    };
    // The signature is the service's check (`check_signature`), tested with processes.
    replica
        .revoke(request, &ctx("44"), &mut audit(), || Ok(()))
        .await
}

/// The outcome the list gives `license_id`.
fn outcome_of(list: &ListLicensesResponse, license_id: &str) -> VerdictOutcome {
    let verdict = list
        .licenses
        .iter()
        .find(|v| v.license_id == license_id)
        .unwrap_or_else(|| panic!("{license_id} not in {list:?}"));
    VerdictOutcome::try_from(verdict.outcome).unwrap()
}

async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cached_holder_list_answers_revoked_after_a_revocation() {
    let issuer = StandInIssuer::start(&[H1, H2]).await;
    let replica = issuer.replica(&mut Registry::default());
    let first = list(&replica).await;
    assert_eq!(first.source, VerdictSource::Issuer as i32, "{first:?}");
    assert_eq!(outcome_of(&first, H1), VerdictOutcome::Recognized);
    let cached = list(&replica).await;
    assert_eq!(cached.source, VerdictSource::Cache as i32);
    assert_eq!(issuer.calls(), 1);

    let revoked = revoke(&replica, H1).await.unwrap();
    assert!(revoked.applied);
    assert_eq!(revoked.log_sequence, 0, "no shared log configured");
    let after = list(&replica).await;
    assert_eq!(outcome_of(&after, H1), VerdictOutcome::Revoked, "{after:?}");
    assert_eq!(outcome_of(&after, H2), VerdictOutcome::Recognized);
    // The list that held H1 was dropped, not merely overruled: it was asked again.
    assert_eq!(after.source, VerdictSource::Issuer as i32);
    assert_eq!(issuer.calls(), 2);
    // H1 alone, cached by the list: revoked too.
    let single = lookup(&replica, H1).await;
    assert_eq!(single.outcome, VerdictOutcome::Revoked as i32, "{single:?}");
    // A repeat changes nothing here.
    assert!(!revoke(&replica, H1).await.unwrap().applied);
}

#[tokio::test]
async fn a_holder_list_in_flight_when_the_revocation_arrives_answers_revoked() {
    let issuer = StandInIssuer::start(&[H1, H2]).await;
    let replica = Arc::new(issuer.replica(&mut Registry::default()));
    issuer.delay.send_replace(Duration::from_millis(600));
    let in_flight = tokio::spawn({
        let replica = replica.clone();
        async move { list(&replica).await }
    });
    eventually(
        Duration::from_secs(5),
        "the list reaches the issuer",
        || async { issuer.calls.load(Ordering::SeqCst) > 0 },
    )
    .await;
    revoke(&replica, H1).await.unwrap();
    // The issuer's (older) list arrives after the revocation: it must not count.
    let answered = in_flight.await.unwrap();
    assert_eq!(
        outcome_of(&answered, H1),
        VerdictOutcome::Revoked,
        "{answered:?}"
    );
    assert_eq!(outcome_of(&answered, H2), VerdictOutcome::Recognized);
    // That list was cached after the revocation dropped what held H1: still revoked.
    let cached = list(&replica).await;
    assert_eq!(cached.source, VerdictSource::Cache as i32);
    assert_eq!(outcome_of(&cached, H1), VerdictOutcome::Revoked);
    assert_eq!(issuer.calls(), 1);
}

#[tokio::test]
async fn a_grace_copy_is_not_answered_after_a_revocation() {
    let issuer = StandInIssuer::start(&[H1]).await;
    let settings = RecognitionSettings {
        max_ttl: Duration::from_millis(200),
        grace: BTreeMap::from([(LICENSE_TYPE.to_owned(), Duration::from_secs(3600))]),
        ..RecognitionSettings::default()
    };
    let replica = issuer.replica_with(settings, &mut Registry::default());
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Recognized as i32
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    issuer.down.store(true, Ordering::SeqCst);
    let graced = lookup(&replica, H1).await;
    assert_eq!(graced.source, VerdictSource::Grace as i32, "{graced:?}");
    assert_eq!(graced.outcome, VerdictOutcome::Recognized as i32);
    revoke(&replica, H1).await.unwrap();
    // The grace copy is gone and the issuer still down: the revocation is known.
    let after = lookup(&replica, H1).await;
    assert_eq!(after.outcome, VerdictOutcome::Revoked as i32, "{after:?}");
}

/// A known revocation needs no issuer: with it down, a license never looked up before
/// answers "revoked", not "cannot verify now" (another license of the same issuer
/// still cannot be verified).
#[tokio::test]
async fn a_known_revocation_is_answered_while_the_issuer_is_down() {
    let issuer = StandInIssuer::start(&[H1, H2]).await;
    let replica = issuer.replica(&mut Registry::default());
    revoke(&replica, H1).await.unwrap();
    issuer.down.store(true, Ordering::SeqCst);
    let revoked = lookup(&replica, H1).await;
    assert_eq!(
        revoked.outcome,
        VerdictOutcome::Revoked as i32,
        "{revoked:?}"
    );
    assert_eq!(revoked.license_id, H1);
    let unknown = lookup(&replica, H2).await;
    assert_eq!(
        unknown.outcome,
        VerdictOutcome::CannotVerifyNow as i32,
        "{unknown:?}"
    );
}

/// A replica that writes to, and follows, the log of `db`.
fn replica_with_log(
    issuer: &StandInIssuer,
    db: &TestDatabase,
    name: &str,
    stop: &Shutdown,
) -> (Arc<Recognition>, Arc<RevocationLog>) {
    let mut metrics = Registry::default();
    let settings = db.log_settings(name, Duration::from_millis(300));
    let log = Arc::new(RevocationLog::open(&settings, &mut metrics).unwrap());
    let replica = Arc::new(
        issuer
            .replica(&mut metrics)
            .with_revocation_log(log.clone()),
    );
    log.spawn_follower(replica.clone(), stop.signal());
    (replica, log)
}

#[tokio::test]
async fn a_revocation_published_at_one_replica_reaches_a_cached_holder_list_at_another() {
    let db = TestDatabase::create().await;
    let issuer = StandInIssuer::start(&[H1, H2]).await;
    let stop = Shutdown::new();
    let (a, log_a) = replica_with_log(&issuer, &db, "a", &stop);
    let (b, log_b) = replica_with_log(&issuer, &db, "b", &stop);
    for log in [&log_a, &log_b] {
        let ready = log.readiness();
        eventually(Duration::from_secs(20), "the log loaded", || {
            let ok = ready().is_ok();
            async move { ok }
        })
        .await;
    }
    let cached = list(&b).await;
    assert_eq!(outcome_of(&cached, H1), VerdictOutcome::Recognized);

    let published = revoke(&a, H1).await.unwrap();
    assert!(published.applied);
    assert_eq!(published.log_sequence, 1);
    eventually(Duration::from_secs(3), "b answers H1 revoked", || async {
        outcome_of(&list(&b).await, H1) == VerdictOutcome::Revoked
    })
    .await;
    assert_eq!(outcome_of(&list(&b).await, H2), VerdictOutcome::Recognized);
    assert_eq!(log_b.last_applied(), 1);
    // The node publishes to every replica it lists: the same place in the log, and
    // nothing new at b, which had it from the log.
    let repeated = revoke(&b, H1).await.unwrap();
    assert_eq!((repeated.log_sequence, repeated.applied), (1, false));
    stop.trigger();
}

#[tokio::test]
async fn a_revocation_the_log_cannot_take_is_refused_and_not_applied() {
    let issuer = StandInIssuer::start(&[H1]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = crate::config::RevocationLogSettings::new(format!(
        "postgres://postgres@127.0.0.1:{closed}/tongban"
    ));
    settings.database.pool.acquire_timeout = Duration::from_millis(300);
    let mut metrics = Registry::default();
    let log = Arc::new(RevocationLog::open(&settings, &mut metrics).unwrap());
    let replica = issuer
        .replica(&mut metrics)
        .with_revocation_log(log.clone());
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Recognized as i32
    );
    let refused = revoke(&replica, H1).await.unwrap_err();
    assert!(
        matches!(refused, GatewayError::RevocationLogUnavailable(_)),
        "{refused}"
    );
    let status = refused.to_status();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(!status.message().contains("127.0.0.1"), "{status:?}");
    // Not acknowledged, so not applied: this replica still agrees with the others.
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Recognized as i32
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).unwrap();
    assert!(
        text.contains("tongban_gateway_revocation_log_append_failures_total 1"),
        "{text}"
    );
}

/// A row of the shared log: `license_id` published by region 44 `ago`.
fn logged(license_id: &str, ago: Duration) -> revocation_log::Logged {
    let published = std::time::SystemTime::now() - ago;
    revocation_log::Logged {
        seq: 1,
        license_id: license_id.into(),
        issuer: "440000".into(),
        published_by: "spiffe://tongban/region/44".into(),
        published_ms: published
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    }
}

#[tokio::test]
async fn a_member_at_its_ceiling_is_refused_and_the_logs_revocations_are_still_applied() {
    use revocation_log::ApplyRevocations;
    use tongban_proto::contract::retry::{self, Retry};

    let issuer = StandInIssuer::start(&[H1]).await;
    let mut settings = RecognitionSettings::default();
    settings.revocations.max_per_issuer = 2;
    let replica = issuer.replica_with(settings, &mut Registry::default());
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Recognized as i32
    );
    assert!(revoke(&replica, "440000-X1").await.unwrap().applied);
    assert!(revoke(&replica, "440000-X2").await.unwrap().applied);
    let refused = revoke(&replica, H1).await.unwrap_err();
    let status = refused.to_status();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(Retry::of(&status), Retry::Transient);
    assert_eq!(retry::pushback(&status), Some(Duration::from_secs(60)));
    assert!(status.message().contains("max_per_issuer"), "{status:?}");
    // Not applied: H1 is still recognized from the cache.
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Recognized as i32
    );
    // A repeat of one remembered takes nothing and is never refused.
    assert!(!revoke(&replica, "440000-X1").await.unwrap().applied);
    // Another replica accepted H1's revocation: applied here past the ceiling, counted.
    assert_eq!(
        replica.apply(&[logged(H1, Duration::from_secs(60))]).await,
        1
    );
    assert_eq!(
        lookup(&replica, H1).await.outcome,
        VerdictOutcome::Revoked as i32
    );
    let prefix = RegionPrefix::parse("44").unwrap();
    assert_eq!(replica.revoked.remembered(&prefix), 3);
    // A row published longer ago than revocations are remembered is not loaded.
    let old = logged("440000-X3", Duration::from_secs(8 * 24 * 3600));
    assert_eq!(replica.apply(&[old]).await, 0);
    assert_eq!(replica.revoked.remembered(&prefix), 3);
}
