//! What every backend must do alike: each check below runs once on SQLite and once on
//! PostgreSQL (`on_both_backends!`). "Replicas" are two handles of one store: on
//! PostgreSQL two pools with their own replica names, as two node processes hold them;
//! on SQLite, whose store one process holds, two clones of one handle.
//! PostgreSQL's own checks (leases, pruning by one replica, replicas starting at once)
//! are in `postgres::tests`.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use tongban_proto::{
    contract::retry::Retry,
    v1::{Application, CaseStatus, PushStatusRequest, Stage},
};
use tongban_runtime::postgres::config::PostgresConfig;

use super::{
    DeadLetterAction, Filed, NewFiling, OutboxEntry, OutboxKind, StatusReport, Store, StoreError,
    filing::PENDING_DETAIL, now_ms, outbox::HELD_DETAIL, postgres::test_server,
};

/// A store to test, on one backend.
pub(super) enum Fixture {
    Sqlite { dir: PathBuf, store: Store },
    Postgres(PostgresConfig),
}

impl Fixture {
    fn sqlite(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tongban-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("node.sqlite")).unwrap();
        Self::Sqlite { dir, store }
    }

    async fn postgres(name: &str) -> Self {
        Self::Postgres(test_server::fresh_database(name).await)
    }

    /// A handle of the store as replica `name` sees it.
    async fn replica(&self, name: &str) -> Store {
        match self {
            Self::Sqlite { store, .. } => store.clone(),
            Self::Postgres(config) => Store::open_postgres(config, name, Duration::from_secs(30))
                .await
                .unwrap(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Self::Sqlite { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs each named check (an `async fn(Fixture)`) on SQLite and on PostgreSQL, as the
/// tests `<check>::sqlite` and `<check>::postgres`.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$check(super::Fixture::sqlite(stringify!($check))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$check(super::Fixture::postgres(stringify!($check)).await).await;
            }
        }
    )*};
}

on_both_backends!(
    filing_replays_a_retry_and_refuses_a_reused_key,
    one_client_request_at_two_replicas_is_filed_once,
    case_numbers_stay_unique_across_replicas,
    due_entries_are_shared_by_target_and_skip_those_in_flight,
    a_waiting_case_is_handed_over_once_verified,
    dead_letters_are_replayed_or_closed,
    settled_entries_leave_the_queue_and_old_ones_are_pruned,
    settings_keys_and_lookups_are_kept,
    statuses_apply_only_when_newer,
    signed_messages_are_kept_once_per_call,
    open_cases_are_read_with_their_promises,
    evaluations_are_kept_once_per_case,
    joint_parts_are_handed_over_in_order,
    disputes_are_numbered_kept_and_settled_once,
);

fn application(origin: &str, target: &str) -> Application {
    Application {
        one_thing_id: "newborn".into(),
        origin_region: origin.into(),
        target_region: target.into(),
        ..Application::default()
    }
}

fn filing(application: Application, client_key: Option<(&str, &str)>) -> NewFiling {
    NewFiling {
        application,
        pending_verification: false,
        applicant_hash: "hash".into(),
        applicant_masked: "4401**********0011".into(),
        forward: true,
        receipt: Box::new(|a: &Application| format!("{{\"case\":\"{}\"}}", a.case_number)),
        client_key: client_key.map(|(k, s)| (k.to_owned(), s.to_owned())),
        trace: None,
        joint: None,
    }
}

/// A status report for a case one region handles.
fn report(case: &str, status: CaseStatus) -> StatusReport {
    StatusReport {
        case_number: case.to_owned(),
        part: None,
        reference: None,
        status,
    }
}

/// Files a case that another region handles; its number.
async fn file_delivery(store: &Store) -> String {
    let filed = store
        .file(filing(application("310000", "440000"), None))
        .await
        .unwrap();
    filed.application.case_number
}

async fn push(store: &Store, case: String, target: &str) {
    let request = PushStatusRequest {
        case_number: case.clone(),
        handling_region: "310000".into(),
        status: None,
    };
    store
        .enqueue_push(case, target.to_owned(), "newborn".into(), request)
        .await
        .unwrap();
}

async fn detail(store: &Store, case: &str) -> (i32, String) {
    let record = store.application(case.to_owned()).await.unwrap().unwrap();
    (record.status.stage, record.status.detail)
}

