//! The embedded platform's case handling: cases taken over from the federation, their
//! status, and a simulated clerk that reviews and decides accepted cases after a
//! configurable step.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_proto::v1::{Application, CaseStatus, Stage};
use tongban_runtime::process::shutdown::ShutdownSignal;

use super::database::EmbeddedPlatform;
use crate::{
    platform::adapter::{EventPage, Platform, PlatformCase, PlatformError, Submitted},
    sqlite::{StoreError, now_ms, timestamp_ms},
};

impl EmbeddedPlatform {
    /// Runs the simulated clerk until shutdown: a case accepted `step` ago goes into
    /// review, a case in review for `step` is approved. Each change is announced.
    pub async fn run_clerk(self: Arc<Self>, step: Duration, shutdown: ShutdownSignal) {
        let tick = (step / 4).max(Duration::from_millis(20));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = interval.tick() => {}
            }
            match self.advance(step).await {
                Ok(changed) if !changed.is_empty() => self.changed.notify_one(),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "embedded platform clerk"),
            }
        }
    }

    async fn advance(&self, step: Duration) -> Result<Vec<PlatformCase>, StoreError> {
        let prefix = self.prefix.clone();
        let step_ms = step.as_millis() as i64;
        self.db
            .call(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                let mut changed = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE cases SET
                            stage = CASE stage WHEN ?1 THEN ?2 ELSE ?3 END,
                            detail = CASE stage WHEN ?1 THEN 'under review by the competent department'
                                     ELSE 'approved; results returned to the filing region' END,
                            sequence = sequence + 1, updated_ms = ?4
                         WHERE stage IN (?1, ?2) AND updated_ms <= ?5
                         RETURNING id, case_number, one_thing_id, origin_region, stage, detail,
                                   sequence, updated_ms",
                    )?;
                    let rows = stmt.query_map(
                        rusqlite::params![
                            Stage::Accepted as i32,
                            Stage::InReview as i32,
                            Stage::Approved as i32,
                            now,
                            now - step_ms
                        ],
                        |r| row_to_case(&prefix, r),
                    )?;
                    for row in rows {
                        changed.push(row?);
                    }
                }
                for case in &changed {
                    let previous = if case.status.stage == Stage::InReview as i32 {
                        Stage::Accepted
                    } else {
                        Stage::InReview
                    };
                    super::feed::record_event(&tx, case, Some(previous))?;
                }
                tx.commit()?;
                Ok(changed)
            })
            .await
    }

    /// The stored payload of a case, exactly as received.
    pub async fn payload(&self, case_number: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let case_number = case_number.to_owned();
        self.db
            .call(move |conn| {
                use rusqlite::OptionalExtension;
                Ok(conn
                    .query_row(
                        "SELECT payload FROM cases WHERE case_number = ?1",
                        [case_number],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }
}

pub(super) fn row_to_case(prefix: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<PlatformCase> {
    let id: i64 = r.get(0)?;
    let updated_ms: i64 = r.get(7)?;
    Ok(PlatformCase {
        reference: format!("{prefix}P{id:010}"),
        case_number: r.get(1)?,
        one_thing_id: r.get(2)?,
        origin_region: r.get(3)?,
        status: CaseStatus {
            stage: r.get(4)?,
            detail: r.get(5)?,
            sequence: r.get(6)?,
            updated_at: Some(timestamp_ms(updated_ms)),
        },
    })
}

const SELECT_CASE: &str = "SELECT id, case_number, one_thing_id, origin_region, stage, detail,
    sequence, updated_ms FROM cases WHERE case_number = ?1";

#[tonic::async_trait]
impl Platform for EmbeddedPlatform {
    fn health(&self) -> Result<(), String> {
        self.db.health()
    }

    async fn submit(
        &self,
        application: &Application,
        applicant_hash: &str,
        payload: &[u8],
    ) -> Result<Submitted, PlatformError> {
        let case_number = application.case_number.clone();
        let one_thing = application.one_thing_id.clone();
        let origin = application.origin_region.clone();
        let hash = applicant_hash.to_owned();
        let payload = payload.to_vec();
        let prefix = self.prefix.clone();
        let submitted = self
            .db
            .call(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO cases (case_number, one_thing_id, origin_region,
                        applicant_hash, payload, stage, detail, sequence, updated_ms, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'accepted by the handling region', 1, ?7, ?7)",
                    rusqlite::params![
                        case_number,
                        one_thing,
                        origin,
                        hash,
                        payload,
                        Stage::Accepted as i32,
                        now
                    ],
                )?;
                if inserted == 0 {
                    let stored: Vec<u8> = tx.query_row(
                        "SELECT payload FROM cases WHERE case_number = ?1",
                        [&case_number],
                        |r| r.get(0),
                    )?;
                    if stored != payload {
                        return Ok(Err(case_number));
                    }
                }
                let case =
                    tx.query_row(SELECT_CASE, [&case_number], |r| row_to_case(&prefix, r))?;
                if inserted == 1 {
                    super::feed::record_event(&tx, &case, None)?;
                }
                tx.commit()?;
                Ok(Ok(Submitted {
                    case,
                    created: inserted == 1,
                }))
            })
            .await?;
        if submitted.as_ref().is_ok_and(|s| s.created) {
            self.changed.notify_one();
        }
        submitted.map_err(|case| {
            PlatformError::Conflict(format!(
                "case {case} already exists with a different application"
            ))
        })
    }

    async fn case(&self, case_number: &str) -> Result<Option<PlatformCase>, PlatformError> {
        let case_number = case_number.to_owned();
        let prefix = self.prefix.clone();
        Ok(self
            .db
            .call(move |conn| {
                use rusqlite::OptionalExtension;
                Ok(conn
                    .query_row(SELECT_CASE, [case_number], |r| row_to_case(&prefix, r))
                    .optional()?)
            })
            .await?)
    }

    async fn events_after(&self, cursor: &str, limit: u32) -> Result<EventPage, PlatformError> {
        self.case_events_after(cursor, limit).await
    }

    fn changed(&self) -> Option<Arc<Notify>> {
        Some(self.changed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::embedded::database::MIGRATIONS;
    use tongban_proto::rules::region::RegionPrefix;

    /// A platform database made before migrations (its schema, user_version 0) opens
    /// with its cases.
    #[tokio::test]
    async fn a_platform_database_from_before_migrations_keeps_its_cases() {
        let dir =
            std::env::temp_dir().join(format!("tongban-embedded-{}-legacy", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("platform.sqlite");
        let prefix = RegionPrefix::parse("44").unwrap();
        let application = Application {
            case_number: "310000-20260101-00000001".into(),
            one_thing_id: "newborn".into(),
            origin_region: "310000".into(),
            target_region: "440000".into(),
            ..Default::default()
        };
        let platform = EmbeddedPlatform::open_with(&path, &prefix, &MIGRATIONS[..1]).unwrap();
        drop(platform);
        // The old code's insert (its schema had no feed to write to).
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO cases (case_number, one_thing_id, origin_region, applicant_hash,
                    payload, stage, detail, sequence, updated_ms, received_ms)
                 VALUES (?1, 'newborn', '310000', 'hash', ?2, 2, 'accepted', 1, 0, 0)",
                rusqlite::params![application.case_number, b"as received".to_vec()],
            )
            .unwrap();
        // Step 1 is the old schema verbatim; the old code never set a version.
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 0)
            .unwrap();

        let platform = EmbeddedPlatform::open(&path, &prefix).unwrap();
        let version: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(
            platform.payload(&application.case_number).await.unwrap(),
            Some(b"as received".to_vec())
        );
        let again = platform
            .submit(&application, "hash", b"as received")
            .await
            .unwrap();
        assert!(!again.created, "the case was kept, not made again");
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
