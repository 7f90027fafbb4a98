//! The embedded platform as the region's register: persons, the electronic licenses
//! issued here (with what they state, their validity and revocation), and the seeding
//! of synthetic residents with their licenses for demos and tests.

use std::{collections::BTreeMap, sync::Arc};

use rusqlite::{OptionalExtension, params};
use tongban_proto::{
    rules::region::{RegionPrefix, RegionTable},
    rules::resident_id::ResidentId,
    v1::AssuranceLevel,
};

use super::{database::EmbeddedPlatform, synthetic::synthetic_residents};
use crate::{
    platform::adapter::PlatformError,
    platform::register::{
        LicenseRecord, LicenseRegistry, Person, Purpose, RevocationPage, Subject,
    },
    sqlite::{StoreError, now_ms},
};

/// Synthetic residents of other provinces who hold a marriage certificate issued here:
/// licenses of one region held by residents of another, as mutual recognition needs.
const VISITORS_PER_PROVINCE: u32 = 3;

/// A license to issue (tests, benchmarks and seeding).
#[derive(Clone, Debug)]
pub struct NewLicense {
    /// The holder's ID number: registered as a person if new.
    pub holder: ResidentId,
    pub holder_name: String,
    pub license_type: String,
    /// 6-digit code of the issuing region (inside this platform's prefix).
    pub issuing_region: String,
    pub fields: BTreeMap<String, String>,
    pub valid_from: String,
    pub valid_until: Option<String>,
}

/// The license-id code of a type: the initials of its words (`household_register` → HR).
pub(super) fn type_code(license_type: &str) -> String {
    license_type
        .split('_')
        .filter_map(|w| w.chars().next())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub(super) fn masked_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

fn register_person(
    tx: &rusqlite::Transaction<'_>,
    hash: &str,
    id: &ResidentId,
    name: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO residents (id_hash, id_masked, name, home_region, birth_date, level,
            id_number)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            hash,
            id.masked(),
            name,
            id.home_region().as_str(),
            id.birth_date().to_string(),
            AssuranceLevel::Substantial as i32,
            id.as_str()
        ],
    )?;
    Ok(())
}

/// Inserts a license with the next serial; returns its id.
fn insert_license(
    tx: &rusqlite::Transaction<'_>,
    hash: &str,
    license: &NewLicense,
) -> Result<String, StoreError> {
    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(rowid), 0) + 1 FROM licenses",
        [],
        |r| r.get(0),
    )?;
    let license_id = format!(
        "{}-{}-{next:07}",
        license.issuing_region,
        type_code(&license.license_type)
    );
    let fields = serde_json::to_string(&license.fields).unwrap_or_else(|_| "{}".into());
    tx.execute(
        "INSERT INTO licenses (license_number, license_type, holder_hash, issuer_region,
            issued_on, holder_name_masked, fields, valid_from, valid_until, issued_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            license_id,
            license.license_type,
            hash,
            license.issuing_region,
            license.valid_from,
            masked_name(&license.holder_name),
            fields,
            license.valid_from,
            license.valid_until,
            now_ms()
        ],
    )?;
    Ok(license_id)
}

