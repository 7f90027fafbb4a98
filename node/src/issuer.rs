//! This node as its region's issuer: the signed identity assertions and licenses the
//! gateway asks for when another region (or this one) recognizes an applicant or a
//! license. Every lookup of a person's data is recorded in the access log before the
//! answer leaves.
//!
//! Signing keys are Ed25519, separate from the TLS key; the newest key whose start has
//! passed signs, so a next key configured beside the current one takes over by itself
//! (the gateway accepts both while their registered windows overlap).

use std::{sync::Arc, time::SystemTime};

use prost::Message;
use tongban_proto::{
    rules::consent,
    rules::credentials::{self, SignedKind, SigningKey},
    rules::region::{RegionCode, RegionPrefix},
    rules::resident_id::ResidentId,
    v1::{
        AssertIdentityRequest, AssertIdentityResponse, AssuranceLevel, FetchHolderLicensesRequest,
        FetchHolderLicensesResponse, FetchLicenseRequest, FetchLicenseResponse, IdentityAssertion,
        License, LicenseStatus, LookupPurpose, SignedObject,
    },
};

pub use crate::issuer_keys::{IssuerError, IssuerKeys, SharedIssuerKeys};
use crate::{
    context::NodeContext,
    error::NodeError,
    platform::{LicenseRecord, Purpose, Subject},
    sqlite::timestamp_ms,
    store::{AccessConsent, AccessKind, NewAccess},
};

/// Answers the gateway's lookups.
pub struct Issuer {
    pub ctx: Arc<NodeContext>,
    pub keys: SharedIssuerKeys,
}

/// The lookup's purpose and the applicant's request it carries: refused without one
/// (by the rule the gateway applies, `tongban_proto::rules::consent`).
fn purpose_of(purpose: Option<LookupPurpose>) -> Result<(Purpose, AccessConsent), NodeError> {
    let consent = consent::checked(purpose.as_ref(), SystemTime::now())
        .map_err(|problem| NodeError::invalid(consent::FIELD, problem))?;
    let p = purpose.unwrap_or_default();
    // Bounded: they are stored in the access log and sent to the platform.
    let bound = |s: String| s.chars().take(64).collect::<String>();
    let purpose = Purpose::new(bound(p.one_thing_id), bound(p.case_number));
    Ok((purpose, consent.into()))
}

/// The access log's entry of a lookup of `kind` answered here.
fn access(
    holder_hash: String,
    kind: AccessKind,
    license_id: Option<String>,
    requester: RegionPrefix,
    (purpose, consent): (Purpose, AccessConsent),
) -> NewAccess {
    NewAccess {
        holder_hash,
        kind,
        license_id,
        requester_region: requester.to_string(),
        one_thing_id: purpose.one_thing_id,
        case_number: purpose.case_number,
        consent: Some(consent),
    }
}

impl Issuer {
    fn parse_id(&self, id_number: &str, field: &str) -> Result<ResidentId, NodeError> {
        let today = tongban_proto::rules::calendar::business_now().date();
        ResidentId::parse(id_number, self.ctx.regions, today)
            .map_err(|e| NodeError::invalid(field, e.to_string()))
    }

    /// A signed statement about the person with this ID number and name.
    pub async fn assert_identity(
        &self,
        requester: RegionPrefix,
        request: AssertIdentityRequest,
    ) -> Result<AssertIdentityResponse, NodeError> {
        let id = self.parse_id(&request.id_number, "id_number")?;
        let keys = self.keys.get();
        let key = keys.current()?;
        let hash = id.keyed_hash(&self.ctx.id_hash_key);
        let (purpose, consent) = purpose_of(request.purpose)?;
        let subject = Subject {
            id_number: id.as_str(),
            id_hash: &hash,
        };
        let person = self.ctx.registry.person(subject, &purpose).await?;
        // Only the home region vouches for a person, whatever else it knows of them.
        let resident = person.filter(|p| {
            RegionCode::parse(&p.home_region).is_ok_and(|home| self.ctx.prefix.contains(&home))
        });
        self.ctx
            .store
            .record_access(access(
                hash,
                AccessKind::Identity,
                None,
                requester,
                (purpose, consent),
            ))
            .await?;
        let salt = credentials::new_salt();
        let now = SystemTime::now();
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let assertion = IdentityAssertion {
            subject: credentials::subject_hash(&salt, id.as_str()),
            subject_salt: salt.to_vec(),
            name_matches: resident
                .as_ref()
                .is_some_and(|p| p.name == request.name.trim()),
            subject_known: resident.is_some(),
            level: resident
                .as_ref()
                .map_or(AssuranceLevel::Unspecified, |p| p.level) as i32,
            issuing_region: self.ctx.region.to_string(),
            issued_at: Some(timestamp_ms(ms(now))),
            expires_at: Some(timestamp_ms(ms(now + keys.assertion_validity))),
        };
        Ok(AssertIdentityResponse {
            assertion: Some(key.sign(SignedKind::IdentityAssertion, assertion.encode_to_vec())),
        })
    }