async fn filing_replays_a_retry_and_refuses_a_reused_key(f: Fixture) {
    let store = f.replica("a").await;
    let first = store
        .file(filing(
            application("310000", "440000"),
            Some(("k1", "sha1")),
        ))
        .await
        .unwrap();
    let case = first.application.case_number.clone();
    assert!(!first.replayed);
    assert!(
        case.starts_with("310000-") && case.ends_with("-00000001"),
        "{case}"
    );
    assert_eq!(first.receipt, format!("{{\"case\":\"{case}\"}}"));

    let again = store
        .file(filing(
            application("310000", "440000"),
            Some(("k1", "sha1")),
        ))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.application.case_number, case);
    assert_eq!(again.receipt, first.receipt);
    let other = store
        .file(filing(
            application("310000", "440000"),
            Some(("k1", "sha2")),
        ))
        .await;
    assert!(matches!(other, Err(StoreError::KeyReused(k)) if k == "k1"));
    let replay = store
        .client_replay("k1".into(), "sha1".into())
        .await
        .unwrap();
    assert_eq!(
        replay.map(|f| f.application.case_number),
        Some(case.clone())
    );
    assert!(
        store
            .client_replay("k2".into(), "x".into())
            .await
            .unwrap()
            .is_none()
    );

    let record = store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(
        (record.status.stage, record.status.detail.as_str()),
        (Stage::Submitted as i32, "accepted at the filing region")
    );
    assert_eq!(
        (record.target_region.as_str(), record.status.sequence),
        ("440000", 0)
    );
    assert_eq!(store.pending_outbox().await.unwrap(), 1);
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].kind, due[0].idempotency_key.as_str()),
        (OutboxKind::Deliver, &*format!("deliver:{case}"))
    );
    assert_eq!(due[0].applicant_home.as_deref(), Some("44"));
    assert_eq!(due[0].filed_ms, record.created_ms);

    // Handled here: the hand-over goes to this node's platform.
    let mut local = filing(application("310000", "310000"), None);
    local.forward = false;
    let local = store.file(local).await.unwrap();
    assert!(local.application.case_number.ends_with("-00000002"));
    let due = store.due_outbox(8, vec![due[0].id]).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, OutboxKind::LocalSubmit);
}

/// Two replicas given one client request at once (a portal retrying through another
/// replica) file it once; each answers with that filing.
async fn one_client_request_at_two_replicas_is_filed_once(f: Fixture) {
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            store
                .file(filing(
                    application("310000", "440000"),
                    Some(("same", "sha")),
                ))
                .await
        });
    }
    let filed: Vec<Filed> = tasks
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let cases: BTreeSet<_> = filed
        .iter()
        .map(|f| f.application.case_number.clone())
        .collect();
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(filed.iter().filter(|f| !f.replayed).count(), 1);
    assert_eq!(a.pending_outbox().await.unwrap(), 1);
}

/// Case numbers reserved at two replicas at once are all different, and without gaps.
async fn case_numbers_stay_unique_across_replicas(f: Fixture) {
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let filed_at = Some(prost_types::Timestamp {
        seconds: 1_764_650_000,
        nanos: 0,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { store.reserve_case_number("310000".into(), filed_at).await });
    }
    let numbers: BTreeSet<String> = tasks
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(numbers.len(), 200);
    let expected: BTreeSet<String> = (1..=200)
        .map(|n| format!("310000-20251202-{n:08}"))
        .collect();
    assert_eq!(numbers, expected);
}

/// Due entries come at most `per_target` per target province, so a province with a
/// long backlog does not crowd out the others; entries in flight are left out.
async fn due_entries_are_shared_by_target_and_skip_those_in_flight(f: Fixture) {
    let store = f.replica("a").await;
    for i in 0..20 {
        push(&store, format!("440000-20261202-{i:08}"), "440000").await;
    }
    for i in 0..2 {
        push(&store, format!("110000-20261202-{i:08}"), "110000").await;
    }
    // Two cities of one province count as one target.
    push(&store, "440300-20261202-00000001".into(), "440300").await;
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    let to = |due: &[OutboxEntry], province: &str| {
        due.iter()
            .filter(|e| e.target_region.starts_with(province))
            .count()
    };
    assert_eq!((to(&due, "44"), to(&due, "11")), (8, 2));
    let ids: Vec<i64> = due.iter().map(|e| e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "oldest first");
    let next = store.due_outbox(8, ids.clone()).await.unwrap();
    assert_eq!((to(&next, "44"), to(&next, "11")), (8, 0));
    assert!(next.iter().all(|e| !ids.contains(&e.id)));
    assert!(next.iter().all(|e| e.kind == OutboxKind::PushStatus));
    // Entries handed back unattempted are due again at once.
    store.release_outbox(ids.clone()).await.unwrap();
    let busy: Vec<i64> = next.iter().map(|e| e.id).collect();
    let again = store.due_outbox(8, busy).await.unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
}