/// The licenses a synthetic resident of this region holds from it.
fn own_licenses(r: &super::synthetic::SyntheticResident) -> Vec<NewLicense> {
    let home = r.id.home_region().as_str().to_owned();
    let birth = r.id.birth_date().to_string();
    let license = |license_type: &str, fields: &[(&str, &str)], until: Option<&str>| NewLicense {
        holder: r.id.clone(),
        holder_name: r.name.clone(),
        license_type: license_type.to_owned(),
        issuing_region: home.clone(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        valid_from: birth.clone(),
        valid_until: until.map(str::to_owned),
    };
    vec![
        license("resident_id_card", &[], Some("2045-12-31")),
        license("household_register", &[("registered_region", &home)], None),
        license(
            "social_security_card",
            &[("insured_region", &home)],
            Some("2035-12-31"),
        ),
        license(
            "medical_insurance_certificate",
            &[("insured_region", &home)],
            None,
        ),
    ]
}

impl EmbeddedPlatform {
    /// Seeds `count` synthetic residents of this region with their licenses (ID card,
    /// household register, social security card, medical insurance certificate), and
    /// marriage certificates issued here to a few synthetic residents of every other
    /// province, unless persons exist already. Returns the residents seeded.
    pub async fn seed(
        &self,
        table: &'static RegionTable,
        prefix: &RegionPrefix,
        count: u32,
        id_hash_key: Arc<[u8]>,
    ) -> Result<u32, StoreError> {
        let residents = synthetic_residents(table, prefix, count);
        let region = tongban_proto::rules::region::RegionCode::from_prefix(prefix);
        let visitors: Vec<_> = table
            .provinces()
            .filter(|p| !p.code.as_str().starts_with(prefix.as_str()))
            .filter_map(|p| RegionPrefix::parse(p.code.significant_prefix()).ok())
            .flat_map(|p| synthetic_residents(table, &p, VISITORS_PER_PROVINCE))
            .collect();
        self.db
            .call(move |conn| {
                let existing: i64 =
                    conn.query_row("SELECT COUNT(*) FROM residents", [], |r| r.get(0))?;
                if existing > 0 {
                    return Ok(0);
                }
                let tx = conn.transaction()?;
                for r in &residents {
                    let hash = r.id.keyed_hash(&id_hash_key);
                    register_person(&tx, &hash, &r.id, &r.name)?;
                    for license in own_licenses(r) {
                        insert_license(&tx, &hash, &license)?;
                    }
                }
                for v in &visitors {
                    let hash = v.id.keyed_hash(&id_hash_key);
                    register_person(&tx, &hash, &v.id, &v.name)?;
                    let license = NewLicense {
                        holder: v.id.clone(),
                        holder_name: v.name.clone(),
                        license_type: "marriage_certificate".into(),
                        issuing_region: region.to_string(),
                        fields: BTreeMap::from([(
                            "registration_region".to_owned(),
                            region.to_string(),
                        )]),
                        valid_from: "2020-05-20".into(),
                        valid_until: None,
                    };
                    insert_license(&tx, &hash, &license)?;
                }
                tx.commit()?;
                Ok(residents.len() as u32)
            })
            .await
    }

    /// Issues one license (registering its holder as a person if new); returns it.
    pub async fn issue_license(
        &self,
        license: NewLicense,
        id_hash_key: Arc<[u8]>,
    ) -> Result<LicenseRecord, PlatformError> {
        let id = self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let hash = license.holder.keyed_hash(&id_hash_key);
                register_person(&tx, &hash, &license.holder, &license.holder_name)?;
                let id = insert_license(&tx, &hash, &license)?;
                tx.commit()?;
                Ok(id)
            })
            .await?;
        self.license(&id, &Purpose::default())
            .await?
            .ok_or_else(|| PlatformError::Unavailable(format!("license {id} vanished")))
    }

    /// Every license issued here to a resident (demos and tests, which know the key).
    pub async fn licenses_of_resident(
        &self,
        id: &ResidentId,
        id_hash_key: &[u8],
    ) -> Result<Vec<LicenseRecord>, PlatformError> {
        let hash = id.keyed_hash(id_hash_key);
        let subject = Subject {
            id_number: id.as_str(),
            id_hash: &hash,
        };
        self.licenses_of(subject, &Purpose::default()).await
    }

    /// Issues `count` licenses of `license_type` to synthetic holders in one
    /// transaction (benchmarks); returns their ids.
    pub async fn issue_many(
        &self,
        license_type: &str,
        issuing_region: &str,
        holder: &ResidentId,
        count: u32,
        id_hash_key: Arc<[u8]>,
    ) -> Result<Vec<String>, PlatformError> {
        let template = NewLicense {
            holder: holder.clone(),
            holder_name: "测试".into(),
            license_type: license_type.to_owned(),
            issuing_region: issuing_region.to_owned(),
            fields: BTreeMap::new(),
            valid_from: "2020-01-01".into(),
            valid_until: None,
        };
        Ok(self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let hash = template.holder.keyed_hash(&id_hash_key);
                register_person(&tx, &hash, &template.holder, &template.holder_name)?;
                let mut ids = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    ids.push(insert_license(&tx, &hash, &template)?);
                }
                tx.commit()?;
                Ok(ids)
            })
            .await?)
    }
}

const SELECT_LICENSE: &str = "SELECT license_number, license_type, issuer_region, holder_hash,
    holder_name_masked, fields, valid_from, valid_until, issued_ms, revoked_ms FROM licenses";

fn row_to_license(r: &rusqlite::Row<'_>) -> rusqlite::Result<LicenseRecord> {
    let fields: String = r.get(5)?;
    Ok(LicenseRecord {
        license_id: r.get(0)?,
        license_type: r.get(1)?,
        issuing_region: r.get(2)?,
        holder_hash: r.get(3)?,
        holder_name_masked: r.get(4)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        valid_from: r.get(6)?,
        valid_until: r.get(7)?,
        issued_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
    })
}

