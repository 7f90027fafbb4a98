//! The embedded platform: cases, residents and licenses in a SQLite file, with a
//! simulated clerk that reviews and decides accepted cases after a configurable step.
//! It lets a province without its own platform API, a demo or a test run a complete node.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast;
use tongban_proto::{
    region::{Level, RegionPrefix, RegionTable},
    resident_id::{ResidentId, check_character},
    v1::{Application, CaseStatus, Stage},
};
use tongban_runtime::shutdown::ShutdownSignal;

use super::{Platform, PlatformCase, PlatformError, Submitted};
use crate::sqlite::{Db, StoreError, now_ms, timestamp_ms};

/// The platform database's schema history, oldest first (see [`crate::sqlite`]).
/// Append a step to change the schema; never edit one. Step 1 is the schema from before
/// versioning, verbatim: `IF NOT EXISTS` lets it adopt databases made then.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

const MIGRATION_1: &str = r#"
CREATE TABLE IF NOT EXISTS residents (
    id_hash     TEXT PRIMARY KEY,
    id_masked   TEXT NOT NULL,
    name        TEXT NOT NULL,
    home_region TEXT NOT NULL,
    birth_date  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS licenses (
    license_number TEXT PRIMARY KEY,
    license_type   TEXT NOT NULL,
    holder_hash    TEXT NOT NULL REFERENCES residents (id_hash),
    issuer_region  TEXT NOT NULL,
    issued_on      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number    TEXT NOT NULL UNIQUE,
    one_thing_id   TEXT NOT NULL,
    origin_region  TEXT NOT NULL,
    applicant_hash TEXT NOT NULL,
    payload        BLOB NOT NULL,
    stage          INTEGER NOT NULL,
    detail         TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_open ON cases (stage, updated_ms);
CREATE INDEX IF NOT EXISTS cases_updated ON cases (updated_ms);
"#;

/// The embedded SQLite platform.
pub struct EmbeddedPlatform {
    db: Db,
    prefix: String,
    changes: broadcast::Sender<PlatformCase>,
}

impl EmbeddedPlatform {
    /// Opens (creating) the platform database.
    pub fn open(path: &std::path::Path, prefix: &RegionPrefix) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            db: Db::open(path, MIGRATIONS)?,
            prefix: prefix.as_str().to_owned(),
            changes: broadcast::channel(1024).0,
        }))
    }

    /// Seeds `count` synthetic residents of this region with licenses, unless residents
    /// exist already. See [`synthetic_residents`].
    pub async fn seed(
        &self,
        table: &'static RegionTable,
        prefix: &RegionPrefix,
        count: u32,
        id_hash_key: Arc<[u8]>,
    ) -> Result<u32, StoreError> {
        let residents = synthetic_residents(table, prefix, count);
        let prefix = prefix.as_str().to_owned();
        self.db
            .call(move |conn| {
                let existing: i64 =
                    conn.query_row("SELECT COUNT(*) FROM residents", [], |r| r.get(0))?;
                if existing > 0 {
                    return Ok(0);
                }
                let tx = conn.transaction()?;
                for (i, r) in residents.iter().enumerate() {
                    let hash = r.id.keyed_hash(&id_hash_key);
                    let birth = r.id.birth_date().to_string();
                    tx.execute(
                        "INSERT INTO residents (id_hash, id_masked, name, home_region, birth_date)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        rusqlite::params![
                            hash,
                            r.id.masked(),
                            r.name,
                            r.id.home_region().as_str(),
                            birth
                        ],
                    )?;
                    for (kind, n) in [("resident_id_card", 1), ("household_register", 2)] {
                        tx.execute(
                            "INSERT INTO licenses (license_number, license_type, holder_hash,
                                issuer_region, issued_on) VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![
                                format!("{prefix}-{kind}-{:06}{n}", i + 1),
                                kind,
                                hash,
                                r.id.home_region().as_str(),
                                birth
                            ],
                        )?;
                    }
                }
                tx.commit()?;
                Ok(residents.len() as u32)
            })
            .await
    }

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
                Ok(changed) => {
                    for case in changed {
                        let _ = self.changes.send(case);
                    }
                }
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

fn row_to_case(prefix: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<PlatformCase> {
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
                tx.commit()?;
                Ok(Ok(Submitted {
                    case,
                    created: inserted == 1,
                }))
            })
            .await?;
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

    fn status_changes(&self) -> broadcast::Receiver<PlatformCase> {
        self.changes.subscribe()
    }

    async fn updated_since(&self, since_ms: i64) -> Result<Vec<PlatformCase>, PlatformError> {
        let prefix = self.prefix.clone();
        Ok(self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, case_number, one_thing_id, origin_region, stage, detail,
                            sequence, updated_ms FROM cases WHERE updated_ms >= ?1",
                )?;
                let rows = stmt.query_map([since_ms], |r| row_to_case(&prefix, r))?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await?)
    }
}

/// A synthetic resident for demos and tests.
#[derive(Clone, Debug)]
pub struct SyntheticResident {
    pub id: ResidentId,
    pub name: String,
}

/// Deterministic synthetic residents of the region `prefix`: real county codes of the
/// region from the GB/T 2260 table, birth dates spread over 1950–2005, and sequence
/// numbers 900–999, which the project reserves for synthetic numbers (they belong to no
/// real person).
pub fn synthetic_residents(
    table: &RegionTable,
    prefix: &RegionPrefix,
    count: u32,
) -> Vec<SyntheticResident> {
    const SURNAMES: [&str; 12] = [
        "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
    ];
    const GIVEN: [&str; 12] = [
        "伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰",
    ];
    let mut counties: Vec<_> = table
        .iter()
        .filter(|d| {
            matches!(d.level, Level::County | Level::Prefecture)
                && d.code.as_str().starts_with(prefix.as_str())
        })
        .map(|d| d.code)
        .collect();
    if counties.is_empty() {
        counties.push(tongban_proto::region::RegionCode::from_prefix(prefix));
    }
    let today = tongban_proto::calendar::business_now().date();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let code = &counties[(i as usize * 7) % counties.len()];
        let year = 1950 + (i * 13) % 56;
        let month = 1 + (i * 5) % 12;
        let day = 1 + (i * 11) % 28;
        let seq = 900 + (i % 100);
        let first17 = format!("{}{year:04}{month:02}{day:02}{seq:03}", code.as_str());
        let Ok(digits) = <[u8; 17]>::try_from(first17.as_bytes()) else {
            continue;
        };
        let number = format!("{first17}{}", check_character(&digits));
        if let Ok(id) = ResidentId::parse(&number, table, today) {
            let name = format!(
                "{}{}",
                SURNAMES[(i as usize) % SURNAMES.len()],
                GIVEN[(i as usize * 5 + 3) % GIVEN.len()]
            );
            out.push(SyntheticResident { id, name });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let platform = EmbeddedPlatform::open(&path, &prefix).unwrap();
        platform
            .submit(&application, "hash", b"as received")
            .await
            .unwrap();
        drop(platform);
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