async fn a_waiting_case_is_handed_over_once_verified(f: Fixture) {
    let store = f.replica("a").await;
    let mut waiting = filing(application("310000", "440000"), None);
    waiting.pending_verification = true;
    let filed = store.file(waiting).await.unwrap();
    let case = filed.application.case_number.clone();
    assert_eq!(detail(&store, &case).await.1, PENDING_DETAIL);
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!((due.len(), due[0].kind), (1, OutboxKind::Verify));
    store
        .complete_verification(
            due[0].id,
            filed.application.clone(),
            "verified".into(),
            true,
            None,
        )
        .await
        .unwrap();
    let record = store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(
        (record.receipt.as_str(), record.status.detail.as_str()),
        ("verified", "accepted at the filing region")
    );
    let next = store.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].kind, next[0].idempotency_key.clone()),
        (OutboxKind::Deliver, format!("deliver:{case}"))
    );

    // A second waiting case refused after its wait.
    let mut refused = filing(application("310000", "440000"), None);
    refused.pending_verification = true;
    let refused = store.file(refused).await.unwrap().application.case_number;
    let due = store.due_outbox(8, vec![next[0].id]).await.unwrap();
    assert_eq!(due.len(), 1);
    store
        .refuse_after_verification(due[0].id, refused.clone(), "no such license".into())
        .await
        .unwrap();
    assert_eq!(
        detail(&store, &refused).await,
        (
            Stage::Rejected as i32,
            "not accepted at pre-review: no such license".to_owned()
        )
    );
    assert_eq!(
        store.pending_outbox().await.unwrap(),
        1,
        "only the first case's delivery"
    );
}

async fn dead_letters_are_replayed_or_closed(f: Fixture) {
    let store = f.replica("a").await;
    let case = file_delivery(&store).await;
    let id = store.due_outbox(8, Vec::new()).await.unwrap()[0].id;
    store
        .outbox_dead(id, "no such one-thing".into())
        .await
        .unwrap();
    assert_eq!(detail(&store, &case).await.1, HELD_DETAIL);
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].kind, dead[0].error.as_str()),
        (id, "deliver", "no such one-thing")
    );
    assert_eq!((dead[0].attempts, dead[0].replays), (1, 0));
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!((backlog[0].pending, backlog[0].dead), (0, 1));
    assert!(store.due_outbox(8, Vec::new()).await.unwrap().is_empty());

    assert_eq!(
        store.replay_dead_letter(id).await.unwrap(),
        DeadLetterAction::Done
    );
    assert_eq!(
        store.replay_dead_letter(id).await.unwrap(),
        DeadLetterAction::NotDead
    );
    assert_eq!(
        detail(&store, &case).await.1,
        "accepted here; delivery to the handling region resumed"
    );
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(
        due.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id],
        "due again at once"
    );

    store.outbox_dead(id, "still refused".into()).await.unwrap();
    assert_eq!(store.dead_letters(10).await.unwrap()[0].replays, 1);
    let closed = store
        .close_dead_letter(id, "wrong region chosen".into())
        .await
        .unwrap();
    assert_eq!(closed, DeadLetterAction::Done);
    assert_eq!(
        detail(&store, &case).await,
        (
            Stage::Rejected as i32,
            "closed by the filing region: wrong region chosen".to_owned()
        )
    );
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(
        store.close_dead_letter(id, "again".into()).await.unwrap(),
        DeadLetterAction::NotDead
    );
    assert_eq!(
        store.replay_dead_letter(id + 1000).await.unwrap(),
        DeadLetterAction::Unknown
    );
}