#[tonic::async_trait]
impl LicenseRegistry for EmbeddedPlatform {
    async fn person(
        &self,
        subject: Subject<'_>,
        _purpose: &Purpose,
    ) -> Result<Option<Person>, PlatformError> {
        let id_hash = subject.id_hash.to_owned();
        Ok(self
            .db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT name, home_region, level FROM residents WHERE id_hash = ?1",
                        [id_hash],
                        |r| {
                            let level: i32 = r.get(2)?;
                            Ok(Person {
                                name: r.get(0)?,
                                home_region: r.get(1)?,
                                level: AssuranceLevel::try_from(level)
                                    .unwrap_or(AssuranceLevel::Low),
                            })
                        },
                    )
                    .optional()?)
            })
            .await?)
    }

    async fn license(
        &self,
        license_id: &str,
        _purpose: &Purpose,
    ) -> Result<Option<LicenseRecord>, PlatformError> {
        let license_id = license_id.to_owned();
        Ok(self
            .db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("{SELECT_LICENSE} WHERE license_number = ?1"))?;
                Ok(stmt.query_row([license_id], row_to_license).optional()?)
            })
            .await?)
    }

    async fn licenses_of(
        &self,
        holder: Subject<'_>,
        _purpose: &Purpose,
    ) -> Result<Vec<LicenseRecord>, PlatformError> {
        let holder_hash = holder.id_hash.to_owned();
        Ok(self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "{SELECT_LICENSE} WHERE holder_hash = ?1 ORDER BY license_number"
                ))?;
                let rows = stmt.query_map([holder_hash], row_to_license)?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await?)
    }

    async fn revoke(
        &self,
        license_id: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<Option<LicenseRecord>, PlatformError> {
        let (id, reason) = (license_id.to_owned(), reason.to_owned());
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let changed = tx.execute(
                    "UPDATE licenses SET revoked_ms = ?2, revoke_reason = ?3
                     WHERE license_number = ?1 AND revoked_ms IS NULL",
                    params![id, at_ms, reason],
                )?;
                if changed == 1 {
                    super::feed::record_revocation(&tx, &id, &reason, at_ms)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        self.license(license_id, &Purpose::default()).await
    }

    /// The register's own log of revocations: the node follows it as it follows a
    /// province platform's feed. The revoke route queues a publication at once; this
    /// catches one the route could not queue (a crash between the register and the
    /// store, two databases), at the next turn after a restart.
    async fn revocations_after(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<Option<RevocationPage>, PlatformError> {
        self.revocation_log_after(cursor, limit).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_and_masks() {
        assert_eq!(type_code("household_register"), "HR");
        assert_eq!(type_code("birth_medical_certificate"), "BMC");
        assert_eq!(masked_name("王小明"), "王**");
        assert_eq!(masked_name(""), "");
    }

    #[tokio::test]
    async fn seeded_licenses_are_routable_and_revocable() {
        let dir =
            std::env::temp_dir().join(format!("tongban-embedded-{}-licenses", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let prefix = RegionPrefix::parse("44").unwrap();
        let platform = EmbeddedPlatform::open(&dir.join("p.db"), &prefix).unwrap();
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let table = RegionTable::embedded();
        assert_eq!(
            platform.seed(table, &prefix, 3, key.clone()).await.unwrap(),
            3
        );
        let resident = &synthetic_residents(table, &prefix, 3)[0];
        let hash = resident.id.keyed_hash(&key);
        let subject = Subject {
            id_number: resident.id.as_str(),
            id_hash: &hash,
        };
        let none = Purpose::default();
        let person = platform.person(subject, &none).await.unwrap().unwrap();
        assert_eq!(person.name, resident.name);
        let held = platform.licenses_of(subject, &none).await.unwrap();
        assert_eq!(held.len(), 4);
        for l in &held {
            let issuer = tongban_proto::rules::credentials::license_issuer(&l.license_id).unwrap();
            assert_eq!(issuer.as_str(), l.issuing_region);
            assert!(prefix.contains(&issuer));
        }
        let register = held
            .iter()
            .find(|l| l.license_type == "household_register")
            .unwrap();
        assert_eq!(
            register.fields.get("registered_region").map(String::as_str),
            Some(resident.id.home_region().as_str())
        );
        // Visitors from other provinces hold marriage certificates issued here.
        let visitor = &synthetic_residents(table, &RegionPrefix::parse("11").unwrap(), 1)[0];
        let theirs = platform
            .licenses_of(
                Subject {
                    id_number: visitor.id.as_str(),
                    id_hash: &visitor.id.keyed_hash(&key),
                },
                &none,
            )
            .await
            .unwrap();
        assert_eq!(theirs.len(), 1);
        assert_eq!(theirs[0].license_type, "marriage_certificate");
        assert!(theirs[0].license_id.starts_with("440000-MC-"));

        let revoked = platform
            .revoke(&register.license_id, "moved", 1000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_ms, Some(1000));
        // The first revocation's time is kept.
        let again = platform
            .revoke(&register.license_id, "again", 2000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_ms, Some(1000));
        assert!(
            platform
                .revoke("440000-X-1", "", 1)
                .await
                .unwrap()
                .is_none()
        );
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
