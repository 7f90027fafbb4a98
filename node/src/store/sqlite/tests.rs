//! The SQLite store's own checks: databases made by older releases. What every backend
//! must do alike is checked in `crate::store::tests`.

use std::path::Path;

use rusqlite::Connection;

use super::{database::SqliteStore, schema::MIGRATIONS};

fn set_user_version(path: &Path, version: i64) {
    Connection::open(path)
        .unwrap()
        .pragma_update(None, "user_version", version)
        .unwrap();
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// A store made before migrations (its schema, user_version 0) opens with its rows.
#[tokio::test]
async fn a_store_from_before_migrations_keeps_its_rows() {
    let dir = std::env::temp_dir().join(format!("tongban-store-{}-legacy", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("node.sqlite");
    // Rows as the code of that time wrote them (its statements verbatim), in a file
    // it would have made: step 1 is its schema, and it never set a version.
    let store = SqliteStore::open_with(&path, &MIGRATIONS[..1]).unwrap();
    let key = store.id_hash_key().await.unwrap();
    store.set_setting("catalog", b"v1".to_vec()).await.unwrap();
    let case = "310000-20261127-00000001".to_owned();
    let receipt = format!("{{\"case\":\"{case}\"}}");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO applications (case_number, one_thing_id, origin_region,
                target_region, applicant_hash, applicant_masked, payload, receipt,
                stage, status_detail, status_seq, status_updated_ms, created_ms,
                client_key, client_request_sha)
             VALUES (?1, 'newborn', '310000', '440000', 'hash', '3101**********0011',
                x'', ?2, 1, 'accepted at the filing region', 0, 0, 0, NULL, NULL)",
            rusqlite::params![case, receipt],
        )
        .unwrap();
        conn.execute(
            "INSERT OR IGNORE INTO outbox (kind, case_number, target_region, one_thing_id,
                idempotency_key, payload, next_attempt_ms, created_ms)
             VALUES ('deliver', ?1, '440000', 'newborn', ?1, x'', 0, 0)",
            [&case],
        )
        .unwrap();
    }
    drop(store);
    set_user_version(&path, 0);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
    assert_eq!(store.id_hash_key().await.unwrap(), key);
    assert_eq!(store.setting("catalog").await.unwrap().unwrap(), b"v1");
    let record = store.application(case.clone()).await.unwrap().unwrap();
    assert_eq!(record.receipt, receipt);
    assert_eq!(record.target_region, "440000");
    assert_eq!(store.pending_outbox().await.unwrap(), 1);
    // No trace was stored then: the case's calls use the one its number gives.
    let expected = tongban_runtime::observability::trace_context::TraceParent::for_case(&case);
    assert_eq!(record.trace.trace_id, expected.trace_id);
    let due = store.due_outbox(10, Vec::new()).await.unwrap();
    assert_eq!(due[0].trace.trace_id, expected.trace_id);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}