async fn settled_entries_leave_the_queue_and_old_ones_are_pruned(f: Fixture) {
    let store = f.replica("a").await;
    let case = file_delivery(&store).await;
    for i in 0..3 {
        push(&store, format!("110000-20261202-{i:08}"), "110000").await;
    }
    // Queuing one push twice keeps one entry.
    push(&store, "110000-20261202-00000000".into(), "110000").await;
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 4);
    let delivery = due.iter().find(|e| e.kind == OutboxKind::Deliver).unwrap();
    let answer = CaseStatus {
        stage: Stage::Accepted as i32,
        detail: "accepted by the handling region".into(),
        sequence: 1,
        updated_at: None,
    };
    store
        .outbox_done(
            delivery.id,
            Some(StatusReport {
                reference: Some("GD-1".into()),
                ..report(&case, answer)
            }),
        )
        .await
        .unwrap();
    let record = store.application(case).await.unwrap().unwrap();
    assert_eq!(record.handling_reference.as_deref(), Some("GD-1"));
    assert_eq!(
        (record.status.stage, record.status.sequence),
        (Stage::Accepted as i32, 1)
    );

    let pushes: Vec<i64> = due
        .iter()
        .filter(|e| e.kind == OutboxKind::PushStatus)
        .map(|e| e.id)
        .collect();
    store.outbox_done(pushes[0], None).await.unwrap();
    let later = now_ms() + 60_000;
    store
        .outbox_retry(pushes[1], later, "unavailable".into(), Retry::Transient)
        .await
        .unwrap();
    store
        .outbox_retry(
            pushes[2],
            later,
            "not registered".into(),
            Retry::Configuration,
        )
        .await
        .unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    let to_11 = backlog
        .iter()
        .find(|r| r.target_region == "110000")
        .unwrap();
    assert_eq!(
        (to_11.pending, to_11.failing, to_11.blocked, to_11.dead),
        (2, 2, 1, 0)
    );
    assert!(to_11.oldest_pending_ms > 0);
    assert_eq!(store.pending_outbox().await.unwrap(), 2);
    assert!(
        store.due_outbox(8, Vec::new()).await.unwrap().is_empty(),
        "retries wait"
    );

    store
        .remember_inbound(
            "44".into(),
            "key".into(),
            "440000-1".into(),
            "sha".into(),
            None,
            "31".into(),
            b"ok".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.prune(now_ms() - 60_000, 100).await.unwrap(),
        (0, 0),
        "too young"
    );
    assert_eq!(
        store.prune(now_ms() + 1, 1).await.unwrap(),
        (1, 1),
        "a batch at a time"
    );
    assert_eq!(store.prune(now_ms() + 1, 100).await.unwrap(), (1, 0));
    assert_eq!(
        store.pending_outbox().await.unwrap(),
        2,
        "pending entries are kept"
    );
}

