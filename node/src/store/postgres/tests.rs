//! What only a store shared by replicas must do: outbox leases, pruning by one replica
//! at a time, replicas that start at once agreeing on the schema and the secret,
//! wake-ups, and readiness while the database is away. What both backends do alike is
//! checked in `crate::store::tests`.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_proto::{contract::retry::Retry, v1::PushStatusRequest};
use tongban_runtime::{postgres::config::PostgresConfig, process::shutdown::Shutdown};

use super::{outbox::PRUNE_LOCK, schema, test_server::fresh_database};
use crate::instants::now_ms;
use crate::store::{Store, StoreError};

async fn replica(config: &PostgresConfig, name: &str, lease: Duration) -> Store {
    Store::open_postgres(config, name, lease).await.unwrap()
}

async fn push(store: &Store, i: u32) {
    let case = format!("440000-20261202-{i:08}");
    let request = PushStatusRequest {
        case_number: case.clone(),
        handling_region: "310000".into(),
        status: None,
    };
    store
        .enqueue_push(case, "440000".into(), "newborn".into(), request)
        .await
        .unwrap();
}

async fn due_ids(store: &Store) -> Vec<i64> {
    let due = store.due_outbox(8, Vec::new()).await.unwrap();
    due.iter().map(|e| e.id).collect()
}

/// An entry claimed by one replica is not handed to another until its lease ends; then
/// the other claims it, and what the first replica reports late changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_entry_is_one_replicas_until_its_lease_ends() {
    let config = fresh_database("leases").await;
    // Short, so the test need not wait; long enough for the calls before it ends.
    let lease = Duration::from_millis(500);
    let (a, b) = (
        replica(&config, "a", lease).await,
        replica(&config, "b", lease).await,
    );
    assert_eq!((a.kind(), a.replica()), ("postgres", Some("a")));
    for i in 0..3 {
        push(&a, i).await;
    }
    let claimed = due_ids(&a).await;
    assert_eq!(claimed.len(), 3);
    assert!(due_ids(&b).await.is_empty(), "leased to a");
    assert!(
        due_ids(&a).await.is_empty(),
        "a's own claims are not handed out twice"
    );

    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let reclaimed = due_ids(&b).await;
    assert_eq!(reclaimed, claimed, "expired leases are anyone's");
    let (first, second, third) = (claimed[0], claimed[1], claimed[2]);

    // a's attempts outlived its leases: its late reports meet entries b holds.
    a.outbox_retry(first, now_ms(), "late".into(), Retry::Transient)
        .await
        .unwrap();
    a.outbox_dead(second, "late refusal".into()).await.unwrap();
    assert!(due_ids(&a).await.is_empty(), "b's leases still hold");
    assert!(a.dead_letters(10).await.unwrap().is_empty());

    b.outbox_done(first, None).await.unwrap();
    // a delivered too (the receiver applies the key once): harmless after b's done.
    a.outbox_done(first, None).await.unwrap();
    a.outbox_retry(first, now_ms(), "late".into(), Retry::Transient)
        .await
        .unwrap();
    assert_eq!(a.pending_outbox().await.unwrap(), 2, "done stays done");

    b.outbox_retry(second, now_ms(), "unavailable".into(), Retry::Transient)
        .await
        .unwrap();
    assert_eq!(
        due_ids(&a).await,
        vec![second],
        "a released lease is anyone's at once"
    );
    // A claim handed back unattempted is anyone's at once; a replica cannot hand back
    // another's.
    b.release_outbox(vec![second]).await.unwrap();
    assert!(due_ids(&b).await.is_empty(), "not b's to release");
    a.release_outbox(vec![second]).await.unwrap();
    assert_eq!(due_ids(&b).await, vec![second]);

    b.outbox_dead(third, "refused".into()).await.unwrap();
    assert!(
        b.dead_letters(10)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == third)
    );
}

/// Replicas scanning at once never get the same entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_scanning_at_once_claim_each_entry_once() {
    let config = fresh_database("claims").await;
    let lease = Duration::from_secs(30);
    let stores = [
        replica(&config, "a", lease).await,
        replica(&config, "b", lease).await,
        replica(&config, "c", lease).await,
    ];
    for i in 0..60 {
        push(&stores[0], i).await;
    }
    let mut scans = tokio::task::JoinSet::new();
    for round in 0..12 {
        let store = stores[round % 3].clone();
        scans.spawn(async move { due_ids(&store).await });
    }
    let mut claimed: Vec<i64> = scans.join_all().await.into_iter().flatten().collect();
    let all = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), all, "no entry handed out twice");
    assert!(all <= 60);
}

