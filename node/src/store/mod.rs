//! The node's durable store (SQLite, WAL, `synchronous=FULL`).
//!
//! A filing is written with its receipt and — when another region handles it — its
//! outbox entry in one transaction, so an acknowledged application survives a crash of
//! the node and is forwarded after restart. Deliveries received are remembered by
//! idempotency key so a replay creates nothing new.
//!
//! `database` holds the [`Store`] handle and the store's schema; each job adds its own
//! `impl Store` methods in a submodule: `settings`, `access_log` (lookups of this
//! region's persons' data), `filing` (applications filed here),
//! `outbox` (calls owed to other regions), `inbound` (idempotency keys of deliveries
//! received) and `status` (statuses returned by handling regions). This file only names
//! them, so no submodule imports it.

mod access_log;
mod database;
mod filing;
mod inbound;
mod outbox;
mod settings;
mod status;

pub use access_log::{AccessEntry, AccessKind};
pub use database::Store;
pub use filing::{ApplicationRecord, Filed, NewFiling};
pub use outbox::{BacklogRow, DeadLetter, DeadLetterAction, OutboxEntry, OutboxKind};
// The SQLite wrapper moved to `crate::sqlite`; these paths stay for existing callers.
pub use crate::sqlite::{Db, StoreError, now_ms, timestamp_ms};

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use std::path::Path;

    use super::{database::MIGRATIONS, *};

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
        let store = Store::open_with(&path, &MIGRATIONS[..1]).unwrap();
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

        let store = Store::open(&path).unwrap();
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

    /// Due entries come at most `per_target` per target region, so a region with a long
    /// backlog does not crowd out the others; entries in flight are left out.
    #[tokio::test]
    async fn due_entries_are_shared_by_target_and_skip_those_in_flight() {
        let dir = std::env::temp_dir().join(format!("tongban-store-{}-due", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("node.sqlite")).unwrap();
        let push = |case: String, target: &str| {
            let request = tongban_proto::v1::PushStatusRequest {
                case_number: case.clone(),
                handling_region: "310000".into(),
                status: None,
            };
            store.enqueue_push(case, target.to_owned(), "newborn".into(), request)
        };
        for i in 0..20 {
            push(format!("440000-20261202-{i:08}"), "440000")
                .await
                .unwrap();
        }
        for i in 0..2 {
            push(format!("110000-20261202-{i:08}"), "110000")
                .await
                .unwrap();
        }
        let due = store.due_outbox(8, Vec::new()).await.unwrap();
        let to = |due: &[OutboxEntry], target: &str| {
            due.iter().filter(|e| e.target_region == target).count()
        };
        assert_eq!((to(&due, "440000"), to(&due, "110000")), (8, 2));
        let busy: Vec<i64> = due.iter().map(|e| e.id).collect();
        let next = store.due_outbox(8, busy.clone()).await.unwrap();
        assert_eq!((to(&next, "440000"), to(&next, "110000")), (8, 0));
        assert!(next.iter().all(|e| !busy.contains(&e.id)));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