async fn settings_keys_and_lookups_are_kept(f: Fixture) {
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let key = a.id_hash_key().await.unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(b.id_hash_key().await.unwrap(), key);
    assert_eq!(a.setting("catalog").await.unwrap(), None);
    a.set_setting("catalog", b"v1".to_vec()).await.unwrap();
    b.set_setting("catalog", b"v2".to_vec()).await.unwrap();
    assert_eq!(
        a.setting("catalog").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );

    assert!(a.inbound("44".into(), "k".into()).await.unwrap().is_none());
    for (store, answer) in [(&a, b"first".to_vec()), (&b, b"second".to_vec())] {
        store
            .remember_inbound(
                "44".into(),
                "k".into(),
                "440000-1".into(),
                "sha".into(),
                None,
                "31".into(),
                answer,
            )
            .await
            .unwrap();
    }
    let kept = b.inbound("44".into(), "k".into()).await.unwrap();
    assert_eq!(
        kept,
        Some(("440000-1".into(), "sha".into(), b"first".to_vec()))
    );

    let asked = super::AccessConsent {
        channel: "window".into(),
        requested_ms: 1_780_000_000_000,
    };
    for (kind, license) in [
        (super::AccessKind::Identity, None),
        (super::AccessKind::License, Some("L1".to_owned())),
    ] {
        a.record_access(super::NewAccess {
            holder_hash: "holder".into(),
            kind,
            license_id: license,
            requester_region: "440000".into(),
            one_thing_id: "newborn".into(),
            case_number: "c".into(),
            consent: Some(asked.clone()),
        })
        .await
        .unwrap();
    }
    assert_eq!(b.access_count("holder".into()).await.unwrap(), 2);
    let log = b.access_log("holder".into(), 1).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind.as_str(), log[0].license_id.as_deref()),
        ("license", Some("L1"))
    );
    // The applicant's request the lookup carried, kept beside it.
    assert_eq!(log[0].applicant_request.as_ref(), Some(&asked));
    assert!(a.access_log("nobody".into(), 10).await.unwrap().is_empty());
    // Lookups the gateway reports (answered from its cache): recorded once each, however
    // often the same report is delivered, at either replica.
    let report = |id: &str| super::ReportedAccess {
        report_id: id.into(),
        holder_hash: "holder".into(),
        kind: super::AccessKind::License,
        license_id: Some("L1".into()),
        requester_region: "11".into(),
        one_thing_id: "newborn".into(),
        case_number: "c2".into(),
        at_ms: 1,
        consent: None,
    };
    let batch = vec![report("run-1"), report("run-2")];
    assert_eq!(a.record_reported_accesses(batch.clone()).await.unwrap(), 2);
    assert_eq!(b.record_reported_accesses(batch).await.unwrap(), 0);
    assert_eq!(
        a.record_reported_accesses(vec![report("run-2"), report("run-3")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(b.access_count("holder".into()).await.unwrap(), 5);
    // Of which this region answered 2 itself.
    assert_eq!(a.answered_count("holder".into()).await.unwrap(), 2);

    // Revocations: one entry per gateway replica, queued once however often asked.
    let revocation = tongban_proto::v1::PublishRevocationRequest {
        license_id: "440000-L-1".into(),
        ..Default::default()
    };
    let endpoints = vec!["https://g1".to_owned(), "https://g2".to_owned()];
    a.enqueue_revocation(revocation.clone(), endpoints.clone())
        .await
        .unwrap();
    b.enqueue_revocation(revocation, endpoints).await.unwrap();
    let due = a.due_outbox(8, Vec::new()).await.unwrap();
    let gateways: BTreeSet<_> = due
        .iter()
        .filter_map(|e| e.gateway_endpoint.clone())
        .collect();
    assert_eq!(gateways.len(), 2);
    assert!(
        due.iter()
            .all(|e| e.kind == OutboxKind::Revoke && e.target_region == "440000")
    );
    // Once the shared log holds it, both publications are done (claimed ones too).
    let license = due[0].case_number.clone();
    assert_eq!(b.revocation_published(license.clone()).await.unwrap(), 2);
    assert_eq!(a.pending_outbox().await.unwrap(), 0);
    assert_eq!(b.revocation_published(license).await.unwrap(), 0);
}

async fn statuses_apply_only_when_newer(f: Fixture) {
    let store = f.replica("a").await;
    let case = file_delivery(&store).await;
    let status = |sequence, stage: Stage| CaseStatus {
        stage: stage as i32,
        detail: format!("step {sequence}"),
        sequence,
        updated_at: Some(prost_types::Timestamp {
            seconds: 1_764_650_000,
            nanos: 0,
        }),
    };
    assert!(
        store
            .apply_status(report(&case, status(2, Stage::Approved)))
            .await
            .unwrap()
            .applied
    );
    assert!(
        !store
            .apply_status(report(&case, status(1, Stage::Accepted)))
            .await
            .unwrap()
            .applied
    );
    assert!(
        !store
            .apply_status(report(&case, status(2, Stage::Rejected)))
            .await
            .unwrap()
            .applied
    );
    let record = store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(
        (record.status.stage, record.status.sequence),
        (Stage::Approved as i32, 2)
    );
    assert_eq!(
        record.status.updated_at.map(|t| t.seconds),
        Some(1_764_650_000)
    );
    assert!(
        !store
            .apply_status(report("unknown", status(3, Stage::Approved)))
            .await
            .unwrap()
            .applied
    );
}

async fn signed_messages_are_kept_once_per_call(f: Fixture) {
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let evidence = |key: &str, signature: &str| crate::store::SignedEvidence {
        case_number: "310000-20261204-00000001".into(),
        method: "PushStatus".into(),
        idempotency_key: key.into(),
        target_region: "310000".into(),
        signer_region: "44".into(),
        key_id: "44-k1".into(),
        signed_at: 1_796_400_000,
        signature: signature.into(),
        message: vec![0, 1, 2, 0xff],
        received_ms: 1_796_400_000_123,
    };
    a.keep_signed(evidence("push:1", "first")).await.unwrap();
    // A retry, signed anew, taken by the other replica: the first is what is kept.
    b.keep_signed(evidence("push:1", "retry")).await.unwrap();
    b.keep_signed(evidence("push:2", "second")).await.unwrap();
    a.keep_signed(crate::store::SignedEvidence {
        case_number: "other".into(),
        ..evidence("push:3", "other case")
    })
    .await
    .unwrap();
    let kept = a
        .signed_messages("310000-20261204-00000001".into())
        .await
        .unwrap();
    assert_eq!(
        kept,
        vec![evidence("push:1", "first"), evidence("push:2", "second")]
    );
    assert!(
        b.signed_messages("nothing".into())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn open_cases_are_read_with_their_promises(f: Fixture) {
    let store = f.replica("a").await;
    let promising = |date: &'static str| {
        let mut filing = filing(application("310000", "440100"), None);
        filing.receipt = Box::new(move |a: &Application| {
            format!(
                "{{\"case\":\"{}\",\"promised_date\":\"{date}\"}}",
                a.case_number
            )
        });
        filing
    };
    let open = store.file(promising("2026-12-07")).await.unwrap();
    let decided = store.file(promising("2026-12-08")).await.unwrap();
    let unpromised = store.file(promising("")).await.unwrap();
    let approved = CaseStatus {
        stage: Stage::Approved as i32,
        detail: "approved".into(),
        sequence: 5,
        updated_at: None,
    };
    let case = decided.application.case_number.clone();
    assert!(
        store
            .apply_status(report(&case, approved))
            .await
            .unwrap()
            .applied
    );
    let mut read = store.open_promises().await.unwrap();
    read.sort_by(|a, b| a.case_number.cmp(&b.case_number));
    let seen: Vec<(&str, &str, &str)> = read
        .iter()
        .map(|p| {
            (
                p.case_number.as_str(),
                p.target_region.as_str(),
                p.promised_date.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                open.application.case_number.as_str(),
                "440100",
                "2026-12-07"
            ),
            (unpromised.application.case_number.as_str(), "440100", ""),
        ]
    );
    assert!(read.iter().all(|p| p.one_thing_id == "newborn"));
}

async fn evaluations_are_kept_once_per_case(f: Fixture) {
    use super::evaluations::{Evaluated, NewEvaluation, Received, ReceivedEvaluation};
    let store = f.replica("a").await;
    let case = file_delivery(&store).await;
    let given = |level: i32| NewEvaluation {
        request: tongban_proto::v1::SubmitEvaluationRequest {
            case_number: case.clone(),
            origin_region: "310000".into(),
            level,
            comment: "办理太慢".into(),
            evaluated_at: None,
        },
        target_region: "440000".into(),
        one_thing_id: "newborn".into(),
        forward: true,
    };
    assert_eq!(store.evaluate(given(4)).await.unwrap(), Evaluated::Recorded);
    assert_eq!(
        store.evaluate(given(1)).await.unwrap(),
        Evaluated::AlreadyEvaluated
    );
    assert_eq!(store.evaluation_given(case.clone()).await.unwrap(), Some(4));
    // Its delivery waits in the outbox beside the case's own.
    assert_eq!(store.pending_outbox().await.unwrap(), 2);

    let received = |level: i32, due: Option<&str>| ReceivedEvaluation {
        case_number: "310000-20261205-00000009".into(),
        origin_region: "310000".into(),
        one_thing_id: "newborn".into(),
        level,
        comment: "办理太慢".into(),
        evaluated_ms: 1,
        follow_up_due: due.map(str::to_owned),
    };
    let poor = received(5, Some("2026-12-18"));
    assert_eq!(
        store.receive_evaluation(poor.clone()).await.unwrap(),
        Received::New
    );
    // A retry a day later gets the deadline set when it first arrived.
    let retried = ReceivedEvaluation {
        follow_up_due: Some("2026-12-21".into()),
        ..poor.clone()
    };
    assert_eq!(
        store.receive_evaluation(retried).await.unwrap(),
        Received::Repeat(Some("2026-12-18".into()))
    );
    assert_eq!(
        store.receive_evaluation(received(1, None)).await.unwrap(),
        Received::Conflict
    );
    assert_eq!(store.follow_ups().await.unwrap(), [poor]);
}

/// A household transfer filed at 31: the transfer out handled here, the transfer in at
/// 44 once the transfer out is approved.
fn joint_filing() -> NewFiling {
    let part = |id: &str, region: &str, local: bool, after: &[&str]| crate::joint::PartProgress {
        id: id.into(),
        name: format!("part {id}"),
        region: region.into(),
        local,
        after: after.iter().map(|a| (*a).to_owned()).collect(),
        promised_date: "2026-12-20".into(),
        started: after.is_empty(),
        stage: Stage::Submitted as i32,
        detail: String::new(),
        sequence: 0,
        reference: None,
    };
    let mut filing = filing(application("310000", "440305"), None);
    filing.application.mode = tongban_proto::v1::HandlingMode::Joint as i32;
    filing.joint = Some(crate::joint::JointCase {
        parts: vec![
            part("out", "310115", true, &[]),
            part("in", "440305", false, &["out"]),
        ],
    });
    filing
}

async fn joint_parts_are_handed_over_in_order(f: Fixture) {
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let status = |sequence, stage: Stage| CaseStatus {
        stage: stage as i32,
        detail: format!("{stage:?}"),
        sequence,
        updated_at: None,
    };
    let part_report = |case: &str, part: Option<&str>, s| StatusReport {
        part: part.map(str::to_owned),
        ..report(case, s)
    };
    let filed = a.file(joint_filing()).await.unwrap();
    let case = filed.application.case_number.clone();
    // Only the part that waits for none is handed over: to this node's platform.
    let due = a.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (due[0].kind, due[0].idempotency_key.clone()),
        (OutboxKind::LocalSubmit, format!("local:{case}:out"))
    );
    a.outbox_done(
        due[0].id,
        Some(part_report(&case, Some("out"), status(1, Stage::Accepted))),
    )
    .await
    .unwrap();
    // Approved here (a report of this node's platform names no part): the transfer in
    // is handed over to 44, once, whichever replica applies the report again.
    let approved = part_report(&case, None, status(2, Stage::Approved));
    let applied = a.apply_status(approved.clone()).await.unwrap();
    assert_eq!((applied.applied, applied.decided), (true, false));
    assert!(!b.apply_status(approved).await.unwrap().applied);
    let due = b.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].kind,
            due[0].target_region.as_str(),
            due[0].idempotency_key.clone()
        ),
        (OutboxKind::Deliver, "440305", format!("deliver:{case}:in"))
    );
    let delivered = <tongban_proto::v1::DeliverApplicationRequest as prost::Message>::decode(
        due[0].payload.as_slice(),
    )
    .unwrap()
    .application
    .unwrap();
    assert_eq!(
        (delivered.part_id.as_str(), delivered.target_region.as_str()),
        ("in", "440305")
    );
    assert_eq!(delivered.joint_regions, vec!["310115".to_owned()]);
    // Refused for good by 44 (a dead letter): the part says it is held, the case goes
    // on showing every part; replayed, the part is on its way again.
    b.outbox_dead(due[0].id, "refused".into()).await.unwrap();
    let record = a.application(case.clone()).await.unwrap().unwrap();
    let joint = record.joint().unwrap();
    assert_eq!(joint.parts[1].detail, HELD_DETAIL);
    assert_eq!(joint.parts[0].stage, Stage::Approved as i32);
    assert_eq!(record.status.stage, Stage::InReview as i32);
    assert_ne!(record.status.detail, HELD_DETAIL);
    assert_eq!(
        a.replay_dead_letter(due[0].id).await.unwrap(),
        DeadLetterAction::Done
    );
    let due = b.due_outbox(8, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    b.outbox_done(
        due[0].id,
        Some(part_report(&case, Some("in"), status(1, Stage::Accepted))),
    )
    .await
    .unwrap();
    let record = a.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(record.status.stage, Stage::InReview as i32);
    let applied = a
        .apply_status(part_report(&case, Some("in"), status(3, Stage::Approved)))
        .await
        .unwrap();
    assert_eq!((applied.applied, applied.decided), (true, true));
    let record = a.application(case).await.unwrap().unwrap();
    assert_eq!(
        (record.status.stage, record.status.sequence),
        (Stage::Approved as i32, 5)
    );
    let joint = record.joint().unwrap();
    assert_eq!(joint.parts[0].reference, None);
    assert!(
        joint
            .parts
            .iter()
            .all(|p| p.stage == Stage::Approved as i32)
    );

    // Refused at the transfer out: the case is refused naming it, the transfer in never
    // starts.
    let refused = a
        .file(joint_filing())
        .await
        .unwrap()
        .application
        .case_number;
    let applied = a
        .apply_status(part_report(
            &refused,
            Some("out"),
            status(2, Stage::Rejected),
        ))
        .await
        .unwrap();
    assert_eq!((applied.applied, applied.decided), (true, true));
    let record = a.application(refused.clone()).await.unwrap().unwrap();
    assert_eq!(record.status.stage, Stage::Rejected as i32);
    assert!(
        record.status.detail.starts_with("part out (region 310115)"),
        "{}",
        record.status.detail
    );
    let due = a.due_outbox(8, Vec::new()).await.unwrap();
    assert!(
        due.iter()
            .all(|e| e.case_number != refused || e.kind == OutboxKind::LocalSubmit),
        "{due:?}"
    );
}