/// Pruning happens on one replica at a time: while another holds the turn, a replica
/// deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_prunes_at_a_time() {
    let config = fresh_database("prune").await;
    let lease = Duration::from_secs(30);
    let (a, b) = (
        replica(&config, "a", lease).await,
        replica(&config, "b", lease).await,
    );
    for i in 0..5 {
        push(&a, i).await;
    }
    for id in due_ids(&a).await {
        a.outbox_done(id, None).await.unwrap();
    }
    let pool = a.postgres_pool().unwrap();
    let mut turn = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PRUNE_LOCK)
        .execute(&mut *turn)
        .await
        .unwrap();
    assert_eq!(b.prune(now_ms() + 1, 100).await.unwrap(), (0, 0));
    turn.rollback().await.unwrap();

    let (from_a, from_b) = tokio::join!(a.prune(now_ms() + 1, 100), b.prune(now_ms() + 1, 100));
    let first = from_a.unwrap().0 + from_b.unwrap().0;
    let rest = b.prune(now_ms() + 1, 100).await.unwrap().0;
    assert_eq!(first + rest, 5);
}

/// Replicas started at once on an empty database: one migrates, all open, and all use
/// the one keyed-hash secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_share_schema_and_secret() {
    let config = fresh_database("start").await;
    let lease = Duration::from_secs(30);
    let opened = futures_util::future::join_all(
        ["a", "b", "c", "d"].map(|name| Store::open_postgres(&config, name, lease)),
    )
    .await;
    let stores: Vec<Store> = opened.into_iter().map(Result::unwrap).collect();
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM tongban_schema WHERE component = $1")
            .bind(schema::COMPONENT)
            .fetch_one(stores[0].postgres_pool().unwrap())
            .await
            .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    let keys = futures_util::future::join_all(stores.iter().map(|s| s.id_hash_key())).await;
    let keys: Vec<Vec<u8>> = keys.into_iter().map(Result::unwrap).collect();
    assert!(keys.iter().all(|k| *k == keys[0] && k.len() == 32));
    let reopened = replica(&config, "e", lease).await;
    assert_eq!(reopened.id_hash_key().await.unwrap(), keys[0]);
}

/// A write to the outbox at one replica wakes the others' forwarders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_write_wakes_the_other_replicas() {
    let config = fresh_database("wake").await;
    let lease = Duration::from_secs(30);
    let (a, b) = (
        replica(&config, "a", lease).await,
        replica(&config, "b", lease).await,
    );
    let (wake, shutdown) = (Arc::new(Notify::new()), Shutdown::new());
    let listening = tokio::spawn(b.wake_ups(wake.clone(), shutdown.signal()).unwrap());
    // The listener wakes once when it starts listening: anything before was missed.
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .unwrap();
    push(&a, 1).await;
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("woken by the write");
    shutdown.trigger();
    listening.await.unwrap();
}

/// A database that cannot be reached fails the start plainly; one lost later makes the
/// store unhealthy.
#[tokio::test]
async fn an_unreachable_database_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut nowhere = PostgresConfig::new(format!("postgres://postgres@127.0.0.1:{port}/none"));
    nowhere.pool.acquire_timeout = Duration::from_secs(2);
    let refused = Store::open_postgres(&nowhere, "a", Duration::from_secs(30)).await;
    match refused {
        Err(e @ StoreError::PostgresOpen { .. }) => {
            assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened a store on nothing"),
    }

    let config = fresh_database("health").await;
    let store = replica(&config, "a", Duration::from_secs(30)).await;
    assert_eq!(store.pending_outbox().await.unwrap(), 0);
    assert_eq!(store.health(), Ok(()));
    store.postgres_pool().unwrap().close().await;
    assert!(store.pending_outbox().await.is_err());
    assert!(store.health().is_err());
}

/// One replica at a time holds a job's turn; when its session ends (the replica dies or
/// lets go), another takes it.
#[tokio::test]
async fn a_turn_is_one_replicas_until_it_lets_go() {
    let config = fresh_database("turns").await;
    let a = replica(&config, "a", Duration::from_secs(30)).await;
    let b = replica(&config, "b", Duration::from_secs(30)).await;
    let mut held = a
        .take_turn("feed")
        .await
        .unwrap()
        .expect("a takes the turn");
    assert!(b.take_turn("feed").await.unwrap().is_none(), "b waits");
    assert!(
        b.take_turn("other feed").await.unwrap().is_some(),
        "turns are per job"
    );
    assert!(held.still_held().await);
    drop(held);
    let taken = async {
        loop {
            if let Some(turn) = b.take_turn("feed").await.unwrap() {
                return turn;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut turn = tokio::time::timeout(Duration::from_secs(10), taken)
        .await
        .expect("b takes the turn once a let go");
    assert!(turn.still_held().await);
    assert!(a.take_turn("feed").await.unwrap().is_none());
}
