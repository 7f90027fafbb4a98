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
pub use outbox::{OutboxEntry, OutboxKind};
// The SQLite wrapper moved to `crate::sqlite`; these paths stay for existing callers.
pub use crate::sqlite::{Db, StoreError, now_ms, timestamp_ms};

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use tongban_proto::v1::Application;

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
        // Real rows, written by the filing code, in a file the old code would have made:
        // step 1 is its schema verbatim, and the old code never set a version.
        let store = Store::open_with(&path, &MIGRATIONS[..1]).unwrap();
        let key = store.id_hash_key().await.unwrap();
        store.set_setting("catalog", b"v1".to_vec()).await.unwrap();
        let filed = store
            .file(NewFiling {
                application: Application {
                    one_thing_id: "newborn".into(),
                    origin_region: "310000".into(),
                    target_region: "440000".into(),
                    ..Default::default()
                },
                pending_verification: false,
                applicant_hash: "hash".into(),
                applicant_masked: "3101**********0011".into(),
                forward: true,
                receipt: Box::new(|app| format!("{{\"case\":\"{}\"}}", app.case_number)),
                client_key: None,
            })
            .await
            .unwrap();
        drop(store);
        set_user_version(&path, 0);

        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        assert_eq!(store.id_hash_key().await.unwrap(), key);
        assert_eq!(store.setting("catalog").await.unwrap().unwrap(), b"v1");
        let case = filed.application.case_number;
        let record = store.application(case.clone()).await.unwrap().unwrap();
        assert_eq!(record.receipt, filed.receipt);
        assert_eq!(record.target_region, "440000");
        assert_eq!(store.pending_outbox().await.unwrap(), 1);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
