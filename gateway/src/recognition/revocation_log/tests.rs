//! The shared revocation log against a real PostgreSQL
//! (`crate::test_support::postgres`): handles on one database stand for gateway
//! replicas.

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tongban_runtime::process::shutdown::{Shutdown, ShutdownSignal};

use super::{
    RevocationLog,
    follow::{ApplyRevocations, Follower},
    postgres::{Appended, Logged, NewRevocation},
    progress::LogProgress,
};
use crate::test_support::postgres::TestDatabase;

/// What a follower applied, in order.
#[derive(Default)]
struct Applied(Mutex<Vec<String>>);

impl Applied {
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl ApplyRevocations for Applied {
    fn apply(&self, rows: &[Logged]) -> impl Future<Output = usize> + Send {
        let ids = rows.iter().map(|row| row.license_id.clone());
        self.0.lock().unwrap().extend(ids);
        std::future::ready(rows.len())
    }
}

fn revocation(license_id: &str) -> NewRevocation<'_> {
    NewRevocation {
        license_id,
        issuer: "440000",
        reason: Some("annulled"),
        revoked_ms: Some(1_700_000_000_000),
        published_by: "spiffe://tongban/region/44",
        published_ms: 1_700_000_000_001,
    }
}

/// Replica `name`'s handle on the log of `db`, read every `poll`.
fn open(db: &TestDatabase, name: &str, poll: Duration, metrics: &mut Registry) -> RevocationLog {
    RevocationLog::open(&db.log_settings(name, poll), metrics).unwrap()
}

/// A follower of `log` that only polls: nothing listens, so no notification ever
/// wakes it (as when every one of them is lost).
fn follow_by_polling_alone(log: &RevocationLog, apply: Arc<Applied>, shutdown: ShutdownSignal) {
    let follower = Follower {
        table: log.table.clone(),
        apply,
        progress: log.progress.clone(),
        wake: Arc::new(Notify::new()),
        poll_interval: log.poll_interval,
    };
    tokio::spawn(follower.run(shutdown));
}

async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ready(log: &RevocationLog) {
    let check = log.readiness();
    eventually(Duration::from_secs(20), "the log loaded", || {
        check().is_ok()
    })
    .await;
}