    /// One license issued here, signed; bound to the holder if the requester named them.
    pub async fn fetch_license(
        &self,
        requester: RegionPrefix,
        request: FetchLicenseRequest,
    ) -> Result<FetchLicenseResponse, NodeError> {
        let issuer = credentials::license_issuer(&request.license_id)
            .map_err(|e| NodeError::invalid("license_id", e.to_string()))?;
        if !self.ctx.prefix.contains(&issuer) {
            return Ok(FetchLicenseResponse { license: None });
        }
        let keys = self.keys.get();
        let key = keys.current()?;
        let (purpose, consent) = purpose_of(request.purpose)?;
        let Some(record) = self
            .ctx
            .registry
            .license(&request.license_id, &purpose)
            .await?
        else {
            return Ok(FetchLicenseResponse { license: None });
        };
        // Only for its holder: a request naming nobody would read anyone's license, and
        // the access log could not say whose it was.
        if request.holder_id_number.is_empty() {
            return Err(NodeError::invalid(
                "holder_id_number",
                "required: a license is read only for its holder".to_owned(),
            ));
        }
        let holder = Some(self.parse_id(&request.holder_id_number, "holder_id_number")?);
        self.ctx
            .store
            .record_access(access(
                record.holder_hash.clone(),
                AccessKind::License,
                Some(record.license_id.clone()),
                requester,
                (purpose, consent),
            ))
            .await?;
        let signed = self.sign_license(key, &record, holder.as_ref());
        Ok(FetchLicenseResponse {
            license: Some(signed),
        })
    }

    /// Every license issued here to the holder, signed and bound to them.
    pub async fn fetch_holder_licenses(
        &self,
        requester: RegionPrefix,
        request: FetchHolderLicensesRequest,
    ) -> Result<FetchHolderLicensesResponse, NodeError> {
        let holder = self.parse_id(&request.holder_id_number, "holder_id_number")?;
        let keys = self.keys.get();
        let key = keys.current()?;
        let hash = holder.keyed_hash(&self.ctx.id_hash_key);
        let (purpose, consent) = purpose_of(request.purpose)?;
        let subject = Subject {
            id_number: holder.as_str(),
            id_hash: &hash,
        };
        let records = self.ctx.registry.licenses_of(subject, &purpose).await?;
        self.ctx
            .store
            .record_access(access(
                hash,
                AccessKind::HolderLicenses,
                None,
                requester,
                (purpose, consent),
            ))
            .await?;
        Ok(FetchHolderLicensesResponse {
            licenses: records
                .iter()
                .map(|r| self.sign_license(key, r, Some(&holder)))
                .collect(),
        })
    }

    fn sign_license(
        &self,
        key: &SigningKey,
        record: &LicenseRecord,
        holder: Option<&ResidentId>,
    ) -> SignedObject {
        // The holder is named (as a salted hash) only when the requester's ID number is
        // the holder's: the issuer keeps no ID numbers, only its keyed hashes.
        let (holder, salt) = match holder {
            Some(id) if id.keyed_hash(&self.ctx.id_hash_key) == record.holder_hash => {
                let salt = credentials::new_salt();
                (credentials::subject_hash(&salt, id.as_str()), salt.to_vec())
            }
            _ => (Vec::new(), Vec::new()),
        };
        let license = License {
            license_id: record.license_id.clone(),
            license_type: record.license_type.clone(),
            issuing_region: record.issuing_region.clone(),
            holder,
            holder_salt: salt,
            holder_name_masked: record.holder_name_masked.clone(),
            fields: record.fields.clone(),
            valid_from: record.valid_from.clone(),
            valid_until: record.valid_until.clone().unwrap_or_default(),
            status: if record.revoked_ms.is_some() {
                LicenseStatus::Revoked
            } else {
                LicenseStatus::Valid
            } as i32,
            revoked_at: record.revoked_ms.map(timestamp_ms),
            issued_at: Some(timestamp_ms(record.issued_ms)),
        };
        key.sign(SignedKind::License, license.encode_to_vec())
    }
}