async fn disputes_are_numbered_kept_and_settled_once(f: Fixture) {
    use super::disputes::{Dispute, RAISED, RECEIVED, Settled, Settlement};
    let (a, b) = (f.replica("a").await, f.replica("b").await);
    let case = file_delivery(&a).await;
    let dispute = |role: &str, id: &str, counterpart: &str| Dispute {
        dispute_id: id.into(),
        role: role.into(),
        case_number: case.clone(),
        counterpart: counterpart.into(),
        one_thing_id: "newborn".into(),
        subject: "license".into(),
        license_id: Some("110000-MC-0000001".into()),
        data: "marriage_certificate".into(),
        reason: "wrong date".into(),
        raised_ms: 1,
        outcome: None,
        note: None,
        corrected_license_id: None,
        settled_ms: None,
    };
    // Raised here: numbered within the case, at either replica, each with its delivery.
    let request = tongban_proto::v1::RaiseDisputeRequest::default();
    let first = a
        .raise_dispute(dispute(RAISED, "", "110000"), request.clone())
        .await
        .unwrap();
    let second = b
        .raise_dispute(dispute(RAISED, "", "110000"), request)
        .await
        .unwrap();
    assert_eq!(first.dispute_id, format!("{case}:1"));
    assert_eq!(second.dispute_id, format!("{case}:2"));
    let due = a.due_outbox(8, Vec::new()).await.unwrap();
    let keys: Vec<_> = due
        .iter()
        .filter(|e| e.kind == OutboxKind::Dispute)
        .map(|e| (e.idempotency_key.clone(), e.target_region.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (format!("dispute:{case}:1"), "110000".to_owned()),
            (format!("dispute:{case}:2"), "110000".to_owned())
        ]
    );
    // Received (as the issuer, say): kept once.
    let received = dispute(RECEIVED, "310000-20261205-00000001:1", "310000");
    assert!(
        a.receive_dispute(received.clone(), "h".into(), 2)
            .await
            .unwrap()
    );
    assert!(
        !b.receive_dispute(received.clone(), "h".into(), 3)
            .await
            .unwrap()
    );
    let open = a.open_disputes().await.unwrap();
    assert_eq!(open.iter().map(|o| o.open).sum::<i64>(), 3, "{open:?}");
    let settlement = Settlement {
        outcome: "confirmed".into(),
        note: "stands".into(),
        corrected_license_id: None,
        settled_ms: 10,
    };
    let settle = |store: Store| {
        let settlement = settlement.clone();
        async move {
            store
                .settle_dispute(
                    "310000".into(),
                    "310000-20261205-00000001:1".into(),
                    settlement,
                    tongban_proto::v1::SettleDisputeRequest::default(),
                )
                .await
                .unwrap()
        }
    };
    assert!(
        matches!(settle(a.clone()).await, Settled::Now(d) if d.outcome.as_deref() == Some("confirmed"))
    );
    assert!(matches!(settle(b.clone()).await, Settled::Already(_)));
    let unknown = b
        .settle_dispute(
            "310000".into(),
            "nope".into(),
            settlement.clone(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(unknown, Settled::Unknown);
    // Its settlement (raised here): applied once.
    let applied = a
        .apply_settlement(first.dispute_id.clone(), settlement.clone())
        .await
        .unwrap();
    assert_eq!(applied.map(|d| d.settled_ms), Some(Some(10)));
    assert!(
        b.apply_settlement(first.dispute_id, settlement)
            .await
            .unwrap()
            .is_none()
    );
    let raised = b.disputes(RAISED, Some(case)).await.unwrap();
    assert_eq!(raised.len(), 2);
    // Open first.
    assert!(
        raised[0].outcome.is_none() && raised[1].outcome.is_some(),
        "{raised:?}"
    );
    let open = a.open_disputes().await.unwrap();
    assert_eq!(open.iter().map(|o| o.open).sum::<i64>(), 1, "{open:?}");
}