#[tokio::test]
async fn an_append_at_one_replica_is_applied_at_another_by_polling_alone() {
    let db = TestDatabase::create().await;
    let poll = Duration::from_millis(300);
    let a = open(&db, "a", poll, &mut Registry::default());
    let mut metrics = Registry::default();
    let b = open(&db, "b", poll, &mut metrics);
    let stop = Shutdown::new();
    let applied = Arc::new(Applied::default());
    follow_by_polling_alone(&b, applied.clone(), stop.signal());
    ready(&b).await;

    let appended = a.append(&revocation("440000-A1")).await.unwrap();
    assert_eq!(appended, Appended { seq: 1, new: true });
    // Within a poll interval (and the read): no notification reaches this follower.
    let start = Instant::now();
    eventually(poll + Duration::from_millis(500), "b applies it", || {
        applied.ids() == ["440000-A1"]
    })
    .await;
    assert!(start.elapsed() < poll + Duration::from_millis(500));
    assert_eq!(b.last_applied(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).unwrap();
    for line in [
        "tongban_gateway_revocation_log_sequence 1",
        "tongban_gateway_revocation_log_applied_total 1",
        "tongban_gateway_revocation_log_read_failures_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    stop.trigger();
}

#[tokio::test]
async fn a_notification_wakes_a_follower_long_before_its_poll() {
    let db = TestDatabase::create().await;
    let a = open(&db, "a", Duration::from_secs(1), &mut Registry::default());
    let b = open(&db, "b", Duration::from_secs(60), &mut Registry::default());
    let stop = Shutdown::new();
    let applied = Arc::new(Applied::default());
    b.spawn_follower(applied.clone(), stop.signal());
    ready(&b).await;
    a.append(&revocation("440000-N1")).await.unwrap();
    eventually(Duration::from_secs(5), "b applies it", || {
        applied.ids() == ["440000-N1"]
    })
    .await;
    stop.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_two_replicas_get_gap_free_sequence_numbers() {
    let db = TestDatabase::create().await;
    let poll = Duration::from_millis(200);
    let a = Arc::new(open(&db, "a", poll, &mut Registry::default()));
    let b = Arc::new(open(&db, "b", poll, &mut Registry::default()));
    // A third replica follows while the appends commit.
    let c = open(&db, "c", poll, &mut Registry::default());
    let stop = Shutdown::new();
    let applied = Arc::new(Applied::default());
    c.spawn_follower(applied.clone(), stop.signal());
    ready(&c).await;

    let mut appends = tokio::task::JoinSet::new();
    for i in 0..200 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        appends.spawn(async move {
            let id = format!("440000-C{i}");
            log.append(&revocation(&id)).await.unwrap()
        });
    }
    let mut seqs = Vec::new();
    while let Some(appended) = appends.join_next().await {
        let appended = appended.unwrap();
        assert!(appended.new);
        seqs.push(appended.seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());

    eventually(Duration::from_secs(10), "c applies all 200", || {
        applied.ids().len() >= 200
    })
    .await;
    let ids = applied.ids();
    assert_eq!(ids.len(), 200, "applied once each");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);
    // In the log's order, with nothing skipped.
    let in_log: Vec<String> =
        sqlx::query_scalar("SELECT license_id FROM revocation_log ORDER BY seq")
            .fetch_all(c.table.pool())
            .await
            .unwrap();
    assert_eq!(ids, in_log);
    assert_eq!(c.last_applied(), 200);
    stop.trigger();
}

#[tokio::test]
async fn a_repeated_append_returns_the_same_sequence_number() {
    let db = TestDatabase::create().await;
    let poll = Duration::from_secs(1);
    let a = open(&db, "a", poll, &mut Registry::default());
    let b = open(&db, "b", poll, &mut Registry::default());
    a.table.migrate().await.unwrap();
    let first = a.append(&revocation("440000-R1")).await.unwrap();
    assert_eq!(first, Appended { seq: 1, new: true });
    for log in [&b, &a] {
        let again = log.append(&revocation("440000-R1")).await.unwrap();
        assert_eq!(again, Appended { seq: 1, new: false });
    }
    // The repeats used up no sequence number.
    let next = b.append(&revocation("440000-R2")).await.unwrap();
    assert_eq!(next, Appended { seq: 2, new: true });
    let row: (String, String, Option<String>, Option<i64>, String) = sqlx::query_as(
        "SELECT issuer, published_by, reason, revoked_ms, replica
         FROM revocation_log WHERE seq = 1",
    )
    .fetch_one(a.table.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "440000".to_owned(),
            "spiffe://tongban/region/44".to_owned(),
            Some("annulled".to_owned()),
            Some(1_700_000_000_000),
            "a".to_owned()
        )
    );
}

#[tokio::test]
async fn a_replica_started_later_loads_the_whole_log_before_it_is_ready() {
    let db = TestDatabase::create().await;
    let poll = Duration::from_millis(200);
    let writer = open(&db, "writer", poll, &mut Registry::default());
    writer.table.migrate().await.unwrap();
    // More than a page, written at once.
    let rows = super::follow::PAGE as i64 + 50;
    sqlx::query(
        "INSERT INTO revocation_log (license_id, issuer, published_by, published_ms, replica)
         SELECT '440000-L' || n, '440000', 'spiffe://tongban/region/44', 0, 'writer'
         FROM generate_series(1, $1) AS n",
    )
    .bind(rows)
    .execute(writer.table.pool())
    .await
    .unwrap();

    let late = open(&db, "late", poll, &mut Registry::default());
    let not_ready = (late.readiness())().unwrap_err();
    assert!(
        not_ready.contains("revocation log postgres://") && not_ready.contains("not loaded"),
        "{not_ready}"
    );
    let stop = Shutdown::new();
    let applied = Arc::new(Applied::default());
    late.spawn_follower(applied.clone(), stop.signal());
    ready(&late).await;
    // Ready only once every row was applied.
    assert_eq!(applied.ids().len() as i64, rows);
    assert_eq!(late.last_applied(), rows as u64);
    assert_eq!(applied.ids()[0], "440000-L1");
    stop.trigger();
}

#[tokio::test]
async fn a_replica_whose_log_goes_unread_turns_not_ready() {
    let db = TestDatabase::create().await;
    let log = open(
        &db,
        "a",
        Duration::from_millis(100),
        &mut Registry::default(),
    );
    let stop = Shutdown::new();
    log.spawn_follower(Arc::new(Applied::default()), stop.signal());
    ready(&log).await;
    if !db.stop_server() {
        // A server the tests were given is not theirs to stop.
        return;
    }
    let check = log.readiness();
    // max_staleness is 10 poll intervals: 1 s.
    eventually(Duration::from_secs(5), "not ready", || check().is_err()).await;
    let reason = check().unwrap_err();
    assert!(
        reason.contains("revocation log postgres://") && reason.contains("not read for"),
        "{reason}"
    );
    stop.trigger();
}

#[tokio::test]
async fn a_log_that_cannot_be_reached_is_named_in_the_readiness_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = crate::config::RevocationLogSettings::new(format!(
        "postgres://gateway:secret@127.0.0.1:{port}/tongban"
    ));
    settings.database.pool.acquire_timeout = Duration::from_millis(200);
    settings.poll_interval = Duration::from_millis(50);
    let mut metrics = Registry::default();
    let log = RevocationLog::open(&settings, &mut metrics).unwrap();
    let stop = Shutdown::new();
    log.spawn_follower(Arc::new(Applied::default()), stop.signal());
    eventually(Duration::from_secs(5), "a failed read", || {
        log.readiness()().is_err_and(|reason| reason.contains("not loaded yet: "))
    })
    .await;
    let reason = log.readiness()().unwrap_err();
    assert!(
        reason.contains(&format!("postgres://gateway:***@127.0.0.1:{port}/tongban")),
        "{reason}"
    );
    assert!(!reason.contains("secret"), "{reason}");
    assert!(log.append(&revocation("440000-X1")).await.is_err());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).unwrap();
    assert!(
        text.contains("tongban_gateway_revocation_log_append_failures_total 1"),
        "{text}"
    );
    assert!(
        !text.contains("tongban_gateway_revocation_log_read_failures_total 0"),
        "{text}"
    );
    stop.trigger();
}

#[test]
fn readiness_turns_false_once_the_log_is_older_than_max_staleness() {
    let progress = LogProgress::new(
        "revocation log postgres://db/t".into(),
        Duration::from_millis(50),
        &mut Registry::default(),
    );
    assert!(progress.check().is_err());
    progress.caught_up();
    assert_eq!(progress.check(), Ok(()));
    std::thread::sleep(Duration::from_millis(80));
    progress.read_failed(&"connection refused");
    let reason = progress.check().unwrap_err();
    assert!(
        reason.starts_with("revocation log postgres://db/t not read for")
            && reason.ends_with(": connection refused"),
        "{reason}"
    );
    progress.caught_up();
    assert_eq!(progress.check(), Ok(()));
}
